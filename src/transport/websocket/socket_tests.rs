//! The frame layer against hand-made client frames over an in-memory pipe.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::*;

const MASK: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];

/// A client frame: masked, with the given first byte (FIN and opcode).
fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    frame::client_frame(first, payload, MASK)
}

fn pair(max_message: usize) -> (DuplexStream, WebSocket<DuplexStream>) {
    let (client, server) = tokio::io::duplex(1 << 20);
    (client, WebSocket::new(server, BytesMut::new(), max_message, None))
}

/// Reads one unmasked server frame: (first byte, payload).
async fn server_frame(client: &mut DuplexStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    client.read_exact(&mut head).await.unwrap();
    assert_eq!(head[1] & 0x80, 0, "server frames are unmasked");
    let len = match head[1] & 0x7F {
        126 => client.read_u16().await.unwrap() as usize,
        127 => client.read_u64().await.unwrap() as usize,
        n => n as usize,
    };
    let mut payload = vec![0; len];
    client.read_exact(&mut payload).await.unwrap();
    (head[0], payload)
}

#[tokio::test]
async fn messages_arrive_whole_whatever_the_read_boundaries() {
    let (mut client, mut ws) = pair(1 << 20);
    let mut wire = client_frame(0x81, "héllo".as_bytes());
    wire.extend(client_frame(0x82, &[0, 1, 2]));
    wire.extend(client_frame(0x82, &vec![9u8; 70_000]));
    for byte in wire.chunks(7) {
        client.write_all(byte).await.unwrap();
    }
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("héllo"));
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::binary(vec![0, 1, 2]));
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::binary(vec![9u8; 70_000]));
}

#[tokio::test]
async fn fragments_join_and_control_frames_may_come_between() {
    let (mut client, mut ws) = pair(1 << 20);
    let mut wire = client_frame(0x01, b"one ");
    wire.extend(client_frame(0x89, b"p"));
    wire.extend(client_frame(0x00, b"two "));
    wire.extend(client_frame(0x80, b"three"));
    client.write_all(&wire).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::Ping(Bytes::from_static(b"p")));
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("one two three"));
    // The ping was answered with its payload.
    assert_eq!(server_frame(&mut client).await, (0x8A, b"p".to_vec()));
}

#[tokio::test]
async fn written_messages_are_unmasked_frames() {
    let (mut client, mut ws) = pair(1 << 20);
    ws.send(Message::text("hi")).await.unwrap();
    ws.send(Message::binary(vec![5u8; 300])).await.unwrap();
    assert_eq!(server_frame(&mut client).await, (0x81, b"hi".to_vec()));
    assert_eq!(server_frame(&mut client).await, (0x82, vec![5u8; 300]));
    // Written and flushed: the write buffer is given back.
    assert!(!holds_memory(&ws.out));
}

/// Whether a buffer still points into an allocation. Not `capacity() > 0`: a buffer used to its
/// very end has no capacity left and still holds its memory.
fn holds_memory(buf: &BytesMut) -> bool {
    buf.as_ptr() != BytesMut::new().as_ptr()
}

#[tokio::test]
async fn buffers_used_to_their_end_are_given_back_too() {
    let (mut client, mut ws) = pair(1 << 20);
    // A frame that fills the read buffer exactly, and a message that fills the write buffer.
    let payload = vec![3u8; READ_CHUNK - 4 - 4];
    let frame = client_frame(0x82, &payload);
    assert_eq!(frame.len(), READ_CHUNK);
    client.write_all(&frame).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap().len(), payload.len());
    assert!(futures_util::poll!(ws.next()).is_pending());
    assert!(!holds_memory(&ws.read));
    ws.send(Message::binary(payload)).await.unwrap();
    assert!(!holds_memory(&ws.out));
}

#[tokio::test]
async fn a_peer_close_is_echoed_and_ends_the_stream() {
    let (mut client, mut ws) = pair(1 << 20);
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"bye");
    client.write_all(&client_frame(0x88, &payload)).await.unwrap();
    let Message::Close(Some(close)) = ws.next().await.unwrap().unwrap() else { panic!("a close") };
    assert_eq!((u16::from(close.code), close.reason.as_str()), (1000, "bye"));
    assert_eq!(server_frame(&mut client).await, (0x88, 1000u16.to_be_bytes().to_vec()));
    assert!(ws.next().await.is_none());
    // Closing again after the peer did is no error and sends nothing more.
    ws.send(Message::Close(None)).await.unwrap();
    assert!(ws.send(Message::text("late")).await.is_err());
}

#[tokio::test]
async fn the_broker_closes_first_and_reads_until_the_reply() {
    let (mut client, mut ws) = pair(1 << 20);
    let close = CloseFrame { code: CloseCode::Error, reason: "why".into() };
    ws.send(Message::Close(Some(close))).await.unwrap();
    let mut expected = 1011u16.to_be_bytes().to_vec();
    expected.extend_from_slice(b"why");
    assert_eq!(server_frame(&mut client).await, (0x88, expected));
    // Data may still arrive until the peer's close.
    client.write_all(&client_frame(0x81, b"in flight")).await.unwrap();
    client.write_all(&client_frame(0x88, &1011u16.to_be_bytes())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("in flight"));
    assert!(matches!(ws.next().await, Some(Ok(Message::Close(_)))));
    assert!(ws.next().await.is_none());
}

