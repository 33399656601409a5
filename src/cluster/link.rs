//! The inter-node links: one TLS connection from each node to each other node it needs (dialled
//! when first needed, kept and reused), carrying HTTP/2 streams, one per relayed tunnel or v2 client. A
//! cross-node tunnel thus costs a stream, not a TCP connection or a TLS handshake: a node
//! holding thousands of relayed tunnels holds a handful of extra descriptors.
//!
//! How the two ends know each other:
//! * Each node serves a self-signed certificate made at start; its SHA-256 is in the node's
//!   heartbeat in Redis, and a dialling node accepts exactly that certificate (pinned).
//! * Then both prove they know the cluster secret without sending it: each sends an HMAC-SHA256,
//!   keyed by the secret, of its role, its node id and a TLS exporter value of this very
//!   connection (RFC 5705/8446 keying material). A proof cannot be replayed on another connection,
//!   and a man in the middle (who would hold two TLS sessions with different exporter values)
//!   cannot forward one. The listener checks the dialler's proof before it answers with its own.
//!
//! HTTP/2 (the `h2` crate) is the multiplexer because it is the well-kept one with per-stream flow
//! control, half-close (END_STREAM) and reset (RST_STREAM), which is exactly what a tunnel's
//! direction needs; streams get a 256 KiB window each and the connection a window so large that
//! one stalled tunnel can never hold up the others on the same link.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ring::hmac;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::directory::NodeRecord;
use super::h2_stream::H2Stream;

/// Bound on dialling a node: TCP, TLS and the proofs.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Per-stream flow-control window: what one direction of a relayed tunnel may have in flight
/// between the nodes (like a socket buffer). 512 KiB moves a single tunnel's bulk data about as
/// fast as 1 MiB did here, at half the memory a stalled tunnel can hold.
const STREAM_WINDOW: u32 = 512 << 10;

/// What a stream may have queued in the sending node's HTTP/2 layer.
const SEND_BUFFER: usize = 256 << 10;

/// The whole connection's window: large enough never to be what stops a stream.
const CONNECTION_WINDOW: u32 = (1 << 31) - 1;

/// Largest DATA frame: a relay chunk.
const MAX_FRAME: u32 = 64 << 10;

/// Streams one link carries at once (each is a relayed tunnel or v2 client).
const MAX_STREAMS: u32 = 1 << 20;

/// Socket reads of a link: rustls' buffered connection reads at most 4 KiB per call, which on
/// a link carrying bulk data is a system call per 4 KiB; a read buffer this size under it makes
/// that one per 64 KiB. A node holds one per link, not per tunnel.
const LINK_READ: usize = 64 << 10;

const EXPORTER_LABEL: &[u8] = b"EXPORTER-remoteproxy-cluster-link";
const MAGIC: &[u8; 8] = b"RPLINK01";

/// What this node proves and checks.
pub struct Identity {
    /// This node's id.
    pub node: String,
    key: hmac::Key,
}

impl Identity {
    /// Node `node` knowing `secret`.
    pub fn new(node: &str, secret: &str) -> Identity {
        Identity { node: node.to_string(), key: hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()) }
    }

    fn proof(&self, role: &[u8], node: &str, exporter: &[u8]) -> hmac::Tag {
        let mut context = hmac::Context::with_key(&self.key);
        for part in [role, node.as_bytes(), exporter] {
            context.update(&(part.len() as u32).to_be_bytes());
            context.update(part);
        }
        context.sign()
    }

    fn verify(&self, role: &[u8], node: &str, exporter: &[u8], tag: &[u8]) -> bool {
        let mut message = Vec::new();
        for part in [role, node.as_bytes(), exporter] {
            message.extend_from_slice(&(part.len() as u32).to_be_bytes());
            message.extend_from_slice(part);
        }
        hmac::verify(&self.key, &message, tag).is_ok()
    }
}

/// The relay listener's TLS: a certificate made at start, and its fingerprint for the heartbeat.
pub struct ListenerTls {
    /// TLS 1.3, ALPN h2, no client certificates (the proofs authenticate the dialler).
    pub config: Arc<rustls::ServerConfig>,
    /// SHA-256 of the certificate, hex.
    pub fingerprint: String,
}

