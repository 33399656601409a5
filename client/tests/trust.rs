//! Trusting a broker without `-i`: its self-signed certificate made the common way given to
//! `--ca` and its fingerprint given to `--pin` (the generated certificate, as the broker writes it
//! with `--write-certificate`, is what every other client test gives to `--ca`). Every refusal is
//! one plain line.

use remoteproxy_testkit as common;
mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::{Broker, Kind, random_bytes, within};
use support::spawn_client;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_remoteproxy-client");

/// `openssl req -x509 -newkey rsa:2048 -nodes`: the common recipe, which marks the certificate
/// CA:TRUE.
fn openssl_self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl is installed (.ci/run installs it)");
    assert!(status.success());
    (cert, key)
}

/// A v1 client printing what its partner sends, with the given trust flags and no `-i`.
fn client(url: &str, trust: &[&str], nonce: &str) -> Child {
    let mut args = vec!["-u", url, "-n", nonce];
    args.extend_from_slice(trust);
    spawn_client(&args, Some("trust"))
}

/// The client reaches its partner through the broker at `url`: the handshake was trusted.
async fn tunnel_works(broker: &Broker, url: &str, trust: &[&str]) {
    let nonce = uuid::Uuid::new_v4().to_string();
    let mut raw = broker.connect(Kind::Unix).await;
    assert_eq!(raw.authenticate("raw", "raw", "trust", Some(&nonce)).await, "AuthenticationErrorNoError");
    let mut child = client(url, trust, &nonce);
    raw.wait_tunnel().await;
    let data = random_bytes(1000);
    raw.send_bytes(&data).await;
    let mut got = vec![0u8; data.len()];
    within("the data", child.stdout.as_mut().unwrap().read_exact(&mut got)).await.unwrap();
    assert_eq!(got, data, "{trust:?}");
}

/// The client is refused: exit 1 and one plain line naming the way out.
async fn refused(url: &str, trust: &[&str]) -> String {
    let mut child = client(url, trust, "refused");
    let status = within("the refusal", child.wait()).await.unwrap();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).await.unwrap();
    assert_eq!(status.code(), Some(1), "{trust:?}: {stderr}");
    let stderr: String = stderr.lines().filter(|l| !l.contains("WARNING: --ignore-ssl")).collect();
    assert_eq!(stderr.lines().count(), 1, "{trust:?}: one line: {stderr}");
    for debug in ["https://", "Error(", "{", "::"] {
        assert!(!stderr.contains(debug), "{trust:?}: no debug text or links: {stderr}");
    }
    stderr
}

fn fingerprint(der: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(der);
    digest.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

#[tokio::test]
async fn an_openssl_self_signed_certificate_is_trusted_with_ca_and_pin() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = openssl_self_signed(dir.path());
    let broker = Broker::builder()
        .config(|c| {
            c.tls.certificate = Some(cert.clone());
            c.tls.certificate_key = Some(key.clone());
        })
        .start()
        .await;
    let url = format!("ssl://localhost:{}", broker.tcp.port());
    let ws_url = format!("wss://localhost:{}", broker.websocket.port());
    tunnel_works(&broker, &url, &["--ca", cert.to_str().unwrap()]).await;
    tunnel_works(&broker, &ws_url, &["--ca", cert.to_str().unwrap()]).await;
    let pin = format!("sha256:{}", fingerprint(broker.certificates[0].as_ref()));
    tunnel_works(&broker, &url, &["--pin", &pin]).await;
    // Lower case without colons works too.
    let bare = pin.replace(':', "").replace("sha256", "sha256:").to_lowercase();
    tunnel_works(&broker, &url, &["--pin", &bare]).await;

    // Without trust: refused, pointing at --ca and --pin.
    let stderr = refused(&url, &[]).await;
    assert!(
        stderr.contains("not trusted") && stderr.contains("--ca") && stderr.contains("--pin"),
        "{stderr}"
    );
    // Another certificate's fingerprint: refused.
    let other = format!("sha256:{}", "AB:".repeat(31) + "AB");
    let stderr = refused(&url, &["--pin", &other]).await;
    assert!(stderr.contains("not trusted"), "{stderr}");
    // A pin that is not a fingerprint is a usage error.
    let mut child = client(&url, &["--pin", "sha256:nothex"], "usage");
    assert_eq!(within("usage", child.wait()).await.unwrap().code(), Some(2));
}

/// The usual mistakes each get one line that says what was probably meant.
#[tokio::test]
async fn mistakes_get_one_line_pointing_at_the_fix() {
    let broker = Broker::start().await;
    let plain = Broker::builder().tls(false).start().await;
    let cases: Vec<(String, Vec<&str>, Vec<&str>)> = vec![
        // TLS towards a plain port.
        (format!("ssl://127.0.0.1:{}", plain.tcp.port()), vec![], vec!["does not speak TLS", "tcp://"]),
        // Plain towards a TLS port.
        (format!("tcp://{}", broker.tcp), vec![], vec!["TLS port", "ssl://"]),
        // WebSocket towards the TCP port.
        (format!("wss://{}", broker.tcp), vec!["-i"], vec!["does not speak WebSocket", "1212"]),
        // A v1 client on the v2 port.
        (format!("ssl://{}", broker.tcp2), vec!["-i"], vec!["No such namespace", "v1 port", "1213"]),
    ];
    for (url, flags, needles) in cases {
        let stderr = refused(&url, &flags).await;
        for needle in needles {
            assert!(stderr.contains(needle), "{url}: {needle:?} in {stderr}");
        }
    }
    // A v2 client on the v1 port.
    let mut child = Command::new(BIN)
        .args(["tunnel-client", "-u", &format!("ssl://{}", broker.tcp), "-i", "--server-uuid"])
        .arg(uuid::Uuid::new_v4().to_string())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    assert_eq!(within("the v2 client", child.wait()).await.unwrap().code(), Some(1));
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).await.unwrap();
    assert!(stderr.contains("v2 TunnelProxy port") && stderr.contains("2213"), "{stderr}");
    // No scheme at all: a usage error naming the schemes.
    let mut child = client("127.0.0.1:1213", &[], "x");
    assert_eq!(within("usage", child.wait()).await.unwrap().code(), Some(2));
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).await.unwrap();
    assert!(stderr.contains("did you mean ssl://127.0.0.1:1213"), "{stderr}");
}
