//! `remoteproxy-client`: the command line client.
//!
//! Exit codes: 0 when the tunnel ended normally, 1 when the server or the partner closed it early
//! (or it could not be opened), 2 for usage and configuration errors, 3 when the broker refused
//! the token. Every failure is one line on stderr.

mod cli;

use std::process::ExitCode;

use clap::Parser;
use remoteproxy_client::{ClientError, ClientOptions, Credentials, ProxyUrl, open_tunnel};
use tracing_subscriber::EnvFilter;

use cli::args::Cli;
use cli::modes::{self, Ending};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => return fail(1, &error),
    };
    let code = runtime.block_on(run(cli));
    // stdin is read on a blocking thread that cannot be interrupted; do not wait for it.
    runtime.shutdown_background();
    code
}

async fn run(cli: Cli) -> ExitCode {
    let text = match (&cli.url, cli.ws) {
        (Some(url), _) => url.as_str(),
        (None, false) => "ssl://127.0.0.1:1213",
        (None, true) => "wss://127.0.0.1:1212",
    };
    let mut url = match ProxyUrl::parse(text) {
        Ok(url) => url,
        Err(error) => return fail(2, &error),
    };
    if cli.ws {
        url = url.into_websocket();
    }
    if cli.ignore_ssl && url.uses_tls() {
        eprintln!(
            "remoteproxy-client: WARNING: --ignore-ssl: the server certificate is not verified; \
             anyone on the path can read and change this tunnel"
        );
    }
    let options = ClientOptions {
        ca_file: cli.ca.clone(),
        insecure_skip_verify: cli.ignore_ssl,
        client_certificate: cli.cert.clone(),
        client_key: cli.key.clone(),
        ..ClientOptions::default()
    };
    let credentials = Credentials {
        token: cli.token.clone(),
        nonce: cli.nonce.clone(),
        uuid: cli.uuid.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        name: cli.name.clone(),
    };
    let open = open_tunnel(&url, &options, &credentials);
    let result = if let Some(addr) = cli.mode.listen {
        modes::listen(addr, open).await
    } else {
        match open.await {
            Err(error) => Err(error),
            Ok(tunnel) => {
                modes::announce(&tunnel);
                if cli.mode.stdio {
                    Ok(modes::stdio(tunnel).await)
                } else if let Some(addr) = &cli.mode.connect {
                    modes::connect(addr, tunnel).await
                } else {
                    eprintln!(
                        "remoteproxy-client: tunnel established with {} ({})",
                        tunnel.partner_name, tunnel.partner_uuid
                    );
                    Ok(modes::print(tunnel, &cli.name, cli.pingpong).await)
                }
            }
        }
    };
    match result {
        Ok(Ending::Normal) => ExitCode::SUCCESS,
        Ok(Ending::Early(reason)) => fail(1, &format!("the tunnel ended early: {reason}")),
        Err(error) => fail(exit_code(&error), &error),
    }
}

fn exit_code(error: &ClientError) -> u8 {
    match error {
        ClientError::InvalidUrl { .. } | ClientError::BadFile { .. } => 2,
        ClientError::AuthenticationRefused { .. } => 3,
        _ => 1,
    }
}

fn init_logging(cli: &Cli) {
    let default = if cli.very_verbose {
        "info,remoteproxy_client=trace,remoteproxy_client_cli=trace"
    } else if cli.verbose {
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
