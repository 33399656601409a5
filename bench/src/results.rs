//! What a run produces: the JSON document (`--json`, read back by `report`) and the human lines
//! printed as each measure finishes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::goals::Check;
use crate::stats::{Percentiles, format_bytes, format_rate, format_ratio, three_digits};

/// Error counts by kind (`connect: ...`, `timeout: TLS handshake`, ...).
pub type Errors = BTreeMap<String, usize>;

/// Adds `more` into `into`.
pub fn merge_errors(into: &mut Errors, more: &Errors) {
    for (key, count) in more {
        *into.entry(key.clone()).or_default() += count;
    }
}

/// Total of the counts.
pub fn error_total(errors: &Errors) -> usize {
    errors.values().sum()
}

/// The whole document. Several can be merged (`report --input a --input b`): the lists are
/// concatenated.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Results {
    /// `remoteproxy-bench`.
    pub tool: String,
    /// The bench's version.
    pub version: String,
    /// Where and against what each merged run ran.
    pub runs: Vec<RunInfo>,
    /// `setup` results.
    pub setup: Vec<SetupResult>,
    /// `throughput` results.
    pub throughput: Vec<ThroughputResult>,
    /// `latency` results.
    pub latency: Vec<LatencyResult>,
    /// `hold` results.
    pub hold: Vec<HoldResult>,
    /// `hold --hold-shape v2-tcp|v2-ws` results (absent in documents of older benches).
    #[serde(default)]
    pub fleet: Vec<FleetResult>,
    /// `storm` results (absent in documents of older benches).
    #[serde(default)]
    pub storm: Vec<StormResult>,
    /// `cluster` results (absent in documents of older benches).
    #[serde(default)]
    pub cluster: Vec<ClusterResult>,
}

/// `cluster`: cross-node tunnels next to one-node tunnels.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterResult {
    /// `tls-tcp`, `wss`, ...
    pub transport: String,
    /// Both ends on the first node.
    pub one_node: ClusterSide,
    /// The second end on the other node.
    pub cross_node: ClusterSide,
    /// Cross-node / one-node tunnels per second.
    pub setup_ratio: Option<f64>,
    /// Cross-node / one-node MB/s (both ways).
    pub throughput_ratio: Option<f64>,
    /// Cross-node minus one-node p50 round trip, in µs.
    pub added_rtt_us: f64,
    /// Targets.
    pub checks: Vec<Check>,
}

/// One side of a cluster result.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClusterSide {
    /// Median tunnels per second over the rounds.
    pub tunnels_per_s: f64,
    /// Median MB/s both ways over the rounds.
    pub mb_per_s: f64,
    /// The first node's CPU seconds per GB moved (with `--pid`).
    #[serde(default)]
    pub cpu_s_per_gb: Option<f64>,
    /// Round-trip times, all rounds pooled, in µs.
    pub rtt_us: Percentiles,
    /// Failures by kind.
    pub errors: Errors,
}

impl ClusterResult {
    /// The human lines.
    pub fn human(&self) -> Vec<String> {
        let (one, cross) = (&self.one_node, &self.cross_node);
        let ratio = |r: Option<f64>| r.map_or("n/a".to_string(), |r| format!("{r:.2}"));
        let mut lines = vec![
            format!(
                "cluster {} setup: one-node {:.0}/s, cross-node {:.0}/s, ratio {}",
                self.transport,
                one.tunnels_per_s,
                cross.tunnels_per_s,
                ratio(self.setup_ratio)
            ),
            format!(
                "cluster {} throughput both ways: one-node {:.0} MB/s, cross-node {:.0} MB/s, ratio {}{}",
                self.transport,
                one.mb_per_s,
                cross.mb_per_s,
                ratio(self.throughput_ratio),
                match (one.cpu_s_per_gb, cross.cpu_s_per_gb) {
                    (Some(one), Some(cross)) => format!(
                        "; the node's CPU per GB: one-node {one:.2} s, cross-node {cross:.2} s ({:.2}×)",
                        cross / one
                    ),
                    _ => String::new(),
                }
            ),
            format!(
                "cluster {} round trip p50/p99: one-node {:.0}/{:.0} µs, cross-node {:.0}/{:.0} µs, added {:.0} µs",
                self.transport,
                one.rtt_us.p50,
                one.rtt_us.p99,
                cross.rtt_us.p50,
                cross.rtt_us.p99,
                self.added_rtt_us
            ),
        ];
        lines.extend(self.checks.iter().map(|c| format!("  {}", c.line())));
        lines
    }
}

