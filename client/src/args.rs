//! The command line, compatible with the reference client's flags where they overlap.
//!
//! Without a subcommand the client speaks the v1 token-paired API (the reference client's
//! flags); `tunnel-server` and `tunnel-client` speak the v2 TunnelProxy API.

// A flag's doc comment is its `--help` text; the flattened groups and the values behind them
// have none of their own to give.
#![allow(missing_docs)]

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};

/// remoteproxy-client: open a tunnel through a remoteproxy (or nymea-remoteproxy) broker.
///
/// Without a mode flag it prints what the partner sends. --stdio makes it an SSH ProxyCommand or a
/// pipe; --listen and --connect join the tunnel to a local TCP connection. The tunnel-server and
/// tunnel-client subcommands use the v2 TunnelProxy API instead of a shared token.
#[derive(Debug, Parser)]
#[command(
    name = "remoteproxy-client",
    version,
    disable_version_flag = true,
    subcommand_negates_reqs = true,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// The token both ends present. Also read from REMOTEPROXY_TOKEN, which keeps it out of `ps`.
    #[arg(short = 't', long = "token", env = "REMOTEPROXY_TOKEN", hide_env_values = true, required = true)]
    pub token: Option<String>,
    /// The nonce that, with the token, names this tunnel.
    #[arg(short = 'n', long = "nonce")]
    pub nonce: Option<String>,
    /// Send a ping when the tunnel opens and a second after each chunk that arrives.
    #[arg(short = 'p', long = "pingpong")]
    pub pingpong: bool,
    /// This client's name, shown to the partner.
    #[arg(long, default_value = "remoteproxy-client")]
    pub name: String,
    /// This client's uuid (random when not given).
    #[arg(long)]
    pub uuid: Option<String>,
    #[command(flatten)]
    pub broker: BrokerArgs,
    #[command(flatten)]
    pub mode: Mode,
    #[command(flatten)]
    pub keep: Keep,
    /// Print the version and exit.
    #[arg(short = 'v', long = "version", action = ArgAction::Version)]
    pub version: Option<bool>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// At most one of the modes.
#[derive(Debug, Args)]
#[group(multiple = false)]
pub struct Mode {
    /// Pipe stdin and stdout through the tunnel. stdin's end half-closes the tunnel (towards a
    /// broker that cannot half-close over WebSocket it sends nothing); the client keeps printing
    /// until the partner ends, and exits 0 only when every byte arrived both ways.
    #[arg(long)]
    pub stdio: bool,
    /// Accept one local TCP connection on ADDR, then open the tunnel and join them.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Open the tunnel, then connect to the local TCP service at ADDR and join them.
    #[arg(long, value_name = "ADDR")]
    pub connect: Option<String>,
}

/// How long a device stays available.
#[derive(Debug, Args)]
pub struct Keep {
    /// With --connect: stay available until interrupted. Authenticate again when the partner
    /// did not come within the broker's aloneTimeout and after each tunnel ends, waiting longer
    /// after each error (0.5 s doubling to 30 s). For always-on devices the v2 API
    /// (tunnel-server) is the better fit: one registration serves any number of clients.
    #[arg(long, requires = "connect")]
    pub keep: bool,
}

/// The v2 TunnelProxy roles.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Register at the broker under a uuid and serve every client that names it (v2 API).
    ///
    /// With --connect each client gets its own connection to a local TCP service; without it,
    /// what clients send is printed. Stays registered (reconnecting when the broker goes away)
    /// until interrupted.
    TunnelServer(TunnelServerArgs),
    /// Reach a registered server by its uuid (v2 API).
    ///
    /// Without a mode flag it prints what the server sends.
    TunnelClient(TunnelClientArgs),
}

/// How to reach the broker: the same flags for the v1 command line and the v2 subcommands.
#[derive(Debug, Args)]
pub struct BrokerArgs {
    /// The broker: ssl://HOST:PORT (TLS over TCP), tcp://, wss://, ws:// or unix:///PATH.
    /// [default: ssl://127.0.0.1:1213 (v1) or :2213 (tunnel-server, tunnel-client); with --ws
    /// wss:// on 1212 or 2212]
    #[arg(short = 'u', long = "url")]
    pub url: Option<String>,
    /// Use WebSocket: ssl:// becomes wss://, tcp:// becomes ws:// (same host and port).
    #[arg(long)]
    pub ws: bool,
    /// Do not verify the server certificate (dangerous; for self-signed test brokers).
    #[arg(short = 'i', long = "ignore-ssl", visible_alias = "igore-ssl")]
    pub ignore_ssl: bool,
    /// Trust the CA certificates in this PEM file, or the broker's own (self-signed) certificate
    /// (the broker writes its generated one with --write-certificate).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Trust exactly the certificate with this SHA-256 fingerprint (sha256:3E:42:..., as the
    /// broker logs it). May be given more than once.
    #[arg(long, value_name = "sha256:HEX")]
    pub pin: Vec<String>,
    /// Present this client certificate (PEM).
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// The key of --cert (PEM).
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Print what the client does.
    #[arg(long)]
    pub verbose: bool,
    /// Print the JSON traffic too (tokens are never printed).
    #[arg(long = "very-verbose")]
    pub very_verbose: bool,
}

/// `tunnel-server`.
#[derive(Debug, Args)]
pub struct TunnelServerArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// The server's uuid; clients reach the server with it.
    #[arg(long)]
    pub uuid: String,
    /// The server's name.
    #[arg(long, default_value = "remoteproxy-client")]
    pub name: String,
    /// Connect each client to the local TCP service at ADDR (e.g. 127.0.0.1:22).
    #[arg(long, value_name = "ADDR")]
    pub connect: Option<String>,
}

/// `tunnel-client`.
#[derive(Debug, Args)]
pub struct TunnelClientArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// The uuid of the server to reach.
    #[arg(long = "server-uuid", value_name = "UUID")]
    pub server_uuid: String,
    /// This client's uuid (random when not given).
    #[arg(long)]
    pub uuid: Option<String>,
    /// This client's name, shown to the server.
    #[arg(long, default_value = "remoteproxy-client")]
    pub name: String,
    #[command(flatten)]
    pub mode: ClientMode,
}

/// At most one of the tunnel-client modes.
#[derive(Debug, Args)]
#[group(multiple = false)]
pub struct ClientMode {
    /// Pipe stdin and stdout through the connection. The v2 API cannot pass on the end of stdin,
    /// so it sends nothing: the client keeps printing what the server sends until the server
    /// ends the connection (a request piped in gets its whole reply).
    #[arg(long)]
    pub stdio: bool,
    /// Serve every local TCP connection on ADDR, each as a client of its own, until interrupted
    /// (like ssh -L). A local connection that ends its sending side ends its client.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
}
