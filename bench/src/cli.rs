//! Command line: flags, defaults, and the order in which `all` runs the measures.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::baseline::{self, BaselineArgs, BaselineProcess};
use crate::client::{Client, Endpoint, Handshake};
use crate::measure::{self, Bench, HoldShape, Params, Printer};
use crate::results::{Results, RunInfo};
use crate::server::Server;
use crate::{chart, report, stats};

/// Benchmarks a tunnel broker that speaks the nymea-remoteproxy v1 API (remoteproxy itself or
/// the reference), each measure next to a minimal baseline run in the same process tree at the
/// same time, and prints `broker X, baseline Y, ratio X/Y`. A flag given twice takes its last
/// value, so scripts can append to the flags they were given.
#[derive(Debug, Parser)]
#[command(name = "remoteproxy-bench", version, args_override_self = true)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
    /// Target, sizes and output.
    #[command(flatten)]
    pub options: Options,
}

/// The measures and helpers.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// N tunnels at concurrency C: tunnels/s, setup latency percentiles, errors.
    Setup,
    /// Bulk data through one tunnel, one way and both ways, over TCP, WebSocket and mixed.
    Throughput,
    /// 64-byte ping-pong through one tunnel: round-trip percentiles.
    Latency,
    /// N tunnels after 1 MiB each way, idle: broker RSS per tunnel, then release. With
    /// `--hold-shape v2-tcp|v2-ws`: N registered TunnelProxy servers, idle, and the latency of
    /// clients reaching them.
    Hold,
    /// The reconnect storm: N v2 servers register at once with full TLS handshakes, then again
    /// resuming their sessions (and, with `--restart-via-stdin`, after a broker restart), while
    /// v1 tunnels do ping-pong: time, registrations/s, CPU per handshake, tunnel RTT.
    Storm,
    /// hold, setup, throughput, latency (hold first, while the broker is fresh).
    All,
    /// Cross-node tunnels (second end on `--peer-url`, another node of the broker's cluster)
    /// next to one-node tunnels: setup rate, throughput both ways, round-trip latency.
    Cluster,
    /// Turns results JSON into markdown tables and an SVG chart.
    Report(ReportArgs),
    /// The baseline server (started by the bench itself).
    #[command(hide = true)]
    BaselineServer(BaselineArgs),
}

/// `report` flags.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Results written by `--json` (repeat to merge several runs).
    #[arg(long = "input", required = true, value_name = "FILE")]
    pub inputs: Vec<PathBuf>,
    /// Write the merged results here.
    #[arg(long, value_name = "FILE")]
    pub merged: Option<PathBuf>,
    /// Write the markdown tables here.
    #[arg(long, value_name = "FILE")]
    pub tables: Option<PathBuf>,
    /// Write the SVG chart here.
    #[arg(long, value_name = "FILE")]
    pub chart: Option<PathBuf>,
}

fn size(text: &str) -> Result<u64, String> {
    stats::parse_size(text)
}