impl Results {
    /// An empty document for this bench.
    pub fn new(run: RunInfo) -> Results {
        Results {
            tool: "remoteproxy-bench".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            runs: vec![run],
            ..Results::default()
        }
    }

    /// Appends another document's runs and results.
    pub fn merge(&mut self, other: Results) {
        if self.tool.is_empty() {
            self.tool = other.tool;
            self.version = other.version;
        }
        self.runs.extend(other.runs);
        self.setup.extend(other.setup);
        self.throughput.extend(other.throughput);
        self.latency.extend(other.latency);
        self.hold.extend(other.hold);
        self.fleet.extend(other.fleet);
        self.storm.extend(other.storm);
        self.cluster.extend(other.cluster);
    }

    /// Every check of every result.
    pub fn checks(&self) -> Vec<&Check> {
        let setup = self.setup.iter().flat_map(|r| &r.checks);
        let throughput = self.throughput.iter().flat_map(|r| &r.checks);
        let latency = self.latency.iter().flat_map(|r| &r.checks);
        let hold = self.hold.iter().flat_map(|r| &r.checks);
        let fleet = self.fleet.iter().flat_map(|r| &r.checks);
        let storm = self.storm.iter().flat_map(|r| &r.checks);
        let cluster = self.cluster.iter().flat_map(|r| &r.checks);
        setup.chain(throughput).chain(latency).chain(hold).chain(fleet).chain(storm).chain(cluster).collect()
    }
}

/// One invocation of the bench.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunInfo {
    /// Unix time at the start.
    pub started_unix: u64,
    /// The broker's v1 TCP URL.
    pub broker_url: String,
    /// The broker's v1 WebSocket URL, if given.
    pub broker_ws_url: Option<String>,
    /// The broker's pid, if given.
    pub broker_pid: Option<u32>,
    /// `server version` from the broker's Hello.
    pub broker_server: String,
    /// Cores of this machine.
    pub cpus: usize,
    /// `model name` of /proc/cpuinfo.
    pub cpu_model: String,
    /// Repetitions of each measure per side.
    pub rounds: usize,
    /// Whether `--quick` sizes were used.
    pub quick: bool,
}

/// `setup`: tunnels opened at a fixed concurrency.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetupResult {
    /// `tls-tcp`, `tcp`, ...
    pub transport: String,
    /// Tunnels per round and side.
    pub tunnels: usize,
    /// Tunnels in flight at once.
    pub concurrency: usize,
    /// The broker's numbers.
    pub broker: SetupSide,
    /// The baseline's numbers.
    pub baseline: SetupSide,
    /// broker / baseline tunnels per second.
    pub ratio: Option<f64>,
    /// Targets.
    pub checks: Vec<Check>,
}

/// One side of a setup result.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SetupSide {
    /// Median over the rounds of (established tunnels / wall time).
    pub tunnels_per_s: f64,
    /// Each round's rate.
    pub rounds_tunnels_per_s: Vec<f64>,
    /// Tunnels attempted (all rounds, without warm-up).
    pub attempted: usize,
    /// Tunnels established with the byte through.
    pub ok: usize,
    /// Failures by kind.
    pub errors: Errors,
    /// From the first connect to the byte arriving, all rounds pooled, in ms.
    pub latency_ms: Percentiles,
    /// The latency at each whole percentile 0..=100, in ms (for the chart).
    pub latency_cdf_ms: Vec<f64>,
    /// Server CPU time per established tunnel, in ms.
    pub cpu_ms_per_tunnel: Option<f64>,
}

