//! remoteproxy-stress: the broker under load, churn, faults and abuse, through real sockets and
//! real TLS against the real binary, each scenario on a fresh broker process. Every scenario
//! prints its figures and its checks; the exit code is 1 when a check failed.
//!
//! `--size ci` is what `.ci/run` runs (through `cargo test`, `stress/tests/ci.rs`), `--size full`
//! the sizes of issue 15 (README: "Stress suite"). Only loopback addresses are ever targeted.

mod auth_server;
mod broker;
mod pattern;
mod redis;
mod report;
mod scenarios;
mod tunnels;
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use remoteproxy_bench::client::Client;

use crate::report::Report;

/// Runs the stress suite against the remoteproxy binary.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Which scenario.
    #[arg(value_enum, default_value = "all")]
    scenario: Scenario,
    /// ci: a reduced size that runs in a few minutes on 2 cores in a debug build; full: the sizes
    /// of issues 15 and 17 (5,000 tunnels for 60 s, 50,000 setups, 10,000 silent connections; 3 × 8,000
    /// cross-node tunnels).
    #[arg(long, value_enum, default_value = "full")]
    size: SizeName,
    /// The broker binary [default: `remoteproxy` next to this program].
    #[arg(long)]
    broker: Option<PathBuf>,
    /// The client binary [default: `remoteproxy-client` next to this program].
    #[arg(long)]
    client: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    All,
    Load,
    Churn,
    Faults,
    Abuse,
    Cluster,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SizeName {
    Ci,
    Full,
}

/// How big each scenario runs.
#[derive(Clone, Copy, Debug)]
pub struct Size {
    /// load: tunnels, and how long they move data.
    pub load_tunnels: u64,
    pub load_time: Duration,
    /// churn: tunnel setups and teardowns, and how many at once.
    pub churn: u64,
    pub churn_concurrency: u64,
    /// abuse: connections that never authenticate.
    pub silent: u64,
    /// abuse: slowloris connections per listener, and TLS handshakes left unfinished.
    pub slowloris: u64,
    pub stalled_tls: u64,
    /// abuse: Authenticate calls with bad tokens from one address.
    pub bad_tokens: u64,
    /// faults: tunnels moving data beside each fault.
    pub bystanders: u64,
    /// cluster: tunnels whose first end is on each of the three nodes.
    pub cluster_tunnels_per_node: usize,
}

impl Size {
    fn of(name: SizeName) -> Size {
        match name {
            SizeName::Ci => Size {
                load_tunnels: 200,
                load_time: Duration::from_secs(10),
                churn: 600,
                churn_concurrency: 32,
                silent: 1_000,
                slowloris: 10,
                stalled_tls: 100,
                bad_tokens: 200,
                bystanders: 8,
                cluster_tunnels_per_node: 100,
            },
            SizeName::Full => Size {
                load_tunnels: 5_000,
                load_time: Duration::from_secs(60),
                churn: 50_000,
                churn_concurrency: 128,
                silent: 10_000,
                slowloris: 100,
                stalled_tls: 2_000,
                bad_tokens: 2_000,
                bystanders: 64,
                cluster_tunnels_per_node: 8_000,
            },
        }
    }
}

/// What every scenario gets.
pub struct Ctx {
    pub broker: PathBuf,
    pub client_binary: PathBuf,
    pub size: Size,
    pub report: Report,
    /// The v1 client (bench's): source addresses spread over 127.0.0.2..254.
    pub client: Arc<Client>,
}

fn main() -> ExitCode {
    // A client process of the cluster scenario (see `worker`), not a command for people.
    let raw: Vec<String> = std::env::args().collect();
    if raw.get(1).map(String::as_str) == Some("cluster-worker") {
        let _ = rlimit::increase_nofile_limit(u64::MAX);
        let runtime =
            tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
        return match runtime.block_on(worker::run(&raw[2..])) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("remoteproxy-stress cluster-worker: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let args = Args::parse();
    let here = std::env::current_exe().ok().and_then(|p| p.parent().map(PathBuf::from)).unwrap_or_default();
    let ctx = Ctx {
        broker: args.broker.unwrap_or_else(|| here.join("remoteproxy")),
        client_binary: args.client.unwrap_or_else(|| here.join("remoteproxy-client")),
        size: Size::of(args.size),
        report: Report::default(),
        client: Arc::new(Client::new(true, Duration::from_secs(30))),
    };
    for binary in [&ctx.broker, &ctx.client_binary] {
        if !binary.is_file() {
            eprintln!(
                "remoteproxy-stress: {} not found; build the workspace first (cargo build --workspace) or pass --broker and --client",
                binary.display()
            );
            return ExitCode::from(2);
        }
    }
    // Thousands of sockets here and in the broker: the soft limit up to the hard one.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    runtime.block_on(async {
        let which = args.scenario;
        if matches!(which, Scenario::All | Scenario::Load) {
            scenarios::load::run(&ctx).await;
        }
        if matches!(which, Scenario::All | Scenario::Churn) {
            scenarios::churn::run(&ctx).await;
        }
        if matches!(which, Scenario::All | Scenario::Faults) {
            scenarios::faults::run(&ctx).await;
        }
        if matches!(which, Scenario::All | Scenario::Abuse) {
            scenarios::abuse::run(&ctx).await;
        }
        if matches!(which, Scenario::All | Scenario::Cluster) {
            scenarios::cluster::run(&ctx).await;
        }
    });
    if ctx.report.finish().is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
