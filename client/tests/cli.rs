//! The `remoteproxy-client` binary against a real broker: two real client processes per tunnel.

use remoteproxy_testkit as common;
mod support;

use std::time::Duration;

use common::{Broker, Kind, Outcome, TestAuthenticator, random_bytes, within};
use support::{ca_file, exit_code, spawn_client, stderr_of, url_text};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_remoteproxy-client");

/// A client process; the token goes through the environment, as the README recommends.
fn client(url: &str, ca: &std::path::Path, token: &str, args: &[&str]) -> Child {
    let mut all = vec!["-u", url, "--ca", ca.to_str().unwrap()];
    all.extend_from_slice(args);
    spawn_client(&all, Some(token))
}

/// Two `--stdio` clients move 10 MiB of random bytes each way, byte-exact.
async fn stdio_pair_moves_10_mib_both_ways(kind: Kind) {
    const SIZE: usize = 10 << 20;
    let broker = Broker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(&broker, &dir);
    let url = url_text(&broker, kind);
    let nonce = format!("{kind:?}");
    let mut a = client(&url, &ca, "pipe", &["--stdio", "-n", &nonce, "--name", "a"]);
    let mut b = client(&url, &ca, "pipe", &["--stdio", "-n", &nonce, "--name", "b"]);
    let (to_b, to_a) = (random_bytes(SIZE), random_bytes(SIZE));
    let (mut a_in, mut b_in) = (a.stdin.take().unwrap(), b.stdin.take().unwrap());
    let (mut a_out, mut b_out) = (a.stdout.take().unwrap(), b.stdout.take().unwrap());
    let mut got_b = vec![0u8; SIZE];
    let mut got_a = vec![0u8; SIZE];
    tokio::time::timeout(Duration::from_secs(60), async {
        tokio::try_join!(
            a_in.write_all(&to_b),
            b_in.write_all(&to_a),
            b_out.read_exact(&mut got_b),
            a_out.read_exact(&mut got_a)
        )
    })
    .await
    .expect("10 MiB each way within a minute")
    .unwrap();
    assert!(got_b == to_b, "{kind:?}: a -> b differs");
    assert!(got_a == to_a, "{kind:?}: b -> a differs");
    // stdin's end half-closes (closes, on WebSocket) the tunnel; the tunnel's end ends both.
    drop(a_in);
    drop(b_in);
    assert_eq!(exit_code(&mut a).await, 0, "{kind:?} a: {}", stderr_of(&mut a).await);
    assert_eq!(exit_code(&mut b).await, 0, "{kind:?} b: {}", stderr_of(&mut b).await);
    let (mut rest_a, mut rest_b) = (Vec::new(), Vec::new());
    a_out.read_to_end(&mut rest_a).await.unwrap();
    b_out.read_to_end(&mut rest_b).await.unwrap();
    assert!(rest_a.is_empty() && rest_b.is_empty(), "no stray bytes after the data");
}

#[tokio::test]
async fn stdio_pair_over_tls_tcp() {
    stdio_pair_moves_10_mib_both_ways(Kind::Tcp).await;
}

#[tokio::test]
async fn stdio_pair_over_websocket() {
    stdio_pair_moves_10_mib_both_ways(Kind::WebSocket).await;
}

/// A line-based local service: answers each line with its upper-case form, and says goodbye when
/// its client stops sending.
async fn shouting_service() -> (std::net::SocketAddr, tokio::task::JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        let mut heard = Vec::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            write.write_all(format!("{}\n", line.to_uppercase()).as_bytes()).await.unwrap();
            heard.push(line);
        }
        write.write_all(b"BYE\n").await.unwrap();
        heard
    });
    (addr, task)
}