/// Flags shared by every measure (given before or after the subcommand).
#[derive(Debug, Args)]
pub struct Options {
    /// The broker's v1 TCP listener: ssl://HOST:PORT (TLS) or tcp://HOST:PORT.
    #[arg(long, global = true, value_name = "URL")]
    pub url: Option<String>,
    /// The broker's v1 WebSocket listener: wss://HOST:PORT/ or ws://HOST:PORT/. Adds the
    /// WebSocket and mixed measures.
    #[arg(long, global = true, value_name = "URL")]
    pub ws_url: Option<String>,
    /// The broker's v2 TunnelProxy TCP listener, ssl://HOST:PORT or tcp://HOST:PORT (for
    /// `--hold-shape v2-tcp`).
    #[arg(long, global = true, value_name = "URL")]
    pub v2_url: Option<String>,
    /// The broker's v2 TunnelProxy WebSocket listener, wss://HOST:PORT/ or ws://HOST:PORT/ (for
    /// `--hold-shape v2-ws`).
    #[arg(long, global = true, value_name = "URL")]
    pub v2_ws_url: Option<String>,
    /// cluster: another node of the broker's cluster, its v1 TCP listener (ssl:// or tcp://).
    #[arg(long, global = true, value_name = "URL")]
    pub peer_url: Option<String>,
    /// cluster: that node's v1 WebSocket listener (adds the WebSocket measure).
    #[arg(long, global = true, value_name = "URL")]
    pub peer_ws_url: Option<String>,
    /// Required with TLS: the bench does not verify server certificates (it checks the handshake
    /// signature only, the same for broker and baseline).
    #[arg(long, global = true)]
    pub insecure: bool,
    /// The broker's process id, for RSS, open descriptors and CPU time from /proc.
    #[arg(long, global = true)]
    pub pid: Option<u32>,
    /// Print the results as JSON on stdout (human lines go to stderr).
    #[arg(long, global = true)]
    pub json: bool,
    /// Small sizes for a smoke run (well under a minute for `all`).
    #[arg(long, global = true)]
    pub quick: bool,
    /// Repetitions per side of setup, throughput and latency [default: 3, quick: 1].
    #[arg(long, global = true)]
    pub rounds: Option<usize>,
    /// setup: tunnels per round [default: 2000, quick: 200].
    #[arg(long, global = true, value_name = "N")]
    pub tunnels: Option<usize>,
    /// setup: tunnels in flight at once [default: 8].
    #[arg(long, global = true, value_name = "C")]
    pub concurrency: Option<usize>,
    /// throughput: bytes per direction, e.g. 256MiB [default: 256MiB, quick: 16MiB].
    #[arg(long, global = true, value_parser = size)]
    pub bytes: Option<u64>,
    /// Size of each write or WebSocket message [default: 64KiB].
    #[arg(long, global = true, value_parser = size)]
    pub chunk: Option<u64>,
    /// latency: timed round trips per round [default: 10000, quick: 1000].
    #[arg(long, global = true)]
    pub round_trips: Option<usize>,
    /// latency: bytes each way [default: 64].
    #[arg(long, global = true, value_parser = size)]
    pub message_size: Option<u64>,
    /// hold: what is held: v1 tunnels on the TCP (v1-tcp) or WebSocket (v1-ws) listener, or
    /// registered v2 TunnelProxy servers on the TunnelProxy TCP (v2-tcp) or WebSocket (v2-ws)
    /// listener.
    #[arg(long, global = true, value_enum, default_value_t = HoldShape::V1Tcp)]
    pub hold_shape: HoldShape,
    /// hold: tunnels, or servers with a v2 shape [default: 1000, quick: 100].
    #[arg(long, global = true, value_name = "N")]
    pub hold_tunnels: Option<usize>,
    /// hold: tunnels being opened at once [default: 32].
    #[arg(long, global = true)]
    pub hold_concurrency: Option<usize>,
    /// hold: bytes each tunnel carries each way before idling [default: 1MiB].
    #[arg(long, global = true, value_parser = size)]
    pub hold_bytes: Option<u64>,
    /// hold: seconds the tunnels sit idle before memory is read [default: 2, quick: 1].
    #[arg(long, global = true)]
    pub hold_idle: Option<f64>,
    /// hold with a v2 shape: clients that reach a random held server, timed, `--concurrency` at
    /// a time [default: 200, quick: 50].
    #[arg(long, global = true, value_name = "M")]
    pub reach_clients: Option<usize>,
    /// hold with a v2 shape: seconds from registering until a held server's first
    /// TunnelProxy.Ping (then one every 30 s, as the nymea library does) [default: 0].
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 0.0)]
    pub first_ping: f64,
    /// storm: devices (v2 TunnelProxy servers on --v2-url) per storm [default: 2000, quick: 200].
    #[arg(long, global = true, value_name = "N")]
    pub storm_servers: Option<usize>,
    /// storm: devices between TCP connect and the RegisterServer answer at once [default: 1000].
    #[arg(long, global = true, value_name = "C")]
    pub storm_in_flight: Option<usize>,
    /// storm: retries a device makes after a failed attempt, 100 ms doubling apart [default: 3].
    #[arg(long, global = true)]
    pub storm_retries: Option<usize>,
    /// storm: v1 tunnels doing 64-byte ping-pong while each storm runs [default: 4].
    #[arg(long, global = true, value_name = "K")]
    pub storm_tunnels: Option<usize>,
    /// storm: after the broker's resumed storm, print a restart request on stderr, read
    /// `url=URL v2-url=URL pid=PID [metrics=HOST:PORT]` from stdin and storm the restarted broker.
    #[arg(long, global = true)]
    pub restart_via_stdin: bool,
    /// storm: the broker's metrics endpoint (HOST:PORT, `[Metrics] enabled=true`), for the
    /// handshakes it counted as full and resumed.
    #[arg(long, global = true, value_name = "HOST:PORT")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Connect every client from 127.0.0.1 instead of spreading over 127.0.0.2..254.
    #[arg(long, global = true)]
    pub no_spread: bool,
    /// Bound of each handshake step, in seconds.
    #[arg(long, global = true, default_value_t = 10)]
    pub timeout: u64,
}

