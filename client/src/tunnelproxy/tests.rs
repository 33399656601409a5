//! The demultiplexer and the reconnecting server against a fake broker over in-memory pipes.

use std::time::Duration;

use bytes::Bytes;
use remoteproxy_wire::{Decoder, Frame};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;

use super::incoming::IncomingClient;
use super::{ServerRegistration, ServerSettings, TunnelProxyError, TunnelServer, mux};
use crate::connect::Carrier;
use crate::connection::ProxyConnection;
use crate::error::ClientError;
use crate::options::ClientOptions;

const PING: Duration = Duration::from_secs(30);

/// Bounds every wait. All tests here run with paused time, which advances whenever everything
/// is idle: the bound is in virtual time, beyond a few ping intervals, and a hang fails at once.
const WAIT: Duration = Duration::from_secs(400);

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(WAIT, future).await.unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// The broker's end of a registered server connection.
struct FakeBroker {
    io: DuplexStream,
    decoder: Decoder,
    frames: std::collections::VecDeque<Frame>,
}

impl FakeBroker {
    fn new(io: DuplexStream) -> FakeBroker {
        FakeBroker { io, decoder: Decoder::new(1 << 20), frames: Default::default() }
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        within("broker write", self.io.write_all(bytes)).await.unwrap();
    }

    async fn send_json(&mut self, value: Value) {
        let mut text = value.to_string();
        text.push('\n');
        self.send_raw(&remoteproxy_wire::encode(0, text.as_bytes())).await;
    }

    async fn send_data(&mut self, address: u16, payload: &[u8]) {
        self.send_raw(&remoteproxy_wire::encode(address, payload)).await;
    }

    async fn connect_client(&mut self, address: u16, name: &str) {
        self.send_json(json!({"id": 0, "notification": "TunnelProxy.ClientConnected", "params": {
            "clientName": name, "clientUuid": format!("{{{name}-uuid}}"),
            "clientPeerAddress": "192.0.2.7", "socketAddress": address}}))
            .await;
    }

    async fn disconnect_client(&mut self, address: u16) {
        self.send_json(json!({"id": 1, "notification": "TunnelProxy.ClientDisconnected",
            "params": {"socketAddress": address}}))
            .await;
    }

    /// The next frame the server sent, or `None` at end of stream.
    async fn try_next_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(frame) = self.frames.pop_front() {
                return Some(frame);
            }
            let mut buf = [0u8; 8192];
            let n = self.io.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                return None;
            }
            let frames = &mut self.frames;
            self.decoder.decode(&buf[..n], |f| frames.push_back(f.expect("the server sends valid frames")));
        }
    }

    async fn next_frame(&mut self) -> Frame {
        within("a frame from the server", self.try_next_frame()).await.expect("the server closed")
    }

    /// The next request on address 0.
    async fn next_request(&mut self) -> Value {
        let frame = self.next_frame().await;
        assert_eq!(frame.address, 0, "expected JSON, got data {:?}", frame.payload);
        assert!(frame.payload.ends_with(b"\n"), "JSON ends with a newline");
        serde_json::from_slice(&frame.payload).unwrap()
    }

    /// Data frames for `address` until `n` bytes arrived; other frames are not expected.
    async fn data_from(&mut self, address: u16, n: usize) -> Vec<u8> {
        let mut got = Vec::new();
        while got.len() < n {
            let frame = self.next_frame().await;
            assert_eq!(frame.address, address, "{:?}", frame.payload);
            got.extend_from_slice(&frame.payload);
        }
        got
    }
}

/// A session on an in-memory pipe; returns the broker end, the accepted-client queue and the
/// session's end.
fn session() -> (FakeBroker, mpsc::Receiver<IncomingClient>, tokio::task::JoinHandle<ClientError>) {
    let (server, broker) = tokio::io::duplex(256 << 10);
    let (accept, incoming) = mpsc::channel(16);
    let task = tokio::spawn(mux::run(server, accept, PING));
    (FakeBroker::new(broker), incoming, task)
}

