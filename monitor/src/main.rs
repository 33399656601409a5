//! `remoteproxy-monitor`: a live view of a remoteproxy broker, read from its monitor socket
//! (PROTOCOL §7).
//!
//! * `args`: the command line; `connection`: the socket, in request mode; `snapshot`: what it
//!   sends; `format`: durations and byte counts;
//! * `app`: the state of the live view (tabs, sorting, selection) and its rows; `ui`: drawing
//!   it; `terminal`: raw mode and its restoration; `tui`: the event loop;
//! * `summary`: the text of `-n`.

mod app;
mod connection;
mod format;
mod rows;
mod snapshot;
mod summary;
mod terminal;
mod tui;
mod ui;

use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;

use crate::app::App;
use crate::connection::Connection;
use remoteproxy_monitor::args::{self, Args};

/// Why the monitor stopped with exit code 1; each is one line.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Connection(#[from] connection::Error),
    #[error("standard output is not a terminal: use -n for a summary or -j for the JSON snapshot")]
    NotATerminal,
    #[error("terminal: {0}")]
    Terminal(io::Error),
    #[error("writing the output: {0}")]
    Output(io::Error),
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
    let result = match runtime {
        Ok(runtime) => runtime.block_on(run(args)),
        Err(error) => Err(Failure::Terminal(error)),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("remoteproxy-monitor: {failure}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<u8, Failure> {
    let socket = args.socket.clone().unwrap_or_else(args::default_socket);
    let mut connection = Connection::connect(&socket).await?;
    let reply = connection.refresh(args.all).await?;
    if args.json {
        return print(&format!("{}\n", reply.raw));
    }
    if args.non_interactive {
        let mut app = App::new(args.all);
        app.update(reply.snapshot, tui::unix_now());
        return print(&summary::render(&app));
    }
    if !io::stdout().is_terminal() {
        return Err(Failure::NotATerminal);
    }
    tui::run(socket, connection, reply.snapshot, args.all).await.map_err(Failure::Terminal)
}

/// Writes `text` to stdout; a reader that went away (`| head`) is no failure.
fn print(text: &str) -> Result<u8, Failure> {
    let mut stdout = io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(error) if error.kind() != io::ErrorKind::BrokenPipe => Err(Failure::Output(error)),
        _ => Ok(0),
    }
}