/// `app_kind` is how the listening side reaches the broker. Over TCP the user's half-close
/// travels through the tunnel, so the service's last words still come back; a WebSocket has no
/// half-close, so there the user's end closes the tunnel after its data.
async fn listen_and_connect_carry_a_tcp_conversation(app_kind: Kind) {
    let broker = Broker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(&broker, &dir);
    let (service, heard) = shouting_service().await;
    // The device side exposes the service; the app side listens for a local user.
    let mut device = client(
        &url_text(&broker, Kind::Tcp),
        &ca,
        "fwd",
        &["--connect", &service.to_string(), "--name", "device"],
    );
    let mut app =
        client(&url_text(&broker, app_kind), &ca, "fwd", &["--listen", "127.0.0.1:0", "--name", "app"]);
    let mut app_stderr = BufReader::new(app.stderr.take().unwrap()).lines();
    let line = within("the listen address", app_stderr.next_line()).await.unwrap().unwrap();
    let addr = line.rsplit(' ').next().unwrap().to_string();
    assert!(line.contains("listening on"), "{line}");

    let user = TcpStream::connect(&addr).await.unwrap();
    let (read, mut write) = user.into_split();
    let mut replies = BufReader::new(read).lines();
    for word in ["hello", "over the tunnel", "ünïcödé"] {
        write.write_all(format!("{word}\n").as_bytes()).await.unwrap();
        let reply = within("a reply", replies.next_line()).await.unwrap().unwrap();
        assert_eq!(reply, word.to_uppercase());
    }
    write.shutdown().await.unwrap();
    assert_eq!(within("the service's words", heard).await.unwrap(), ["hello", "over the tunnel", "ünïcödé"]);
    if app_kind == Kind::Tcp {
        assert_eq!(within("the goodbye", replies.next_line()).await.unwrap().as_deref(), Some("BYE"));
        assert_eq!(within("the end", replies.next_line()).await.unwrap(), None);
    }
    assert_eq!(exit_code(&mut app).await, 0);
    assert_eq!(exit_code(&mut device).await, 0, "{}", stderr_of(&mut device).await);
}

#[tokio::test]
async fn listen_over_tls_tcp_and_connect_keep_half_close() {
    listen_and_connect_carry_a_tcp_conversation(Kind::Tcp).await;
}

#[tokio::test]
async fn listen_over_websocket_and_connect() {
    listen_and_connect_carry_a_tcp_conversation(Kind::WebSocket).await;
}