impl ListenerTls {
    /// A fresh self-signed certificate for `node`.
    pub fn generate(node: &str) -> Result<ListenerTls, String> {
        let certified = rcgen::generate_simple_self_signed(vec![format!("{node}.remoteproxy-cluster")])
            .map_err(|error| format!("cannot make the relay certificate: {error}"))?;
        let der = certified.cert.der().clone();
        let fingerprint = hex(&Sha256::digest(&der));
        let key = PrivateKeyDer::try_from(certified.signing_key.serialize_der())
            .map_err(|error| format!("cannot use the relay key: {error}"))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|error| error.to_string())?
            .with_no_client_auth()
            .with_single_cert(vec![der], key)
            .map_err(|error| format!("cannot use the relay certificate: {error}"))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(ListenerTls { config: Arc::new(config), fingerprint })
    }
}

/// The links' crypto: ring, with AES-128-GCM only. Both ends are ours, so nothing needs the
/// others, and every byte of a relayed tunnel is encrypted once more on its way between the
/// nodes: the cheaper cipher (with AES-NI, markedly faster than AES-256) is worth it at full
/// 128-bit strength.
fn provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = vec![rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256];
    Arc::new(provider)
}

/// Lowercase hex, as digests appear in Redis keys and heartbeats.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A stream opened by another node, with the path that says what it is for.
pub struct Incoming {
    /// What the stream is for (`/v1/join`).
    pub path: String,
    /// The node that opened it (proven by its link's handshake).
    pub from: String,
    /// The stream.
    pub stream: H2Stream,
}

/// Accepts links from the other nodes until `stop`, handing each stream to `handle`.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    identity: Arc<Identity>,
    handle: Arc<dyn Fn(Incoming) + Send + Sync>,
    stop: CancellationToken,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((tcp, peer)) = accepted else {
            // Out of descriptors or similar: wait a moment rather than spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        keep_alive(&tcp);
        let tcp = BufReader::with_capacity(LINK_READ, tcp);
        let (acceptor, identity, handle, stop) =
            (acceptor.clone(), identity.clone(), handle.clone(), stop.clone());
        tokio::spawn(async move {
            let opened = tokio::time::timeout(CONNECT_TIMEOUT, async {
                let mut tls = acceptor.accept(tcp).await?;
                let exporter = exporter(tls.get_ref().1)?;
                let from = read_proof(&mut tls, &identity, b"dialler", &exporter).await?;
                write_proof(&mut tls, &identity, b"listener", &exporter).await?;
                Ok::<_, io::Error>((tls, from))
            })
            .await;
            let (tls, from) = match opened {
                Ok(Ok(opened)) => opened,
                Ok(Err(error)) => {
                    warn!(%peer, %error, "refused an inter-node link: check that every node has the same [Cluster] secret");
                    return;
                }
                Err(_) => {
                    debug!(%peer, "an inter-node link did not finish its handshake in time");
                    return;
                }
            };
            debug!(%peer, node = %from, "inter-node link accepted");
            let mut builder = h2::server::Builder::new();
            builder
                .initial_window_size(STREAM_WINDOW)
                .initial_connection_window_size(CONNECTION_WINDOW)
                .max_frame_size(MAX_FRAME)
                .max_concurrent_streams(MAX_STREAMS)
                .max_send_buffer_size(SEND_BUFFER)
                // The other end is an authenticated node, and these guards against hostile HTTP/2
                // clients would tear the whole link down (every tunnel on it) for what tunnels
                // legitimately do: many small writes towards a client that stopped reading, and
                // many streams cut while data was still on its way.
                .data_frame_budget(usize::MAX >> 1)
                .max_local_error_reset_streams(None)
                .max_concurrent_reset_streams(1 << 16)
                .max_pending_accept_reset_streams(1 << 16);
            let Ok(mut conn) = builder.handshake::<_, Bytes>(tls).await else { return };
            loop {
                let next = tokio::select! {
                    _ = stop.cancelled() => { conn.graceful_shutdown(); None }
                    next = conn.accept() => next,
                };
                let Some(Ok((request, mut respond))) = next else { break };
                let Ok(send) = respond.send_response(http::Response::new(()), false) else { continue };
                let path = request.uri().path().to_string();
                let stream = H2Stream::new(send, request.into_body());
                handle(Incoming { path, from: from.clone(), stream });
            }
            // Drive the connection to its end so the streams already handed out finish.
            let _ = std::future::poll_fn(|cx| conn.poll_closed(cx)).await;
        });
    }
}

