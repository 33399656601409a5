//! Lifecycle: graceful shutdown, bounded memory under a slow reader, signals and startup
//! failures of the binary.

use crate::binary;
use crate::common::*;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use crate::binary::{Proc, run_to_exit, write_config};

/// Two stream clients of a broker process joined into a tunnel.
async fn proc_tunnel(proc: &Proc, a: Kind, b: Kind, token: &str) -> (Client, Client) {
    let mut first = proc.client(a).await;
    let mut second = proc.client(b).await;
    assert_eq!(first.authenticate("uuid-a", "first", token, Some("n")).await, "AuthenticationErrorNoError");
    assert_eq!(second.authenticate("uuid-b", "second", token, Some("n")).await, "AuthenticationErrorNoError");
    second.wait_tunnel().await;
    first.wait_tunnel().await;
    (first, second)
}

fn into_stream(client: Client) -> Box<dyn Io> {
    assert!(client.buf.is_empty(), "no tunnel bytes expected yet");
    match client.wire {
        ClientWire::Stream(s) => s,
        ClientWire::WebSocket(_) => panic!("stream client expected"),
    }
}

// ---------------------------------------------------------------------------------------------
// 6. A slow reader keeps the broker's memory bounded, and nothing is lost.

/// Period of the test pattern: not a power of two, so a lost or repeated block shifts it.
const PERIOD: usize = 1_000_003;
const WRITE_CHUNK: usize = 256 << 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reader_keeps_broker_memory_bounded_and_loses_nothing() {
    const TOTAL: u64 = 256 << 20;
    const PAUSE: Duration = Duration::from_secs(3);
    const MAX_GROWTH_KIB: u64 = 16 << 10;

    let mut proc = Proc::spawn_mock("");
    proc.ready().await;
    let (a, b) = proc_tunnel(&proc, Kind::Tcp, Kind::Tcp, "slow-reader").await;
    let mut writer = into_stream(a);
    let mut reader = into_stream(b);

    let mut pattern = random_bytes(PERIOD);
    pattern.extend_from_within(..WRITE_CHUNK);
    let pattern = Arc::new(pattern);

    // Warm-up: the tunnel's buffers exist before the baseline is taken.
    let warm = random_bytes(4 << 20);
    let mut got = vec![0u8; warm.len()];
    within("warm-up", async {
        tokio::join!(async { writer.write_all(&warm).await.unwrap() }, async {
            reader.read_exact(&mut got).await.unwrap()
        })
    })
    .await;
    assert!(got == warm, "warm-up data differs");
    let baseline = proc.rss_kib();

    let written = Arc::new(AtomicU64::new(0));
    let write_task = {
        let (pattern, written) = (pattern.clone(), written.clone());
        tokio::spawn(async move {
            let mut pos: u64 = 0;
            while pos < TOTAL {
                let off = (pos % PERIOD as u64) as usize;
                let n = (TOTAL - pos).min(WRITE_CHUNK as u64) as usize;
                writer.write_all(&pattern[off..off + n]).await.unwrap();
                pos += n as u64;
                written.store(pos, Ordering::Relaxed);
            }
            writer.shutdown().await.unwrap();
            writer
        })
    };

    // The reader does not read for a while; sample the broker's memory meanwhile.
    let mut peak = baseline;
    let until = Instant::now() + PAUSE;
    while Instant::now() < until {
        peak = peak.max(proc.rss_kib());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let written_while_paused = written.load(Ordering::Relaxed);
    eprintln!("baseline {baseline} KiB, peak {peak} KiB, {written_while_paused} bytes written while paused");
    assert!(
        peak.saturating_sub(baseline) < MAX_GROWTH_KIB,
        "broker RSS grew by {} KiB (baseline {baseline} KiB, peak {peak} KiB) while the reader paused \
         ({written_while_paused} bytes written)",
        peak - baseline
    );
    assert!(
        written_while_paused < TOTAL / 2,
        "the writer was not slowed down: {written_while_paused} bytes accepted while nobody read"
    );

    // Now read everything and compare with the pattern.
    let mut buf = vec![0u8; WRITE_CHUNK];
    let mut pos: u64 = 0;
    within("reading 256 MiB", async {
        loop {
            let n = reader.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            assert!(pos + n as u64 <= TOTAL, "more bytes than written");
            let off = (pos % PERIOD as u64) as usize;
            if buf[..n] != pattern[off..off + n] {
                panic!("data differs in the {n} bytes at offset {pos}");
            }
            pos += n as u64;
            if pos % (16 << 20) < n as u64 {
                peak = peak.max(proc.rss_kib());
            }
        }
    })
    .await;
    assert_eq!(pos, TOTAL, "bytes delivered");
    assert!(
        peak.saturating_sub(baseline) < MAX_GROWTH_KIB,
        "broker RSS grew by {} KiB while draining",
        peak - baseline
    );
    let writer = within("writer", write_task).await.unwrap();
    drop((writer, reader));

    proc.signal("TERM");
    assert_eq!(proc.exit_status(WAIT).await.code(), Some(0), "stderr: {}", proc.stderr_text());
}

// ---------------------------------------------------------------------------------------------
// 7. Graceful shutdown in-process.

/// New connections are refused: connect fails, or the connection is closed at once.
async fn refuses_new_connections(addr: SocketAddr) {
    match TcpStream::connect(addr).await {
        Err(_) => {}
        Ok(mut stream) => {
            let mut buf = [0u8; 64];
            let read = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf)).await;
            match read {
                Ok(Ok(0)) | Ok(Err(_)) => {}
                Ok(Ok(n)) => panic!("a connection after stop got {n} bytes"),
                Err(_) => panic!("a connection after stop was accepted and kept open"),
            }
        }
    }
}

