//! Log output: human-readable lines on stderr, optionally also appended to a file.
//!
//! `--verbose` shows debug lines of the broker's own modules; `RUST_LOG` overrides everything
//! with a full filter. Under systemd (stderr is the journal's stream, `JOURNAL_STREAM`) lines carry
//! no timestamp of their own, since the journal stamps each line. Tokens never reach a log line: the session logs uuid, name and user name,
//! and the token type masks itself in `Debug`.

use std::fs::OpenOptions;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The level filter of the running log, which a reload may change.
pub struct LogLevel {
    handle: tracing_subscriber::reload::Handle<EnvFilter, tracing_subscriber::Registry>,
    /// `RUST_LOG` or `--verbose` chose the filter: a configured level does not override them.
    overridden: bool,
}

impl LogLevel {
    /// Applies `[ProxyServer] logLevel` (checked when the configuration was read), unless
    /// `RUST_LOG` or `--verbose` chose the filter. Returns whether it was applied.
    pub fn set(&self, level: &str) -> bool {
        if self.overridden {
            return false;
        }
        match EnvFilter::try_new(level) {
            Ok(filter) => self.handle.reload(filter).is_ok(),
            Err(_) => false,
        }
    }
}

/// Installs the global subscriber with `level` (`[ProxyServer] logLevel`), unless `RUST_LOG` or
/// `verbose` say otherwise. Fails only when the log file cannot be opened.
pub fn init(verbose: bool, file: Option<&Path>, level: &str) -> std::io::Result<LogLevel> {
    const VERBOSE: &str = "info,remoteproxy=debug,remoteproxy_authenticators=debug";
    let (filter, overridden) = match EnvFilter::try_from_default_env() {
        Ok(filter) => (filter, true),
        Err(_) if verbose => (EnvFilter::new(VERBOSE), true),
        Err(_) => (EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info")), false),
    };
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let colors = std::io::stderr().is_terminal();
    let journal = stderr_is_the_journal();
    let stderr =
        (!journal).then(|| tracing_subscriber::fmt::layer().with_ansi(colors).with_writer(std::io::stderr));
    let stderr_in_journal = journal.then(|| {
        tracing_subscriber::fmt::layer().with_ansi(false).without_time().with_writer(std::io::stderr)
    });
    let file_layer = match file {
        Some(path) => {
            let file = OpenOptions::new().create(true).append(true).open(path)?;
            Some(tracing_subscriber::fmt::layer().with_ansi(false).with_writer(Mutex::new(file)))
        }
        None => None,
    };
    tracing_subscriber::registry().with(filter).with(stderr).with(stderr_in_journal).with(file_layer).init();
    Ok(LogLevel { handle, overridden })
}

/// Whether stderr is the stream systemd connected to the journal: `JOURNAL_STREAM` names its
/// device and inode (see systemd.exec(5)), so a child whose stderr was redirected elsewhere does
/// not take the variable it inherited for itself.
fn stderr_is_the_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(value) = std::env::var("JOURNAL_STREAM").ok() else {
        return false;
    };
    let Some((device, inode)) = value.split_once(':') else {
        return false;
    };
    let (Ok(device), Ok(inode)) = (device.parse::<u64>(), inode.parse::<u64>()) else {
        return false;
    };
    std::fs::metadata("/proc/self/fd/2").is_ok_and(|meta| meta.dev() == device && meta.ino() == inode)
}