/// No Nagle delay (a relayed tunnel's small messages go at once), TCP keepalive for an idle link
/// and a user timeout for one with data in flight: a node whose host vanished without a word
/// (power, network) is noticed within about 25 s, its link fails, and the tunnels on it are cut
/// rather than left hanging.
fn keep_alive(tcp: &TcpStream) {
    let _ = tcp.set_nodelay(true);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(10))
        .with_interval(Duration::from_secs(5))
        .with_retries(3);
    let socket = socket2::SockRef::from(tcp);
    let _ = socket.set_tcp_keepalive(&keepalive);
    let _ = socket.set_tcp_user_timeout(Some(Duration::from_secs(25)));
}

fn exporter(
    conn: &impl std::ops::Deref<Target = rustls::ConnectionCommon<impl Sized>>,
) -> io::Result<[u8; 32]> {
    let mut out = [0u8; 32];
    conn.export_keying_material(&mut out, EXPORTER_LABEL, None).map_err(io::Error::other)?;
    Ok(out)
}

async fn write_proof(
    io: &mut (impl AsyncWrite + Unpin),
    identity: &Identity,
    role: &[u8],
    exporter: &[u8],
) -> io::Result<()> {
    let tag = identity.proof(role, &identity.node, exporter);
    let mut message = Vec::with_capacity(8 + 1 + identity.node.len() + 32);
    message.extend_from_slice(MAGIC);
    message.push(identity.node.len() as u8);
    message.extend_from_slice(identity.node.as_bytes());
    message.extend_from_slice(tag.as_ref());
    io.write_all(&message).await?;
    io.flush().await
}

/// Reads the other side's proof; returns its node id when the proof holds.
async fn read_proof(
    io: &mut (impl AsyncRead + Unpin),
    identity: &Identity,
    role: &[u8],
    exporter: &[u8],
) -> io::Result<String> {
    let mut magic = [0u8; 9];
    io.read_exact(&mut magic).await?;
    if &magic[..8] != MAGIC {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "not a remoteproxy node"));
    }
    let mut node = vec![0u8; usize::from(magic[8])];
    io.read_exact(&mut node).await?;
    let mut tag = [0u8; 32];
    io.read_exact(&mut tag).await?;
    let node =
        String::from_utf8(node).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad node id"))?;
    if !identity.verify(role, &node, exporter, &tag) {
        return Err(io::Error::new(io::ErrorKind::PermissionDenied, "the cluster secret does not match"));
    }
    Ok(node)
}

/// An open link to one node's run.
struct Link {
    instance: String,
    send: h2::client::SendRequest<Bytes>,
}

/// The links this node dialled, one per node, made when first needed and again after a failure.
pub struct Links {
    identity: Arc<Identity>,
    links: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Link>>>>>,
}

impl Links {
    /// No links yet; they are dialled as needed, proving `identity`.
    pub fn new(identity: Arc<Identity>) -> Links {
        Links { identity, links: Mutex::new(HashMap::new()) }
    }

