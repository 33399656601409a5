//! `remoteproxy certs`: the certificates a rendezvous deployment needs, made without shell
//! scripts. `root` makes the shared root CA; `leaf` makes a certificate it signs, for the broker
//! (with `--server-name`) or for a peer. Both use EC P-256, as the Micronets scripts
//! (`gen-ocf-root-cert`, `gen-ocf-leaf-cert`) do, and write the same files:
//! `<basename>.cert.pem`, `<basename>.key.pem` and, for a leaf, `<basename>.pkeycert.pem` (the
//! certificate followed by its key, which Micronets peers and `[RendezvousServer] certificate`
//! load as one file). A leaf has no extended key usage and, unless `--server-name` is given, no
//! subject alternative name: the shape Micronets issues, so old and new leaves are alike.
//!
//! The flags take the Micronets scripts' names as aliases (`--cert-basename`,
//! `--expiration-in-days`, `--ca-certfile`, `--ca-keyfile`), so an operator's commands carry
//! over unchanged. Keys are written with mode 0600 and never overwrite an existing file.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::cli::{CertsCommand, LeafArgs, RootArgs};

/// What went wrong, in one line that names the file. (Fields are the file and the cause; no
/// key material is ever part of a message.)
#[allow(missing_docs)]
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error("cannot read {path}: {error}")]
    Read { path: PathBuf, error: std::io::Error },
    #[error("cannot write {path}: {error}")]
    Write { path: PathBuf, error: std::io::Error },
    #[error("{path} exists; remove it or choose another --cert-basename")]
    Exists { path: PathBuf },
    #[error("{path} is not a PEM certificate")]
    NotCertificate { path: PathBuf },
    #[error("{path} is not a PEM private key (PKCS#8, as `remoteproxy certs root` writes)")]
    NotKey { path: PathBuf },
    #[error("--days must be at least 1")]
    Days,
    #[error("cannot make the certificate: {0}")]
    Generate(String),
}

/// The files one command wrote.
#[derive(Debug)]
pub struct Written(pub Vec<PathBuf>);

/// Runs `remoteproxy certs ...`.
pub fn run(command: &CertsCommand) -> Result<Written, CertsError> {
    match command {
        CertsCommand::Root(args) => root(args),
        CertsCommand::Leaf(args) => leaf(args),
    }
}

/// A self-signed root CA: may sign certificates (and revocation lists), nothing else.
pub fn root(args: &RootArgs) -> Result<Written, CertsError> {
    let mut params = base_params(&args.certificate.subject_org_name, args.certificate.days)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(generate)?;
    let certificate = params.self_signed(&key).map_err(generate)?;
    let (cert_path, key_path) = paths(&args.certificate.cert_basename);
    check_free(&[&cert_path, &key_path])?;
    write(&cert_path, &certificate.pem(), false)?;
    write(&key_path, &key.serialize_pem(), true)?;
    Ok(Written(vec![cert_path, key_path]))
}

/// A leaf signed by the root in `--ca-cert` / `--ca-key`.
pub fn leaf(args: &LeafArgs) -> Result<Written, CertsError> {
    let ca_pem = read(&args.ca_cert)?;
    let ca_key_pem = read(&args.ca_key)?;
    let ca_key =
        KeyPair::from_pem(&ca_key_pem).map_err(|_| CertsError::NotKey { path: args.ca_key.clone() })?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key)
        .map_err(|_| CertsError::NotCertificate { path: args.ca_cert.clone() })?;
    let mut params = base_params(&args.certificate.subject_org_name, args.certificate.days)?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    if let Some(name) = &args.server_name {
        // The broker's own certificate: peers that check the host name find it here.
        params.distinguished_name.push(DnType::CommonName, name.as_str());
        let san = match name.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(name.clone().try_into().map_err(generate)?),
        };
        params.subject_alt_names = vec![san];
    }
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(generate)?;
    let certificate = params.signed_by(&key, &issuer).map_err(generate)?;
    let (cert_path, key_path) = paths(&args.certificate.cert_basename);
    let combined_path = with_suffix(&args.certificate.cert_basename, ".pkeycert.pem");
    check_free(&[&cert_path, &key_path, &combined_path])?;
    let (cert_pem, key_pem) = (certificate.pem(), key.serialize_pem());
    write(&cert_path, &cert_pem, false)?;
    write(&key_path, &key_pem, true)?;
    write(&combined_path, &format!("{cert_pem}{key_pem}"), true)?;
    Ok(Written(vec![cert_path, key_path, combined_path]))
}

/// Subject `O=<org>`, valid from an hour ago (clocks differ) for `days` days.
fn base_params(org: &str, days: u32) -> Result<CertificateParams, CertsError> {
    if days == 0 {
        return Err(CertsError::Days);
    }
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, org);
    params.distinguished_name = name;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(i64::from(days));
    Ok(params)
}

fn paths(basename: &Path) -> (PathBuf, PathBuf) {
    (with_suffix(basename, ".cert.pem"), with_suffix(basename, ".key.pem"))
}

fn with_suffix(basename: &Path, suffix: &str) -> PathBuf {
    let mut name = basename.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn check_free(paths: &[&PathBuf]) -> Result<(), CertsError> {
    match paths.iter().find(|p| p.exists()) {
        Some(path) => Err(CertsError::Exists { path: (*path).clone() }),
        None => Ok(()),
    }
}

fn read(path: &Path) -> Result<String, CertsError> {
    std::fs::read_to_string(path).map_err(|error| CertsError::Read { path: path.to_path_buf(), error })
}

/// Creates `path` (never replacing a file), mode 0600 for secrets and 0644 otherwise.
fn write(path: &Path, text: &str, secret: bool) -> Result<(), CertsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let failed = |error| CertsError::Write { path: path.to_path_buf(), error };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(path)
        .map_err(failed)?;
    file.write_all(text.as_bytes()).map_err(failed)
}

fn generate(error: rcgen::Error) -> CertsError {
    CertsError::Generate(error.to_string())
}

#[cfg(test)]
#[path = "certs_tests.rs"]
mod tests;
