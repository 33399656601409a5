//! The statistics log (`logEngineEnabled`): one JSON line per finished tunnel with the right
//! fields and byte counts and never a token; the totals kept in the state file across restarts
//! (in process and with the real binary, SIGTERM included); a corrupt state file does not stop
//! the broker.

use crate::binary;
use crate::binary::Proc;
use crate::common::*;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

struct Files {
    _dir: tempfile::TempDir,
    log: PathBuf,
    state: PathBuf,
}

/// The log and state file in directories that do not exist yet.
fn files() -> Files {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log/statistics.log");
    let state = dir.path().join("lib/statistics.json");
    Files { _dir: dir, log, state }
}

async fn broker(files: &Files) -> Broker {
    let (log, state) = (files.log.clone(), files.state.clone());
    Broker::builder()
        .config(|c| {
            c.server.log_engine_enabled = true;
            c.server.statistics_log_file = log;
            c.server.statistics_state_file = state;
        })
        .start()
        .await
}

/// Waits (bounded) until the log has `n` lines and returns them parsed.
async fn log_lines(path: &Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.len() <= n, "more lines than tunnels: {text}");
        if lines.len() == n {
            assert!(text.ends_with('\n'));
            return lines.iter().map(|l| serde_json::from_str(l).expect("each line is JSON")).collect();
        }
        assert!(Instant::now() < deadline, "expected {n} lines in the statistics log, got: {text:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn state(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("the state file exists")).expect("JSON state")
}

fn totals(path: &Path) -> [u64; 5] {
    let v = state(path);
    ["clients", "tunnels", "traffic", "tunnelProxyClients", "tunnelProxyTraffic"]
        .map(|k| v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}")))
}

/// Parses `2024-05-01T10:00:00.250Z` (the only form the log uses) into a time.
fn parse_time(text: &str) -> SystemTime {
    let b = text.as_bytes();
    assert!(
        text.len() == 24 && b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && b[19] == b'.' && b[23] == b'Z',
        "not RFC 3339 UTC with milliseconds: {text}"
    );
    let n = |range: std::ops::Range<usize>| text[range].parse::<i64>().unwrap();
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    // Days from civil (H. Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19);
    UNIX_EPOCH + Duration::from_millis(secs as u64 * 1000 + n(20..23) as u64)
}

/// Checks one line: the fields, their types, the times around `now`.
fn check_line(line: &Value, expected: Value, before: SystemTime, after: SystemTime) {
    let object = line.as_object().unwrap();
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "bytesFirstToSecond",
            "bytesSecondToFirst",
            "duration",
            "end",
            "outcome",
            "start",
            "transports",
            "users"
        ],
        "{line}"
    );
    for key in ["bytesFirstToSecond", "bytesSecondToFirst", "outcome", "transports", "users"] {
        assert_eq!(line[key], expected[key], "{key} in {line}");
    }
    let (start, end) =
        (parse_time(line["start"].as_str().unwrap()), parse_time(line["end"].as_str().unwrap()));
    let slack = Duration::from_millis(1);
    assert!(before <= start + slack && start <= end && end <= after + slack, "{line}");
    let duration = line["duration"].as_f64().unwrap();
    let span = end.duration_since(start).unwrap().as_secs_f64();
    assert!((duration - span).abs() < 0.0015, "duration {duration} vs {span}: {line}");
}

async fn exchange(from: &mut Client, to: &mut Client, n: usize) {
    let data = random_bytes(n);
    from.send_bytes(&data).await;
    assert_eq!(to.recv_data(n).await, data);
}

