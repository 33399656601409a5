//! Command line.

use std::path::PathBuf;

use clap::Parser;

/// Where the broker's monitor socket is unless `-s` says otherwise (`[ProxyServer]
/// monitorSocket`'s default).
pub const DEFAULT_SOCKET: &str = "/run/remoteproxy/monitor.sock";

/// Live view of a remoteproxy broker: its v1 clients and tunnels and its TunnelProxy servers
/// with their clients, read from the broker's monitor socket.
///
/// Interactive keys: q quit, Tab/←/→ or 1-3 switch tabs, ↑/↓/PgUp/PgDn/Home/End scroll,
/// s sort by the next column, r reverse the order, a show or hide idle TunnelProxy servers.
#[derive(Debug, Parser)]
#[command(name = "remoteproxy-monitor", version)]
pub struct Args {
    /// The broker's monitor socket (`[ProxyServer] monitorSocket`).
    #[arg(short, long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,

    /// Print one summary and exit.
    #[arg(short, long)]
    pub non_interactive: bool,

    /// Include TunnelProxy servers that have no clients.
    #[arg(short, long)]
    pub all: bool,

    /// Print the raw snapshot (JSON, as the broker sent it) and exit.
    #[arg(short, long, conflicts_with = "non_interactive")]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_short_options() {
        let args = Args::try_parse_from(["remoteproxy-monitor"]).unwrap();
        assert_eq!(args.socket, PathBuf::from(DEFAULT_SOCKET));
        assert!(!args.non_interactive && !args.all && !args.json);
        let args = Args::try_parse_from(["remoteproxy-monitor", "-s", "/tmp/m.sock", "-n", "-a"]).unwrap();
        assert_eq!(args.socket, PathBuf::from("/tmp/m.sock"));
        assert!(args.non_interactive && args.all);
        let args = Args::try_parse_from(["remoteproxy-monitor", "--socket=/x", "--json", "--all"]).unwrap();
        assert!(args.json && args.all);
        assert!(Args::try_parse_from(["remoteproxy-monitor", "-n", "-j"]).is_err());
    }
}
