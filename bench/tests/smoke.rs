//! The bench end to end against a real broker (the test harness's in-process broker, TLS on):
//! every measure runs with tiny sizes, through real sockets, and reports its numbers without
//! errors. Nothing here is timed; the numbers themselves belong to `scripts/bench.sh`.

use remoteproxy_bench::results::Results;
use remoteproxy_testkit::Broker;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_measure_runs_against_a_real_broker() {
    let broker = Broker::start().await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_remoteproxy-bench"))
        .args(["all", "--insecure", "--json", "--quick", "--no-spread"])
        .args(["--url", &format!("ssl://{}", broker.tcp)])
        .args(["--ws-url", &format!("wss://{}/", broker.websocket)])
        .args(["--tunnels", "16", "--concurrency", "4", "--bytes", "256KiB", "--chunk", "16KiB"])
        .args(["--round-trips", "20", "--hold-tunnels", "6", "--hold-concurrency", "3"])
        .args(["--hold-bytes", "64KiB", "--hold-idle", "0"])
        .output()
        .await
        .expect("the bench runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the bench failed:\n{stderr}");
    let results: Results = serde_json::from_slice(&output.stdout).expect("--json prints a results document");

    assert_eq!(results.runs.len(), 1);
    assert!(results.runs[0].broker_server.starts_with("remoteproxy"), "Hello names the broker");

    let setup = &results.setup[0];
    for side in [&setup.broker, &setup.baseline] {
        assert_eq!((side.attempted, side.ok), (16, 16), "every tunnel opened: {:?}", side.errors);
        assert!(side.errors.is_empty() && side.tunnels_per_s > 0.0);
    }

    let transports: Vec<_> =
        results.throughput.iter().map(|t| (t.transport.as_str(), t.direction.as_str())).collect();
    for expected in ["tls-tcp", "wss", "mixed tls-tcp/wss"] {
        for direction in ["one-way", "both-ways"] {
            assert!(
                transports.contains(&(expected, direction)),
                "{expected} {direction} measured: {transports:?}"
            );
        }
    }
    for t in &results.throughput {
        assert!(
            t.broker.errors.is_empty() && t.baseline.errors.is_empty(),
            "{} {}: errors",
            t.transport,
            t.direction
        );
        assert!(t.broker.mb_per_s > 0.0 && t.baseline.mb_per_s > 0.0 && t.ratio.is_some());
    }

    assert_eq!(results.latency.len(), 2, "tls-tcp and wss");
    for l in &results.latency {
        assert!(l.broker.errors.is_empty() && l.baseline.errors.is_empty(), "{}: errors", l.transport);
    }

    let hold = &results.hold[0];
    assert_eq!((hold.broker.established, hold.baseline.established), (6, 6));
    assert!(hold.broker.errors.is_empty() && hold.baseline.errors.is_empty());
    broker.stop().await;
}

/// The idle-fleet shapes of `hold` at tiny sizes: v1 tunnels over wss, and v2 TunnelProxy servers
/// over TLS-TCP and wss, each reached by clients whose bytes the held servers echo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hold_shape_runs_against_a_real_broker() {
    let broker = Broker::start().await;
    for shape in ["v1-ws", "v2-tcp", "v2-ws"] {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_remoteproxy-bench"))
            .args(["hold", "--insecure", "--json", "--quick", "--no-spread", "--hold-shape", shape])
            .args(["--url", &format!("ssl://{}", broker.tcp)])
            .args(["--ws-url", &format!("wss://{}/", broker.websocket)])
            .args(["--v2-url", &format!("ssl://{}", broker.tcp2)])
            .args(["--v2-ws-url", &format!("wss://{}/", broker.websocket2)])
            .args([
                "--hold-tunnels",
                "4",
                "--hold-concurrency",
                "2",
                "--hold-bytes",
                "64KiB",
                "--hold-idle",
                "0",
            ])
            .args(["--reach-clients", "6", "--concurrency", "2"])
            .output()
            .await
            .expect("the bench runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{shape}: the bench failed:\n{stderr}");
        let results: Results =
            serde_json::from_slice(&output.stdout).expect("--json prints a results document");
        if shape == "v1-ws" {
            let hold = &results.hold[0];
            assert_eq!(hold.transport, "wss");
            assert_eq!((hold.broker.established, hold.baseline.established), (4, 4));
            assert!(hold.broker.errors.is_empty() && hold.baseline.errors.is_empty(), "{stderr}");
            assert!(results.fleet.is_empty());
            continue;
        }
        assert!(results.hold.is_empty());
        let fleet = &results.fleet[0];
        let transport = if shape == "v2-tcp" { "v2 tls-tcp" } else { "v2 wss" };
        assert_eq!((fleet.transport.as_str(), fleet.servers, fleet.reach_clients), (transport, 4, 6));
        for side in [&fleet.broker, &fleet.baseline] {
            assert_eq!(side.hold.established, 4, "{shape}: every server held:\n{stderr}");
            assert!(side.hold.errors.is_empty(), "{shape}: {:?}", side.hold.errors);
            assert_eq!(side.reach_ok, 6, "{shape}: every client reached its server: {:?}", side.reach_errors);
            assert!(side.reach_errors.is_empty() && side.reach_ms.p99 > 0.0);
        }
        let reach = fleet.checks.last().expect("a reach check");
        assert!(reach.target.starts_with("reach p99 < 50 ms"), "{reach:?}");
    }
    broker.stop().await;
}

