//! The v2 TunnelProxy client library against a real broker.

use remoteproxy_testkit as common;
mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Broker, Kind, random_bytes, within};
use remoteproxy_client::{
    Backoff, ClientError, ClientOptions, IncomingClient, ProxyUrl, ServerRegistration, ServerSettings,
    TunnelClient, TunnelProxyError, TunnelServer,
};
use support::{ca_file, url_text, url_text_v2};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn url(broker: &Broker, kind: Kind) -> ProxyUrl {
    ProxyUrl::parse_v2(&url_text_v2(broker, kind)).unwrap()
}

fn trusting(broker: &Broker, dir: &tempfile::TempDir) -> ClientOptions {
    ClientOptions { ca_file: Some(ca_file(broker, dir)), ..ClientOptions::default() }
}

fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn registration(uuid: &str) -> ServerRegistration {
    ServerRegistration { uuid: uuid.into(), name: "device".into() }
}

/// Quick retries, so tests that need a reconnection do not wait for the default backoff.
fn quick() -> ServerSettings {
    ServerSettings {
        backoff: Backoff { initial: Duration::from_millis(100), max: Duration::from_millis(400) },
        ..ServerSettings::default()
    }
}

fn client(server: &str, name: &str) -> TunnelClient {
    TunnelClient { name: name.into(), ..TunnelClient::new(server) }
}

/// A broker with one TunnelProxy server registered on it over `kind`, and the options that trust
/// the broker's certificate.
struct Registered {
    broker: Broker,
    _dir: tempfile::TempDir,
    options: ClientOptions,
    uuid: String,
    server: TunnelServer,
}

async fn registered(kind: Kind) -> Registered {
    let broker = Broker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let options = trusting(&broker, &dir);
    let uuid = new_uuid();
    let mut server = TunnelServer::spawn(url(&broker, kind), options.clone(), registration(&uuid));
    within("registration", server.registered()).await.unwrap();
    Registered { broker, _dir: dir, options, uuid, server }
}

/// Payloads that are mostly SLIP's special bytes, with random bytes between them.
fn slip_heavy(n: usize) -> Vec<u8> {
    let random = random_bytes(n);
    random
        .iter()
        .enumerate()
        .map(|(i, r)| match i % 4 {
            0 => 0xC0,
            1 => 0xDB,
            2 => [0xC0, 0xDB, 0xDC, 0xDD][(*r % 4) as usize],
            _ => *r,
        })
        .collect()
}

/// A TunnelServer with three TunnelClients at once (one per transport), each moving its own
/// SLIP-heavy payload both ways, byte-exact.
async fn three_clients_at_once(server_kind: Kind) {
    const SIZE: usize = 300_000;
    let Registered { broker, options, uuid, mut server, _dir } = registered(server_kind).await;

    let kinds = [Kind::Tcp, Kind::WebSocket, Kind::Unix];
    let up: Vec<Vec<u8>> = kinds.iter().map(|_| slip_heavy(SIZE)).collect();
    let down: Vec<Vec<u8>> = kinds.iter().map(|_| slip_heavy(SIZE)).collect();

    // The server side: for each client, read what it sends and send its payload, concurrently.
    let serving = tokio::spawn({
        let (up, down) = (up.clone(), down.clone());
        async move {
            let mut handlers = Vec::new();
            for _ in 0..3 {
                let IncomingClient { name, uuid, stream, .. } =
                    within("accept", server.accept()).await.unwrap();
                let i: usize = name.strip_prefix("client-").unwrap().parse().unwrap();
                let (expected, answer) = (up[i].clone(), down[i].clone());
                handlers.push(tokio::spawn(async move {
                    let (mut read, mut write) = tokio::io::split(stream);
                    let mut got = vec![0u8; expected.len()];
                    let (r, w) = tokio::join!(read.read_exact(&mut got), write.write_all(&answer));
                    r.unwrap();
                    w.unwrap();
                    assert!(got == expected, "server side: data from {name} differs");
                    uuid
                }));
            }
            let mut uuids = Vec::new();
            for handler in handlers {
                uuids.push(within("a server handler", handler).await.unwrap());
            }
            (server, uuids)
        }
    });

    let mut clients = Vec::new();
    for (i, kind) in kinds.into_iter().enumerate() {
        let (url, options, up, down) = (url(&broker, kind), options.clone(), up[i].clone(), down[i].clone());
        let me = client(&uuid, &format!("client-{i}"));
        clients.push(tokio::spawn(async move {
            let stream = me.connect(&url, &options).await.unwrap();
            let (mut read, mut write) = tokio::io::split(stream);
            let mut got = vec![0u8; down.len()];
            let (r, w) = tokio::join!(read.read_exact(&mut got), write.write_all(&up));
            r.unwrap();
            w.unwrap();
            assert!(got == down, "{kind:?}: data from the server differs");
            me.uuid
        }));
    }
    let mut client_uuids = Vec::new();
    for client in clients {
        client_uuids.push(within("a client", client).await.unwrap());
    }
    let (_server, mut seen) = within("the server side", serving).await.unwrap();
    seen.sort();
    client_uuids.sort();
    assert_eq!(seen, client_uuids, "the server saw each client's uuid, without braces");
}