#[tokio::test]
async fn an_end_without_a_close_frame_is_an_error() {
    let (client, mut ws) = pair(1 << 20);
    drop(client);
    assert!(matches!(
        ws.next().await,
        Some(Err(Error::Protocol(ProtocolError::ResetWithoutClosingHandshake)))
    ));
    assert!(ws.next().await.is_none());
}

#[tokio::test]
async fn violations_are_errors() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![0x81, 0x02, b'h', b'i'], "unmasked"),
        (client_frame(0x80, b"x"), "Continue frame but nothing to continue"),
        ([client_frame(0x01, b"a"), client_frame(0x81, b"b")].concat(), "While waiting for more fragments"),
        (client_frame(0x81, b"\xFF\xFE"), "UTF-8"),
        (client_frame(0x88, &[0x03]), "Invalid close sequence"),
        (client_frame(0x88, &1005u16.to_be_bytes()), "Invalid close sequence"),
        (client_frame(0x82, &[0u8; 2000]), "Space limit exceeded"),
        ([client_frame(0x02, &[0u8; 600]), client_frame(0x80, &[0u8; 600])].concat(), "Space limit exceeded"),
    ];
    for (wire, expected) in cases {
        let (mut client, mut ws) = pair(1000);
        client.write_all(&wire).await.unwrap();
        let error = loop {
            match ws.next().await {
                Some(Ok(_)) => continue,
                Some(Err(error)) => break error.to_string(),
                None => panic!("no error for {expected}"),
            }
        };
        assert!(error.contains(expected), "{error} should say {expected}");
    }
}

#[tokio::test]
async fn a_declared_length_past_the_limit_is_refused_before_its_bytes_come() {
    let (mut client, mut ws) = pair(1000);
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&(1u64 << 40).to_be_bytes());
    header.extend_from_slice(&MASK);
    client.write_all(&header).await.unwrap();
    assert!(matches!(ws.next().await, Some(Err(Error::Capacity(_)))));
    assert!(ws.read.capacity() < 1 << 20);
}

#[tokio::test]
async fn an_idle_connection_holds_no_buffer() {
    let (mut client, mut ws) = pair(1 << 20);
    client.write_all(&client_frame(0x82, &vec![1u8; 100_000])).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap().len(), 100_000);
    // Nothing more to read: the next poll finds the socket empty and gives the buffer back.
    assert!(futures_util::poll!(ws.next()).is_pending());
    assert!(!holds_memory(&ws.read));
    assert!(!holds_memory(&ws.out));
}

#[tokio::test]
async fn the_pre_tunnel_limit_can_be_raised() {
    let (mut client, mut ws) = pair(100);
    ws.set_max_message(10_000);
    client.write_all(&client_frame(0x82, &[7u8; 5000])).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap().len(), 5000);
}

fn keepalive(interval: u64, timeout: u64) -> (Arc<KeepAlive>, Arc<Stats>) {
    let stats = Stats::new("test", Vec::new());
    let settings = KeepAlive {
        interval: Duration::from_secs(interval),
        timeout: Duration::from_secs(timeout),
        stats: stats.clone(),
    };
    (Arc::new(settings), stats)
}

