//! `remoteproxy-client tunnel-server` and `tunnel-client` processes against a real broker.

use remoteproxy_testkit as common;
mod support;

use std::time::Duration;

use common::{Broker, Kind, random_bytes, within};
use support::{ca_file, exit_code, spawn_client, stderr_of, url_text_v2};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpListener;
use tokio::process::{Child, ChildStderr, Command};

const BIN: &str = env!("CARGO_BIN_EXE_remoteproxy-client");

fn spawn(args: &[&str]) -> Child {
    spawn_client(args, None)
}

/// A `tunnel-server` (or `tunnel-client`) with the broker's URL and CA.
fn v2(command: &str, broker: &Broker, kind: Kind, ca: &std::path::Path, args: &[&str]) -> Child {
    let url = url_text_v2(broker, kind);
    let mut all = vec![command, "-u", &url, "--ca", ca.to_str().unwrap()];
    all.extend_from_slice(args);
    spawn(&all)
}

/// Waits for the server's "registered" line; returns the rest of its stderr for later.
async fn registered(server: &mut Child) -> Lines<BufReader<ChildStderr>> {
    let mut lines = BufReader::new(server.stderr.take().unwrap()).lines();
    loop {
        let line = within("the registered line", lines.next_line()).await.unwrap().expect("stderr ended");
        if line.contains("registered as server") {
            return lines;
        }
    }
}

/// A local echo service, one connection per client: it echoes `limit` bytes, then closes (the
/// v2 API cannot tell a server that its client's input ended, so the service says when it is
/// done, as a request/response service does).
async fn echo_service(limit: u64) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let _ = tokio::io::copy(&mut read.take(limit), &mut write).await;
                let _ = write.shutdown().await;
            });
        }
    });
    addr
}

/// The end-to-end case: a `tunnel-server` exposes a local echo service, three
/// `tunnel-client --stdio` processes (one per transport) talk to it at once, 1 MiB of random
/// bytes each, byte-exact; each keeps reading after its input ended and exits 0 when the
/// service is done.
async fn three_stdio_clients_through_a_tunnel_server(server_kind: Kind) {
    const SIZE: usize = 1 << 20;
    let broker = Broker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(&broker, &dir);
    let echo = echo_service(SIZE as u64).await;
    let uuid = uuid::Uuid::new_v4().to_string();
    let mut server = v2(
        "tunnel-server",
        &broker,
        server_kind,
        &ca,
        &["--uuid", &uuid, "--name", "device", "--connect", &echo.to_string()],
    );
    let _server_stderr = registered(&mut server).await;

    let mut runs = Vec::new();
    for kind in [Kind::Tcp, Kind::WebSocket, Kind::Unix] {
        let mut client = v2("tunnel-client", &broker, kind, &ca, &["--server-uuid", &uuid, "--stdio"]);
        runs.push(tokio::spawn(async move {
            let data = random_bytes(SIZE);
            let mut input = client.stdin.take().unwrap();
            let mut output = client.stdout.take().unwrap();
            let mut got = vec![0u8; SIZE];
            let moved = tokio::time::timeout(Duration::from_secs(60), async {
                tokio::try_join!(input.write_all(&data), output.read_exact(&mut got))
            })
            .await;
            if !matches!(moved, Ok(Ok(_))) {
                let _ = client.start_kill();
                panic!("{kind:?}: moving 1 MiB failed: {moved:?}; stderr: {}", stderr_of(&mut client).await);
            }
            assert!(got == data, "{kind:?}: the echo differs");
            drop(input);
            let code = exit_code(&mut client).await;
            assert_eq!(code, 0, "{kind:?}: {}", stderr_of(&mut client).await);
            let mut rest = Vec::new();
            output.read_to_end(&mut rest).await.unwrap();
            assert!(rest.is_empty(), "{kind:?}: stray bytes after the echo");
        }));
    }
    for run in runs {
        within("a client run", run).await.unwrap();
    }
    // The server keeps serving after its clients left.
    let mut late = v2("tunnel-client", &broker, Kind::Tcp, &ca, &["--server-uuid", &uuid, "--stdio"]);
    let mut input = late.stdin.take().unwrap();
    input.write_all(b"still there?").await.unwrap();
    let mut got = [0u8; 12];
    within("a late echo", late.stdout.as_mut().unwrap().read_exact(&mut got)).await.unwrap();
    assert_eq!(&got, b"still there?");
    // The service closes after SIZE bytes: the rest, then the client's input ends, and the
    // client exits once the service is done.
    let mut rest = Vec::new();
    let mut output = late.stdout.take().unwrap();
    let send = async {
        input.write_all(&vec![b'.'; SIZE - 12]).await?;
        drop(input);
        Ok(())
    };
    within("the rest of the echo", async { tokio::try_join!(send, output.read_to_end(&mut rest)) })
        .await
        .unwrap();
    assert_eq!(rest.len(), SIZE - 12);
    assert_eq!(exit_code(&mut late).await, 0);
    assert!(server.try_wait().unwrap().is_none(), "the server keeps running");
}

#[tokio::test]
async fn three_stdio_clients_through_a_tunnel_server_on_tls_tcp() {
    three_stdio_clients_through_a_tunnel_server(Kind::Tcp).await;
}

#[tokio::test]
async fn three_stdio_clients_through_a_tunnel_server_on_websocket() {
    three_stdio_clients_through_a_tunnel_server(Kind::WebSocket).await;
}