#[tokio::test]
async fn each_finished_tunnel_is_one_line_with_its_bytes_and_no_token() {
    let files = files();
    let broker = broker(&files).await;
    let before = SystemTime::now();

    let token_a = "statistics-secret-token-a";
    let (mut a1, mut a2) = tunnel(&broker, Kind::Tcp, Kind::WebSocket, token_a).await;
    exchange(&mut a1, &mut a2, 1234).await;
    exchange(&mut a2, &mut a1, 56).await;
    exchange(&mut a1, &mut a2, 100).await;
    // A TLS end that leaves without close_notify cuts its tunnel (outcome "failed"): end cleanly.
    a1.shutdown_write().await;
    drop((a1, a2));
    let lines = log_lines(&files.log, 1).await;
    check_line(
        &lines[0],
        json!({
            "bytesFirstToSecond": 1334,
            "bytesSecondToFirst": 56,
            "outcome": "closed",
            "transports": ["TCP", "WebSocket"],
            "users": ["user-of-first", "user-of-second"],
        }),
        before,
        SystemTime::now(),
    );

    let token_b = "statistics-secret-token-b";
    let (mut b1, mut b2) = tunnel(&broker, Kind::Unix, Kind::Tcp, token_b).await;
    exchange(&mut b2, &mut b1, 10).await;
    b2.shutdown_write().await;
    drop((b1, b2));
    let lines = log_lines(&files.log, 2).await;
    check_line(
        &lines[1],
        json!({
            "bytesFirstToSecond": 0,
            "bytesSecondToFirst": 10,
            "outcome": "closed",
            "transports": ["unix", "TCP"],
            "users": ["user-of-first", "user-of-second"],
        }),
        before,
        SystemTime::now(),
    );

    // Sessions that never made a tunnel write nothing.
    let mut lonely = broker.connect(Kind::Tcp).await;
    assert_eq!(
        lonely.authenticate("uuid-l", "lonely", "statistics-secret-token-c", None).await,
        "AuthenticationErrorNoError"
    );
    drop(lonely);

    // The state file is written on shutdown (well before its minute): 5 v1 connections,
    // 2 tunnels, 1400 bytes.
    broker.stop().await;
    assert_eq!(log_lines(&files.log, 2).await.len(), 2);
    assert_eq!(totals(&files.state), [5, 2, 1400, 0, 0]);
    let saved = state(&files.state);
    parse_time(saved["saved"].as_str().unwrap());

    for path in [&files.log, &files.state] {
        let text = std::fs::read_to_string(path).unwrap();
        for secret in [token_a, token_b, "statistics-secret-token-c", "uuid-a", "uuid-b", "127.0.0.1"] {
            assert!(!text.contains(secret), "{secret} in {}: {text}", path.display());
        }
    }
}

#[tokio::test]
async fn totals_survive_a_restart_in_process() {
    let files = files();
    let broker = broker(&files).await;
    let (mut a, mut b) = tunnel(&broker, Kind::Tcp, Kind::Tcp, "restart-token-1").await;
    exchange(&mut a, &mut b, 300).await;
    drop((a, b));
    log_lines(&files.log, 1).await;
    broker.stop().await;
    assert_eq!(totals(&files.state), [2, 1, 300, 0, 0]);

    // The second run starts from the saved totals and adds its own.
    let broker = broker_with_v2_traffic(&files).await;
    broker.stop().await;
    assert_eq!(totals(&files.state), [4, 2, 320, 1, 0]);
    // The log was appended to, not replaced.
    assert_eq!(log_lines(&files.log, 2).await.len(), 2);
}

async fn broker_with_v2_traffic(files: &Files) -> Broker {
    let broker = broker(files).await;
    let (mut a, mut b) = tunnel(&broker, Kind::Unix, Kind::WebSocket, "restart-token-2").await;
    exchange(&mut b, &mut a, 20).await;
    drop((a, b));
    log_lines(&files.log, 2).await;
    // A TunnelProxy connection counts among the v2 clients.
    let mut server = broker.connect_v2(Kind::Unix).await;
    let response = server
        .call(
            1,
            "TunnelProxy.RegisterServer",
            json!({"serverName": "device", "serverUuid": uuid::Uuid::new_v4().to_string()}),
        )
        .await;
    assert_eq!(response["params"]["tunnelProxyError"], "TunnelProxyErrorNoError", "{response}");
    drop(server);
    broker
}

#[tokio::test]
async fn a_corrupt_state_file_does_not_stop_the_broker() {
    let files = files();
    std::fs::create_dir_all(files.state.parent().unwrap()).unwrap();
    std::fs::write(&files.state, "{\"traffic\": \"lots\"").unwrap();
    let broker = broker(&files).await;
    let (mut a, mut b) = tunnel(&broker, Kind::Tcp, Kind::Tcp, "corrupt-token").await;
    exchange(&mut a, &mut b, 7).await;
    drop((a, b));
    log_lines(&files.log, 1).await;
    broker.stop().await;
    assert_eq!(totals(&files.state), [2, 1, 7, 0, 0]);
    let mut aside = files.state.clone().into_os_string();
    aside.push(".corrupt");
    assert_eq!(std::fs::read_to_string(aside).unwrap(), "{\"traffic\": \"lots\"");
    assert_not_logged(&["corrupt-token"]);
    let logs = capture_logs();
    let logs = String::from_utf8_lossy(&logs.lock().unwrap()).to_string();
    assert!(logs.contains("statistics state file cannot be read"), "no warning about the corrupt state file");
}

