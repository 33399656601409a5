//! Renewing the certificate without a restart, through the real binary: SIGHUP and the file watch
//! (certbot's symlink swap included) serve the new certificate to new handshakes while a running
//! tunnel keeps flowing, and a broken new certificate keeps the old one with one error line.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::binary::{Proc, stream_client, write_config};
use crate::common::{Client, Kind, WAIT};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls").join(name)
}

fn leaf(name: &str) -> CertificateDer<'static> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_file_iter(fixture(name)).unwrap().next().unwrap().unwrap()
}

/// A client that trusts both test certificates, so it can tell which one it was served.
fn connector() -> TlsConnector {
    let mut roots = RootCertStore::empty();
    for name in ["rsa.crt", "ecdsa.crt"] {
        roots.add(leaf(name)).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// A JSON client over a fresh TLS handshake, and the leaf certificate that handshake was served.
async fn connect(broker: &Proc) -> (Client, CertificateDer<'static>) {
    let tcp = TcpStream::connect(broker.tcp).await.unwrap();
    let tls = connector().connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
    let served = tls.get_ref().1.peer_certificates().unwrap()[0].clone().into_owned();
    (stream_client(Kind::Tcp, Box::new(tls)), served)
}

/// Replaces `to` with `from`'s content in one rename, as a deploy script would.
fn put(from: &Path, to: &Path) {
    let next = to.with_extension("next");
    std::fs::copy(from, &next).unwrap();
    std::fs::rename(&next, to).unwrap();
}

/// A broker (mock authenticator) serving `dir/certificate.pem` with `dir/key.pem`.
async fn start(ssl_keys: &str) -> Proc {
    let dir = tempfile::tempdir().unwrap();
    let (certificate, key) = (dir.path().join("certificate.pem"), dir.path().join("key.pem"));
    put(&fixture("rsa.crt"), &certificate);
    put(&fixture("rsa.key"), &key);
    let unix = dir.path().join("proxy.socket");
    let ssl = format!(
        "[SSL]\nenabled=true\ncertificate={}\ncertificateKey={}\n{ssl_keys}",
        certificate.display(),
        key.display()
    );
    let config = write_config(dir.path(), 0, 0, &unix, "shutdownGracePeriod=1000", &ssl);
    let mut broker = Proc::launch_file(dir, &config, &["-m", "--verbose"]);
    broker.listening().await;
    broker
}

/// Waits until a new handshake is served `expected`.
async fn served_eventually(broker: &Proc, expected: &CertificateDer<'static>) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, served) = connect(broker).await;
        if &served == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never served the new certificate:\n{}",
            broker.stderr_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn sighup_serves_a_new_certificate_while_a_tunnel_keeps_flowing() {
    let broker = start("certificateCheckInterval=0\n").await;
    let (mut a, served) = connect(&broker).await;
    assert_eq!(served, leaf("rsa.crt"));
    let (mut b, _) = connect(&broker).await;
    assert_eq!(
        a.authenticate("{11111111-1111-1111-1111-111111111111}", "a", "reload", None).await,
        "AuthenticationErrorNoError"
    );
    assert_eq!(
        b.authenticate("{22222222-2222-2222-2222-222222222222}", "b", "reload", None).await,
        "AuthenticationErrorNoError"
    );
    a.wait_tunnel().await;
    b.wait_tunnel().await;

    put(&fixture("ecdsa.crt"), &broker.dir.path().join("certificate.pem"));
    put(&fixture("ecdsa.key"), &broker.dir.path().join("key.pem"));
    // Without the watch, nothing changes until the signal.
    assert_eq!(connect(&broker).await.1, leaf("rsa.crt"));
    broker.signal("HUP");
    broker.logged("SIGHUP: TLS certificate reloaded").await;
    assert_eq!(connect(&broker).await.1, leaf("ecdsa.crt"));

    // The tunnel set up on the old certificate goes on, both ways.
    a.send_bytes(b"after the renewal").await;
    assert_eq!(b.recv_data(17).await, b"after the renewal");
    b.send_bytes(b"still here").await;
    assert_eq!(a.recv_data(10).await, b"still here");
}

#[tokio::test]
async fn the_watch_reloads_a_symlink_swap_and_keeps_the_old_certificate_over_a_broken_one() {
    let broker = start("certificateCheckInterval=100\n").await;
    let dir = broker.dir.path();
    let (certificate, key) = (dir.join("certificate.pem"), dir.join("key.pem"));

    // A broken certificate: the old one stays, and the failure is said once, not at every check.
    std::fs::write(certificate.with_extension("next"), "not a certificate\n").unwrap();
    std::fs::rename(certificate.with_extension("next"), &certificate).unwrap();
    broker.logged("the TLS certificate was not reloaded, the previous one is still served").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let errors = broker.stderr_text().matches("was not reloaded").count();
    assert_eq!(errors, 1, "{}", broker.stderr_text());
    assert_eq!(connect(&broker).await.1, leaf("rsa.crt"));

    // certbot's layout: live/ names are symlinks into archive/, switched to a new version.
    let archive = dir.join("archive");
    std::fs::create_dir(&archive).unwrap();
    std::fs::copy(fixture("ecdsa.crt"), archive.join("cert2.pem")).unwrap();
    std::fs::copy(fixture("ecdsa.key"), archive.join("key2.pem")).unwrap();
    for (link, target) in [(&key, "key2.pem"), (&certificate, "cert2.pem")] {
        let next = link.with_extension("link");
        std::os::unix::fs::symlink(archive.join(target), &next).unwrap();
        std::fs::rename(&next, link).unwrap();
    }
    served_eventually(&broker, &leaf("ecdsa.crt")).await;
    broker.logged("certificate files changed: TLS certificate reloaded").await;
}

#[tokio::test]
async fn sighup_applies_a_new_log_level_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let unix = dir.path().join("proxy.socket");
    let config = write_config(dir.path(), 0, 0, &unix, "logLevel=info", "");
    let mut broker = Proc::launch_file(dir, &config, &["-m"]);
    broker.ready().await;
    const DEBUG_LINE: &str = "remoteproxy::transport::accept: connected";
    assert!(!broker.stderr_text().contains(DEBUG_LINE), "{}", broker.stderr_text());

    let text =
        std::fs::read_to_string(&config).unwrap().replace("logLevel=info", "logLevel=info,remoteproxy=debug");
    std::fs::write(&config, text).unwrap();
    broker.signal("HUP");
    broker.logged("SIGHUP: log level applied").await;
    broker.ready().await;
    broker.logged(DEBUG_LINE).await;
}
