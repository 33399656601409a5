//! Nothing lost and the exit status tells the truth: `remoteproxy-client` processes whose inputs
//! end at different times get every byte both ways and exit 0; a tunnel cut mid-transfer exits
//! 1 with one line.

use remoteproxy_testkit as common;
mod support;

use std::time::Duration;

use common::{Broker, Client, Kind, random_bytes, within};
use support::{ca_file, exit_code, spawn_client, stderr_of, url_text, url_text_v2};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::process::{Child, ChildStdin, ChildStdout};

const MIB: usize = 1 << 20;

fn spawn(args: &[&str], token: &str) -> Child {
    spawn_client(args, Some(token))
}

/// A v1 `--stdio` client.
fn stdio_client(broker: &Broker, kind: Kind, ca: &std::path::Path, nonce: &str) -> Child {
    let url = url_text(broker, kind);
    spawn(&["-u", &url, "--ca", ca.to_str().unwrap(), "-n", nonce, "--stdio"], "no-loss")
}

/// Writes `data`, then ends the input.
async fn feed(mut input: ChildStdin, data: &[u8]) -> std::io::Result<()> {
    input.write_all(data).await?;
    input.shutdown().await
}

async fn drain(mut output: ChildStdout) -> std::io::Result<Vec<u8>> {
    let mut all = Vec::new();
    output.read_to_end(&mut all).await?;
    Ok(all)
}

/// a sends 4 MiB and its input ends at once; b starts sending its 3 MiB only after a's input
/// ended (and b got all of it). Both get every byte and exit 0.
async fn inputs_ending_at_different_times(a_kind: Kind, b_kind: Kind) {
    let broker = Broker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(&broker, &dir);
    let nonce = uuid::Uuid::new_v4().to_string();
    let mut a = stdio_client(&broker, a_kind, &ca, &nonce);
    let mut b = stdio_client(&broker, b_kind, &ca, &nonce);
    let (to_b, to_a) = (random_bytes(4 * MIB), random_bytes(3 * MIB));
    let (a_in, mut b_in) = (a.stdin.take().unwrap(), b.stdin.take().unwrap());
    let (a_out, mut b_out) = (a.stdout.take().unwrap(), b.stdout.take().unwrap());
    let late = async {
        let mut got = vec![0u8; to_b.len()];
        b_out.read_exact(&mut got).await?;
        b_in.write_all(&to_a).await?;
        drop(b_in);
        let mut rest = Vec::new();
        b_out.read_to_end(&mut rest).await?;
        got.extend(rest);
        Ok(got)
    };
    let (_, at_a, at_b) = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::try_join!(feed(a_in, &to_b), drain(a_out), late)
    })
    .await
    .expect("moved within a minute")
    .unwrap();
    let case = format!("{a_kind:?} -> {b_kind:?}");
    assert!(at_b == to_b, "{case}: a -> b differs ({} of {} bytes)", at_b.len(), to_b.len());
    assert!(at_a == to_a, "{case}: b -> a differs ({} of {} bytes)", at_a.len(), to_a.len());
    assert_eq!(exit_code(&mut a).await, 0, "{case} a: {}", stderr_of(&mut a).await);
    assert_eq!(exit_code(&mut b).await, 0, "{case} b: {}", stderr_of(&mut b).await);
}

#[tokio::test]
async fn uneven_inputs_over_tcp() {
    inputs_ending_at_different_times(Kind::Tcp, Kind::Tcp).await;
}

#[tokio::test]
async fn uneven_inputs_over_websocket() {
    inputs_ending_at_different_times(Kind::WebSocket, Kind::WebSocket).await;
}

#[tokio::test]
async fn uneven_inputs_from_tcp_to_websocket() {
    inputs_ending_at_different_times(Kind::Tcp, Kind::WebSocket).await;
}

#[tokio::test]
async fn uneven_inputs_from_websocket_to_tcp() {
    inputs_ending_at_different_times(Kind::WebSocket, Kind::Tcp).await;
}

/// The first case: `cat 5MiB | client --ws --stdio` and `client --ws --stdio </dev/null`.
#[tokio::test]
async fn five_mib_one_way_over_websocket_with_an_empty_receiver_input() {
    let broker = Broker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(&broker, &dir);
    let nonce = uuid::Uuid::new_v4().to_string();
    let mut sender = stdio_client(&broker, Kind::WebSocket, &ca, &nonce);
    let mut receiver = stdio_client(&broker, Kind::WebSocket, &ca, &nonce);
    drop(receiver.stdin.take());
    let data = random_bytes(5 * MIB);
    let (_, _, got) = within("5 MiB", async {
        tokio::try_join!(
            feed(sender.stdin.take().unwrap(), &data),
            drain(sender.stdout.take().unwrap()),
            drain(receiver.stdout.take().unwrap())
        )
    })
    .await
    .unwrap();
    assert!(got == data, "{} of {} bytes arrived", got.len(), data.len());
    assert_eq!(exit_code(&mut sender).await, 0, "{}", stderr_of(&mut sender).await);
    assert_eq!(exit_code(&mut receiver).await, 0, "{}", stderr_of(&mut receiver).await);
}

/// A raw harness client (a nymea-style peer: plain frames, no half-close) parked under the
/// nonce, then the CLI client joining it.
async fn raw_partner(broker: &Broker, kind: Kind, nonce: &str) -> Client {
    let mut raw = broker.connect(kind).await;
    assert_eq!(raw.authenticate("raw", "raw", "no-loss", Some(nonce)).await, "AuthenticationErrorNoError");
    raw
}