#[tokio::test]
async fn three_clients_at_once_with_the_server_on_tls_tcp() {
    three_clients_at_once(Kind::Tcp).await;
}

#[tokio::test]
async fn three_clients_at_once_with_the_server_on_websocket() {
    three_clients_at_once(Kind::WebSocket).await;
}

#[tokio::test]
async fn three_clients_at_once_with_the_server_on_unix() {
    three_clients_at_once(Kind::Unix).await;
}

#[tokio::test]
async fn incoming_clients_say_who_they_are() {
    let Registered { broker, options, uuid, mut server, _dir } = registered(Kind::Tcp).await;
    let me = client(&uuid, "the app");
    let mut stream = me.connect(&url(&broker, Kind::Tcp), &options).await.unwrap();
    // Bytes written right behind the registration reach the server.
    stream.write_all(b"first").await.unwrap();
    let mut incoming = within("accept", server.accept()).await.unwrap();
    assert_eq!(incoming.name, "the app");
    assert_eq!(incoming.uuid, me.uuid);
    assert_eq!(incoming.peer_address, "127.0.0.1");
    assert!(incoming.socket_address >= 1 && incoming.socket_address < 0xFFFF);
    let mut got = [0u8; 5];
    within("first bytes", incoming.stream.read_exact(&mut got)).await.unwrap();
    assert_eq!(&got, b"first");
}

/// `shutdown` on the server's side disconnects the client after the data written before it;
/// the client sees the end of its stream, and the server's stream ends too.
#[tokio::test]
async fn shutdown_disconnects_the_client_after_its_data() {
    let Registered { broker, options, uuid, mut server, _dir } = registered(Kind::Tcp).await;
    for kind in [Kind::Tcp, Kind::WebSocket] {
        let mut stream = client(&uuid, "c").connect(&url(&broker, kind), &options).await.unwrap();
        let mut incoming = within("accept", server.accept()).await.unwrap();
        let last = slip_heavy(100_000);
        incoming.stream.write_all(&last).await.unwrap();
        incoming.stream.shutdown().await.unwrap();
        let mut got = Vec::new();
        within("the client's end", stream.read_to_end(&mut got)).await.unwrap();
        assert!(got == last, "{kind:?}: {} of {} bytes", got.len(), last.len());
        if kind == Kind::WebSocket {
            let close = stream.close_info().expect("a close frame");
            assert_eq!((close.code, close.reason.as_str()), (1011, "Server requested disconnect."));
        }
        let mut rest = Vec::new();
        within("the server stream's end", incoming.stream.read_to_end(&mut rest)).await.unwrap();
        assert!(rest.is_empty());
        assert!(incoming.stream.is_disconnected());
        assert!(incoming.stream.write_all(b"late").await.is_err());
    }
}

/// A client that goes away ends its stream on the server's side; the other clients go on.
#[tokio::test]
async fn a_departing_client_ends_only_its_own_stream() {
    let Registered { broker, options, uuid, mut server, _dir } = registered(Kind::Tcp).await;
    let leaving = client(&uuid, "leaving").connect(&url(&broker, Kind::Tcp), &options).await.unwrap();
    let mut gone = within("accept", server.accept()).await.unwrap();
    let mut staying = client(&uuid, "staying").connect(&url(&broker, Kind::Unix), &options).await.unwrap();
    let mut stays = within("accept", server.accept()).await.unwrap();
    drop(leaving);
    let mut rest = Vec::new();
    within("the departed client's end", gone.stream.read_to_end(&mut rest)).await.unwrap();
    assert!(rest.is_empty());
    stays.stream.write_all(b"still here").await.unwrap();
    let mut got = [0u8; 10];
    within("data for the staying client", staying.read_exact(&mut got)).await.unwrap();
    assert_eq!(&got, b"still here");
}

