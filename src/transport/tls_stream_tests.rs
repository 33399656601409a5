//! The lean TLS stream against rustls' own client (tokio-rustls), over real loopback sockets.

use std::path::Path;
use std::sync::Arc;
use std::task::Poll;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream as ClientStream;

use super::{TlsStream, accept};

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls").join(name)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn server_config() -> Arc<ServerConfig> {
    let chain = vec![CertificateDer::from_pem_file(fixture("ecdsa.crt")).unwrap()];
    let key = PrivateKeyDer::from_pem_file(fixture("ecdsa.key")).unwrap();
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    Arc::new(config)
}

fn connector(tls12: bool) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(fixture("ecdsa.crt")).unwrap()).unwrap();
    let versions: &[&rustls::SupportedProtocolVersion] =
        if tls12 { &[&rustls::version::TLS12] } else { &[&rustls::version::TLS13] };
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// A connected pair: our server stream and a rustls client, over loopback TCP.
async fn pair(tls12: bool) -> (TlsStream<TcpStream>, ClientStream<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = async {
        let (socket, _) = listener.accept().await.unwrap();
        accept(socket, server_config()).await.expect("server handshake")
    };
    let client = async {
        let socket = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        connector(tls12).connect(name, socket).await.expect("client handshake")
    };
    tokio::join!(server, client)
}

/// Polls one read of `stream` once, so that a stream with nothing to read parks (and gives its
/// buffers back). Panics if data or an end was there after all.
async fn park(stream: &mut TlsStream<TcpStream>) {
    std::future::poll_fn(|cx| {
        let mut byte = [0u8; 1];
        let mut buf = tokio::io::ReadBuf::new(&mut byte);
        assert!(std::pin::Pin::new(&mut *stream).poll_read(cx, &mut buf).is_pending(), "nothing to read");
        Poll::Ready(())
    })
    .await;
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

#[tokio::test]
async fn a_mebibyte_crosses_both_ways_and_an_idle_stream_holds_no_buffer() {
    for tls12 in [false, true] {
        let (mut server, mut client) = pair(tls12).await;
        let up = pattern(1 << 20, 1);
        let down = pattern(1 << 20, 2);
        let (up2, down2) = (up.clone(), down.clone());
        let client_side = async move {
            client.write_all(&up2).await.unwrap();
            client.flush().await.unwrap();
            let mut got = vec![0u8; down2.len()];
            client.read_exact(&mut got).await.unwrap();
            assert!(got == down2, "server → client bytes differ (tls12={tls12})");
            client
        };
        let server_side = async {
            let mut got = vec![0u8; up.len()];
            server.read_exact(&mut got).await.unwrap();
            assert!(got == up, "client → server bytes differ (tls12={tls12})");
            server.write_all(&down).await.unwrap();
            server.flush().await.unwrap();
        };
        let (client, ()) = tokio::join!(client_side, server_side);
        park(&mut server).await;
        assert_eq!(server.incoming.capacity(), 0, "tls12={tls12}");
        assert_eq!(server.plain.capacity(), 0, "tls12={tls12}");
        assert_eq!(server.outgoing.capacity(), 0, "tls12={tls12}");
        drop(client);
    }
}

#[tokio::test]
async fn close_notify_is_a_clean_end_and_a_bare_socket_end_is_not() {
    // The client says it is done: the server reads the end.
    let (mut server, mut client) = pair(false).await;
    client.write_all(b"last words").await.unwrap();
    client.shutdown().await.unwrap();
    let mut got = Vec::new();
    server.read_to_end(&mut got).await.expect("a clean end");
    assert_eq!(got, b"last words");

    // The client's socket just ends (a FIN, no close_notify): the bytes before it arrive, then an
    // error says so.
    let (mut server, mut client) = pair(false).await;
    client.write_all(b"cut").await.unwrap();
    client.flush().await.unwrap();
    let (mut socket, _) = client.into_inner();
    socket.shutdown().await.unwrap();
    let mut got = [0u8; 3];
    server.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"cut");
    let error = server.read(&mut [0u8; 8]).await.expect_err("an end without close_notify");
    assert_eq!(error.kind(), std::io::ErrorKind::UnexpectedEof);
}

#[tokio::test]
async fn shutdown_sends_close_notify() {
    let (mut server, mut client) = pair(false).await;
    server.write_all(b"bye").await.unwrap();
    server.shutdown().await.unwrap();
    let mut got = Vec::new();
    client.read_to_end(&mut got).await.expect("the client sees a clean end");
    assert_eq!(got, b"bye");
}

#[tokio::test]
async fn keys_change_in_order_long_before_the_cipher_limit() {
    let (mut server, mut client) = pair(false).await;
    server.records_per_key = 3;
    let down = pattern(40 * 16 * 1024 + 123, 7);
    let expected = down.clone();
    let reader = tokio::spawn(async move {
        let mut got = vec![0u8; expected.len()];
        client.read_exact(&mut got).await.expect("every record decrypts");
        assert!(got == expected);
        // And the other way still works after the key changes.
        client.write_all(b"still here").await.unwrap();
        client.flush().await.unwrap();
        client
    });
    for chunk in down.chunks(20 * 1024) {
        server.write_all(chunk).await.unwrap();
    }
    server.flush().await.unwrap();
    let _client = reader.await.unwrap();
    let mut got = [0u8; 10];
    server.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"still here");
}

#[tokio::test]
async fn a_peer_that_is_not_tls_fails_the_handshake() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut plain = TcpStream::connect(addr).await.unwrap();
    let (socket, _) = listener.accept().await.unwrap();
    plain.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let error = accept(socket, server_config()).await.err().expect("not TLS");
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
    // The connection is closed (after an alert, where rustls has one to say).
    let mut rest = Vec::new();
    let _ = plain.read_to_end(&mut rest).await;
}

#[tokio::test]
async fn a_peer_that_leaves_during_the_handshake_fails_it() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(TcpStream::connect(addr).await.unwrap());
    let (socket, _) = listener.accept().await.unwrap();
    let error = accept(socket, server_config()).await.err().expect("no handshake");
    assert_eq!(error.kind(), std::io::ErrorKind::UnexpectedEof);
}