/// `throughput`: one tunnel, a fixed amount of data.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ThroughputResult {
    /// `tls-tcp`, `wss`, `mixed tls-tcp→wss`, ...
    pub transport: String,
    /// `one-way` or `both-ways`.
    pub direction: String,
    /// Bytes sent in each direction that carries data.
    pub bytes: u64,
    /// The broker's numbers.
    pub broker: ThroughputSide,
    /// The baseline's numbers.
    pub baseline: ThroughputSide,
    /// broker / baseline MB/s.
    pub ratio: Option<f64>,
    /// Targets.
    pub checks: Vec<Check>,
}

/// One side of a throughput result.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ThroughputSide {
    /// Median over the rounds of payload bytes delivered (both directions added) per second.
    pub mb_per_s: f64,
    /// Each round's rate.
    pub rounds_mb_per_s: Vec<f64>,
    /// Server CPU seconds per GB (10^9 bytes) delivered.
    pub cpu_s_per_gb: Option<f64>,
    /// Failures by kind.
    pub errors: Errors,
}

/// `latency`: ping-pong through one tunnel.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LatencyResult {
    /// `tls-tcp`, `wss`, ...
    pub transport: String,
    /// Timed round trips per round and side.
    pub round_trips: usize,
    /// Bytes each way per round trip.
    pub message_bytes: usize,
    /// The broker's numbers.
    pub broker: LatencySide,
    /// The baseline's numbers.
    pub baseline: LatencySide,
    /// broker / baseline p50.
    pub ratio_p50: Option<f64>,
    /// broker / baseline p99.
    pub ratio_p99: Option<f64>,
    /// Targets.
    pub checks: Vec<Check>,
}

/// One side of a latency result.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LatencySide {
    /// Round-trip times, all rounds pooled, in µs.
    pub rtt_us: Percentiles,
    /// Failures by kind.
    pub errors: Errors,
}

/// `hold`: many tunnels, each after 1 MiB both ways, sitting idle.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HoldResult {
    /// `tls-tcp`, `tcp`, ...
    pub transport: String,
    /// Tunnels asked for.
    pub tunnels: usize,
    /// Bytes each tunnel carried in each direction before going idle.
    pub bytes_each_way: u64,
    /// The broker's numbers.
    pub broker: HoldSide,
    /// The baseline's numbers.
    pub baseline: HoldSide,
    /// broker / baseline RSS per tunnel.
    pub ratio: Option<f64>,
    /// Targets (the broker's).
    pub checks: Vec<Check>,
}

/// One side of a hold result. Memory and descriptor readings need the process id.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HoldSide {
    /// Tunnels established and carried their traffic.
    pub established: usize,
    /// RSS of the server before the warm-up, in KiB (one-time costs are the difference to
    /// `rss_kib.before`).
    #[serde(default)]
    pub cold_rss_kib: Option<u64>,
    /// Failures by kind.
    pub errors: Errors,
    /// Seconds to open all tunnels and pass their traffic.
    pub open_s: f64,
    /// Seconds from closing the last tunnel until the descriptors came back (or the wait ended).
    pub release_s: f64,
    /// RSS before opening, while held (idle), after closing, in KiB.
    pub rss_kib: Option<Triple>,
    /// Open descriptors before, while held, after.
    pub fds: Option<Triple>,
    /// (held - before) RSS / established tunnels, in bytes.
    pub rss_bytes_per_tunnel: Option<f64>,
    /// (held - before) descriptors / established tunnels.
    pub fds_per_tunnel: Option<f64>,
}

/// `hold --hold-shape v2-tcp|v2-ws`: many registered TunnelProxy servers sitting idle, and how
/// long a client takes to reach one of them meanwhile.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetResult {
    /// `v2 tls-tcp`, `v2 wss`, ...
    pub transport: String,
    /// Servers asked for.
    pub servers: usize,
    /// Timed reach clients per side.
    pub reach_clients: usize,
    /// Reach clients in flight at once.
    pub reach_concurrency: usize,
    /// Seconds from registering until a held server's first ping.
    #[serde(default)]
    pub first_ping_s: f64,
    /// The broker's numbers.
    pub broker: FleetSide,
    /// The baseline's numbers.
    pub baseline: FleetSide,
    /// broker / baseline RSS per server.
    pub ratio: Option<f64>,
    /// broker / baseline reach p50.
    pub reach_ratio_p50: Option<f64>,
    /// broker / baseline reach p99.
    pub reach_ratio_p99: Option<f64>,
    /// Targets (the broker's).
    pub checks: Vec<Check>,
}

