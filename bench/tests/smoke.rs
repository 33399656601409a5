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