#[tokio::test]
async fn refused_registrations_are_typed() {
    let broker = Broker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let options = trusting(&broker, &dir);
    let tcp = url(&broker, Kind::Tcp);
    let refused = |result: Result<_, ClientError>| match result {
        Err(ClientError::TunnelProxyRefused { error }) => error,
        Err(other) => panic!("expected a refusal, got {other}"),
        Ok(_) => panic!("expected a refusal, got a stream"),
    };

    let err = client(&new_uuid(), "c").connect(&tcp, &options).await;
    assert_eq!(refused(err), TunnelProxyError::ServerNotFound);
    let err = client("00000000-0000-0000-0000-000000000000", "c").connect(&tcp, &options).await;
    assert_eq!(refused(err), TunnelProxyError::InvalidUuid);
    let message = ClientError::TunnelProxyRefused { error: TunnelProxyError::ServerNotFound }.to_string();
    assert!(message.contains("TunnelProxyErrorServerNotFound"), "{message}");

    // A client uuid that is taken, and a client uuid that is a server's.
    let uuid = new_uuid();
    let mut server = TunnelServer::spawn(tcp.clone(), options.clone(), registration(&uuid));
    within("registration", server.registered()).await.unwrap();
    let first = client(&uuid, "first");
    let _stream = first.connect(&tcp, &options).await.unwrap();
    let twin = TunnelClient { uuid: first.uuid.clone(), ..client(&uuid, "twin") };
    assert_eq!(refused(twin.connect(&tcp, &options).await), TunnelProxyError::AlreadyRegistered);
    let impostor = TunnelClient { uuid: uuid.clone(), ..client(&uuid, "impostor") };
    assert_eq!(refused(impostor.connect(&tcp, &options).await), TunnelProxyError::AlreadyRegistered);
}

#[tokio::test]
async fn an_invalid_server_uuid_stops_the_server() {
    let broker = Broker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut server =
        TunnelServer::spawn(url(&broker, Kind::Tcp), trusting(&broker, &dir), registration("nope"));
    let err = within("the failure", server.accept()).await.unwrap_err();
    assert!(matches!(err, ClientError::TunnelProxyRefused { error: TunnelProxyError::InvalidUuid }), "{err}");
    assert!(matches!(server.accept().await, Err(ClientError::Stopped)));
}

#[tokio::test]
async fn a_v1_port_stops_the_server_with_the_broker_s_answer() {
    let broker = Broker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let v1 = ProxyUrl::parse(&url_text(&broker, Kind::Tcp)).unwrap();
    let mut server = TunnelServer::spawn(v1, trusting(&broker, &dir), registration(&new_uuid()));
    let err = within("the failure", server.accept()).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Rejected(reason) if reason.starts_with("No such namespace")),
        "{err}"
    );
    assert!(err.to_string().contains("v2 TunnelProxy port"), "points at the fix: {err}");
}

/// A second server with a uuid that is taken keeps trying (AlreadyRegistered may be a previous
/// connection of the same device that has not timed out yet) and takes over once it is free.
#[tokio::test]
async fn a_taken_uuid_is_retried_until_it_is_free() {
    let broker = Broker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let options = trusting(&broker, &dir);
    let uuid = new_uuid();
    let mut first = TunnelServer::spawn(url(&broker, Kind::Tcp), options.clone(), registration(&uuid));
    within("first registration", first.registered()).await.unwrap();
    let mut second = TunnelServer::spawn_with(
        url(&broker, Kind::WebSocket),
        options.clone(),
        registration(&uuid),
        quick(),
    );
    let mut status = second.status();
    let refused = within("a refusal", status.wait_for(|s| s.last_error.is_some())).await.unwrap().clone();
    assert!(
        refused.last_error.as_deref().unwrap().contains("TunnelProxyErrorAlreadyRegistered"),
        "{refused:?}"
    );
    assert!(!refused.registered);
    drop(first);
    within("the second registration", second.registered()).await.unwrap();
    let _stream = client(&uuid, "c").connect(&url(&broker, Kind::Tcp), &options).await.unwrap();
    assert_eq!(within("accept", second.accept()).await.unwrap().name, "c");
}

/// A TCP forwarder whose target the test switches: it stands in for a broker address that
/// survives a broker restart.
struct Forwarder {
    addr: SocketAddr,
    target: Arc<Mutex<SocketAddr>>,
    task: tokio::task::JoinHandle<()>,
}