/// One side of a fleet result.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FleetSide {
    /// Memory and descriptors while the servers are held; "tunnel" reads "server" here, and
    /// `errors` counts failed registrations and servers the broker closed while held.
    pub hold: HoldSide,
    /// Reach clients that got their bytes back.
    pub reach_ok: usize,
    /// From the client's connect to its first bytes echoed back by the held server, in ms.
    pub reach_ms: Percentiles,
    /// Failed reach attempts by kind.
    pub reach_errors: Errors,
}

/// `storm`: N v2 servers (re)connecting and registering at once: first with full TLS handshakes,
/// then resuming with their tickets, on the same server and (optionally) after a restart.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StormResult {
    /// `v2 tls-tcp`.
    pub transport: String,
    /// Devices (v2 servers) per storm.
    pub servers: usize,
    /// Connections being set up at once (connect, TLS, RegisterServer).
    pub in_flight: usize,
    /// Retries a device makes after a failed attempt before it gives up.
    pub retries_allowed: usize,
    /// v1 tunnels doing 64-byte ping-pong while each storm runs.
    pub tunnels: usize,
    /// The broker's storms.
    pub broker: StormSide,
    /// The baseline's storms.
    pub baseline: StormSide,
    /// broker / baseline full-handshake registrations per second.
    pub ratio_full: Option<f64>,
    /// The broker's resumed rate / its own full rate.
    pub broker_speedup: Option<f64>,
    /// The baseline's resumed rate / its own full rate.
    pub baseline_speedup: Option<f64>,
    /// Targets (the broker's).
    pub checks: Vec<Check>,
}

/// The storms of one side.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StormSide {
    /// Every device's first connection: full handshakes.
    pub full: StormPhase,
    /// The same devices again, with the tickets of the full storm, on the same server.
    pub resumed: Option<StormPhase>,
    /// The same devices again after the server restarted (broker only, `--restart-via-stdin`).
    pub restarted: Option<StormPhase>,
}

/// One storm.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StormPhase {
    /// Devices that tried.
    pub attempted: usize,
    /// Devices registered in the end (after retries).
    pub registered: usize,
    /// From the start until the last device was registered (or gave up).
    pub seconds: f64,
    /// registered / seconds.
    pub per_s: f64,
    /// Registrations whose TLS handshake was resumed.
    pub resumed: usize,
    /// resumed / registered.
    pub resumed_fraction: f64,
    /// Attempts after a failed one, all devices.
    pub retries: usize,
    /// Why attempts were retried, by kind.
    pub retry_causes: Errors,
    /// Devices that gave up, by the kind of their last failure.
    pub errors: Errors,
    /// Server CPU time (user + system) over the storm / registered, in ms.
    pub cpu_ms_per_handshake: Option<f64>,
    /// Handshakes the broker counted over the storm (`remoteproxy_tls_handshakes_total`), when
    /// its metrics endpoint was given: (full, resumed).
    pub server_handshakes: Option<(u64, u64)>,
    /// Round trips of the ping-pong tunnels while the storm ran, in ms.
    pub rtt_ms: Percentiles,
    /// Ping-pong tunnels that failed during the storm.
    pub rtt_errors: Errors,
}

/// A reading before, during and after.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Triple {
    /// Before the tunnels opened.
    pub before: u64,
    /// With all tunnels open and idle.
    pub held: u64,
    /// After they closed.
    pub after: u64,
}

fn errors_pair(broker: &Errors, baseline: &Errors) -> String {
    format!("errors: broker {}, baseline {}", error_total(broker), error_total(baseline))
}

fn error_details(role: &str, errors: &Errors) -> Vec<String> {
    errors.iter().map(|(kind, count)| format!("    {role} error ×{count}: {kind}")).collect()
}

