//! The broker's command line. In the library so that the package's man page and shell
//! completions are generated from the very flags `main.rs` parses.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};

/// The remoteproxy tunnel broker: devices and apps behind NAT meet here and are joined into a
/// tunnel. Compatible with nymea-remoteproxy clients.
#[derive(Debug, Parser)]
#[command(name = "remoteproxy", version, disable_version_flag = true)]
pub struct Cli {
    /// The configuration file (nymea-remoteproxy INI format). Without it the built-in defaults
    /// are used.
    #[arg(short = 'c', long = "configuration", value_name = "FILE")]
    pub configuration: Option<PathBuf>,
    /// Accept every token. For local trials and tests only, never on a public broker.
    #[arg(short = 'm', long = "mock-authenticator")]
    pub mock_authenticator: bool,
    /// Also write the log to this file.
    #[arg(short = 'l', long = "logging", value_name = "FILE")]
    pub logging: Option<PathBuf>,
    /// Write the certificate the broker serves (the generated one when none is configured) to
    /// this file as PEM, for clients to trust with `remoteproxy-client --ca FILE`.
    #[arg(long = "write-certificate", value_name = "FILE")]
    pub write_certificate: Option<PathBuf>,
    /// Print debug output.
    #[arg(long)]
    pub verbose: bool,
    /// Check the configuration (including certificates) and exit.
    #[arg(long = "check-config")]
    pub check_config: bool,
    /// Print every configuration key with its default and what it does, as a commented
    /// configuration file, and exit.
    #[arg(long = "print-config")]
    pub print_config: bool,
    /// Print the version and exit.
    #[arg(short = 'v', long = "version", action = ArgAction::Version)]
    pub version: Option<bool>,
    /// A tool instead of the broker.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The broker's tools.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make the certificates of a rendezvous deployment: a root CA, then leaves it signs (EC
    /// P-256, in the shape the Micronets scripts make them).
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Ask the running broker to drain: it takes no new clients or pairings, lets its tunnels
    /// finish within shutdownGracePeriod, then exits; in a cluster its clients reconnect to the
    /// other nodes at once. Uses the monitor socket of the configuration given with -c.
    Drain(DrainArgs),
}

/// `remoteproxy drain`.
#[derive(Debug, Args)]
pub struct DrainArgs {
    /// The broker's monitor socket (default: monitorSocket of the -c configuration, or of the
    /// built-in defaults).
    #[arg(long = "monitor-socket", value_name = "PATH")]
    pub monitor_socket: Option<std::path::PathBuf>,
}

/// `remoteproxy certs ...`.
#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// A self-signed root CA: writes BASENAME.cert.pem and BASENAME.key.pem (keep the key
    /// offline; it signs every leaf).
    Root(RootArgs),
    /// A leaf signed by the root: writes BASENAME.cert.pem, BASENAME.key.pem and
    /// BASENAME.pkeycert.pem (certificate and key in one file, as Micronets peers load it).
    Leaf(LeafArgs),
}

/// What every certificate has: where it goes, who it names, how long it lives.
#[derive(Debug, Args)]
pub struct CertificateArgs {
    /// Files are written as BASENAME.cert.pem, BASENAME.key.pem (and BASENAME.pkeycert.pem);
    /// none is ever overwritten.
    #[arg(long = "cert-basename", value_name = "BASENAME")]
    pub cert_basename: PathBuf,
    /// The subject's organisation (O=), which names the peer.
    #[arg(long = "subject-org-name", value_name = "NAME")]
    pub subject_org_name: String,
    /// Days the certificate is valid.
    #[arg(long = "days", visible_alias = "expiration-in-days", default_value_t = 3650)]
    pub days: u32,
}

/// `remoteproxy certs root`.
#[derive(Debug, Args)]
pub struct RootArgs {
    /// Where, who, how long.
    #[command(flatten)]
    pub certificate: CertificateArgs,
}

/// `remoteproxy certs leaf`.
#[derive(Debug, Args)]
pub struct LeafArgs {
    /// Where, who, how long.
    #[command(flatten)]
    pub certificate: CertificateArgs,
    /// The root's certificate (PEM).
    #[arg(long = "ca-cert", visible_alias = "ca-certfile", value_name = "FILE")]
    pub ca_cert: PathBuf,
    /// The root's key (PEM).
    #[arg(long = "ca-key", visible_alias = "ca-keyfile", value_name = "FILE")]
    pub ca_key: PathBuf,
    /// For the broker's own certificate: its host name or IP address, put in the subject (CN)
    /// and the subject alternative name, for peers that check the name.
    #[arg(long = "server-name", value_name = "NAME")]
    pub server_name: Option<String>,
}