/// The reconnect storm at a tiny size, across a broker restart on the same ticket key file: every
/// device registers with a full handshake, then resumes, on the same broker and on the restarted
/// one, and the broker's own handshake counter agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_storm_resumes_across_a_restart() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("ticket-keys");
    let start = || {
        let key_file = key_file.clone();
        Broker::builder()
            .config(move |c| {
                c.tls.ticket_key_file = Some(key_file);
                c.metrics.enabled = true;
            })
            .start()
    };
    let first = start().await;
    let mut bench = tokio::process::Command::new(env!("CARGO_BIN_EXE_remoteproxy-bench"))
        .args(["storm", "--insecure", "--json", "--no-spread", "--restart-via-stdin"])
        .args(["--url", &format!("ssl://{}", first.tcp)])
        .args(["--v2-url", &format!("ssl://{}", first.tcp2)])
        .args(["--metrics", &first.metrics.unwrap().to_string()])
        .args(["--storm-servers", "8", "--storm-in-flight", "4", "--storm-tunnels", "1"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the bench runs");
    let mut stderr = BufReader::new(bench.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    loop {
        let line =
            stderr.next_line().await.unwrap().unwrap_or_else(|| panic!("no restart request:\n{seen:#?}"));
        let asked = line.starts_with("storm: restart the broker now");
        seen.push(line);
        if asked {
            break;
        }
    }
    first.stop().await;
    let second = start().await;
    let named = format!(
        "url=ssl://{} v2-url=ssl://{} metrics={}\n",
        second.tcp,
        second.tcp2,
        second.metrics.unwrap()
    );
    bench.stdin.as_mut().unwrap().write_all(named.as_bytes()).await.unwrap();
    let rest = tokio::spawn(async move {
        while let Ok(Some(line)) = stderr.next_line().await {
            seen.push(line);
        }
        seen
    });
    let output = bench.wait_with_output().await.unwrap();
    let seen = rest.await.unwrap().join("\n");
    assert!(output.status.success(), "the bench failed:\n{seen}");
    let results: Results = serde_json::from_slice(&output.stdout).expect("--json prints a results document");
    let storm = &results.storm[0];
    assert_eq!((storm.transport.as_str(), storm.servers), ("v2 tls-tcp", 8));
    let broker_phases =
        [Some(&storm.broker.full), storm.broker.resumed.as_ref(), storm.broker.restarted.as_ref()];
    let baseline_phases = [Some(&storm.baseline.full), storm.baseline.resumed.as_ref()];
    for (i, phase) in broker_phases.into_iter().chain(baseline_phases).enumerate() {
        let phase = phase.unwrap_or_else(|| panic!("phase {i} ran:\n{seen}"));
        assert_eq!(phase.registered, 8, "phase {i}: {:?}\n{seen}", phase.errors);
        assert!(phase.errors.is_empty() && phase.rtt_errors.is_empty(), "phase {i}:\n{seen}");
        let full = i == 0 || i == 3;
        assert_eq!(phase.resumed, if full { 0 } else { 8 }, "phase {i}:\n{seen}");
        assert!(phase.rtt_ms.count > 0 || phase.seconds < 0.05, "phase {i}: ping-pong ran");
    }
    assert!(storm.baseline.restarted.is_none());
    assert_eq!(storm.broker.full.server_handshakes, Some((8, 0)), "{seen}");
    assert_eq!(storm.broker.resumed.as_ref().unwrap().server_handshakes, Some((0, 8)), "{seen}");
    assert_eq!(storm.broker.restarted.as_ref().unwrap().server_handshakes, Some((0, 8)), "{seen}");
    second.stop().await;
}