fn check_lines(checks: &[Check]) -> Vec<String> {
    checks.iter().map(|c| format!("    target {}", c.line())).collect()
}

fn opt_ms(value: Option<f64>) -> String {
    value.map(|v| format!("{} ms", three_digits(v))).unwrap_or_else(|| "n/a".into())
}

impl SetupResult {
    /// Human lines.
    pub fn human(&self) -> Vec<String> {
        let (b, s) = (&self.broker, &self.baseline);
        let mut lines = vec![
            format!(
                "setup {} (N={}, C={}): broker {} tunnels/s, baseline {} tunnels/s, ratio {}",
                self.transport,
                self.tunnels,
                self.concurrency,
                three_digits(b.tunnels_per_s),
                three_digits(s.tunnels_per_s),
                format_ratio(self.ratio)
            ),
            format!(
                "    setup latency p50/p99/max: broker {}/{}/{} ms, baseline {}/{}/{} ms",
                three_digits(b.latency_ms.p50),
                three_digits(b.latency_ms.p99),
                three_digits(b.latency_ms.max),
                three_digits(s.latency_ms.p50),
                three_digits(s.latency_ms.p99),
                three_digits(s.latency_ms.max)
            ),
            format!(
                "    server CPU per tunnel: broker {}, baseline {}; {}",
                opt_ms(b.cpu_ms_per_tunnel),
                opt_ms(s.cpu_ms_per_tunnel),
                errors_pair(&b.errors, &s.errors)
            ),
        ];
        lines.extend(error_details("broker", &b.errors));
        lines.extend(error_details("baseline", &s.errors));
        lines.extend(check_lines(&self.checks));
        lines
    }
}

impl ThroughputResult {
    /// Human lines.
    pub fn human(&self) -> Vec<String> {
        let (b, s) = (&self.broker, &self.baseline);
        let cpu =
            |v: Option<f64>| v.map(|v| format!("{} s", three_digits(v))).unwrap_or_else(|| "n/a".into());
        let mut lines = vec![
            format!(
                "throughput {} {} ({} each way): broker {}, baseline {}, ratio {}",
                self.transport,
                self.direction,
                format_bytes(self.bytes as f64),
                format_rate(b.mb_per_s),
                format_rate(s.mb_per_s),
                format_ratio(self.ratio)
            ),
            format!(
                "    server CPU per GB: broker {}, baseline {}; {}",
                cpu(b.cpu_s_per_gb),
                cpu(s.cpu_s_per_gb),
                errors_pair(&b.errors, &s.errors)
            ),
        ];
        lines.extend(error_details("broker", &b.errors));
        lines.extend(error_details("baseline", &s.errors));
        lines.extend(check_lines(&self.checks));
        lines
    }
}

impl LatencyResult {
    /// Human lines.
    pub fn human(&self) -> Vec<String> {
        let (b, s) = (&self.broker.rtt_us, &self.baseline.rtt_us);
        let mut lines = vec![
            format!(
                "latency {} ({} B ping-pong, {} round trips): p50 broker {} µs, baseline {} µs, ratio {}",
                self.transport,
                self.message_bytes,
                self.round_trips,
                three_digits(b.p50),
                three_digits(s.p50),
                format_ratio(self.ratio_p50)
            ),
            format!(
                "    p99/p99.9/max: broker {}/{}/{} µs, baseline {}/{}/{} µs; p99 ratio {}; {}",
                three_digits(b.p99),
                three_digits(b.p999),
                three_digits(b.max),
                three_digits(s.p99),
                three_digits(s.p999),
                three_digits(s.max),
                format_ratio(self.ratio_p99),
                errors_pair(&self.broker.errors, &self.baseline.errors)
            ),
        ];
        lines.extend(error_details("broker", &self.broker.errors));
        lines.extend(error_details("baseline", &self.baseline.errors));
        lines.extend(check_lines(&self.checks));
        lines
    }
}