async fn accept(incoming: &mut mpsc::Receiver<IncomingClient>) -> IncomingClient {
    within("a client", incoming.recv()).await.expect("the session ended")
}

/// Bytes that need escaping, and everything else.
fn nasty(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| match i % 5 {
            0 => 0xC0,
            1 => 0xDB,
            2 => 0xDC,
            3 => 0xDD,
            _ => (i as u8).wrapping_mul(31).wrapping_add(seed),
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn clients_are_demultiplexed_byte_exact_both_ways() {
    let (mut broker, mut incoming, _task) = session();
    broker.connect_client(1, "one").await;
    // An address whose bytes need escaping themselves.
    broker.connect_client(0xC0DB, "two").await;
    let mut one = accept(&mut incoming).await;
    let mut two = accept(&mut incoming).await;
    assert_eq!((one.name.as_str(), one.uuid.as_str(), one.socket_address), ("one", "one-uuid", 1));
    assert_eq!((two.peer_address.as_str(), two.socket_address), ("192.0.2.7", 0xC0DB));
    assert_eq!(two.stream.socket_address(), 0xC0DB);

    let (to_one, to_two) = (nasty(50_000, 1), nasty(30_000, 2));
    // Interleaved frames, an empty frame (must not read as end of stream), a frame with an
    // invalid escape (dropped alone), and data for nobody.
    let (mut a, mut b) = (to_one.chunks(7000), to_two.chunks(3000));
    loop {
        let (next_a, next_b) = (a.next(), b.next());
        if next_a.is_none() && next_b.is_none() {
            break;
        }
        if let Some(chunk) = next_a {
            broker.send_data(1, chunk).await;
        }
        broker.send_data(1, &[]).await;
        broker.send_raw(&[0x00, 0x01, b'x', 0xDB, b'y', 0xC0]).await;
        broker.send_data(77, b"for nobody").await;
        if let Some(chunk) = next_b {
            broker.send_data(0xC0DB, chunk).await;
        }
    }
    let mut got_one = vec![0u8; to_one.len()];
    let mut got_two = vec![0u8; to_two.len()];
    within("data at one", one.stream.read_exact(&mut got_one)).await.unwrap();
    within("data at two", two.stream.read_exact(&mut got_two)).await.unwrap();
    assert!(got_one == to_one && got_two == to_two);

    // Writes become frames for the right address; large writes are split.
    let (from_one, from_two) = (nasty(40_000, 3), nasty(20_000, 4));
    within("write one", one.stream.write_all(&from_one)).await.unwrap();
    assert_eq!(broker.data_from(1, from_one.len()).await, from_one);
    within("write two", two.stream.write_all(&from_two)).await.unwrap();
    assert_eq!(broker.data_from(0xC0DB, from_two.len()).await, from_two);
}

#[tokio::test(start_paused = true)]
async fn client_disconnected_ends_reads_after_the_queued_data_and_fails_writes() {
    let (mut broker, mut incoming, _task) = session();
    broker.connect_client(5, "c").await;
    let mut client = accept(&mut incoming).await;
    broker.send_data(5, b"last words").await;
    broker.disconnect_client(5).await;
    let mut got = Vec::new();
    within("end of stream", client.stream.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got, b"last words");
    assert!(client.stream.is_disconnected());
    let err = client.stream.write_all(b"too late").await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe);
    // Neither the write nor the drop sends anything for the gone client: the next frame the
    // broker sees is another client's.
    drop(client);
    broker.connect_client(6, "d").await;
    let mut other = accept(&mut incoming).await;
    other.stream.write_all(b"marker").await.unwrap();
    assert_eq!(broker.next_frame().await, Frame { address: 6, payload: Bytes::from_static(b"marker") });
}

#[tokio::test(start_paused = true)]
async fn shutdown_disconnects_the_client_after_its_data() {
    let (mut broker, mut incoming, _task) = session();
    broker.connect_client(3, "c").await;
    let mut client = accept(&mut incoming).await;
    client.stream.write_all(b"bye").await.unwrap();
    client.stream.shutdown().await.unwrap();
    assert_eq!(broker.data_from(3, 3).await, b"bye");
    let request = broker.next_request().await;
    assert_eq!(request["method"], "TunnelProxy.DisconnectClient");
    assert_eq!(request["params"], json!({"socketAddress": 3}));
    assert!(request["id"].is_i64());
    assert_eq!(client.stream.write(b"more").await.unwrap_err().kind(), std::io::ErrorKind::BrokenPipe);
    // The broker confirms; reads end.
    broker.send_json(json!({"id": request["id"], "params": {"tunnelProxyError": "TunnelProxyErrorNoError"}, "status": "success"})).await;
    broker.disconnect_client(3).await;
    let mut rest = Vec::new();
    within("end of stream", client.stream.read_to_end(&mut rest)).await.unwrap();
    assert!(rest.is_empty());
}

#[tokio::test(start_paused = true)]
async fn dropping_a_stream_disconnects_its_client_once() {
    let (mut broker, mut incoming, _task) = session();
    broker.connect_client(9, "c").await;
    let client = accept(&mut incoming).await;
    drop(client);
    let request = broker.next_request().await;
    assert_eq!(request["method"], "TunnelProxy.DisconnectClient");
    assert_eq!(request["params"]["socketAddress"], 9);
    // Data still arriving for it is dropped without trouble, then the broker confirms.
    broker.send_data(9, b"ignored").await;
    broker.disconnect_client(9).await;
    // The address goes to a new client, which is not disturbed.
    broker.connect_client(9, "new").await;
    let mut new = accept(&mut incoming).await;
    assert_eq!(new.name, "new");
    broker.send_data(9, b"hi").await;
    let mut got = [0u8; 2];
    within("data at the new client", new.stream.read_exact(&mut got)).await.unwrap();
    assert_eq!(&got, b"hi");
    new.stream.write_all(b"ok").await.unwrap();
    assert_eq!(broker.data_from(9, 2).await, b"ok");
}

/// A stale `DisconnectClient` of a dropped stream must not hit the next client that gets its
/// address. Here the writer is held back (the broker does not read) while the stream is dropped,
/// the old client leaves and the address is reused.
#[tokio::test(start_paused = true)]
async fn a_stale_disconnect_is_not_sent_for_a_reused_address() {
    let (server, broker_io) = tokio::io::duplex(64);
    let (accept_tx, mut incoming) = mpsc::channel(16);
    let _task = tokio::spawn(mux::run(server, accept_tx, PING));
    let mut broker = FakeBroker::new(broker_io);
    broker.connect_client(4, "old").await;
    let mut old = accept(&mut incoming).await;
    // Queue frames behind a writer that cannot write, then drop the stream: its DisconnectClient
    // is queued behind them.
    within("queue old data", old.stream.write_all(&nasty(100_000, 9))).await.unwrap();
    drop(old);
    tokio::time::sleep(Duration::from_millis(50)).await;
    broker.disconnect_client(4).await;
    broker.connect_client(4, "new").await;
    let mut new = accept(&mut incoming).await;
    new.stream.write_all(b"marker").await.unwrap();
    // Whatever of the old data already sat in the pipe may arrive, but no request.
    loop {
        let frame = broker.next_frame().await;
        assert_ne!(frame.address, 0, "unexpected request {:?}", frame.payload);
        if frame.payload == b"marker"[..] {
            break;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_lost_connection_fails_reads_and_writes() {
    let (mut broker, mut incoming, task) = session();
    broker.connect_client(2, "c").await;
    let mut client = accept(&mut incoming).await;
    broker.send_data(2, b"partial").await;
    drop(broker);
    let end = within("the session's end", task).await.unwrap();
    assert!(matches!(end, ClientError::ServerClosed { .. }), "{end}");
    let mut got = [0u8; 7];
    client.stream.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"partial");
    let err = client.stream.read(&mut [0u8; 8]).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionAborted);
    assert!(client.stream.write_all(b"x").await.is_err());
}

#[tokio::test(start_paused = true)]
async fn pings_every_interval_and_gives_up_on_a_silent_broker() {
    let (mut broker, _incoming, task) = session();
    let started = tokio::time::Instant::now();
    for round in 1..=3u32 {
        let ping = broker.next_request().await;
        assert_eq!(ping["method"], "TunnelProxy.Ping");
        assert!(ping["params"]["timestamp"].as_u64().unwrap() > 1_600_000_000_000, "{ping}");
        assert_eq!(started.elapsed().as_secs(), u64::from(round) * 30);
        broker
            .send_json(json!({"id": ping["id"], "params": {"timestamp": ping["params"]["timestamp"]}, "status": "success"}))
            .await;
    }
    // Now the broker stays silent: one more ping, and at the next tick the session gives up.
    assert_eq!(broker.next_request().await["method"], "TunnelProxy.Ping");
    let end = task.await.unwrap();
    assert!(matches!(end, ClientError::Timeout(_)), "{end}");
    assert_eq!(started.elapsed().as_secs(), 150);
}

#[tokio::test(start_paused = true)]
async fn an_application_that_does_not_read_is_not_a_dead_broker() {
    let (mut broker, mut incoming, task) = session();
    broker.connect_client(1, "slow").await;
    let mut client = accept(&mut incoming).await;
    // Data the application does not read yet (well under the client's queue limit): the
    // demultiplexer keeps reading the broker, so its ping answers still count.
    for i in 0..40u8 {
        broker.send_data(1, &[i; 100]).await;
    }
    for _ in 0..5 {
        let ping = broker.next_request().await;
        assert_eq!(ping["method"], "TunnelProxy.Ping");
        broker.send_json(json!({"id": ping["id"], "status": "success", "params": {}})).await;
    }
    assert!(!task.is_finished(), "the session must not give up because the application is slow");
    let mut got = vec![0u8; 4000];
    within("all data", client.stream.read_exact(&mut got)).await.unwrap();
    assert!(got.chunks(100).enumerate().all(|(i, c)| c.iter().all(|b| *b == i as u8)));
    assert!(!task.is_finished());
}

#[tokio::test(start_paused = true)]
async fn a_client_whose_application_stops_reading_is_dropped_and_the_others_flow() {
    let (mut broker, mut incoming, task) = session();
    broker.connect_client(1, "stalled").await;
    let mut stalled = accept(&mut incoming).await;
    broker.connect_client(2, "reading").await;
    let mut reading = accept(&mut incoming).await;
    let chunk = vec![7u8; 60 << 10];
    let mut reader_got = 0usize;
    let mut sent_to_stalled = 0usize;
    // The stalled client's application never reads; the other one reads everything sent to it.
    while sent_to_stalled <= mux::CLIENT_QUEUE_BYTES {
        broker.send_data(1, &chunk).await;
        sent_to_stalled += chunk.len();
        broker.send_data(2, &chunk).await;
        let mut got = vec![0u8; chunk.len()];
        within("the reading client's data", reading.stream.read_exact(&mut got)).await.unwrap();
        reader_got += got.len();
    }
    // The stalled client is disconnected, once, and only it.
    let request = broker.next_request().await;
    assert_eq!(request["method"], "TunnelProxy.DisconnectClient");
    assert_eq!(request["params"]["socketAddress"], 1);
    broker.disconnect_client(1).await;
    // Its application gets the bytes that were queued, then an error: bytes were lost.
    let mut drained = 0usize;
    let mut buf = vec![0u8; 64 << 10];
    let error = loop {
        match within("the stalled stream", stalled.stream.read(&mut buf)).await {
            Ok(0) => panic!("an overflowed client must not read a clean end"),
            Ok(n) => drained += n,
            Err(error) => break error,
        }
    };
    assert!(drained <= mux::CLIENT_QUEUE_BYTES && drained > 0, "{drained}");
    assert!(error.to_string().contains("data was lost"), "{error}");
    assert!(stalled.stream.write_all(b"late").await.is_err());
    // The other client is undisturbed, both ways.
    broker.send_data(2, b"still here").await;
    let mut got = [0u8; 10];
    within("more data", reading.stream.read_exact(&mut got)).await.unwrap();
    assert_eq!(&got, b"still here");
    reading.stream.write_all(b"reply").await.unwrap();
    reading.stream.flush().await.unwrap();
    assert_eq!(broker.data_from(2, 5).await, b"reply");
    assert!(reader_got > mux::CLIENT_QUEUE_BYTES);
    assert!(!task.is_finished());
}

/// The broker's end of one connection attempt, in its JSON phase.
struct Attempt {
    io: DuplexStream,
}

impl Attempt {
    /// Reads one request line (the client sends one at a time, so nothing is over-read).
    async fn request(&mut self) -> Value {
        let mut line = Vec::new();
        within("a request line", async {
            loop {
                let byte = self.io.read_u8().await.expect("the client closed");
                line.push(byte);
                if byte == b'\n' {
                    break;
                }
            }
        })
        .await;
        serde_json::from_slice(&line).unwrap()
    }

    async fn respond(&mut self, request: &Value, params: Value, extra: &[u8]) {
        let mut out =
            format!("{}\n", json!({"id": request["id"], "params": params, "status": "success"})).into_bytes();
        out.extend_from_slice(extra);
        self.io.write_all(&out).await.unwrap();
    }

    /// Hello and RegisterServer with `outcome`; `extra` follows the response in the same write.
    async fn register(mut self, outcome: TunnelProxyError, extra: &[u8]) -> Option<FakeBroker> {
        let hello = self.request().await;
        assert_eq!(hello["method"], "RemoteProxy.Hello");
        self.respond(
            &hello,
            json!({"apiVersion": "0.5", "name": "fake", "server": "fake", "version": "0"}),
            &[],
        )
        .await;
        let register = self.request().await;
        assert_eq!(register["method"], "TunnelProxy.RegisterServer");
        assert_eq!(register["params"], json!({"serverName": "srv", "serverUuid": "u-1"}));
        let ok = outcome == TunnelProxyError::NoError;
        let params = json!({"tunnelProxyError": outcome.wire_name(), "slipEnabled": ok});
        self.respond(&register, params, extra).await;
        ok.then(|| FakeBroker::new(self.io))
    }
}

/// A server whose every connection attempt hands the broker's end to the test.
fn fake_server() -> (TunnelServer, mpsc::UnboundedReceiver<Attempt>) {
    let (attempts_tx, attempts) = mpsc::unbounded_channel();
    let connect = move || {
        let (client, broker) = tokio::io::duplex(64 << 10);
        let _ = attempts_tx.send(Attempt { io: broker });
        async move {
            Ok(ProxyConnection::from_carrier(Carrier::Stream(Box::new(client)), &ClientOptions::default()))
        }
    };
    let registration = ServerRegistration { uuid: "u-1".into(), name: "srv".into() };
    let settings = ServerSettings { ping_interval: PING, ..ServerSettings::default() };
    let server = TunnelServer::spawn_connector(connect, "fake".into(), registration, settings);
    (server, attempts)
}

async fn next_attempt(attempts: &mut mpsc::UnboundedReceiver<Attempt>) -> Attempt {
    within("a connection attempt", attempts.recv()).await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn transient_refusals_are_retried_with_backoff_and_clients_accepted() {
    let (mut server, mut attempts) = fake_server();
    let start = tokio::time::Instant::now();
    for outcome in [TunnelProxyError::AlreadyRegistered, TunnelProxyError::InternalServerError] {
        assert!(next_attempt(&mut attempts).await.register(outcome, &[]).await.is_none());
    }
    // A connection that breaks during Hello is retried too.
    drop(next_attempt(&mut attempts).await);
    // The ClientConnected frame arrives in the same write as the response.
    let connected = json!({"id": 0, "notification": "TunnelProxy.ClientConnected", "params": {
        "clientName": "c", "clientUuid": "{c-uuid}", "clientPeerAddress": "::1", "socketAddress": 1}});
    let frame = remoteproxy_wire::encode(0, format!("{connected}\n").as_bytes());
    let mut broker =
        next_attempt(&mut attempts).await.register(TunnelProxyError::NoError, &frame).await.unwrap();
    // 0.5 + 1 + 2 s of backoff, shortened by at most a fifth.
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(2800) && waited <= Duration::from_millis(3500), "{waited:?}");
    within("registered", server.registered()).await.unwrap();
    assert_eq!(server.status().borrow().registrations, 1);
    let mut client = within("accept", server.accept()).await.unwrap();
    assert_eq!(
        (client.name.as_str(), client.uuid.as_str(), client.peer_address.as_str()),
        ("c", "c-uuid", "::1")
    );
    client.stream.write_all(b"hello").await.unwrap();
    assert_eq!(broker.data_from(1, 5).await, b"hello");
}

#[tokio::test(start_paused = true)]
async fn a_lost_connection_is_registered_again_and_its_clients_end() {
    let (mut server, mut attempts) = fake_server();
    let mut broker =
        next_attempt(&mut attempts).await.register(TunnelProxyError::NoError, &[]).await.unwrap();
    broker.connect_client(1, "first").await;
    let mut first = within("accept", server.accept()).await.unwrap();
    drop(broker);
    let err = within("the first client's end", first.stream.read(&mut [0u8; 4])).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionAborted);
    // The backoff starts over at 0.5 s after a successful registration.
    let lost = tokio::time::Instant::now();
    let mut broker =
        next_attempt(&mut attempts).await.register(TunnelProxyError::NoError, &[]).await.unwrap();
    assert!(lost.elapsed() <= Duration::from_millis(500), "{:?}", lost.elapsed());
    let mut status = server.status();
    within("second registration", status.wait_for(|s| s.registered && s.registrations == 2)).await.unwrap();
    broker.connect_client(1, "second").await;
    assert_eq!(within("accept", server.accept()).await.unwrap().name, "second");
}

#[tokio::test(start_paused = true)]
async fn an_invalid_uuid_stops_the_server() {
    let (mut server, mut attempts) = fake_server();
    assert!(next_attempt(&mut attempts).await.register(TunnelProxyError::InvalidUuid, &[]).await.is_none());
    let err = within("the failure", server.accept()).await.unwrap_err();
    assert!(matches!(err, ClientError::TunnelProxyRefused { error: TunnelProxyError::InvalidUuid }), "{err}");
    assert!(err.to_string().contains("TunnelProxyErrorInvalidUuid"), "{err}");
    assert!(matches!(server.accept().await, Err(ClientError::Stopped)));
    assert!(matches!(server.registered().await, Err(ClientError::Stopped)));
    // No further attempt was made.
    assert!(attempts.try_recv().is_err());
}

#[tokio::test(start_paused = true)]
async fn an_error_response_stops_the_server() {
    // What a v1 listener answers to a TunnelProxy call.
    let (mut server, mut attempts) = fake_server();
    let mut attempt = next_attempt(&mut attempts).await;
    let hello = attempt.request().await;
    attempt.respond(&hello, json!({}), &[]).await;
    let register = attempt.request().await;
    let error = json!({"error": "No such namespace", "id": register["id"], "status": "error"});
    attempt.io.write_all(format!("{error}\n").as_bytes()).await.unwrap();
    let err = within("the failure", server.accept()).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Rejected(reason) if reason.starts_with("No such namespace")),
        "{err}"
    );
    assert!(err.to_string().contains("v2 TunnelProxy port"), "points at the fix: {err}");
}