#[tokio::test]
async fn graceful_shutdown_keeps_tunnels_for_the_grace_period() {
    let grace = Duration::from_millis(4000);
    let mut broker = Broker::builder().config(|c| c.server.shutdown_grace_period = grace).start().await;
    let (mut ta, mut tb) = tunnel(&broker, Kind::Tcp, Kind::WebSocket, "stays").await;
    let mut alone = broker.connect(Kind::Tcp).await;
    assert_eq!(alone.authenticate("uuid-alone", "alone", "waits", None).await, "AuthenticationErrorNoError");
    let mut fresh = broker.connect(Kind::WebSocket).await;
    fresh.hello().await;

    broker.signal_stop();
    let stopped_at = Instant::now();
    assert_eq!(fresh.closed().await, Closed::WebSocket(1000, "Stop server".into()));
    assert_eq!(alone.closed().await, Closed::Eof);

    refuses_new_connections(broker.tcp).await;
    refuses_new_connections(broker.websocket).await;
    match UnixStream::connect(&broker.unix).await {
        Err(_) => {}
        Ok(mut stream) => {
            let mut buf = [0u8; 64];
            let read = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf)).await;
            assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "unix connection after stop: {read:?}");
        }
    }

    // The tunnel goes on during the grace period, both ways.
    ta.send_bytes(b"still here").await;
    assert_eq!(tb.recv_data(10).await, b"still here");
    let payload = random_bytes(100_000);
    tb.send_bytes(&payload).await;
    assert_eq!(ta.read_exact(payload.len()).await, payload);
    assert!(stopped_at.elapsed() < grace, "the checks above took longer than the grace period");
    assert!(
        !broker.stopped_within(Duration::from_millis(200)).await,
        "run returned while a tunnel was in its grace period"
    );
    ta.send_bytes(b"again").await;
    assert_eq!(tb.recv_data(5).await, b"again");

    // Then the tunnel is closed and run returns.
    assert_eq!(tb.closed().await, Closed::WebSocket(1000, "Stop server".into()));
    assert_eq!(ta.closed().await, Closed::Eof);
    assert!(stopped_at.elapsed() >= grace, "the tunnel was closed before the grace period ended");
    assert!(broker.stopped_within(Duration::from_secs(5)).await, "run did not return after the grace period");
}

