//! `remoteproxy-client`: the command line client.
//!
//! Exit codes: 0 when the tunnel ended normally (for `tunnel-server`: when interrupted), 1 when
//! the server or the partner closed it early (or it could not be opened), 2 for usage and
//! configuration errors, 3 when the broker refused the token or the registration. Every failure
//! is one line on stderr.

mod cli;

use std::process::ExitCode;

use clap::Parser;
use remoteproxy_client::ClientError;
use tracing_subscriber::EnvFilter;

use cli::args::{Cli, Command};
use cli::modes::Ending;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (verbose, very_verbose) = match &cli.command {
        None => (cli.broker.verbose, cli.broker.very_verbose),
        Some(Command::TunnelServer(args)) => (args.broker.verbose, args.broker.very_verbose),
        Some(Command::TunnelClient(args)) => (args.broker.verbose, args.broker.very_verbose),
    };
    init_logging(verbose, very_verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => return fail(1, &error),
    };
    let result = runtime.block_on(async move {
        match cli.command {
            None => cli::v1::run(cli).await,
            Some(Command::TunnelServer(args)) => cli::tunnel_server::run(args).await,
            Some(Command::TunnelClient(args)) => cli::tunnel_client::run(args).await,
        }
    });
    // stdin is read on a blocking thread that cannot be interrupted; do not wait for it.
    runtime.shutdown_background();
    match result {
        Ok(Ending::Normal) => ExitCode::SUCCESS,
        Ok(Ending::Early(reason)) => fail(1, &format!("the tunnel ended early: {reason}")),
        Err(error) => fail(exit_code(&error), &error),
    }
}

fn exit_code(error: &ClientError) -> u8 {
    match error {
        ClientError::InvalidUrl { .. } | ClientError::BadFile { .. } | ClientError::Usage(_) => 2,
        ClientError::AuthenticationRefused { .. } | ClientError::TunnelProxyRefused { .. } => 3,
        _ => 1,
    }
}

fn init_logging(verbose: bool, very_verbose: bool) {
    let default = if very_verbose {
        "info,remoteproxy_client=trace,remoteproxy_client_cli=trace"
    } else if verbose {
        "info,remoteproxy_client=debug"
    } else {
        "warn"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn fail(code: u8, message: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("remoteproxy-client: {message}");
    ExitCode::from(code)
}
