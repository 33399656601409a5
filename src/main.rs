//! The `remoteproxy` binary: flags, configuration, logging, then [`remoteproxy::Server::run`].
//!
//! Exit codes: 0 after a clean stop, 2 for usage and configuration errors (including a missing
//! authenticator and unreadable certificates), 1 when the broker cannot start (a port that cannot
//! be bound).

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use remoteproxy::authenticators::Authenticator;
use remoteproxy::authenticators::mock::MockAuthenticator;
use remoteproxy::cli::{Cli, Command};
use remoteproxy::config::{self, Config, ConfigError, KindSettings};
use remoteproxy::{Server, ServerListeners};
use tracing::{info, warn};

const USAGE_ERROR: u8 = 2;
const STARTUP_ERROR: u8 = 1;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Certs(command)) = &cli.command {
        return match remoteproxy::certs::run(command) {
            Ok(written) => {
                for path in written.0 {
                    println!("wrote {}", path.display());
                }
                ExitCode::SUCCESS
            }
            Err(error) => fail(USAGE_ERROR, &error),
        };
    }
    if cli.print_config {
        print!("{}", config::commented_file());
        return ExitCode::SUCCESS;
    }
    let config = match &cli.configuration {
        Some(path) => match config::load_file(path) {
            Ok(config) => config,
            Err(error) => return fail(USAGE_ERROR, &error),
        },
        None => Config::default(),
    };
    if let Some(Command::Drain(args)) = &cli.command {
        let socket = args.monitor_socket.clone().or_else(|| config.server.monitor_socket.clone());
        return match socket {
            None => fail(
                USAGE_ERROR,
                &"drain: the configuration has no monitor socket ([ProxyServer] monitorSocket); give --monitor-socket",
            ),
            Some(path) => match remoteproxy::monitor::request_drain(&path) {
                Ok(()) => {
                    println!("draining: the broker takes no new clients; it exits when its tunnels are done");
                    ExitCode::SUCCESS
                }
                Err(error) => fail(
                    STARTUP_ERROR,
                    &format!(
                        "drain: cannot ask the broker over {} ({error}); is it running with this monitorSocket?",
                        path.display()
                    ),
                ),
            },
        };
    }
    let authenticator = match choose_authenticator(&cli, &config) {
        Ok(authenticator) => authenticator,
        Err(message) => return fail(USAGE_ERROR, &message),
    };
    if cli.check_config {
        // Nothing is created or changed: the statistics files are opened only by a real start.
        if let Err(error) = Server::check(&config) {
            return fail(USAGE_ERROR, &error);
        }
        match &config.source {
            Some(path) => println!("configuration OK: {}", path.display()),
            None => println!("configuration OK: built-in defaults"),
        }
        return ExitCode::SUCCESS;
    }
    let max_connections = config.server.max_connections;
    let listener_config = config.clone();
    let source = config.source.clone();
    let log_file =
        cli.logging.clone().or_else(|| config.server.write_logs.then(|| config.server.log_file.clone()));
    let log_level = config.server.log_level.clone();
    let server = match Server::new(config, authenticator) {
        Ok(server) => server,
        Err(error) => return fail(USAGE_ERROR, &error),
    };
    let mut reloader = server.reloader();
    if let Some(path) = &cli.write_certificate {
        let Some(pem) = server.certificate_pem() else {
            return fail(
                USAGE_ERROR,
                &"--write-certificate: TLS is off ([SSL] enabled=false); there is no certificate",
            );
        };
        if let Err(error) = std::fs::write(path, pem) {
            return fail(
                USAGE_ERROR,
                &format!("cannot write the certificate to {}: {error}", path.display()),
            );
        }
    }
    // Logging starts only now, so every configuration error above is one plain line on stderr.
    match remoteproxy::logging::init(cli.verbose, log_file.as_deref(), &log_level) {
        Ok(level) => reloader.log_level_from(level, source.clone()),
        Err(error) => {
            let shown = log_file.as_deref().unwrap_or(std::path::Path::new("")).display();
            return fail(USAGE_ERROR, &format!("cannot open the log file {shown}: {error}"));
        }
    }
    match &source {
        Some(path) => info!(file = %path.display(), "configuration"),
        None => info!("configuration: built-in defaults (give a file with -c)"),
    }
    if cli.mock_authenticator {
        warn!("the mock authenticator accepts every token: use it for tests only");
    } else if let Some(settings) = &listener_config.authentication {
        let kind = settings.kind.name();
        if listener_config.authentication_implied {
            info!(
                kind,
                "authenticator: aws-lambda, because the file has an [AWS] section and no [Authentication] type"
            );
        } else {
            info!(kind, "authenticator");
        }
    }
    remoteproxy::limits::raise_open_files_limit(max_connections);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => return fail(STARTUP_ERROR, &format!("cannot start the runtime: {error}")),
    };
    runtime.block_on(async {
        let listeners = match ServerListeners::bind(&listener_config).await {
            Ok(listeners) => listeners,
            Err(error) => return fail(STARTUP_ERROR, &error),
        };
        tokio::spawn(remoteproxy::reload::on_hangup(reloader));
        remoteproxy::shutdown::survive_file_size_limit();
        server.run(listeners, remoteproxy::shutdown::signal()).await;
        ExitCode::SUCCESS
    })
}

/// `-m` wins; otherwise the configured kind, built now so that a broken setup (a missing JWKS
/// file, a bad token file) is a configuration error at start, not a surprise at the first client.
fn choose_authenticator(cli: &Cli, config: &Config) -> Result<Arc<dyn Authenticator>, String> {
    if cli.mock_authenticator {
        return Ok(Arc::new(MockAuthenticator));
    }
    match &config.authentication {
        Some(settings) => remoteproxy::authenticators::build(settings).map_err(|error| {
            ConfigError::bad_value(config.source.as_deref(), error.section, error.key, error.problem)
                .to_string()
        }),
        None => Err(format!(
            "no authenticator is configured: set `type` in the [Authentication] section of the \
             configuration file ({}; a nymea-remoteproxy file's [AWS] section alone means \
             type=aws-lambda), or start with --mock-authenticator to accept every token (for tests only)",
            KindSettings::NAMES.join(", ")
        )),
    }
}

fn fail(code: u8, message: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("remoteproxy: {message}");
    ExitCode::from(code)
}

/// jemalloc, not the system allocator: relays allocate and free big buffers as tunnels go busy
/// and idle, and glibc's malloc lets small long-lived allocations split the freed buffers, so an
/// idle tunnel cost about twice its live memory in RSS. jemalloc keeps sizes apart.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read once at its start (its documented `malloc_conf` variable):
/// * a background thread gives freed pages back to the system within about a second, so memory
///   returns after a burst of tunnels closes even when the broker is otherwise idle;
/// * 4 KiB objects (rustls keeps one 4 KiB read buffer per TLS connection) share 32 KiB slabs
///   instead of one page each, which saves the allocator one extent record per connection, and
///   those records are kept for reuse after the connections close.
#[cfg(feature = "jemalloc")]
// SAFETY: jemalloc reads this symbol as a `const char *` to a NUL-terminated string; a
// reference to a byte array is a pointer to its first byte, and the string ends with NUL.
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static JEMALLOC_CONF: &[u8; 83] =
    b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0,slab_sizes:4096-4096:8\0";