#[tokio::test]
async fn graceful_shutdown_tcp_tunnel_ends_after_the_grace_period() {
    let grace = Duration::from_millis(500);
    let mut broker = Broker::builder().config(|c| c.server.shutdown_grace_period = grace).start().await;
    let (mut a, mut b) = tunnel(&broker, Kind::Tcp, Kind::Unix, "tcp-grace").await;
    broker.signal_stop();
    a.send_bytes(b"ping").await;
    assert_eq!(b.read_exact(4).await, b"ping");
    assert_eq!(a.closed().await, Closed::Eof);
    assert_eq!(b.closed().await, Closed::Eof);
    assert!(broker.stopped_within(Duration::from_secs(5)).await, "run did not return after the grace period");
}

#[tokio::test]
async fn shutdown_without_tunnels_returns_promptly() {
    // The default grace period is 30 s; with no tunnel there is nothing to wait for.
    let mut broker = Broker::start().await;
    let mut alone = broker.connect(Kind::Unix).await;
    assert_eq!(
        alone.authenticate("uuid-alone", "alone", "nobody-comes", None).await,
        "AuthenticationErrorNoError"
    );
    let mut idle = broker.connect(Kind::Tcp).await;
    idle.hello().await;
    broker.signal_stop();
    assert!(broker.stopped_within(Duration::from_secs(5)).await, "run did not return promptly");
    assert_eq!(alone.closed().await, Closed::Eof);
    assert_eq!(idle.closed().await, Closed::Eof);
}

#[tokio::test]
async fn tunnel_that_ends_during_the_grace_period_lets_run_return_early() {
    let mut broker =
        Broker::builder().config(|c| c.server.shutdown_grace_period = Duration::from_secs(30)).start().await;
    let (a, mut b) = tunnel(&broker, Kind::Tcp, Kind::Tcp, "ends-early").await;
    broker.signal_stop();
    drop(a);
    assert_eq!(b.closed().await, Closed::Eof);
    drop(b);
    assert!(broker.stopped_within(Duration::from_secs(5)).await, "run waited although no tunnel was left");
}

// ---------------------------------------------------------------------------------------------
// 8. Signals.

#[tokio::test]
async fn binary_exits_0_on_sigterm_with_an_open_tunnel() {
    let mut proc = Proc::spawn_mock("shutdownGracePeriod=300");
    proc.ready().await;
    let (mut a, mut b) = proc_tunnel(&proc, Kind::Tcp, Kind::Unix, "sigterm").await;
    a.send_bytes(b"x").await;
    assert_eq!(b.read_exact(1).await, b"x");
    let mut waiting = proc.client(Kind::Tcp).await;
    waiting.hello().await;
    proc.signal("TERM");
    assert_eq!(waiting.closed().await, Closed::Eof);
    assert_eq!(a.closed().await, Closed::Eof);
    assert_eq!(b.closed().await, Closed::Eof);
    let status = proc.exit_status(WAIT).await;
    assert_eq!(status.code(), Some(0), "{status}; stderr: {}", proc.stderr_text());
    assert!(!proc.unix.exists(), "the unix socket file is removed at exit");
}

#[tokio::test]
async fn binary_exits_0_on_sigint() {
    let mut proc = Proc::spawn_mock("");
    proc.ready().await;
    proc.signal("INT");
    let status = proc.exit_status(WAIT).await;
    assert_eq!(status.code(), Some(0), "{status}; stderr: {}", proc.stderr_text());
}

#[tokio::test]
async fn binary_exits_0_on_sigterm_when_idle() {
    let mut proc = Proc::spawn_mock("");
    proc.ready().await;
    proc.signal("TERM");
    let status = proc.exit_status(WAIT).await;
    assert_eq!(status.code(), Some(0), "{status}; stderr: {}", proc.stderr_text());
}

// ---------------------------------------------------------------------------------------------
// 9. Startup failures.