impl Options {
    /// Sizes from the flags, the quick defaults or the full defaults.
    pub fn params(&self) -> Params {
        let pick = |given: Option<usize>, full: usize, quick: usize| {
            given.unwrap_or(if self.quick { quick } else { full })
        };
        let pick64 = |given: Option<u64>, full: u64, quick: u64| {
            given.unwrap_or(if self.quick { quick } else { full })
        };
        Params {
            setup_tunnels: pick(self.tunnels, 2000, 200).max(1),
            concurrency: pick(self.concurrency, 8, 8).max(1),
            bytes: pick64(self.bytes, 256 << 20, 16 << 20).max(1),
            chunk: pick64(self.chunk, 64 << 10, 64 << 10).clamp(1, 16 << 20) as usize,
            round_trips: pick(self.round_trips, 10_000, 1000).max(1),
            message_size: pick64(self.message_size, 64, 64).clamp(1, 1 << 20) as usize,
            hold_shape: self.hold_shape,
            hold_tunnels: pick(self.hold_tunnels, 1000, 100).max(1),
            hold_concurrency: pick(self.hold_concurrency, 32, 32).max(1),
            hold_bytes: pick64(self.hold_bytes, 1 << 20, 1 << 20),
            hold_idle: Duration::from_secs_f64(
                self.hold_idle.unwrap_or(if self.quick { 1.0 } else { 2.0 }).max(0.0),
            ),
            reach_clients: pick(self.reach_clients, 200, 50).max(1),
            first_ping: Duration::from_secs_f64(self.first_ping.clamp(0.0, 1e6)),
            storm_servers: pick(self.storm_servers, 2000, 200).max(1),
            storm_in_flight: pick(self.storm_in_flight, 1000, 1000).max(1),
            storm_retries: pick(self.storm_retries, 3, 3),
            storm_tunnels: pick(self.storm_tunnels, 4, 4),
            restart_via_stdin: self.restart_via_stdin,
            rounds: pick(self.rounds, 3, 1).max(1),
            transfer_timeout: Duration::from_secs(300),
        }
    }
}