// ---------------------------------------------------------------------------------------------
// The real binary: SIGTERM writes the totals; the next run reports them on the monitor socket.

/// One snapshot from the monitor socket.
async fn monitor_snapshot(path: &Path) -> Value {
    within("a monitor snapshot", async {
        let stream = UnixStream::connect(path).await.unwrap();
        let (read, mut write) = stream.into_split();
        write.write_all(b"{\"method\":\"refresh\"}\n").await.unwrap();
        let mut line = String::new();
        BufReader::new(read).read_line(&mut line).await.unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    })
    .await
}

fn v1_totals(snapshot: &Value) -> [u64; 3] {
    let total = &snapshot["proxyStatistic"]["total"];
    ["totalClientCount", "totalTunnelCount", "totalTraffic"]
        .map(|k| total[k].as_u64().unwrap_or_else(|| panic!("{k} in {snapshot}")))
}

async fn binary_tunnel(proc: &Proc, token: &str, bytes: usize) {
    let mut first = proc.client(Kind::Tcp).await;
    let mut second = proc.client(Kind::Unix).await;
    assert_eq!(first.authenticate("uuid-1", "one", token, Some("n")).await, "AuthenticationErrorNoError");
    assert_eq!(second.authenticate("uuid-2", "two", token, Some("n")).await, "AuthenticationErrorNoError");
    second.wait_tunnel().await;
    first.wait_tunnel().await;
    exchange(&mut first, &mut second, bytes).await;
}

fn launch(files: &Files) -> Proc {
    let keys = format!(
        "shutdownGracePeriod=2000\nlogEngineEnabled=true\nstatisticsLogFile={}\nstatisticsStateFile={}\n",
        files.log.display(),
        files.state.display()
    );
    Proc::launch(&keys, |_| String::new(), &["-m", "--verbose"])
}

#[tokio::test]
async fn the_binary_keeps_its_totals_across_a_restart() {
    let files = files();
    let mut first = launch(&files);
    first.ready().await; // one v1 connection (Hello)
    binary_tunnel(&first, "binary-secret-token-1", 150).await;
    log_lines(&files.log, 1).await;
    let monitor = first.dir.path().join("monitor.sock");
    let deadline = Instant::now() + WAIT;
    while v1_totals(&monitor_snapshot(&monitor).await) != [3, 1, 150] {
        assert!(Instant::now() < deadline, "{}", monitor_snapshot(&monitor).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!files.state.exists(), "the state file is written at most once a minute, and on shutdown");
    let log = first.stop().await;
    assert_eq!(totals(&files.state), [3, 1, 150, 0, 0]);

    let mut second = launch(&files);
    second.ready().await;
    let monitor = second.dir.path().join("monitor.sock");
    assert_eq!(v1_totals(&monitor_snapshot(&monitor).await), [4, 1, 150]);
    binary_tunnel(&second, "binary-secret-token-2", 50).await;
    log_lines(&files.log, 2).await;
    let log2 = second.stop().await;
    assert_eq!(totals(&files.state), [6, 2, 200, 0, 0]);

    for text in [std::fs::read_to_string(&files.log).unwrap(), std::fs::read_to_string(&files.state).unwrap()]
    {
        assert!(!text.contains("binary-secret-token"), "{text}");
    }
    binary::assert_not_in_log(&log, &["binary-secret-token-1"]);
    binary::assert_not_in_log(&log2, &["binary-secret-token-2"]);
}

#[tokio::test]
async fn the_binary_starts_with_a_corrupt_state_file() {
    let files = files();
    std::fs::create_dir_all(files.state.parent().unwrap()).unwrap();
    std::fs::write(&files.state, b"\xff\xfe not json").unwrap();
    let mut proc = launch(&files);
    proc.ready().await;
    proc.logged("statistics state file cannot be read").await;
    let log = proc.stop().await;
    assert!(log.contains("WARN"), "{log}");
    assert_eq!(totals(&files.state), [1, 0, 0, 0, 0]);
}
