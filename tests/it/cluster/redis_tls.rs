//! Nodes that reach Redis over TLS (`rediss://`, a private CA, client certificates as Redis asks
//! by default) pair peers across nodes; a node that does not trust Redis's certificate never
//! talks to it in clear and says so.

use std::path::Path;

use remoteproxy::certs;
use remoteproxy::cli::{CertificateArgs, LeafArgs, RootArgs};
use serde_json::json;

use super::v1::{UUID_A, UUID_B, both_ways};
use super::{Node, Redis};
use crate::common::Kind;

const OK: &str = "AuthenticationErrorNoError";

/// A root CA and two leaves from it: Redis's (for 127.0.0.1) and the nodes'.
fn pki(dir: &Path) {
    let names = |base: &str, org: &str| CertificateArgs {
        cert_basename: dir.join(base),
        subject_org_name: org.to_string(),
        days: 2,
    };
    certs::root(&RootArgs { certificate: names("ca", "Test Redis CA") }).unwrap();
    certs::root(&RootArgs { certificate: names("other-ca", "Somebody Else") }).unwrap();
    for (base, server_name) in [("redis", Some("127.0.0.1")), ("node", None)] {
        certs::leaf(&LeafArgs {
            certificate: names(base, "Test"),
            ca_cert: dir.join("ca.cert.pem"),
            ca_key: dir.join("ca.key.pem"),
            server_name: server_name.map(str::to_string),
        })
        .unwrap();
    }
}

async fn tls_redis(dir: &Path) -> Redis {
    let file = |name: &str| dir.join(name).display().to_string();
    Redis::start_tls(vec![
        "--tls-cert-file".into(),
        file("redis.cert.pem"),
        "--tls-key-file".into(),
        file("redis.key.pem"),
        "--tls-ca-cert-file".into(),
        file("ca.cert.pem"),
        "--tls-auth-clients".into(),
        "yes".into(),
    ])
    .await
}

fn keys(dir: &Path, ca: &str) -> String {
    let file = |name: &str| dir.join(name).display().to_string();
    format!(
        "redisCaCertificate={}\nredisCertificate={}\nredisCertificateKey={}\n",
        file(ca),
        file("node.cert.pem"),
        file("node.key.pem")
    )
}

#[tokio::test]
async fn nodes_pair_peers_through_a_redis_they_reach_over_tls() {
    let pki_dir = tempfile::tempdir().unwrap();
    pki(pki_dir.path());
    let redis = tls_redis(pki_dir.path()).await;
    let keys = keys(pki_dir.path(), "ca.cert.pem");
    let (a, b) =
        tokio::join!(Node::start_with(&redis, "node-a", &keys), Node::start_with(&redis, "node-b", &keys));
    let mut device = a.client(Kind::Tcp).await;
    assert_eq!(device.authenticate(UUID_A, "device", "token", Some("tls")).await, OK);
    let mut app = b.client(Kind::WebSocket).await;
    assert_eq!(app.authenticate(UUID_B, "app", "token", Some("tls")).await, OK);
    assert_eq!(app.wait_tunnel().await, json!({"name": "device", "uuid": UUID_A}));
    assert_eq!(device.wait_tunnel().await, json!({"name": "app", "uuid": UUID_B}));
    both_ways(device, app, 64 << 10).await;
    assert!(!a.proc.stderr_text().contains("BEGIN"), "no PEM in the log");
}

#[tokio::test]
async fn a_node_that_does_not_trust_redis_certificate_reports_redis_down() {
    let pki_dir = tempfile::tempdir().unwrap();
    pki(pki_dir.path());
    let redis = tls_redis(pki_dir.path()).await;
    let node = Node::launch(&redis, "node-a", &keys(pki_dir.path(), "other-ca.cert.pem")).await;
    node.proc.logged("Redis is unreachable").await;
    assert_eq!(node.metric("remoteproxy_cluster_redis_up").await, 0.0);
    let log = node.proc.stderr_text();
    assert!(!log.contains("connected to Redis"));
    assert!(log.contains("its certificate is not signed by redisCaCertificate"), "{log}");
}
