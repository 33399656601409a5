//! The command line, compatible with the reference client's flags where they overlap.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{ArgAction, Args, Parser};

/// remoteproxy-client: open a tunnel through a remoteproxy (or nymea-remoteproxy) broker.
///
/// Without a mode flag it prints what the partner sends. --stdio makes it an SSH ProxyCommand or a
/// pipe; --listen and --connect join the tunnel to a local TCP connection.
#[derive(Debug, Parser)]
#[command(name = "remoteproxy-client", version, disable_version_flag = true)]
pub struct Cli {
    /// The broker: ssl://HOST:PORT (TLS over TCP), tcp://, wss://, ws:// or unix:///PATH.
    /// [default: ssl://127.0.0.1:1213, with --ws wss://127.0.0.1:1212]
    #[arg(short = 'u', long = "url")]
    pub url: Option<String>,
    /// The token both ends present. Also read from REMOTEPROXY_TOKEN, which keeps it out of `ps`.
    #[arg(short = 't', long = "token", env = "REMOTEPROXY_TOKEN", hide_env_values = true)]
    pub token: String,
    /// The nonce that, with the token, names this tunnel.
    #[arg(short = 'n', long = "nonce")]
    pub nonce: Option<String>,
    /// Do not verify the server certificate (dangerous; for self-signed test brokers).
    #[arg(short = 'i', long = "ignore-ssl", visible_alias = "igore-ssl")]
    pub ignore_ssl: bool,
    /// Send a ping when the tunnel opens and a second after each chunk that arrives.
    #[arg(short = 'p', long = "pingpong")]
    pub pingpong: bool,
    /// This client's name, shown to the partner.
    #[arg(long, default_value = "remoteproxy-client")]
    pub name: String,
    /// This client's uuid (random when not given).
    #[arg(long)]
    pub uuid: Option<String>,
    /// Use WebSocket: ssl:// becomes wss://, tcp:// becomes ws:// (same host and port).
    #[arg(long)]
    pub ws: bool,
    /// Print what the client does.
    #[arg(long)]
    pub verbose: bool,
    /// Print the JSON traffic too (tokens are never printed).
    #[arg(long = "very-verbose")]
    pub very_verbose: bool,
    /// Trust the CA certificates in this PEM file.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Present this client certificate (PEM).
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// The key of --cert (PEM).
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    #[command(flatten)]
    pub mode: Mode,
    /// Print the version and exit.
    #[arg(short = 'v', long = "version", action = ArgAction::Version)]
    pub version: Option<bool>,
}

/// At most one of the modes.
#[derive(Debug, Args)]
#[group(multiple = false)]
pub struct Mode {
    /// Pipe stdin and stdout through the tunnel. stdin's end half-closes the tunnel (closes it on
    /// WebSocket); the tunnel's end ends the process.
    #[arg(long)]
    pub stdio: bool,
    /// Accept one local TCP connection on ADDR, then open the tunnel and join them.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Open the tunnel, then connect to the local TCP service at ADDR and join them.
    #[arg(long, value_name = "ADDR")]
    pub connect: Option<String>,
}