    /// Opens a stream to `node` for `path`, dialling it first if there is no working link. A link
    /// that fails to open the stream (it broke while idle, or is wedged) is dropped and dialled
    /// once more.
    pub async fn open(&self, node: &NodeRecord, path: &str) -> io::Result<H2Stream> {
        let slot =
            self.links.lock().expect("links lock poisoned").entry(node.node.clone()).or_default().clone();
        let mut last = None;
        for _ in 0..2 {
            let send = {
                let mut link = slot.lock().await;
                let reusable = link.as_ref().is_some_and(|link| link.instance == node.instance);
                if !reusable {
                    *link = None;
                    let send =
                        tokio::time::timeout(CONNECT_TIMEOUT, self.dial(node)).await.map_err(|_| {
                            io::Error::new(io::ErrorKind::TimedOut, "the node did not answer in time")
                        })??;
                    *link = Some(Link { instance: node.instance.clone(), send });
                }
                link.as_ref().expect("set above").send.clone()
            };
            match tokio::time::timeout(CONNECT_TIMEOUT, open_stream(send, path)).await {
                Ok(Ok(stream)) => return Ok(stream),
                Ok(Err(error)) => last = Some(io::Error::new(io::ErrorKind::ConnectionAborted, error)),
                Err(_) => {
                    last = Some(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the node did not open the stream in time",
                    ))
                }
            }
            slot.lock().await.take();
        }
        Err(last.expect("set in the loop"))
    }

    async fn dial(&self, node: &NodeRecord) -> io::Result<h2::client::SendRequest<Bytes>> {
        let tcp = TcpStream::connect(node.address.as_str()).await?;
        keep_alive(&tcp);
        let tcp = BufReader::with_capacity(LINK_READ, tcp);
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(io::Error::other)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned {
                fingerprint: node.fingerprint.clone(),
                provider: provider(),
            }))
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let name = ServerName::try_from("remoteproxy-cluster").expect("a valid name");
        let mut tls = connector.connect(name, tcp).await?;
        let exporter = exporter(tls.get_ref().1)?;
        write_proof(&mut tls, &self.identity, b"dialler", &exporter).await?;
        let from = read_proof(&mut tls, &self.identity, b"listener", &exporter).await?;
        if from != node.node {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("reached node {from}, not {}", node.node),
            ));
        }
        let mut builder = h2::client::Builder::new();
        builder
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_frame_size(MAX_FRAME)
            .max_concurrent_streams(MAX_STREAMS)
            .max_send_buffer_size(SEND_BUFFER)
            // As on the listening side (see there).
            .data_frame_budget(usize::MAX >> 1)
            .max_local_error_reset_streams(None)
            .max_concurrent_reset_streams(1 << 16)
            .max_pending_accept_reset_streams(1 << 16);
        let (send, conn) = builder.handshake::<_, Bytes>(tls).await.map_err(io::Error::other)?;
        let peer = node.node.clone();
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                debug!(node = %peer, %error, "inter-node link ended");
            }
        });
        debug!(node = %node.node, address = %node.address, "inter-node link opened");
        Ok(send)
    }
}

/// One request on a link, and its response's body: a bidirectional stream.
async fn open_stream(send: h2::client::SendRequest<Bytes>, path: &str) -> Result<H2Stream, h2::Error> {
    let request = http::Request::post(path).body(()).expect("a valid request");
    let mut ready = send.ready().await?;
    let (response, stream) = ready.send_request(request, false)?;
    let response = response.await?;
    Ok(H2Stream::new(stream, response.into_body()))
}

/// Accepts exactly the certificate the node's heartbeat names.
#[derive(Debug)]
struct Pinned {
    fingerprint: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if hex(&Sha256::digest(end_entity)) == self.fingerprint {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls12NotOffered))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_holds_only_for_its_secret_role_node_and_connection() {
        let a = Identity::new("a", "the shared secret!");
        let tag = a.proof(b"dialler", "a", b"exporter-1");
        assert!(a.verify(b"dialler", "a", b"exporter-1", tag.as_ref()));
        assert!(!a.verify(b"listener", "a", b"exporter-1", tag.as_ref()));
        assert!(!a.verify(b"dialler", "b", b"exporter-1", tag.as_ref()));
        assert!(!a.verify(b"dialler", "a", b"exporter-2", tag.as_ref()));
        let other = Identity::new("a", "another secret!!");
        assert!(!other.verify(b"dialler", "a", b"exporter-1", tag.as_ref()));
    }
}