impl HoldSide {
    /// RSS per `unit` (tunnel, server), then the readings.
    pub fn memory_line(&self, unit: &str) -> String {
        match (self.rss_bytes_per_tunnel, self.rss_kib, self.fds) {
            (Some(per_tunnel), Some(rss), Some(fds)) => format!(
                "{} per {unit} (RSS cold {}, warmed up {} → {} held → {} after close; fds {} → {} → {})",
                format_bytes(per_tunnel),
                format_bytes(self.cold_rss_kib.unwrap_or_default() as f64 * 1024.0),
                format_bytes(rss.before as f64 * 1024.0),
                format_bytes(rss.held as f64 * 1024.0),
                format_bytes(rss.after as f64 * 1024.0),
                fds.before,
                fds.held,
                fds.after
            ),
            _ => "RSS n/a (no --pid)".to_string(),
        }
    }
}

impl HoldResult {
    /// Human lines.
    pub fn human(&self) -> Vec<String> {
        let (b, s) = (&self.broker, &self.baseline);
        let mut lines = vec![
            format!(
                "hold {} ({} tunnels, {} each way, then idle): broker {}, baseline {}, ratio {}",
                self.transport,
                self.tunnels,
                format_bytes(self.bytes_each_way as f64),
                b.rss_bytes_per_tunnel.map(format_bytes).unwrap_or_else(|| "n/a".into()),
                s.rss_bytes_per_tunnel.map(format_bytes).unwrap_or_else(|| "n/a".into()),
                format_ratio(self.ratio)
            ),
            format!("    broker: {} held, {}", b.established, b.memory_line("tunnel")),
            format!("    baseline: {} held, {}", s.established, s.memory_line("tunnel")),
            format!(
                "    open+traffic: broker {:.1} s, baseline {:.1} s; release: broker {:.1} s, baseline {:.1} s; {}",
                b.open_s,
                s.open_s,
                b.release_s,
                s.release_s,
                errors_pair(&b.errors, &s.errors)
            ),
        ];
        lines.extend(error_details("broker", &b.errors));
        lines.extend(error_details("baseline", &s.errors));
        lines.extend(check_lines(&self.checks));
        lines
    }
}

impl FleetResult {
    /// Human lines.
    pub fn human(&self) -> Vec<String> {
        let (b, s) = (&self.broker, &self.baseline);
        let mut lines = vec![
            format!(
                "hold {} ({} registered servers, first ping after {} s, idle): broker {}, baseline {} per server, ratio {}",
                self.transport,
                self.servers,
                self.first_ping_s,
                b.hold.rss_bytes_per_tunnel.map(format_bytes).unwrap_or_else(|| "n/a".into()),
                s.hold.rss_bytes_per_tunnel.map(format_bytes).unwrap_or_else(|| "n/a".into()),
                format_ratio(self.ratio)
            ),
            format!("    broker: {} held, {}", b.hold.established, b.hold.memory_line("server")),
            format!("    baseline: {} held, {}", s.hold.established, s.hold.memory_line("server")),
            format!(
                "    register: broker {:.1} s, baseline {:.1} s; release: broker {:.1} s, baseline {:.1} s; {}",
                b.hold.open_s,
                s.hold.open_s,
                b.hold.release_s,
                s.hold.release_s,
                errors_pair(&b.hold.errors, &s.hold.errors)
            ),
            format!(
                "    reach ({} clients, {} at once, connect to first byte echoed) p50/p99/max: broker {}/{}/{} ms, \
                 baseline {}/{}/{} ms; p99 ratio {}; reached: broker {}, baseline {}",
                self.reach_clients,
                self.reach_concurrency,
                three_digits(b.reach_ms.p50),
                three_digits(b.reach_ms.p99),
                three_digits(b.reach_ms.max),
                three_digits(s.reach_ms.p50),
                three_digits(s.reach_ms.p99),
                three_digits(s.reach_ms.max),
                format_ratio(self.reach_ratio_p99),
                b.reach_ok,
                s.reach_ok
            ),
        ];
        lines.extend(error_details("broker", &b.hold.errors));
        lines.extend(error_details("baseline", &s.hold.errors));
        lines.extend(error_details("broker reach", &b.reach_errors));
        lines.extend(error_details("baseline reach", &s.reach_errors));
        lines.extend(check_lines(&self.checks));
        lines
    }
}

