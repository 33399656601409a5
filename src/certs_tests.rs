use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::*;
use crate::cli::CertificateArgs;

fn names(dir: &Path, base: &str, org: &str) -> CertificateArgs {
    CertificateArgs { cert_basename: dir.join(base), subject_org_name: org.to_string(), days: 3650 }
}

fn make_root(dir: &Path) -> RootArgs {
    let args = RootArgs { certificate: names(dir, "root", "Micronets Websocket Root Cert") };
    root(&args).unwrap();
    args
}

fn leaf_args(dir: &Path, base: &str, server_name: Option<&str>) -> LeafArgs {
    LeafArgs {
        certificate: names(dir, base, "Micronets Manager Cert"),
        ca_cert: dir.join("root.cert.pem"),
        ca_key: dir.join("root.key.pem"),
        server_name: server_name.map(str::to_string),
    }
}

fn der(path: &Path) -> Vec<u8> {
    pem::parse(std::fs::read(path).unwrap()).unwrap().into_contents()
}

#[test]
fn a_leaf_is_signed_by_the_root_in_the_micronets_shape() {
    let dir = tempfile::tempdir().unwrap();
    make_root(dir.path());
    let written = leaf(&leaf_args(dir.path(), "manager", None)).unwrap();
    assert_eq!(written.0.len(), 3);

    let (root_der, leaf_der) =
        (der(&dir.path().join("root.cert.pem")), der(&dir.path().join("manager.cert.pem")));
    let (_, root_cert) = X509Certificate::from_der(&root_der).unwrap();
    let (_, leaf_cert) = X509Certificate::from_der(&leaf_der).unwrap();
    assert!(root_cert.is_ca());
    assert!(!leaf_cert.is_ca());
    assert_eq!(leaf_cert.issuer(), root_cert.subject());
    let org = leaf_cert.subject().iter_organization().next().unwrap().as_str().unwrap().to_string();
    assert_eq!(org, "Micronets Manager Cert");
    assert!(leaf_cert.extended_key_usage().unwrap().is_none(), "no extended key usage, as Micronets issues");
    assert!(leaf_cert.subject_alternative_name().unwrap().is_none(), "no subject alternative name");

    // A TLS server requiring client certificates from this root accepts the leaf.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(root_der)).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build().unwrap();
    verifier.verify_client_cert(&CertificateDer::from(leaf_der), &[], UnixTime::now()).unwrap();
}

#[test]
fn the_combined_file_is_certificate_then_key_and_keys_are_private() {
    let dir = tempfile::tempdir().unwrap();
    make_root(dir.path());
    leaf(&leaf_args(dir.path(), "proxy", Some("proxy.example.net"))).unwrap();
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    assert_eq!(read("proxy.pkeycert.pem"), format!("{}{}", read("proxy.cert.pem"), read("proxy.key.pem")));
    for secret in ["root.key.pem", "proxy.key.pem", "proxy.pkeycert.pem"] {
        let mode = std::fs::metadata(dir.path().join(secret)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{secret}");
    }
    let leaf_der = der(&dir.path().join("proxy.cert.pem"));
    let (_, cert) = X509Certificate::from_der(&leaf_der).unwrap();
    let san = cert.subject_alternative_name().unwrap().expect("--server-name gives a SAN");
    assert_eq!(format!("{:?}", san.value.general_names), "[DNSName(\"proxy.example.net\")]");
}

#[test]
fn nothing_is_overwritten_and_bad_inputs_say_which_file() {
    let dir = tempfile::tempdir().unwrap();
    let args = make_root(dir.path());
    let again = root(&args).unwrap_err().to_string();
    assert!(again.contains("root.cert.pem exists"), "{again}");

    let mut args = leaf_args(dir.path(), "peer", None);
    args.ca_key = dir.path().join("root.cert.pem");
    let error = leaf(&args).unwrap_err().to_string();
    assert!(error.contains("root.cert.pem is not a PEM private key"), "{error}");
    assert!(!dir.path().join("peer.cert.pem").exists(), "nothing written on an error");

    let mut args = leaf_args(dir.path(), "peer", None);
    args.certificate.days = 0;
    assert_eq!(leaf(&args).unwrap_err().to_string(), "--days must be at least 1");
}
