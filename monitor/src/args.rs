//! Command line.

use std::path::PathBuf;

use clap::{ArgAction, Parser};

/// Where the broker's monitor socket is unless `-s` says otherwise (`[ProxyServer]
/// monitorSocket`'s default).
pub const DEFAULT_SOCKET: &str = "/run/remoteproxy/monitor.sock";

/// The socket to use without `-s`: the system default, or where a broker started by this user
/// on its built-in defaults puts it when it cannot write `/run/remoteproxy`
/// (`$XDG_RUNTIME_DIR/remoteproxy`, else `remoteproxy-<uid>` in the temporary directory): the
/// first of these that exists.
pub fn default_socket() -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let system = PathBuf::from(DEFAULT_SOCKET);
    let uid = std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(0);
    let per_user = std::env::var_os("XDG_RUNTIME_DIR")
        .map(|dir| PathBuf::from(dir).join("remoteproxy/monitor.sock"))
        .into_iter()
        .chain([std::env::temp_dir().join(format!("remoteproxy-{uid}/monitor.sock"))]);
    std::iter::once(system.clone()).chain(per_user).find(|path| path.exists()).unwrap_or(system)
}

/// Live view of a remoteproxy broker: its v1 clients and tunnels, its TunnelProxy servers
/// with their clients, its cluster nodes and its rendezvous meetings, read from the broker's
/// monitor socket.
///
/// Interactive keys: q quit, Tab/←/→ or 1-5 switch tabs, ↑/↓/PgUp/PgDn/Home/End scroll,
/// s sort by the next column, r reverse the order, a show or hide idle TunnelProxy servers.
#[derive(Debug, Parser)]
#[command(name = "remoteproxy-monitor", version, disable_version_flag = true)]
pub struct Args {
    /// The broker's monitor socket (`[ProxyServer] monitorSocket`) [default:
    /// /run/remoteproxy/monitor.sock, or the per-user one of a broker started without root]
    #[arg(short, long, value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// Print one summary and exit.
    #[arg(short, long)]
    pub non_interactive: bool,

    /// Include TunnelProxy servers that have no clients.
    #[arg(short, long)]
    pub all: bool,

    /// Print the raw snapshot (JSON, as the broker sent it) and exit.
    #[arg(short, long, conflicts_with = "non_interactive")]
    pub json: bool,

    /// Print the version and exit.
    #[arg(short = 'v', long = "version", action = ArgAction::Version)]
    pub version: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_short_options() {
        let args = Args::try_parse_from(["remoteproxy-monitor"]).unwrap();
        assert_eq!(args.socket, None);
        assert!(!args.non_interactive && !args.all && !args.json);
        let args = Args::try_parse_from(["remoteproxy-monitor", "-s", "/tmp/m.sock", "-n", "-a"]).unwrap();
        assert_eq!(args.socket, Some(PathBuf::from("/tmp/m.sock")));
        assert!(args.non_interactive && args.all);
        let args = Args::try_parse_from(["remoteproxy-monitor", "--socket=/x", "--json", "--all"]).unwrap();
        assert!(args.json && args.all);
        assert!(Args::try_parse_from(["remoteproxy-monitor", "-n", "-j"]).is_err());
    }
}
