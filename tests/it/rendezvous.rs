//! `[RendezvousServer]`, the Micronets way, over real TLS with client certificates: peers on one
//! path exchange HELLOs in any order and then anything; a third is refused; strangers fail the
//! handshake; what a lone peer sends waits for its partner; a leaving peer closes the other and
//! frees the meeting; a silent or unanswering peer is closed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use remoteproxy::certs;
use remoteproxy::cli::{CertificateArgs, LeafArgs, RootArgs};
use remoteproxy::config::RendezvousSettings;
use remoteproxy::protocol::reasons::rendezvous as reasons;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::common::*;

const PREFIX: &str = "/micronets/v1/ws-proxy/";

type Peer = WebSocketStream<TlsStream<TcpStream>>;

/// A root CA, the broker's certificate and peers' leaves, made by `remoteproxy certs`.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let pki = Pki { dir: tempfile::tempdir().unwrap() };
        pki.root("root", "Micronets Websocket Root Cert");
        pki.leaf("root", "proxy", "Micronets Websocket Proxy Cert", Some("localhost"));
        pki.leaf("root", "manager", "Micronets Manager Cert", None);
        pki.leaf("root", "gateway", "Micronets Gateway Cert", None);
        pki.leaf("root", "third", "Micronets Third Cert", None);
        pki.root("other-root", "Somebody Else's Root");
        pki.leaf("other-root", "stranger", "Stranger Cert", None);
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn names(&self, base: &str, org: &str) -> CertificateArgs {
        CertificateArgs { cert_basename: self.path(base), subject_org_name: org.to_string(), days: 30 }
    }

    fn root(&self, base: &str, org: &str) {
        certs::root(&RootArgs { certificate: self.names(base, org) }).unwrap();
    }

    fn leaf(&self, ca: &str, base: &str, org: &str, server_name: Option<&str>) {
        certs::leaf(&LeafArgs {
            certificate: self.names(base, org),
            ca_cert: self.path(&format!("{ca}.cert.pem")),
            ca_key: self.path(&format!("{ca}.key.pem")),
            server_name: server_name.map(str::to_string),
        })
        .unwrap();
    }
}

fn settings(dir: &Path, proxy: &str, root: &str) -> RendezvousSettings {
    RendezvousSettings {
        address: "127.0.0.1:0".parse().unwrap(),
        path_prefix: PREFIX.to_string(),
        certificate: dir.join(format!("{proxy}.pkeycert.pem")),
        certificate_key: None,
        ca_certificate: dir.join(format!("{root}.cert.pem")),
        hello_timeout: Duration::from_secs(10),
        alone_timeout: None,
        max_held_messages: 64,
        max_held_bytes: 1 << 20,
        policy_file: None,
    }
}