#[tokio::test]
async fn tcp_port_in_use_exits_1_naming_the_address() {
    let dir = tempfile::tempdir().unwrap();
    let occupied = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = occupied.local_addr().unwrap().port();
    let config = write_config(dir.path(), port, 0, &dir.path().join("proxy.socket"), "", "");
    let (code, stderr) = run_to_exit(&config, dir.path(), &["-m"]).await;
    assert_eq!(code, Some(1), "stderr: {stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "stderr names the address: {stderr}");
    assert!(stderr.contains("[TcpServer] host and port"), "and what to change: {stderr}");
    drop(occupied);
}

#[tokio::test]
async fn websocket_port_in_use_exits_1_naming_the_address() {
    let dir = tempfile::tempdir().unwrap();
    let occupied = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = occupied.local_addr().unwrap().port();
    let config = write_config(dir.path(), 0, port, &dir.path().join("proxy.socket"), "", "");
    let (code, stderr) = run_to_exit(&config, dir.path(), &["-m"]).await;
    assert_eq!(code, Some(1), "stderr: {stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "stderr names the address: {stderr}");
    drop(occupied);
}

#[tokio::test]
async fn unix_socket_in_use_exits_1_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("taken.socket");
    let occupied = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let config = write_config(dir.path(), 0, 0, &path, "", "");
    let (code, stderr) = run_to_exit(&config, dir.path(), &["-m"]).await;
    assert_eq!(code, Some(1), "stderr: {stderr}");
    assert!(stderr.contains(&path.display().to_string()), "stderr names the path: {stderr}");
    assert!(stderr.contains("[UnixSocketServer] unixSocketFileName"), "and what to change: {stderr}");
    // The other listener's socket is untouched and still works.
    assert!(path.exists(), "the live socket file was removed");
    let _client = std::os::unix::net::UnixStream::connect(&path).expect("the live listener still accepts");
    drop(occupied);
}

/// A broker that has served a tunnel and holds an idle v2 server exits as soon as it is told to:
/// neither waits out the 30 s grace period (only tunnels do).
#[tokio::test]
async fn binary_that_served_clients_exits_at_once() {
    let v2 = "[TcpServerTunnelProxy]\nhost=127.0.0.1\nport=0\n";
    let mut proc = Proc::launch("", |_| v2.to_string(), &["-m"]);
    proc.ready().await;
    // A v1 tunnel, used and finished.
    let (mut a, mut b) = (proc.client(Kind::Tcp).await, proc.client(Kind::Unix).await);
    assert_eq!(a.authenticate("a", "a", "t", Some("n")).await, "AuthenticationErrorNoError");
    assert_eq!(b.authenticate("b", "b", "t", Some("n")).await, "AuthenticationErrorNoError");
    a.wait_tunnel().await;
    b.wait_tunnel().await;
    a.send_bytes(b"hello").await;
    assert_eq!(b.read_exact(5).await, b"hello");
    drop((a, b));
    // An idle v2 server, registered.
    let log = proc.stderr_text();
    const V2: &str = "v2 TCP listener address=";
    let at = log.find(V2).expect("the v2 listener is logged") + V2.len();
    let v2_address: std::net::SocketAddr = log[at..].split_whitespace().next().unwrap().parse().unwrap();
    let stream = tokio::net::TcpStream::connect(v2_address).await.unwrap();
    let mut server = binary::stream_client(Kind::Tcp, Box::new(stream));
    let uuid = uuid::Uuid::new_v4().to_string();
    let params = serde_json::json!({"serverName": "device", "serverUuid": uuid});
    let answer = server.call(1, "TunnelProxy.RegisterServer", params).await;
    assert_eq!(answer["status"], "success", "{answer}");
    proc.signal("TERM");
    let status = proc.exit_status(Duration::from_secs(5)).await;
    assert_eq!(status.code(), Some(0), "{status}; stderr: {}", proc.stderr_text());
    assert!(proc.stderr_text().contains("stopped"), "{}", proc.stderr_text());
}