#[tokio::test]
async fn a_nymea_style_websocket_peer_works_unchanged() {
    let broker = Broker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(&broker, &dir);
    let nonce = uuid::Uuid::new_v4().to_string();
    let mut raw = raw_partner(&broker, Kind::WebSocket, &nonce).await;
    let mut client = stdio_client(&broker, Kind::WebSocket, &ca, &nonce);
    raw.wait_tunnel().await;
    let (to_raw, to_client) = (random_bytes(MIB), random_bytes(MIB));
    // The client's input ends first; the raw peer gets it all, and nothing else arrives before
    // its own data is back: it answers, then closes as a nymea client does.
    let client_side = async {
        feed(client.stdin.take().unwrap(), &to_raw).await?;
        drain(client.stdout.take().unwrap()).await
    };
    let raw_side = async {
        assert_eq!(raw.recv_data(to_raw.len()).await, to_raw);
        raw.send_bytes(&to_client).await;
        raw.send_ws(tokio_tungstenite::tungstenite::Message::Close(None)).await;
    };
    let (got, ()) = within("the exchange", async { tokio::join!(client_side, raw_side) }).await;
    assert!(got.unwrap() == to_client);
    assert_eq!(exit_code(&mut client).await, 0, "{}", stderr_of(&mut client).await);
}

/// The partner goes away mid-transfer without finishing (killed, reset): the receiving client
/// gets what arrived, then exits 1 with one line saying the tunnel was cut.
async fn cut_mid_transfer(partner: Kind, client_kind: Kind) {
    let broker = Broker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(&broker, &dir);
    let nonce = uuid::Uuid::new_v4().to_string();
    let mut raw = raw_partner(&broker, partner, &nonce).await;
    let mut client = stdio_client(&broker, client_kind, &ca, &nonce);
    raw.wait_tunnel().await;
    let mut output = client.stdout.take().unwrap();
    raw.send_bytes(&random_bytes(64 << 10)).await;
    let mut first = vec![0u8; 64 << 10];
    within("the first bytes", output.read_exact(&mut first)).await.unwrap();
    // Gone without a close_notify or a close frame: as a killed process leaves.
    drop(raw);
    let case = format!("{partner:?} partner, {client_kind:?} client");
    assert_eq!(exit_code(&mut client).await, 1, "{case}");
    let stderr = stderr_of(&mut client).await;
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.contains("WARNING")).collect();
    assert_eq!(lines.len(), 1, "{case}: one line: {stderr}");
    assert!(lines[0].contains("cut"), "{case}: {stderr}");
    assert!(!stderr.contains("https://"), "{case}: no links into crate docs: {stderr}");
}

#[tokio::test]
async fn a_cut_tls_partner_fails_a_tls_client() {
    cut_mid_transfer(Kind::Tcp, Kind::Tcp).await;
}

#[tokio::test]
async fn a_cut_tls_partner_fails_a_websocket_client() {
    cut_mid_transfer(Kind::Tcp, Kind::WebSocket).await;
}

#[tokio::test]
async fn a_cut_websocket_partner_fails_a_tls_client() {
    cut_mid_transfer(Kind::WebSocket, Kind::Tcp).await;
}

#[tokio::test]
async fn a_cut_websocket_partner_fails_a_websocket_client() {
    cut_mid_transfer(Kind::WebSocket, Kind::WebSocket).await;
}

/// A tiny HTTP/1.0 service: reads the request head, answers, closes.
async fn http_service() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let body = "hello from the device\n";
                let reply = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                let _ = stream.write_all(reply.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

/// `printf 'GET / HTTP/1.0\r\n\r\n' | remoteproxy-client tunnel-client --stdio`: the end of stdin
/// does not end the client; the reply arrives, then it exits 0.
#[tokio::test]
async fn v2_stdio_request_gets_its_whole_reply() {
    let broker = Broker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(&broker, &dir);
    let http = http_service().await;
    let uuid = uuid::Uuid::new_v4().to_string();
    for server_kind in [Kind::Tcp, Kind::WebSocket] {
        let url = url_text_v2(&broker, server_kind);
        let ca = ca.to_str().unwrap();
        let mut server = spawn(
            &["tunnel-server", "-u", &url, "--ca", ca, "--uuid", &uuid, "--connect", &http.to_string()],
            "",
        );
        let mut stderr = tokio::io::BufReader::new(server.stderr.take().unwrap());
        let mut line = String::new();
        while !line.contains("registered as server") {
            line.clear();
            use tokio::io::AsyncBufReadExt;
            assert!(within("registration", stderr.read_line(&mut line)).await.unwrap() > 0, "server died");
        }
        for client_kind in [Kind::Tcp, Kind::WebSocket, Kind::Unix] {
            let url = url_text_v2(&broker, client_kind);
            let mut client =
                spawn(&["tunnel-client", "-u", &url, "--ca", ca, "--server-uuid", &uuid, "--stdio"], "");
            let (_, reply) = within("the reply", async {
                tokio::try_join!(
                    feed(client.stdin.take().unwrap(), b"GET / HTTP/1.0\r\n\r\n"),
                    drain(client.stdout.take().unwrap())
                )
            })
            .await
            .unwrap();
            let reply = String::from_utf8(reply).unwrap();
            let case = format!("{server_kind:?} server, {client_kind:?} client");
            assert!(reply.starts_with("HTTP/1.0 200 OK\r\n"), "{case}: {reply:?}");
            assert!(reply.ends_with("hello from the device\n"), "{case}: {reply:?}");
            assert_eq!(exit_code(&mut client).await, 0, "{case}: {}", stderr_of(&mut client).await);
        }
        let _ = server.start_kill();
        let _ = server.wait().await;
    }
}
