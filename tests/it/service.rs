//! The broker as a systemd service sees it, through the real binary: the `sd_notify` messages
//! on a datagram socket of the test's own (as systemd's `NOTIFY_SOCKET`).

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use crate::binary::{Proc, write_config};
use crate::common::WAIT;

/// Reads notification datagrams until one contains `wanted`, collecting all of them.
fn wait_for(socket: &UnixDatagram, wanted: &str, seen: &mut Vec<String>) {
    let deadline = Instant::now() + WAIT;
    let mut buf = [0u8; 4096];
    while !seen.iter().any(|message| message.lines().any(|line| line == wanted)) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no {wanted} within {WAIT:?}; got {seen:?}");
        socket.set_read_timeout(Some(left)).unwrap();
        match socket.recv(&mut buf) {
            Ok(n) => seen.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(error) => panic!("no {wanted} within {WAIT:?} ({error}); got {seen:?}"),
        }
    }
}

/// [`wait_for`] on a worker thread; hands the socket back with what was received.
async fn receive_until(socket: UnixDatagram, wanted: &'static str) -> (UnixDatagram, Vec<String>) {
    tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        wait_for(&socket, wanted, &mut seen);
        (socket, seen)
    })
    .await
    .unwrap()
}

/// READY=1 comes once the listeners accept, watchdog pings follow at half the interval, and
/// SIGTERM brings STOPPING=1 before the process ends.
#[tokio::test]
async fn the_service_manager_hears_ready_watchdog_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&notify).unwrap();
    let unix = dir.path().join("proxy.socket");
    let config = write_config(dir.path(), 0, 0, &unix, "shutdownGracePeriod=1000", "");
    let notify_path = notify.to_str().unwrap().to_string();
    let mut broker = Proc::launch_file_env(
        dir,
        &config,
        &["-m"],
        &[("NOTIFY_SOCKET", &notify_path), ("WATCHDOG_USEC", "400000")],
    );
    let (mut socket, mut seen) = receive_until(socket, "READY=1").await;
    // READY=1 means the listeners are bound: a client gets an answer at once.
    broker.ready().await;
    // Two watchdog pings after READY.
    for _ in 0..2 {
        let (again, more) = receive_until(socket, "WATCHDOG=1").await;
        socket = again;
        seen.extend(more);
    }
    broker.signal("TERM");
    let (_, more) = receive_until(socket, "STOPPING=1").await;
    seen.extend(more);
    let status = broker.exit_status(Duration::from_secs(10)).await;
    assert!(status.success(), "{status}");
    let ready = seen.iter().position(|m| m.contains("READY=1")).unwrap();
    let stopping = seen.iter().position(|m| m.contains("STOPPING=1")).unwrap();
    assert!(ready < stopping, "{seen:?}");
}

/// Started with its stderr as the journal stream (`JOURNAL_STREAM` naming that very file), the
/// broker writes lines without a timestamp of its own; with the variable naming another stream
/// (inherited, stale), it keeps its timestamps.
#[tokio::test]
async fn under_the_journal_lines_carry_no_timestamp_of_their_own() {
    use std::os::unix::fs::MetadataExt;
    for journal in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let unix = dir.path().join("proxy.socket");
        let config = write_config(dir.path(), 0, 0, &unix, "", "");
        let stderr_path = dir.path().join("stderr.txt");
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let meta = stderr.metadata().unwrap();
        let stream = match journal {
            true => format!("{}:{}", meta.dev(), meta.ino()),
            false => format!("{}:{}", meta.dev(), meta.ino() + 1),
        };
        let mut child = std::process::Command::new(crate::binary::BIN)
            .args(["-m", "-c", config.to_str().unwrap()])
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .env("JOURNAL_STREAM", &stream)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + WAIT;
        let log = loop {
            let log = std::fs::read_to_string(&stderr_path).unwrap();
            if log.contains("remoteproxy running") {
                break log;
            }
            assert!(Instant::now() < deadline, "no start line: {log}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        child.kill().unwrap();
        child.wait().unwrap();
        let line = log.lines().find(|line| line.contains("remoteproxy running")).unwrap();
        let stamped = line.split_whitespace().next().is_some_and(|first| first.starts_with("20"));
        assert_eq!(stamped, !journal, "journal={journal}: {line}");
        assert!(line.contains("INFO"), "{line}");
    }
}
