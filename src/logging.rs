//! Log output: human-readable lines on stderr, optionally also appended to a file.
//!
//! `--verbose` shows debug lines of the broker's own modules; `RUST_LOG` overrides everything
//! with a full filter. Tokens never reach a log line: the session logs uuid, name and user name,
//! and the token type masks itself in `Debug`.

use std::fs::OpenOptions;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the global subscriber. Fails only when the log file cannot be opened.
pub fn init(verbose: bool, file: Option<&Path>) -> std::io::Result<()> {
    let default = if verbose { "info,remoteproxy=debug,remoteproxy_authenticators=debug" } else { "info" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let colors = std::io::stderr().is_terminal();
    let stderr = tracing_subscriber::fmt::layer().with_ansi(colors).with_writer(std::io::stderr);
    let file_layer = match file {
        Some(path) => {
            let file = OpenOptions::new().create(true).append(true).open(path)?;
            Some(tracing_subscriber::fmt::layer().with_ansi(false).with_writer(Mutex::new(file)))
        }
        None => None,
    };
    tracing_subscriber::registry().with(filter).with(stderr).with(file_layer).init();
    Ok(())
}