fn phase_line(name: &str, p: &StormPhase) -> String {
    let counted = p
        .server_handshakes
        .map(|(full, resumed)| format!("; broker counted {full} full, {resumed} resumed"))
        .unwrap_or_default();
    format!(
        "        {name}: {}/{} registered in {:.2} s = {}/s, {:.1}% resumed, CPU {} per handshake, {} retries, \
         {} gave up; tunnel RTT p50/p99/max {}/{}/{} ms ({} round trips){counted}",
        p.registered,
        p.attempted,
        p.seconds,
        three_digits(p.per_s),
        p.resumed_fraction * 100.0,
        opt_ms(p.cpu_ms_per_handshake),
        p.retries,
        error_total(&p.errors),
        three_digits(p.rtt_ms.p50),
        three_digits(p.rtt_ms.p99),
        three_digits(p.rtt_ms.max),
        p.rtt_ms.count
    )
}

impl StormResult {
    /// Human lines.
    pub fn human(&self) -> Vec<String> {
        let (b, s) = (&self.broker, &self.baseline);
        let rate = |p: &Option<StormPhase>| p.as_ref().map(|p| three_digits(p.per_s)).unwrap_or("n/a".into());
        let mut lines = vec![format!(
            "storm {} ({} devices, {} in flight, {} ping-pong tunnels): full handshakes broker {}/s, baseline {}/s, \
                 ratio {}; resumed broker {}/s ({}× its full rate), baseline {}/s ({}×); after restart broker {}/s",
            self.transport,
            self.servers,
            self.in_flight,
            self.tunnels,
            three_digits(b.full.per_s),
            three_digits(s.full.per_s),
            format_ratio(self.ratio_full),
            rate(&b.resumed),
            format_ratio(self.broker_speedup),
            rate(&s.resumed),
            format_ratio(self.baseline_speedup),
            rate(&b.restarted),
        )];
        for (role, side) in [("broker", b), ("baseline", s)] {
            lines.push(format!("    {role}:"));
            lines.push(phase_line("full", &side.full));
            for (name, phase) in [("resumed", &side.resumed), ("after restart", &side.restarted)] {
                if let Some(phase) = phase {
                    lines.push(phase_line(name, phase));
                }
            }
            let phases = [Some(&side.full), side.resumed.as_ref(), side.restarted.as_ref()];
            for (name, phase) in ["full", "resumed", "after restart"].iter().zip(phases) {
                let Some(phase) = phase else { continue };
                lines.extend(error_details(&format!("{role} {name}"), &phase.errors));
                lines.extend(
                    phase.retry_causes.iter().map(|(k, n)| format!("    {role} {name} retry ×{n}: {k}")),
                );
                lines.extend(error_details(&format!("{role} {name} ping-pong"), &phase.rtt_errors));
            }
        }
        lines.extend(check_lines(&self.checks));
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_merge_and_count() {
        let mut a = Errors::new();
        a.insert("x".into(), 2);
        let mut b = Errors::new();
        b.insert("x".into(), 1);
        b.insert("y".into(), 4);
        merge_errors(&mut a, &b);
        assert_eq!(a["x"], 3);
        assert_eq!(error_total(&a), 7);
    }

    #[test]
    fn documents_merge_and_round_trip_through_json() {
        let mut one = Results::new(RunInfo { broker_url: "ssl://a".into(), ..RunInfo::default() });
        one.throughput.push(ThroughputResult {
            transport: "tls-tcp".into(),
            direction: "one-way".into(),
            bytes: 1 << 20,
            broker: ThroughputSide { mb_per_s: 900.0, ..Default::default() },
            baseline: ThroughputSide { mb_per_s: 1000.0, ..Default::default() },
            ratio: Some(0.9),
            checks: crate::goals::throughput("tls-tcp", Some(0.9), 0),
        });
        let text = serde_json::to_string(&one).unwrap();
        let mut merged = Results::default();
        merged.merge(serde_json::from_str(&text).unwrap());
        merged.merge(Results::new(RunInfo { broker_url: "tcp://b".into(), ..RunInfo::default() }));
        assert_eq!(merged.tool, "remoteproxy-bench");
        assert_eq!(merged.runs.len(), 2);
        assert_eq!(merged.throughput.len(), 1);
        assert_eq!(merged.checks().len(), 1);
        let lines = merged.throughput[0].human();
        assert!(lines[0].contains("broker 900 MB/s, baseline 1000 MB/s, ratio 0.90"), "{lines:?}");
    }

    #[test]
    fn older_documents_without_fleet_still_read() {
        let mut value = serde_json::to_value(Results::new(RunInfo::default())).unwrap();
        value.as_object_mut().unwrap().remove("fleet");
        let results: Results = serde_json::from_value(value).unwrap();
        assert!(results.fleet.is_empty());
    }

    #[test]
    fn older_documents_without_storm_still_read() {
        let mut value = serde_json::to_value(Results::new(RunInfo::default())).unwrap();
        value.as_object_mut().unwrap().remove("storm");
        let results: Results = serde_json::from_value(value).unwrap();
        assert!(results.storm.is_empty());
    }

    #[test]
    fn storm_lines_and_merge() {
        let phase = |per_s: f64, resumed: usize| StormPhase {
            attempted: 10,
            registered: 10,
            seconds: 10.0 / per_s,
            per_s,
            resumed,
            resumed_fraction: resumed as f64 / 10.0,
            server_handshakes: Some((10 - resumed as u64, resumed as u64)),
            ..StormPhase::default()
        };
        let result = StormResult {
            transport: "v2 tls-tcp".into(),
            servers: 10,
            in_flight: 5,
            retries_allowed: 3,
            tunnels: 2,
            broker: StormSide {
                full: phase(900.0, 0),
                resumed: Some(phase(2700.0, 10)),
                restarted: Some(phase(2600.0, 10)),
            },
            baseline: StormSide { full: phase(1000.0, 0), resumed: Some(phase(3000.0, 10)), restarted: None },
            ratio_full: Some(0.9),
            broker_speedup: Some(3.0),
            baseline_speedup: Some(3.0),
            checks: Vec::new(),
        };
        let lines = result.human();
        assert!(lines[0].contains("broker 900/s, baseline 1000/s, ratio 0.90"), "{lines:?}");
        assert!(lines[0].contains("after restart broker 2600/s"), "{lines:?}");
        assert!(lines.iter().any(|l| l.contains("after restart: 10/10") && l.contains("100.0% resumed")));
        assert!(lines.iter().any(|l| l.contains("broker counted 0 full, 10 resumed")));
        let mut doc = Results::new(RunInfo::default());
        doc.storm.push(result);
        let mut merged = Results::default();
        merged.merge(serde_json::from_str(&serde_json::to_string(&doc).unwrap()).unwrap());
        assert_eq!(merged.storm.len(), 1);
        assert_eq!(merged.storm[0].broker.restarted.as_ref().unwrap().resumed, 10);
    }

    #[test]
    fn fleet_lines_name_servers_and_reach() {
        let side = |kib: f64, p99: f64| FleetSide {
            hold: HoldSide {
                established: 5,
                rss_bytes_per_tunnel: Some(kib * 1024.0),
                ..HoldSide::default()
            },
            reach_ok: 3,
            reach_ms: Percentiles { p50: 2.0, p99, max: p99, ..Percentiles::default() },
            reach_errors: Errors::new(),
        };
        let result = FleetResult {
            transport: "v2 tls-tcp".into(),
            servers: 5,
            reach_clients: 3,
            reach_concurrency: 2,
            first_ping_s: 0.0,
            broker: side(22.7, 9.0),
            baseline: side(8.0, 4.5),
            ratio: Some(22.7 / 8.0),
            reach_ratio_p50: Some(1.0),
            reach_ratio_p99: Some(2.0),
            checks: Vec::new(),
        };
        let lines = result.human();
        assert!(
            lines[0].contains("5 registered servers") && lines[0].contains("broker 22.7 KiB"),
            "{lines:?}"
        );
        assert!(lines[4].contains("broker 2.00/9.00/9.00 ms"), "{lines:?}");
    }
}