#[tokio::test(start_paused = true)]
async fn a_silent_peer_is_pinged_then_dropped_and_counted() {
    let (settings, stats) = keepalive(30, 10);
    let (mut client, server) = tokio::io::duplex(4096);
    let mut ws = WebSocket::new(server, BytesMut::new(), 1000, Some(settings));
    let started = Instant::now();
    let reader = tokio::spawn(async move { (ws.next().await, ws) });
    // The ping comes after the interval of silence.
    assert_eq!(server_frame(&mut client).await, (0x89, Vec::new()));
    assert_eq!(started.elapsed().as_secs(), 30);
    let (outcome, mut ws) = reader.await.unwrap();
    assert!(matches!(&outcome, Some(Err(e)) if is_keepalive_timeout(e)), "{outcome:?}");
    assert_eq!(started.elapsed().as_secs(), 40);
    assert_eq!(stats.keepalive_timeouts(), 1);
    // Whatever the owner does with the connection now (a closing handshake reads on), the
    // keepalive has said its word: no second ping, no second count.
    assert!(tokio::time::timeout(Duration::from_secs(300), ws.next()).await.is_err());
    assert_eq!(stats.keepalive_timeouts(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_answers_stays() {
    let (settings, stats) = keepalive(30, 10);
    let (mut client, server) = tokio::io::duplex(4096);
    let mut ws = WebSocket::new(server, BytesMut::new(), 1000, Some(settings));
    let reader = tokio::spawn(async move {
        let mut pongs = 0;
        while let Some(Ok(message)) = ws.next().await {
            match message {
                Message::Pong(_) => pongs += 1,
                Message::Close(_) => break,
                _ => {}
            }
        }
        pongs
    });
    for _ in 0..5 {
        let (first, payload) = server_frame(&mut client).await;
        assert_eq!(first, 0x89);
        tokio::time::sleep(Duration::from_secs(9)).await;
        client.write_all(&client_frame(0x8A, &payload)).await.unwrap();
    }
    client.write_all(&client_frame(0x88, &1000u16.to_be_bytes())).await.unwrap();
    assert_eq!(reader.await.unwrap(), 5);
    assert_eq!(stats.keepalive_timeouts(), 0);
}

#[tokio::test(start_paused = true)]
async fn traffic_keeps_pings_away() {
    let (settings, _) = keepalive(30, 10);
    let (mut client, server) = tokio::io::duplex(4096);
    let mut ws = WebSocket::new(server, BytesMut::new(), 1000, Some(settings));
    let reader = tokio::spawn(async move {
        let mut count = 0;
        while let Some(Ok(Message::Text(_))) = ws.next().await {
            count += 1;
        }
        count
    });
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_secs(20)).await;
        client.write_all(&client_frame(0x81, b"data")).await.unwrap();
    }
    client.write_all(&client_frame(0x88, &[])).await.unwrap();
    assert_eq!(reader.await.unwrap(), 10);
    // The only frame the broker sent is the close reply: no ping in 200 s of traffic.
    assert_eq!(server_frame(&mut client).await, (0x88, Vec::new()));
}

#[tokio::test]
async fn a_reader_answering_a_ping_never_strands_a_blocked_writer() {
    // Split in two, as the TunnelProxy halves are: the writer blocks on a full socket, then the
    // reader answers a ping and has to wait for the socket too. The reader's wait must not
    // leave the writer without a wake-up once the socket drains.
    let (mut client, server) = tokio::io::duplex(64);
    let (mut sink, mut stream) = WebSocket::new(server, BytesMut::new(), 1 << 20, None).split();
    let writer = tokio::spawn(async move { sink.send(Message::binary(vec![7u8; 20_000])).await });
    // The writer has filled the pipe and waits.
    while client.read_u8().await.is_err() {}
    let mut wire = Vec::new();
    let reader = tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
    client.write_all(&client_frame(0x89, b"p")).await.unwrap();
    // Drain everything: the message, then the pong.
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while wire.len() < 20_000 + 4 + 3 - 1 {
        let n = tokio::time::timeout_at(deadline, client.read(&mut buf))
            .await
            .expect("the socket drains")
            .unwrap();
        wire.extend_from_slice(&buf[..n]);
    }
    tokio::time::timeout(Duration::from_secs(5), writer)
        .await
        .expect("the writer finishes")
        .unwrap()
        .unwrap();
    reader.abort();
}

/// A continuation frame whose 64-bit length, added to the fragments so far, would wrap around to
/// a small size: refused as too long (fuzzing found the sum overflowing; in a release build it
/// wrapped and passed the limit).
#[tokio::test]
async fn a_length_near_the_top_of_u64_after_fragments_is_refused() {
    let (mut client, mut ws) = pair(1024);
    let mut wire = client_frame(0x02, b"first part");
    wire.extend_from_slice(&[0x80, 0x80 | 127]);
    wire.extend_from_slice(&(u64::MAX - 5).to_be_bytes());
    wire.extend_from_slice(&MASK);
    client.write_all(&wire).await.unwrap();
    let error = ws.next().await.unwrap().unwrap_err();
    assert!(matches!(error, Error::Capacity(_)), "{error}");
}

/// Counts its wake-ups.
struct Counting(std::sync::atomic::AtomicUsize);

impl std::task::Wake for Counting {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A task that waits to write (its peer does not read) and then polls for a message must not be
/// woken by itself: the relay drives both directions in one task, and a self-wake per poll was
/// a busy loop for as long as the peer did not read.
#[tokio::test]
async fn a_blocked_writer_polling_for_messages_does_not_wake_itself() {
    let (_client, server) = tokio::io::duplex(64);
    let mut ws = WebSocket::new(server, BytesMut::new(), 1 << 20, None);
    let counting = Arc::new(Counting(std::sync::atomic::AtomicUsize::new(0)));
    let waker = std::task::Waker::from(counting.clone());
    let mut cx = Context::from_waker(&waker);
    assert!(ws.poll_ready_unpin(&mut cx).is_ready());
    ws.start_send_unpin(Message::binary(vec![7u8; 4096])).unwrap();
    assert!(ws.poll_flush_unpin(&mut cx).is_pending(), "the peer reads nothing, so the write waits");
    assert!(ws.poll_next_unpin(&mut cx).is_pending());
    assert!(ws.poll_next_unpin(&mut cx).is_pending());
    assert_eq!(counting.0.load(std::sync::atomic::Ordering::SeqCst), 0, "the task woke itself");
}
