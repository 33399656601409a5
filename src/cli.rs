//! The broker's command line. In the library so that the package's man page and shell
//! completions are generated from the very flags `main.rs` parses.

use std::path::PathBuf;

use clap::{ArgAction, Parser};

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
}
