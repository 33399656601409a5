//! Process limits.
//!
//! Every tunnel holds two sockets, so the default soft limit of open files (often 1024) would cap
//! the broker at a few hundred tunnels. The soft limit is raised to the hard limit at start.

use tracing::{info, warn};

/// Raises RLIMIT_NOFILE to its hard limit and says so; warns when it is below what
/// `max_connections` needs.
pub fn raise_open_files_limit(max_connections: usize) {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            info!(limit, "open files limit");
            if (limit as usize) < max_connections.saturating_add(64) {
                warn!(
                    limit,
                    max_connections,
                    "the open files limit is below maxConnections; raise it (LimitNOFILE=) to use them all"
                );
            }
        }
        Err(error) => warn!(%error, "cannot raise the open files limit"),
    }
}