async fn broker(pki: &Pki, edit: impl FnOnce(&mut RendezvousSettings)) -> Broker {
    let mut rendezvous = settings(pki.dir.path(), "proxy", "root");
    edit(&mut rendezvous);
    Broker::builder().config(|c| c.rendezvous = Some(rendezvous)).start().await
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_config() -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier> {
    rustls::ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions().unwrap()
}

/// A TLS client trusting `root` and presenting `leaf` (its pkeycert.pem), as a Micronets peer.
fn connector(dir: &Path, root: &str, leaf: Option<&str>) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(dir.join(format!("{root}.cert.pem"))).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = client_config().with_root_certificates(roots);
    let config = match leaf {
        None => builder.with_no_client_auth(),
        Some(leaf) => {
            let combined = dir.join(format!("{leaf}.pkeycert.pem"));
            let chain = CertificateDer::pem_file_iter(&combined).unwrap().map(Result::unwrap).collect();
            let key = PrivateKeyDer::from_pem_file(&combined).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
    };
    TlsConnector::from(Arc::new(config))
}

/// A peer on `meeting`, or the error of its TLS handshake or upgrade.
async fn try_peer(address: SocketAddr, tls: &TlsConnector, meeting: &str) -> Result<Peer, String> {
    let tcp = TcpStream::connect(address).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").unwrap();
    let stream = within("TLS handshake", tls.connect(name, tcp)).await.map_err(|e| e.to_string())?;
    let url = format!("wss://localhost:{}{PREFIX}{meeting}", address.port());
    let upgrade = within("upgrade", tokio_tungstenite::client_async(url, stream)).await;
    upgrade.map(|(ws, _)| ws).map_err(|e| e.to_string())
}

async fn peer(pki: &Pki, broker: &Broker, leaf: &str, meeting: &str) -> Peer {
    let tls = connector(pki.dir.path(), "root", Some(leaf));
    try_peer(broker.rendezvous.unwrap(), &tls, meeting).await.unwrap()
}

fn hello(class: &str, id: &str) -> String {
    format!(
        r#"{{"message":{{"messageId":0,"messageType":"CONN:HELLO","peerClass":"{class}","peerId":"{id}","requiresResponse":false}}}}"#
    )
}

async fn send(peer: &mut Peer, text: &str) {
    within("send", peer.send(Message::text(text))).await.unwrap();
}

/// The next data message's text.
async fn next_text(peer: &mut Peer) -> String {
    loop {
        match within("a message", peer.next()).await {
            Some(Ok(Message::Text(text))) => return text.to_string(),
            Some(Ok(Message::Binary(data))) => return String::from_utf8(data.to_vec()).unwrap(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

/// The close frame the broker sent: code and reason.
async fn closed(peer: &mut Peer) -> (CloseCode, String) {
    loop {
        match within("a close", peer.next()).await {
            Some(Ok(Message::Close(Some(frame)))) => return (frame.code, frame.reason.to_string()),
            Some(Ok(Message::Close(None))) | None => panic!("closed without a close frame"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("no close frame: {e}"),
        }
    }
}

const REQUEST: &str = r#"{"message":{"messageId":1,"messageType":"REST:REQUEST","requiresResponse":true,"method":"GET","path":"/micronets/v1/gateway/status"}}"#;
const RESPONSE: &str = r#"{"message":{"messageId":7,"messageType":"REST:RESPONSE","inResponseTo":1,"statusCode":200,"body":{"status":"ok"}}}"#;
const EVENT: &str = r#"{"message":{"messageId":8,"messageType":"EVENT:DEVICE","requiresResponse":false,"body":{"device":"added"}}}"#;

/// The REST and EVENT exchange Micronets peers run once joined.
async fn exchange(manager: &mut Peer, gateway: &mut Peer) {
    send(manager, REQUEST).await;
    assert_eq!(next_text(gateway).await, REQUEST);
    send(gateway, RESPONSE).await;
    send(gateway, EVENT).await;
    assert_eq!(next_text(manager).await, RESPONSE);
    assert_eq!(next_text(manager).await, EVENT);
}

/// A manager and a gateway joined on `meeting`, each having received the other's HELLO.
async fn pair(pki: &Pki, broker: &Broker, meeting: &str) -> (Peer, Peer) {
    let mut manager = peer(pki, broker, "manager", meeting).await;
    let mut gateway = peer(pki, broker, "gateway", meeting).await;
    meet(&mut manager, &mut gateway).await;
    (manager, gateway)
}

/// Both say HELLO; each must receive the other's first.
async fn meet(manager: &mut Peer, gateway: &mut Peer) {
    send(manager, &hello("manager", "1")).await;
    send(gateway, &hello("gateway", "2")).await;
    assert_eq!(next_text(gateway).await, hello("manager", "1"));
    assert_eq!(next_text(manager).await, hello("gateway", "2"));
}

#[tokio::test]
async fn peers_meet_in_every_connect_and_hello_order_and_exchange_messages() {
    let pki = Pki::new();
    let broker = broker(&pki, |_| {}).await;
    for (case, (gateway_connects_first, gateway_says_hello_first)) in
        [(false, false), (false, true), (true, false), (true, true)].into_iter().enumerate()
    {
        let meeting = format!("micronets-dhcp-000{case}");
        let (mut manager, mut gateway) = if gateway_connects_first {
            let gateway = peer(&pki, &broker, "gateway", &meeting).await;
            (peer(&pki, &broker, "manager", &meeting).await, gateway)
        } else {
            let manager = peer(&pki, &broker, "manager", &meeting).await;
            (manager, peer(&pki, &broker, "gateway", &meeting).await)
        };
        let (manager_hello, gateway_hello) =
            (hello("micronets-manager", "m-1"), hello("micronets-gw", "gw-7"));
        if gateway_says_hello_first {
            send(&mut gateway, &gateway_hello).await;
            send(&mut manager, &manager_hello).await;
        } else {
            send(&mut manager, &manager_hello).await;
            send(&mut gateway, &gateway_hello).await;
        }
        assert_eq!(next_text(&mut manager).await, gateway_hello, "case {case}: the partner's HELLO, as sent");
        assert_eq!(next_text(&mut gateway).await, manager_hello, "case {case}");
        exchange(&mut manager, &mut gateway).await;
    }
}

#[tokio::test]
async fn a_third_peer_is_refused_and_the_pair_keeps_working() {
    let pki = Pki::new();
    let broker = broker(&pki, |_| {}).await;
    let (mut manager, mut gateway) = pair(&pki, &broker, "site/with/slashes").await;
    let mut third = peer(&pki, &broker, "third", "site/with/slashes").await;
    assert_eq!(closed(&mut third).await, (CloseCode::Policy, reasons::FULL.to_string()));
    exchange(&mut manager, &mut gateway).await;
}

#[tokio::test]
async fn without_a_certificate_of_the_root_the_handshake_fails() {
    let pki = Pki::new();
    let broker = broker(&pki, |_| {}).await;
    let address = broker.rendezvous.unwrap();
    let none = connector(pki.dir.path(), "root", None);
    assert!(try_peer(address, &none, "m").await.is_err(), "no client certificate");
    // The stranger trusts the broker's root but presents a leaf of another CA.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(pki.path("root.cert.pem")).unwrap()).unwrap();
    let combined = pki.path("stranger.pkeycert.pem");
    let chain = CertificateDer::pem_file_iter(&combined).unwrap().map(Result::unwrap).collect();
    let config = client_config()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(&combined).unwrap())
        .unwrap();
    let stranger = TlsConnector::from(Arc::new(config));
    assert!(try_peer(address, &stranger, "m").await.is_err(), "a certificate from another CA");
}

#[tokio::test]
async fn different_paths_do_not_meet_and_a_lone_peers_messages_wait_for_its_partner() {
    let pki = Pki::new();
    let broker = broker(&pki, |_| {}).await;
    let mut first = peer(&pki, &broker, "manager", "one").await;
    let mut elsewhere = peer(&pki, &broker, "gateway", "two").await;
    send(&mut first, &hello("manager", "1")).await;
    send(&mut first, REQUEST).await;
    send(&mut elsewhere, &hello("gateway", "2")).await;
    // The one on "one" is joined by a newcomer there, not by the peer on "two": the newcomer
    // gets its HELLO and then what it sent while alone, in order.
    let mut partner = peer(&pki, &broker, "gateway", "one").await;
    send(&mut partner, &hello("gateway", "3")).await;
    assert_eq!(next_text(&mut partner).await, hello("manager", "1"));
    assert_eq!(next_text(&mut partner).await, REQUEST);
    assert_eq!(next_text(&mut first).await, hello("gateway", "3"));
    send(&mut partner, RESPONSE).await;
    assert_eq!(next_text(&mut first).await, RESPONSE);
    // The peer on "two" is still alone: its own partner finds it.
    let mut its_partner = peer(&pki, &broker, "manager", "two").await;
    send(&mut its_partner, &hello("manager", "4")).await;
    assert_eq!(next_text(&mut its_partner).await, hello("gateway", "2"));
    assert_eq!(next_text(&mut elsewhere).await, hello("manager", "4"));
}

#[tokio::test]
async fn a_leaving_peer_closes_its_partner_and_frees_the_meeting_at_once() {
    let pki = Pki::new();
    let broker = broker(&pki, |_| {}).await;
    for round in 0..2 {
        let (mut manager, mut gateway) = pair(&pki, &broker, "m").await;
        within("the manager leaves", manager.close(None)).await.unwrap();
        let (code, reason) = closed(&mut gateway).await;
        assert_eq!((code, reason.as_str()), (CloseCode::Away, reasons::PARTNER_LEFT), "round {round}");
    }
}

#[tokio::test]
async fn a_silent_peer_and_one_without_a_hello_are_closed() {
    let pki = Pki::new();
    let broker = broker(&pki, |s| s.hello_timeout = Duration::from_millis(300)).await;
    let mut silent = peer(&pki, &broker, "manager", "m").await;
    assert_eq!(closed(&mut silent).await, (CloseCode::Policy, reasons::NO_HELLO.to_string()));
    let mut rude = peer(&pki, &broker, "gateway", "m").await;
    send(&mut rude, REQUEST).await;
    assert_eq!(closed(&mut rude).await, (CloseCode::Policy, reasons::NOT_HELLO.to_string()));
    // Neither holds the meeting: a pair meets there now.
    pair(&pki, &broker, "m").await;
}

#[tokio::test]
async fn a_peer_that_answers_no_ping_is_closed_and_so_is_its_partner() {
    let pki = Pki::new();
    let mut rendezvous = settings(pki.dir.path(), "proxy", "root");
    rendezvous.hello_timeout = Duration::from_secs(10);
    let broker = Broker::builder()
        .config(|c| {
            c.rendezvous = Some(rendezvous);
            c.timeouts.keep_alive_interval = Some(Duration::from_millis(200));
            c.timeouts.keep_alive_timeout = Duration::from_millis(300);
        })
        .start()
        .await;
    let (manager, mut gateway) = pair(&pki, &broker, "m").await;
    // The manager stops reading, so it answers no ping; the gateway reads (and answers).
    let (code, reason) = closed(&mut gateway).await;
    assert_eq!((code, reason.as_str()), (CloseCode::Error, reasons::PARTNER_FAILED));
    drop(manager);
}

#[tokio::test]
async fn a_path_outside_the_prefix_gets_404_before_the_upgrade() {
    let pki = Pki::new();
    let broker = broker(&pki, |_| {}).await;
    let tls = connector(pki.dir.path(), "root", Some("manager"));
    let tcp = TcpStream::connect(broker.rendezvous.unwrap()).await.unwrap();
    let mut stream = tls.connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
    let request = "GET /elsewhere/m HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    let _ = within("the answer", stream.read_to_string(&mut answer)).await;
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
}

/// Certificates made the way Micronets deployments have them: openssl, an EC P-256 root, leaves
/// without extended key usage or subject alternative name (one of them with an RSA key).
#[tokio::test]
async fn certificates_made_by_openssl_in_the_micronets_shape_work() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let openssl = |args: &[&str]| {
        let status = Command::new("openssl").args(args).current_dir(d).status().expect("openssl runs");
        assert!(status.success(), "openssl {args:?}");
    };
    std::fs::write(
        d.join("leaf.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n",
    )
    .unwrap();
    openssl(&["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "root.key.pem"]);
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        "root.key.pem",
        "-subj",
        "/O=Micronets Websocket Root Cert",
        "-days",
        "30",
        "-out",
        "root.cert.pem",
    ]);
    for (name, org) in [
        ("proxy", "Micronets Websocket Proxy Cert"),
        ("manager", "Micronets Manager Cert"),
        ("gateway", "Micronets Gateway Cert"),
    ] {
        // The gateway's key is RSA: both kinds are accepted.
        if name == "gateway" {
            openssl(&[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                &format!("{name}.key.pem"),
            ]);
        } else {
            openssl(&[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                &format!("{name}.key.pem"),
            ]);
        }
        openssl(&[
            "req",
            "-new",
            "-key",
            &format!("{name}.key.pem"),
            "-subj",
            &format!("/O={org}"),
            "-out",
            &format!("{name}.csr"),
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "root.cert.pem",
            "-CAkey",
            "root.key.pem",
            "-CAcreateserial",
            "-days",
            "30",
            "-extfile",
            "leaf.ext",
            "-out",
            &format!("{name}.cert.pem"),
        ]);
        let combined = format!(
            "{}{}",
            std::fs::read_to_string(d.join(format!("{name}.cert.pem"))).unwrap(),
            std::fs::read_to_string(d.join(format!("{name}.key.pem"))).unwrap()
        );
        std::fs::write(d.join(format!("{name}.pkeycert.pem")), combined).unwrap();
    }
    let broker =
        Broker::builder().config(|c| c.rendezvous = Some(settings(d, "proxy", "root"))).start().await;
    // The proxy's certificate names no host (as Micronets issues it): peers here check the
    // chain, not the name, as the Micronets Python peers do with check_hostname off.
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new({
            let mut roots = rustls::RootCertStore::empty();
            roots.add(CertificateDer::from_pem_file(d.join("root.cert.pem")).unwrap()).unwrap();
            roots
        }),
        provider(),
    )
    .build()
    .unwrap();
    let tls = |leaf: &str| {
        let combined = d.join(format!("{leaf}.pkeycert.pem"));
        let chain = CertificateDer::pem_file_iter(&combined).unwrap().map(Result::unwrap).collect();
        let config = client_config()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnly(verifier.clone())))
            .with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(&combined).unwrap())
            .unwrap();
        TlsConnector::from(Arc::new(config))
    };
    let address = broker.rendezvous.unwrap();
    let mut manager = try_peer(address, &tls("manager"), "gw-1").await.unwrap();
    let mut gateway = try_peer(address, &tls("gateway"), "gw-1").await.unwrap();
    meet(&mut manager, &mut gateway).await;
    exchange(&mut manager, &mut gateway).await;
}

/// Checks the server's chain against the root but not the host name (Micronets peers connect by
/// IP address to a certificate without one).
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl rustls::client::danger::ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForNameContext {
                ..
            })) => Ok(rustls::client::danger::ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// A monitor snapshot (`printAll`), as JSON.
async fn snapshot(broker: &Broker) -> serde_json::Value {
    use tokio::io::AsyncBufReadExt;
    let stream = within("the monitor", tokio::net::UnixStream::connect(&broker.monitor)).await.unwrap();
    let (read, mut write) = stream.into_split();
    write.write_all(b"{\"method\":\"refresh\",\"params\":{\"printAll\":true}}\n").await.unwrap();
    let line =
        within("a snapshot", tokio::io::BufReader::new(read).lines().next_line()).await.unwrap().unwrap();
    serde_json::from_str(&line).unwrap()
}

#[tokio::test]
async fn the_monitor_and_the_metrics_show_the_meetings() {
    let pki = Pki::new();
    let rendezvous = settings(pki.dir.path(), "proxy", "root");
    let broker = Broker::builder()
        .config(|c| {
            c.rendezvous = Some(rendezvous);
            c.metrics.enabled = true;
        })
        .start()
        .await;
    let mut lone = peer(&pki, &broker, "manager", "waiting/room").await;
    send(&mut lone, &hello("manager", "1")).await;
    let (_a, _b) = pair(&pki, &broker, "joined").await;
    let mut third = peer(&pki, &broker, "third", "joined").await;
    closed(&mut third).await;

    let statistic = within("the monitor shows both meetings", async {
        loop {
            let statistic = snapshot(&broker).await["rendezvousStatistic"].clone();
            if statistic["waiting"] == 1 && statistic["joined"] == 1 && statistic["refused"]["full"] == 1 {
                return statistic;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let meetings = statistic["meetings"].as_array().unwrap();
    assert_eq!(meetings.len(), 2, "{statistic}");
    assert_eq!((&meetings[0]["id"], &meetings[0]["joined"]), (&"joined".into(), &true.into()));
    let subjects: Vec<&str> =
        meetings[0]["peers"].as_array().unwrap().iter().map(|p| p["subject"].as_str().unwrap()).collect();
    assert_eq!(subjects, ["Micronets Manager Cert", "Micronets Gateway Cert"]);
    assert!(meetings[0]["peers"][0]["address"].as_str().unwrap().starts_with("127.0.0.1:"));
    let hellos = (hello("manager", "1").len() + hello("gateway", "2").len()) as u64;
    assert_eq!(meetings[0]["bytes"], hellos, "the HELLOs crossed, counted as they moved");
    assert_eq!((&meetings[1]["id"], &meetings[1]["joined"]), (&"waiting/room".into(), &false.into()));

    crate::metrics::scrape_until(&broker, "the rendezvous series", |s| {
        s.get("remoteproxy_rendezvous_meetings", &[("state", "waiting")]) == 1.0
            && s.get("remoteproxy_rendezvous_meetings", &[("state", "joined")]) == 1.0
            && s.get("remoteproxy_rendezvous_refused_total", &[("reason", "full")]) == 1.0
    })
    .await;
}

#[tokio::test]
async fn a_lone_peer_is_closed_after_the_alone_timeout_when_one_is_set() {
    let pki = Pki::new();
    let broker = broker(&pki, |s| s.alone_timeout = Some(Duration::from_millis(300))).await;
    let mut lone = peer(&pki, &broker, "manager", "m").await;
    send(&mut lone, &hello("manager", "1")).await;
    assert_eq!(closed(&mut lone).await, (CloseCode::Away, reasons::ALONE.to_string()));
    // Its place is free: a pair meets there.
    pair(&pki, &broker, "m").await;
}

#[tokio::test]
async fn a_policy_file_lets_each_subject_into_its_meetings_only() {
    let pki = Pki::new();
    let policy = pki.path("policy");
    std::fs::write(
        &policy,
        "# who may meet where\nMicronets Manager Cert: *\nMicronets Gateway Cert: micronets-dhcp-*\n",
    )
    .unwrap();
    let broker = broker(&pki, |s| s.policy_file = Some(policy)).await;
    let (mut manager, mut gateway) = pair(&pki, &broker, "micronets-dhcp-0001").await;
    exchange(&mut manager, &mut gateway).await;
    let mut astray = peer(&pki, &broker, "gateway", "another-site").await;
    assert_eq!(closed(&mut astray).await, (CloseCode::Policy, reasons::NOT_ALLOWED.to_string()));
    let mut unlisted = peer(&pki, &broker, "third", "micronets-dhcp-0002").await;
    assert_eq!(closed(&mut unlisted).await, (CloseCode::Policy, reasons::NOT_ALLOWED.to_string()));
}

#[tokio::test]
async fn a_reload_applies_a_new_policy_and_keeps_the_old_one_over_a_broken_file() {
    let pki = Pki::new();
    let policy = pki.path("policy");
    std::fs::write(&policy, "Micronets Manager Cert: *\n").unwrap();
    let broker = broker(&pki, |s| s.policy_file = Some(policy.clone())).await;
    let mut gateway = peer(&pki, &broker, "gateway", "site-1").await;
    assert_eq!(closed(&mut gateway).await, (CloseCode::Policy, reasons::NOT_ALLOWED.to_string()));

    std::fs::write(&policy, "Micronets Manager Cert: *\nMicronets Gateway Cert: site-*\n").unwrap();
    broker.reloader.reload_all("test");
    let (mut manager, mut gateway) = pair(&pki, &broker, "site-1").await;
    exchange(&mut manager, &mut gateway).await;

    // A file that does not parse changes nothing: the gateway is still let in.
    std::fs::write(&policy, "no colon on this line\n").unwrap();
    broker.reloader.reload_all("test");
    let (mut manager, mut gateway) = pair(&pki, &broker, "site-2").await;
    exchange(&mut manager, &mut gateway).await;
}

/// The certificate the rendezvous listener serves to a peer with `leaf`'s certificate.
async fn served_certificate(pki: &Pki, broker: &Broker, leaf: &str) -> CertificateDer<'static> {
    let tcp = TcpStream::connect(broker.rendezvous.unwrap()).await.unwrap();
    let tls = connector(pki.dir.path(), "root", Some(leaf));
    let stream = within("TLS handshake", tls.connect(ServerName::try_from("localhost").unwrap(), tcp)).await;
    stream.unwrap().get_ref().1.peer_certificates().unwrap()[0].clone()
}

#[tokio::test]
async fn a_reload_serves_a_renewed_certificate_and_a_new_ca() {
    let pki = Pki::new();
    let broker = broker(&pki, |_| {}).await;
    let before = served_certificate(&pki, &broker, "manager").await;
    // A renewal: a new key and certificate for the proxy, from the same root.
    for file in std::fs::read_dir(pki.dir.path()).unwrap() {
        let path = file.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().starts_with("proxy.") {
            std::fs::remove_file(path).unwrap();
        }
    }
    pki.leaf("root", "proxy", "Micronets Websocket Proxy Cert", Some("localhost"));
    broker.reloader.reload_all("test");
    assert_ne!(served_certificate(&pki, &broker, "manager").await, before, "new handshakes get the renewal");
    let (mut manager, mut gateway) = pair(&pki, &broker, "renewed").await;
    exchange(&mut manager, &mut gateway).await;

    // The peers' CA is replaced by another (its file rewritten): its peers get in, the old
    // root's do not. (Peers keep trusting the broker's own root, saved as proxy-root.)
    std::fs::copy(pki.path("root.cert.pem"), pki.path("proxy-root.cert.pem")).unwrap();
    std::fs::copy(pki.path("other-root.cert.pem"), pki.path("root.cert.pem")).unwrap();
    broker.reloader.reload_all("test");
    let old_root = connector(pki.dir.path(), "proxy-root", Some("manager"));
    assert!(try_peer(broker.rendezvous.unwrap(), &old_root, "m").await.is_err());
    let stranger = connector(pki.dir.path(), "proxy-root", Some("stranger"));
    try_peer(broker.rendezvous.unwrap(), &stranger, "m").await.unwrap();
}

#[tokio::test]
async fn a_lone_peer_that_sends_more_than_may_be_held_is_closed() {
    let pki = Pki::new();
    let broker = broker(&pki, |s| s.max_held_messages = 2).await;
    let mut lone = peer(&pki, &broker, "manager", "m").await;
    send(&mut lone, &hello("manager", "1")).await;
    for _ in 0..3 {
        send(&mut lone, EVENT).await;
    }
    assert_eq!(closed(&mut lone).await, (CloseCode::Policy, reasons::TOO_MUCH_HELD.to_string()));
    pair(&pki, &broker, "m").await;
}

/// The first Python that has `websockets`: `python3` on the PATH, else the system's
/// `/usr/bin/python3`, which Debian's python3-websockets serves (a PATH may lead to another
/// Python first, e.g. pyenv's).
fn python_with_websockets() -> String {
    ["python3", "/usr/bin/python3"]
        .into_iter()
        .find(|python| {
            Command::new(python)
                .args(["-c", "import websockets"])
                .output()
                .is_ok_and(|out| out.status.success())
        })
        .expect("no python3 with websockets: install python3-websockets (.ci/run does)")
        .to_string()
}

/// Real Micronets peers: Python `websockets` clients (`tests/fixtures/micronets_peer.py`, written
/// as the Micronets scripts write theirs) meet, exchange a REST request and response, and the
/// gateway is closed with 1001 when the manager leaves. Needs `python3` with `websockets`
/// (Debian: python3-websockets; `.ci/run` installs it).
#[tokio::test]
async fn python_websockets_peers_as_micronets_runs_them_meet_unchanged() {
    let pki = Pki::new();
    let broker = broker(&pki, |_| {}).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/micronets_peer.py");
    let url = format!("wss://127.0.0.1:{}{PREFIX}micronets-dhcp-0001", broker.rendezvous.unwrap().port());
    let python = python_with_websockets();
    let run = |role: &str, id: &str| {
        let mut command = Command::new(&python);
        command.arg(&script).arg(&url).arg(pki.path(&format!("{role}.pkeycert.pem")));
        command.arg(pki.path("root.cert.pem")).arg(role).arg(id);
        tokio::task::spawn_blocking(move || command.output())
    };
    let (gateway, manager) =
        within("both Python peers", async { tokio::join!(run("gateway", "gw-1"), run("manager", "m-1")) })
            .await;
    let (gateway, manager) = (gateway.unwrap(), manager.unwrap());
    let (gateway, manager) = (gateway.expect("python3 runs"), manager.expect("python3 runs"));
    let text = |out: &std::process::Output| String::from_utf8_lossy(&out.stdout).to_string();
    let why = |out: &std::process::Output| String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        manager.status.success(),
        "the manager failed (python3 with websockets is needed): {}",
        why(&manager)
    );
    assert!(gateway.status.success(), "the gateway failed: {}", why(&gateway));
    assert!(text(&manager).contains("\"REST:RESPONSE\""), "{}", text(&manager));
    assert!(text(&gateway).contains("\"REST:REQUEST\""), "{}", text(&gateway));
    assert!(
        text(&gateway).contains("closed 1001"),
        "the gateway was told its partner left: {}",
        text(&gateway)
    );
}

/// A peer that said its HELLO is no longer a pending handshake: meetings that wait for hours
/// must not fill `maxPendingHandshakes` and lock everyone else out.
#[tokio::test]
async fn peers_past_their_hello_do_not_count_as_pending_handshakes() {
    let pki = Pki::new();
    let rendezvous = settings(pki.dir.path(), "proxy", "root");
    let broker = Broker::builder()
        .config(|c| {
            c.rendezvous = Some(rendezvous);
            c.limits.max_pending_handshakes = Some(2);
        })
        .start()
        .await;
    let _first = pair(&pki, &broker, "m").await;
    let _second = pair(&pki, &broker, "n").await;
}