impl Forwarder {
    async fn start(target: SocketAddr) -> Forwarder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let target = Arc::new(Mutex::new(target));
        let task = tokio::spawn({
            let target = target.clone();
            async move {
                loop {
                    let Ok((mut inbound, _)) = listener.accept().await else { return };
                    let to = *target.lock().unwrap();
                    tokio::spawn(async move {
                        // A refused connection is passed on as a closed one.
                        if let Ok(mut outbound) = TcpStream::connect(to).await {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                }
            }
        });
        Forwarder { addr, target, task }
    }

    fn point_at(&self, target: SocketAddr) {
        *self.target.lock().unwrap() = target;
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The broker restarts: the server loses its clients (their streams fail), retries while the
/// broker is away, registers at the new broker and accepts again.
#[tokio::test]
async fn the_server_comes_back_after_a_broker_restart() {
    let first = Broker::builder().tls(false).start().await;
    let forwarder = Forwarder::start(first.tcp2).await;
    let via = ProxyUrl::parse_v2(&format!("tcp://{}", forwarder.addr)).unwrap();
    let uuid = new_uuid();
    let mut server = TunnelServer::spawn_with(via, ClientOptions::default(), registration(&uuid), quick());
    within("first registration", server.registered()).await.unwrap();
    let options = ClientOptions::default();
    let mut old_client = client(&uuid, "before").connect(&url(&first, Kind::Tcp), &options).await.unwrap();
    let mut old = within("accept", server.accept()).await.unwrap();

    // While the broker is down, attempts fail (the forwarder still points at the old port).
    first.stop().await;
    let err = within("the old stream's end", old.stream.read(&mut [0u8; 16])).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionAborted);
    let mut buf = Vec::new();
    let _ = within("the old client's end", old_client.read_to_end(&mut buf)).await;
    let mut status = server.status();
    within("failed attempts", status.wait_for(|s| !s.registered && s.last_error.is_some())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(status.borrow().registrations, 1);

    let second = Broker::builder().tls(false).start().await;
    forwarder.point_at(second.tcp2);
    within("registration at the new broker", status.wait_for(|s| s.registered && s.registrations == 2))
        .await
        .unwrap();
    let mut new_client =
        client(&uuid, "after").connect(&url(&second, Kind::WebSocket), &options).await.unwrap();
    let mut new = within("accept after the restart", server.accept()).await.unwrap();
    assert_eq!(new.name, "after");
    new.stream.write_all(&[0xC0, 0xDB, 1]).await.unwrap();
    let mut got = [0u8; 3];
    within("data after the restart", new_client.read_exact(&mut got)).await.unwrap();
    assert_eq!(got, [0xC0, 0xDB, 1]);
}

/// Pings keep an idle server registered past the broker's idle timeout (shortened here).
#[tokio::test]
async fn pings_keep_an_idle_server_registered() {
    let broker = Broker::builder()
        .config(|c| c.timeouts.tunnel_proxy_server = Duration::from_millis(800))
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let options = trusting(&broker, &dir);
    let uuid = new_uuid();
    let settings = ServerSettings { ping_interval: Duration::from_millis(200), ..quick() };
    let mut server = TunnelServer::spawn_with(
        url(&broker, Kind::WebSocket),
        options.clone(),
        registration(&uuid),
        settings,
    );
    within("registration", server.registered()).await.unwrap();
    let mut stream = client(&uuid, "idle").connect(&url(&broker, Kind::Tcp), &options).await.unwrap();
    let mut incoming = within("accept", server.accept()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = server.status().borrow().clone();
    assert!(status.registered && status.registrations == 1, "{status:?}");
    incoming.stream.write_all(b"alive").await.unwrap();
    let mut got = [0u8; 5];
    within("data after idling", stream.read_exact(&mut got)).await.unwrap();
    assert_eq!(&got, b"alive");
}

/// Without pings (an interval longer than the broker's idle timeout) the broker closes the
/// server: the contrast that shows the test above tests something.
#[tokio::test]
async fn without_pings_the_broker_closes_an_idle_server() {
    let broker = Broker::builder()
        .config(|c| c.timeouts.tunnel_proxy_server = Duration::from_millis(500))
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let settings = ServerSettings { ping_interval: Duration::from_secs(3600), ..quick() };
    let server = TunnelServer::spawn_with(
        url(&broker, Kind::Tcp),
        trusting(&broker, &dir),
        registration(&new_uuid()),
        settings,
    );
    let mut status = server.status();
    within("a second registration", status.wait_for(|s| s.registrations >= 2)).await.unwrap();
}

/// A client that ends its side (a TCP half-close, a WebSocket close) is disconnected by the
/// broker, cleanly: TLS ends with close_notify (no truncation error) and a WebSocket close is
/// answered, as on the v1 API. The server's stream for it ends.
#[tokio::test]
async fn a_client_that_ends_its_side_is_closed_cleanly() {
    let Registered { broker, options, uuid, mut server, _dir } = registered(Kind::Tcp).await;
    for kind in [Kind::Tcp, Kind::WebSocket, Kind::Unix] {
        let mut stream = client(&uuid, "c").connect(&url(&broker, kind), &options).await.unwrap();
        let mut incoming = within("accept", server.accept()).await.unwrap();
        stream.write_all(b"done").await.unwrap();
        stream.shutdown().await.unwrap();
        let mut got = Vec::new();
        within("the server stream's end", incoming.stream.read_to_end(&mut got)).await.unwrap();
        assert_eq!(got, b"done", "{kind:?}");
        let mut rest = Vec::new();
        let end = within("the client's end", stream.read_to_end(&mut rest)).await;
        assert!(end.is_ok(), "{kind:?}: the broker's close is not clean: {end:?}");
    }
}