/// The binary's main.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("remoteproxy-bench: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::BaselineServer(args) => baseline::serve(args).await,
            Command::Report(args) => report_command(&args),
            ref measure => run_measures(measure, &cli.options).await,
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("remoteproxy-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_measures(command: &Command, options: &Options) -> anyhow::Result<()> {
    let params = options.params();
    let url = options.url.as_deref().context("--url is required (the broker's v1 TCP listener)")?;
    let stream = Endpoint::parse(url)?;
    anyhow::ensure!(
        !stream.websocket,
        "--url is the byte-stream listener (ssl:// or tcp://); use --ws-url for WebSocket"
    );
    let ws = options.ws_url.as_deref().map(Endpoint::parse).transpose()?;
    if let Some(ws) = &ws {
        anyhow::ensure!(ws.websocket, "--ws-url must be wss:// or ws://");
    }
    let v2 = options.v2_url.as_deref().map(Endpoint::parse).transpose()?;
    if let Some(v2) = &v2 {
        anyhow::ensure!(!v2.websocket, "--v2-url is the TunnelProxy byte-stream listener (ssl:// or tcp://)");
    }
    let v2_ws = options.v2_ws_url.as_deref().map(Endpoint::parse).transpose()?;
    if let Some(v2_ws) = &v2_ws {
        anyhow::ensure!(v2_ws.websocket, "--v2-ws-url must be wss:// or ws://");
    }
    let tls = [Some(&stream), ws.as_ref(), v2.as_ref(), v2_ws.as_ref()].into_iter().flatten().any(|e| e.tls);
    anyhow::ensure!(
        !tls || options.insecure,
        "the bench does not verify TLS certificates (the same for broker and baseline); pass --insecure"
    );
    let holds = matches!(command, Command::Hold | Command::All);
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    // A v1 tunnel is two connections of the bench; a v2 server one, plus the reach clients.
    let held = if params.hold_shape.is_v2() { params.hold_tunnels } else { 2 * params.hold_tunnels };
    let storms = matches!(command, Command::Storm);
    // A storm holds every device's connection, plus two per ping-pong tunnel.
    let needed = if holds {
        held as u64 + 256
    } else if storms {
        (params.storm_servers + 2 * params.storm_tunnels) as u64 + 256
    } else {
        4 * params.concurrency as u64 + 256
    };
    anyhow::ensure!(
        limit >= needed,
        "the open-files limit is {limit}, the bench needs {needed} descriptors; raise the hard limit or lower --hold-tunnels or --storm-servers"
    );

    let client = Arc::new(Client::new(!options.no_spread, Duration::from_secs(options.timeout)));
    let broker_server =
        client.hello(&stream).await.with_context(|| format!("the broker at {url} does not answer Hello"))?;
    let printer = Printer { json: options.json };
    let broker = Server {
        role: "broker",
        stream,
        ws,
        v2,
        v2_ws,
        pid: options.pid,
        handshake: Handshake::V1,
        peer: None,
    };
    let run = RunInfo {
        started_unix: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        broker_url: broker.stream.url(),
        broker_ws_url: broker.ws.as_ref().map(Endpoint::url),
        broker_pid: options.pid,
        broker_server,
        cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        cpu_model: cpu_model(),
        rounds: params.rounds,
        quick: options.quick,
    };
    printer.say(&[format!(
        "remoteproxy-bench {}: broker {} at {}{} (pid {}), {} cores shared by bench client, broker and baseline; \
         {} round(s) per side, alternating; ratio = broker/baseline",
        env!("CARGO_PKG_VERSION"),
        run.broker_server,
        run.broker_url,
        run.broker_ws_url.as_ref().map(|w| format!(" and {w}")).unwrap_or_default(),
        options.pid.map(|p| p.to_string()).unwrap_or_else(|| "not given: no memory or CPU readings".into()),
        run.cpus,
        run.rounds
    )]);
    if options.pid.is_none() && holds {
        printer.say(&["hold: without --pid only errors and counts are measured for the broker".to_string()]);
    }
    let bench = Bench { client, broker, params, printer };
    let mut results = Results::new(run);

    if matches!(command, Command::Cluster) {
        let url = options
            .peer_url
            .as_deref()
            .context("cluster needs --peer-url (another node's v1 TCP listener)")?;
        let stream = Endpoint::parse(url)?;
        anyhow::ensure!(!stream.websocket, "--peer-url is the byte-stream listener (ssl:// or tcp://)");
        bench
            .client
            .hello(&stream)
            .await
            .with_context(|| format!("the node at {url} does not answer Hello"))?;
        let ws = options.peer_ws_url.as_deref().map(Endpoint::parse).transpose()?;
        let peer = Server {
            role: "peer",
            stream,
            ws,
            v2: None,
            v2_ws: None,
            pid: None,
            handshake: Handshake::V1,
            peer: None,
        };
        let mut pairings = vec![measure::Pairing::Stream];
        if bench.broker.ws.is_some() && peer.ws.is_some() {
            pairings.push(measure::Pairing::Ws);
        }
        for pairing in pairings {
            let result = measure::cluster::run(&bench, &peer, pairing).await;
            bench.printer.say(&result.human());
            results.cluster.push(result);
        }
    }

    if storms {
        results.storm.push(measure::storm::run(&bench, options.metrics).await?);
    }
    if holds && bench.params.hold_shape.is_v2() {
        results.fleet.push(measure::fleet::run(&bench).await?);
    } else if holds {
        results.hold.push(measure::hold::run(&bench).await?);
    }
    if matches!(command, Command::Setup | Command::Throughput | Command::Latency | Command::All) {
        let baseline = BaselineProcess::start(bench.baseline_args()).await?;
        if matches!(command, Command::Setup | Command::All) {
            let result = measure::setup::run(&bench, &baseline.server).await;
            printer.say(&result.human());
            results.setup.push(result);
        }
        if matches!(command, Command::Throughput | Command::All) {
            results.throughput.extend(measure::throughput::run(&bench, &baseline.server).await);
        }
        if matches!(command, Command::Latency | Command::All) {
            results.latency.extend(measure::latency::run(&bench, &baseline.server).await);
        }
        baseline.stop().await;
    }
    let checks = results.checks();
    let failed = checks.iter().filter(|c| !c.pass).count();
    printer.say(&[format!("targets: {} met, {} missed", checks.len() - failed, failed)]);
    if options.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    }
    Ok(())
}