#[tokio::test]
async fn an_unknown_server_exits_3() {
    let broker = Broker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(&broker, &dir);
    let unknown = uuid::Uuid::new_v4().to_string();
    let mut client = v2("tunnel-client", &broker, Kind::Tcp, &ca, &["--server-uuid", &unknown, "--stdio"]);
    assert_eq!(exit_code(&mut client).await, 3);
    let stderr = stderr_of(&mut client).await;
    assert!(stderr.contains("TunnelProxyErrorServerNotFound"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
}

#[tokio::test]
async fn an_invalid_server_uuid_exits_3() {
    let broker = Broker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(&broker, &dir);
    let mut server = v2("tunnel-server", &broker, Kind::Tcp, &ca, &["--uuid", "not-a-uuid"]);
    assert_eq!(exit_code(&mut server).await, 3);
    let stderr = stderr_of(&mut server).await;
    assert!(stderr.contains("TunnelProxyErrorInvalidUuid"), "{stderr}");
}

#[tokio::test]
async fn usage_and_configuration_errors_exit_2() {
    // A subcommand needs no token, but its own required flags.
    let out =
        Command::new(BIN).args(["tunnel-client"]).env_remove("REMOTEPROXY_TOKEN").output().await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--server-uuid"));
    // v1 flags do not mix with a subcommand.
    let out = Command::new(BIN).args(["-t", "x", "tunnel-server", "--uuid", "u"]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    // An unreadable CA file ends a server at once, it does not retry forever.
    let mut server =
        spawn(&["tunnel-server", "--uuid", "u", "-u", "ssl://127.0.0.1:1", "--ca", "/nonexistent.pem"]);
    assert_eq!(exit_code(&mut server).await, 2);
    assert!(stderr_of(&mut server).await.contains("nonexistent.pem"));
    let mut client = spawn(&["tunnel-client", "--server-uuid", "u", "-u", "http://x"]);
    assert_eq!(exit_code(&mut client).await, 2);
}

/// `tunnel-client --listen` accepts one local connection, then registers; a `tunnel-server`
/// without --connect prints what clients send. SIGINT ends the server with 0.
#[tokio::test]
async fn listen_mode_and_the_printing_server() {
    let broker = Broker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(&broker, &dir);
    let uuid = uuid::Uuid::new_v4().to_string();
    let mut server = v2("tunnel-server", &broker, Kind::WebSocket, &ca, &["--uuid", &uuid]);
    let mut server_stderr = registered(&mut server).await;
    let mut client = v2(
        "tunnel-client",
        &broker,
        Kind::Tcp,
        &ca,
        &["--server-uuid", &uuid, "--name", "lister", "--listen", "127.0.0.1:0"],
    );
    let mut client_stderr = BufReader::new(client.stderr.take().unwrap()).lines();
    let line = within("the listen address", client_stderr.next_line()).await.unwrap().unwrap();
    assert!(line.contains("listening on"), "{line}");
    let addr = line.rsplit(' ').next().unwrap().to_string();
    // Nobody connected locally yet: the server has no client. Then two local connections at
    // once, each a client of the server.
    let mut printed = BufReader::new(server.stdout.take().unwrap()).lines();
    let mut users = Vec::new();
    for i in 0..2 {
        let mut user = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let line = within("the server's client line", server_stderr.next_line()).await.unwrap().unwrap();
        assert!(line.contains("client lister") && line.contains("connected from 127.0.0.1"), "{line}");
        user.write_all(format!("printed by the server {i}\n").as_bytes()).await.unwrap();
        let text = within("the printed line", printed.next_line()).await.unwrap().unwrap();
        assert_eq!(text, format!("printed by the server {i}"));
        users.push(user);
    }
    // Both are still connected: the first still reaches the server.
    users[0].write_all(b"still here\n").await.unwrap();
    let text = within("the printed line", printed.next_line()).await.unwrap().unwrap();
    assert_eq!(text, "still here");
    // A local connection that ends ends its client; the listener goes on.
    for _ in 0..2 {
        drop(users.pop());
        let line = within("the disconnected line", server_stderr.next_line()).await.unwrap().unwrap();
        assert!(line.contains("client lister") && line.contains("disconnected"), "{line}");
    }
    assert!(client.try_wait().unwrap().is_none(), "the client keeps listening");
    let user = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let line = within("the server's client line", server_stderr.next_line()).await.unwrap().unwrap();
    assert!(line.contains("connected from 127.0.0.1"), "{line}");
    drop(user);
    for child in [&mut client, &mut server] {
        let pid = child.id().unwrap().to_string();
        let killed = Command::new("kill").args(["-INT", &pid]).status().await.unwrap();
        assert!(killed.success());
        assert_eq!(exit_code(child).await, 0);
    }
}

/// A local service that cannot be reached disconnects the client that needed it; the server
/// goes on.
#[tokio::test]
async fn an_unreachable_local_service_disconnects_the_client() {
    let broker = Broker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(&broker, &dir);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let uuid = uuid::Uuid::new_v4().to_string();
    let mut server =
        v2("tunnel-server", &broker, Kind::Tcp, &ca, &["--uuid", &uuid, "--connect", &closed.to_string()]);
    let _server_stderr = registered(&mut server).await;
    for _ in 0..2 {
        let mut client = v2("tunnel-client", &broker, Kind::Tcp, &ca, &["--server-uuid", &uuid, "--stdio"]);
        let mut output = Vec::new();
        within("the client's output", client.stdout.take().unwrap().read_to_end(&mut output)).await.unwrap();
        assert!(output.is_empty());
        assert_eq!(exit_code(&mut client).await, 0, "{}", stderr_of(&mut client).await);
    }
    assert!(server.try_wait().unwrap().is_none(), "the server keeps running");
}