#[tokio::test]
async fn wrong_token_exits_3_naming_the_outcome() {
    let broker = Broker::builder()
        .authenticator(TestAuthenticator::new(Outcome::AuthenticationFailed, Duration::ZERO))
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(&broker, &dir);
    let mut child = client(&url_text(&broker, Kind::Tcp), &ca, "wrong", &["--stdio"]);
    assert_eq!(exit_code(&mut child).await, 3);
    let stderr = stderr_of(&mut child).await;
    assert!(stderr.contains("AuthenticationErrorAuthenticationFailed"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(!stderr.contains("wrong"), "the token must not be printed: {stderr}");
}

#[tokio::test]
async fn usage_errors_exit_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("none.pem");
    for (url, expected) in [("http://example.com", "unknown scheme"), ("ssl://", "invalid URL")] {
        let mut child = client(url, &ca, "t", &[]);
        assert_eq!(exit_code(&mut child).await, 2, "{url}");
        let stderr = stderr_of(&mut child).await;
        assert!(stderr.contains(expected) && stderr.lines().count() == 1, "{url}: {stderr}");
    }
    // A CA file that does not exist is a configuration error too.
    let mut child = client("ssl://127.0.0.1:1", &ca, "t", &[]);
    assert_eq!(exit_code(&mut child).await, 2);
    assert!(stderr_of(&mut child).await.contains("none.pem"));
    // No token at all.
    let out = Command::new(BIN).env_remove("REMOTEPROXY_TOKEN").output().await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--token"));
}

#[tokio::test]
async fn partner_that_never_comes_exits_1() {
    let broker = Broker::builder().config(|c| c.timeouts.alone = Duration::from_millis(200)).start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(&broker, &dir);
    let mut child = client(&url_text(&broker, Kind::WebSocket), &ca, "alone", &["--stdio"]);
    assert_eq!(exit_code(&mut child).await, 1);
    assert!(stderr_of(&mut child).await.contains("did not show up"));
}

/// The default mode prints what arrives; with -p it greets the partner and answers each chunk
/// with a ping, as the reference client does.
#[tokio::test]
async fn pingpong_greets_and_answers_each_chunk() {
    for kind in [Kind::Tcp, Kind::WebSocket] {
        pingpong_over(kind).await;
    }
}

async fn pingpong_over(kind: Kind) {
    let broker = Broker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(&broker, &dir);
    let url = url_text(&broker, kind);
    let mut pinger = client(&url, &ca, "pp", &["-p", "--name", "pinger"]);
    let mut peer = client(&url, &ca, "pp", &["--stdio", "--name", "peer"]);
    let mut peer_out = peer.stdout.take().unwrap();
    let mut peer_in = peer.stdin.take().unwrap();
    let greeting = b"Ping from pinger!";
    let mut got = vec![0u8; greeting.len()];
    within("the greeting", peer_out.read_exact(&mut got)).await.unwrap();
    assert_eq!(got, greeting);
    peer_in.write_all(b"pong\n").await.unwrap();
    within("the answer", peer_out.read_exact(&mut got)).await.unwrap();
    assert_eq!(got, greeting);
    // The pinger printed what arrived.
    let mut printed = [0u8; 5];
    within("the printed chunk", pinger.stdout.as_mut().unwrap().read_exact(&mut printed)).await.unwrap();
    assert_eq!(&printed, b"pong\n");
    drop(peer_in);
    // The peer's end reaches the pinger, which ends cleanly in turn: both exit 0.
    assert_eq!(exit_code(&mut peer).await, 0, "{kind:?}: {}", stderr_of(&mut peer).await);
    assert_eq!(exit_code(&mut pinger).await, 0, "{kind:?}: {}", stderr_of(&mut pinger).await);
}

/// `-v` and `--version`, as on the broker and the monitor.
#[tokio::test]
async fn version_flags_print_the_version() {
    for flag in ["-v", "--version"] {
        let out = Command::new(BIN).arg(flag).env_remove("REMOTEPROXY_TOKEN").output().await.unwrap();
        assert_eq!(out.status.code(), Some(0), "{flag}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(stdout.trim(), format!("remoteproxy-client {}", env!("CARGO_PKG_VERSION")), "{flag}");
    }
}

/// `--connect ADDR --keep`: the device stays available. It serves one partner, authenticates
/// again when the next one is late (after the broker's aloneTimeout), serves that one too, and
/// exits 0 when interrupted.
#[tokio::test]
async fn keep_serves_partner_after_partner_until_interrupted() {
    let broker = Broker::builder().config(|c| c.timeouts.alone = Duration::from_millis(1500)).start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(&broker, &dir);
    let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = echo.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((stream, _)) = echo.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = stream.into_split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
                let _ = write.shutdown().await;
            });
        }
    });
    let mut device = client(
        &url_text(&broker, Kind::Tcp),
        &ca,
        "keep-token",
        &["--connect", &echo_addr, "--keep", "-n", "keep", "--verbose"],
    );
    let mut device_log = BufReader::new(device.stderr.take().unwrap()).lines();
    for round in 0..2 {
        if round == 1 {
            // Nobody comes for a while: the device authenticates again after the alone timeout.
            loop {
                let line = within("the re-authentication", device_log.next_line()).await.unwrap().unwrap();
                if line.contains("authenticating again") {
                    break;
                }
            }
        }
        let mut partner = broker.connect(Kind::Tcp).await;
        assert_eq!(
            partner.authenticate("partner", "partner", "keep-token", Some("keep")).await,
            "AuthenticationErrorNoError"
        );
        partner.wait_tunnel().await;
        let data = random_bytes(10_000);
        partner.send_bytes(&data).await;
        assert_eq!(partner.read_exact(data.len()).await, data, "round {round}");
        partner.shutdown_write().await;
        assert_eq!(partner.closed().await, common::Closed::Eof);
    }
    let killed =
        Command::new("kill").args(["-INT", &device.id().unwrap().to_string()]).status().await.unwrap();
    assert!(killed.success());
    assert_eq!(exit_code(&mut device).await, 0);
}