fn report_command(args: &ReportArgs) -> anyhow::Result<()> {
    let mut merged = Results::default();
    for input in &args.inputs {
        let text =
            std::fs::read_to_string(input).with_context(|| format!("cannot read {}", input.display()))?;
        let results: Results = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a bench results file", input.display()))?;
        merged.merge(results);
    }
    if let Some(path) = &args.merged {
        std::fs::write(path, serde_json::to_string_pretty(&merged)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let tables = report::markdown(&merged);
    match &args.tables {
        Some(path) => {
            std::fs::write(path, &tables).with_context(|| format!("cannot write {}", path.display()))?
        }
        None => print!("{tables}"),
    }
    if let Some(path) = &args.chart {
        chart::draw(&merged, path)?;
    }
    Ok(())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, model)| model.trim().to_string())
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_full_quick_and_explicit() {
        let cli = Cli::parse_from(["remoteproxy-bench", "all", "--url", "ssl://127.0.0.1:1"]);
        let p = cli.options.params();
        assert_eq!((p.setup_tunnels, p.concurrency, p.bytes, p.round_trips), (2000, 8, 256 << 20, 10_000));
        assert_eq!(
            (p.hold_tunnels, p.hold_bytes, p.rounds, p.chunk, p.message_size),
            (1000, 1 << 20, 3, 65536, 64)
        );
        let quick =
            Cli::parse_from(["remoteproxy-bench", "--quick", "setup", "--tunnels", "7", "--bytes", "1MiB"]);
        let p = quick.options.params();
        assert_eq!((p.setup_tunnels, p.bytes, p.rounds, p.hold_tunnels), (7, 1 << 20, 1, 100));
        assert!(matches!(quick.command, Command::Setup));
        assert_eq!((p.hold_shape, p.reach_clients), (HoldShape::V1Tcp, 50));
    }

    #[test]
    fn hold_shapes_and_v2_listeners_parse() {
        let cli = Cli::parse_from([
            "remoteproxy-bench",
            "hold",
            "--hold-shape",
            "v2-ws",
            "--v2-url",
            "ssl://127.0.0.1:2213",
            "--v2-ws-url",
            "wss://127.0.0.1:2212/",
            "--reach-clients",
            "7",
            "--first-ping",
            "30",
        ]);
        let p = cli.options.params();
        assert_eq!((p.hold_shape, p.reach_clients, p.hold_tunnels), (HoldShape::V2Ws, 7, 1000));
        assert_eq!(p.first_ping, Duration::from_secs(30));
        assert_eq!(cli.options.v2_ws_url.as_deref(), Some("wss://127.0.0.1:2212/"));
        for (name, shape) in [
            ("v1-tcp", HoldShape::V1Tcp),
            ("v1-ws", HoldShape::V1Ws),
            ("v2-tcp", HoldShape::V2Tcp),
            ("v2-ws", HoldShape::V2Ws),
        ] {
            let cli = Cli::parse_from(["remoteproxy-bench", "hold", "--hold-shape", name]);
            assert_eq!(cli.options.hold_shape, shape);
            assert_eq!(shape.name(), name);
        }
        assert!(Cli::try_parse_from(["remoteproxy-bench", "hold", "--hold-shape", "v3"]).is_err());
    }

    #[test]
    fn storm_flags_and_defaults() {
        let cli = Cli::parse_from(["remoteproxy-bench", "storm", "--v2-url", "ssl://127.0.0.1:2213"]);
        assert!(matches!(cli.command, Command::Storm));
        let p = cli.options.params();
        assert_eq!(
            (p.storm_servers, p.storm_in_flight, p.storm_retries, p.storm_tunnels),
            (2000, 1000, 3, 4)
        );
        assert!(!p.restart_via_stdin && cli.options.metrics.is_none());
        let cli = Cli::parse_from([
            "remoteproxy-bench",
            "--quick",
            "storm",
            "--restart-via-stdin",
            "--storm-in-flight",
            "50",
            "--storm-retries",
            "0",
            "--storm-tunnels",
            "0",
            "--metrics",
            "127.0.0.1:9164",
        ]);
        let p = cli.options.params();
        assert_eq!((p.storm_servers, p.storm_in_flight, p.storm_retries, p.storm_tunnels), (200, 50, 0, 0));
        assert!(p.restart_via_stdin);
        assert_eq!(cli.options.metrics, Some("127.0.0.1:9164".parse().unwrap()));
        let p = Cli::parse_from(["remoteproxy-bench", "storm", "--storm-servers", "18000"]).options.params();
        assert_eq!(p.storm_servers, 18000);
    }

    #[test]
    fn a_repeated_flag_takes_the_last_value() {
        let cli = Cli::parse_from([
            "remoteproxy-bench",
            "hold",
            "--hold-tunnels",
            "9000",
            "--hold-tunnels",
            "2000",
        ]);
        assert_eq!(cli.options.params().hold_tunnels, 2000);
    }

    #[test]
    fn hidden_and_report_commands_parse() {
        let cli = Cli::parse_from(["remoteproxy-bench", "baseline-server", "--tls-stream"]);
        assert!(matches!(
            cli.command,
            Command::BaselineServer(BaselineArgs { tls_stream: true, tls_ws: false, tickets: false })
        ));
        let cli = Cli::parse_from(["remoteproxy-bench", "report", "--input", "a.json", "--input", "b.json"]);
        let Command::Report(args) = cli.command else { panic!("report") };
        assert_eq!(args.inputs.len(), 2);
    }
}
