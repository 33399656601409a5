//! `storm`: the reconnect storm (issue #14). When a broker restarts, or a network path comes
//! back, its whole fleet of devices reconnects at once; what matters then is how fast every
//! device is registered again, what each TLS handshake costs the broker, and whether the tunnels
//! that are already open notice.
//!
//! N simulated devices, each a v2 TunnelProxy server with a TLS session store of its own
//! ([`Client::device_tls`]: rustls keeps at most 8 TLS 1.3 tickets per server name in one store,
//! so devices sharing one would share 8 tickets). Per side (a baseline process first, then the
//! broker, each with devices of its own):
//! 1. **full storm**: all N device tasks start at once; at most `in_flight` of them are between
//!    TCP connect and the `TunnelProxy.RegisterServer` answer (NoError, SLIP) at a time, the rest
//!    wait for a slot (a device that cannot connect waits too). A failed attempt is retried after
//!    100 ms, 200 ms, 400 ms ... plus as much again of jitter, up to `retries` times, as a
//!    device's reconnect loop would; retries and their causes are counted, a device that gives up
//!    is an error. Time runs from the start until the last device is registered; rate =
//!    registered / time; the server's CPU time (all threads, /proc) over the storm / registered
//!    is its cost per handshake. The registered connections are held (not read) until the storm
//!    is over, then all dropped, and the bench waits until the server's descriptors are back;
//! 2. **resumed storm**: the same devices again, each now holding the tickets of its first
//!    connection (read with the RegisterServer answer): the same numbers, and the share of
//!    handshakes that were resumed (`handshake_kind()` on the device's side);
//! 3. **after a restart** (broker only, `--restart-via-stdin`): the bench prints
//!    [`RESTART_REQUEST`] on stderr and reads one line from stdin naming the restarted broker
//!    (`url=ssl://.. v2-url=ssl://.. pid=N [metrics=HOST:PORT]`), then storms it as in 2. With
//!    `ticketKeyFile` kept across the restart, the tickets from before it still resume.
//!
//! While each storm runs, K v1 tunnels (`--storm-tunnels`, opened before it on the same server's
//! v1 listener) do 64-byte ping-pong, one round trip every 5 ms each, on a thread of the
//! bench of their own; the round trips that start during the storm are its tunnel RTT. The
//! machine is shared: that thread, the devices and the server compete for the same cores, for
//! the broker and the baseline alike. The devices stand for thousands of other machines, so
//! their side runs on threads of its own at a lower priority (`nice` +10, Linux): on the same
//! host at the same priority they would take the CPU from the tunnels' ends, and the RTT would
//! measure the bench.
//!
//! The baseline is the v2 registry of [`crate::baseline`] with rustls' own ticketer
//! (`--tickets`): TLS handshake, read one line, answer one line, a map entry; the bare rustls
//! full-handshake and resumption rate. It keeps its ticket keys in memory, so it has no
//! "after restart". With the broker's metrics endpoint (`--metrics HOST:PORT`) the handshakes
//! the broker itself counted as full and resumed over each storm are reported too (retries
//! included).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use rustls::HandshakeKind;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;

use super::Bench;
use crate::baseline::{BaselineArgs, BaselineProcess};
use crate::client::{Client, Conn, Endpoint, Failure, Handshake, payload_chunk};
use crate::goals::{self, ResumedFacts, StormFacts};
use crate::procfs::{CpuMeter, Sample};
use crate::results::{Errors, StormPhase, StormResult, StormSide, error_total, merge_errors};
use crate::server::Server;
use crate::stats::{self, Percentiles};

/// What the bench prints (on stderr) when the driver should restart the broker.
pub const RESTART_REQUEST: &str =
    "storm: restart the broker now, then send one line: url=URL v2-url=URL pid=PID [metrics=HOST:PORT]";

/// The uuid "role" field of the storm's devices.
const DEVICE_ROLE: u16 = 0x57;

/// A device's first wait before retrying; doubled per retry, plus up to as much again of jitter.
const RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// Bytes each way per ping-pong round trip.
const PING_BYTES: usize = 64;

/// How long the bench waits for a server to let go of a storm's connections.
const RELEASE_LIMIT: Duration = Duration::from_secs(30);

/// How long the bench waits for the driver to restart the broker.
const RESTART_LIMIT: Duration = Duration::from_secs(300);

/// One simulated device: its uuid (the same at every reconnect) and its own TLS session store.
struct Device {
    uuid: String,
    tls: TlsConnector,
}

fn devices(client: &Client, count: usize) -> Arc<Vec<Device>> {
    Arc::new(
        (0..count)
            .map(|_| Device { uuid: client.fresh_uuid(DEVICE_ROLE), tls: client.device_tls() })
            .collect(),
    )
}

/// The restarted broker, as the driver names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restarted {
    /// Its v1 listener (`ssl://HOST:PORT`), for the ping-pong tunnels.
    pub url: String,
    /// Its v2 TunnelProxy TCP listener.
    pub v2_url: String,
    /// Its process id.
    pub pid: Option<u32>,
    /// Its metrics endpoint.
    pub metrics: Option<SocketAddr>,
}

/// Parses `url=.. v2-url=.. pid=.. metrics=..` (pid and metrics optional, any order).
pub fn parse_restarted(line: &str) -> anyhow::Result<Restarted> {
    let (mut url, mut v2_url, mut pid, mut metrics) = (None, None, None, None);
    for word in line.split_whitespace() {
        let (key, value) = word.split_once('=').with_context(|| format!("{word:?} is not key=value"))?;
        match key {
            "url" => url = Some(value.to_string()),
            "v2-url" => v2_url = Some(value.to_string()),
            "pid" => pid = Some(value.parse().with_context(|| format!("pid {value:?}"))?),
            "metrics" => metrics = Some(value.parse().with_context(|| format!("metrics {value:?}"))?),
            other => anyhow::bail!("unknown key {other:?}"),
        }
    }
    Ok(Restarted {
        url: url.context("url= is missing")?,
        v2_url: v2_url.context("v2-url= is missing")?,
        pid,
        metrics,
    })
}

/// Runs the storms on a baseline process, then on the broker (`metrics`: its metrics endpoint).
pub async fn run(bench: &Bench, metrics: Option<SocketAddr>) -> anyhow::Result<StormResult> {
    let p = &bench.params;
    let endpoint =
        bench.broker.v2.clone().context("storm needs the broker's TunnelProxy TCP listener (--v2-url)")?;
    anyhow::ensure!(
        endpoint.tls && !endpoint.websocket && bench.broker.stream.tls,
        "storm measures TLS handshakes: --url and --v2-url must be ssl://"
    );
    let transport = format!("v2 {}", endpoint.label());

    let baseline_process =
        BaselineProcess::start(BaselineArgs { tls_stream: true, tls_ws: true, tickets: true }).await?;
    let baseline_server = baseline_process.server.clone();
    let baseline_v2 =
        baseline_server.v2.clone().context("the baseline server has no TunnelProxy listener")?;
    let devices_b = devices(&bench.client, p.storm_servers);
    let full = storm(bench, &baseline_server, &baseline_v2, &devices_b, None, "full").await;
    let resumed = storm(bench, &baseline_server, &baseline_v2, &devices_b, None, "resumed").await;
    baseline_process.stop().await;
    drop(devices_b);
    let baseline = StormSide { full, resumed: Some(resumed), restarted: None };

    let devices = devices(&bench.client, p.storm_servers);
    let full = storm(bench, &bench.broker, &endpoint, &devices, metrics, "full").await;
    let resumed = storm(bench, &bench.broker, &endpoint, &devices, metrics, "resumed").await;
    let restarted = if p.restart_via_stdin {
        let next = ask_for_restart().await?;
        let stream = Endpoint::parse(&next.url)?;
        let v2 = Endpoint::parse(&next.v2_url)?;
        let server = Server {
            role: "broker",
            stream,
            ws: None,
            v2: Some(v2.clone()),
            v2_ws: None,
            pid: next.pid,
            handshake: Handshake::V1,
            peer: None,
        };
        Some(storm(bench, &server, &v2, &devices, next.metrics, "after restart").await)
    } else {
        None
    };
    let broker = StormSide { full, resumed: Some(resumed), restarted };

    let ratio_full = stats::ratio(broker.full.per_s, baseline.full.per_s);
    let speedup = |side: &StormSide, phase: Option<&StormPhase>| {
        phase.and_then(|phase| stats::ratio(phase.per_s, side.full.per_s))
    };
    let facts = |phase: Option<&StormPhase>| {
        phase.map(|phase| ResumedFacts {
            seconds: phase.seconds,
            speedup: speedup(&broker, Some(phase)),
            resumed_fraction: phase.resumed_fraction,
            errors: error_total(&phase.errors),
        })
    };
    let broker_phases = [Some(&broker.full), broker.resumed.as_ref(), broker.restarted.as_ref()];
    let checks = goals::storm(&StormFacts {
        devices: p.storm_servers,
        ratio_full,
        full_errors: error_total(&broker.full.errors) + error_total(&baseline.full.errors),
        resumed: facts(broker.resumed.as_ref()),
        restarted: facts(broker.restarted.as_ref()),
        rtt_p99_ms: broker_phases
            .iter()
            .flatten()
            .filter(|p| p.rtt_ms.count > 0)
            .map(|p| p.rtt_ms.p99)
            .reduce(f64::max),
        rtt_errors: broker_phases.iter().flatten().map(|p| error_total(&p.rtt_errors)).sum(),
    });
    let result = StormResult {
        transport,
        servers: p.storm_servers,
        in_flight: p.storm_in_flight,
        retries_allowed: p.storm_retries,
        tunnels: p.storm_tunnels,
        broker_speedup: speedup(&broker, broker.resumed.as_ref()),
        baseline_speedup: speedup(&baseline, baseline.resumed.as_ref()),
        broker,
        baseline,
        ratio_full,
        checks,
    };
    bench.printer.say(&result.human());
    Ok(result)
}

/// Prints [`RESTART_REQUEST`] and reads the restarted broker's line from stdin.
async fn ask_for_restart() -> anyhow::Result<Restarted> {
    eprintln!("{RESTART_REQUEST}");
    let mut line = String::new();
    let mut stdin = BufReader::new(tokio::io::stdin());
    let read = stdin.read_line(&mut line);
    tokio::time::timeout(RESTART_LIMIT, read)
        .await
        .context("no restarted broker named on stdin within 300 s")?
        .context("cannot read stdin")?;
    parse_restarted(line.trim()).with_context(|| format!("the restarted broker's line {line:?}"))
}

/// One storm of all `devices` against `endpoint` of `server`, ping-pong tunnels running; drops
/// the registered connections afterwards and waits until the server has let go of them.
async fn storm(
    bench: &Bench,
    server: &Server,
    endpoint: &Endpoint,
    devices: &Arc<Vec<Device>>,
    metrics: Option<SocketAddr>,
    name: &str,
) -> StormPhase {
    let p = &bench.params;
    eprintln!("storm: {}: {name}: {} devices, {} in flight…", server.role, devices.len(), p.storm_in_flight);
    let before = server.sample();
    let pingers = Pingers::start(&bench.client, server, p.storm_tunnels).await;
    let counted_before = match metrics {
        Some(addr) => handshake_counts(addr).await.ok(),
        None => None,
    };
    let cpu = CpuMeter::start(server.pid);
    pingers.flags.recording.store(true, Ordering::Release);
    let start = Instant::now();
    let gate = Arc::new(Semaphore::new(p.storm_in_flight.max(1)));
    let devices_side = DeviceThreads::start();
    let mut tasks = JoinSet::new();
    for index in 0..devices.len() {
        let (client, endpoint, devices, gate) =
            (bench.client.clone(), endpoint.clone(), devices.clone(), gate.clone());
        let retries = p.storm_retries;
        let device =
            async move { connect_device(&client, &endpoint, &devices[index], index, &gate, retries).await };
        match &devices_side {
            Some(threads) => tasks.spawn_on(device, threads.handle()),
            None => tasks.spawn(device),
        };
    }
    let mut phase = StormPhase { attempted: devices.len(), ..StormPhase::default() };
    let mut held = Vec::with_capacity(devices.len());
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(outcome) => {
                phase.retries += outcome.retries;
                merge_errors(&mut phase.retry_causes, &outcome.retry_causes);
                match outcome.result {
                    Ok((conn, kind)) => {
                        phase.registered += 1;
                        phase.resumed += usize::from(kind == Some(HandshakeKind::Resumed));
                        held.push(conn);
                    }
                    Err(failure) => *phase.errors.entry(failure.key()).or_default() += 1,
                }
            }
            Err(panic) => *phase.errors.entry(format!("bench task failed: {panic}")).or_default() += 1,
        }
    }
    let elapsed = start.elapsed();
    pingers.flags.recording.store(false, Ordering::Release);
    let cpu = cpu.elapsed();
    phase.server_handshakes = match (counted_before, metrics) {
        (Some((full, resumed)), Some(addr)) => handshake_counts(addr)
            .await
            .ok()
            .map(|(f, r)| (f.saturating_sub(full), r.saturating_sub(resumed))),
        _ => None,
    };
    let (rtts, rtt_errors) = pingers.stop().await;
    phase.seconds = elapsed.as_secs_f64();
    phase.per_s = phase.registered as f64 / phase.seconds.max(1e-9);
    phase.resumed_fraction =
        if phase.registered > 0 { phase.resumed as f64 / phase.registered as f64 } else { 0.0 };
    phase.cpu_ms_per_handshake =
        cpu.filter(|_| phase.registered > 0).map(|cpu| cpu.as_secs_f64() * 1e3 / phase.registered as f64);
    phase.rtt_ms = Percentiles::of_durations(&rtts, Duration::from_millis(1)).0;
    phase.rtt_errors = rtt_errors;
    drop(held);
    drop(devices_side);
    wait_for_descriptors(server, before).await;
    phase
}

/// The runtime the devices run on: two threads below normal priority. `None` (devices on the
/// bench's own runtime) where it cannot be started.
struct DeviceThreads {
    runtime: Option<tokio::runtime::Runtime>,
}

impl DeviceThreads {
    fn start() -> Option<DeviceThreads> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
            .thread_name("storm-devices")
            .enable_all()
            .on_thread_start(lower_priority)
            .build()
            .ok()?;
        Some(DeviceThreads { runtime: Some(runtime) })
    }
}

impl std::ops::Deref for DeviceThreads {
    type Target = tokio::runtime::Runtime;
    fn deref(&self) -> &Self::Target {
        self.runtime.as_ref().expect("present until dropped")
    }
}

impl Drop for DeviceThreads {
    fn drop(&mut self) {
        // Inside the bench's runtime a runtime must not be dropped in place.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// `nice` +10 for the calling thread (Linux: per thread; elsewhere nothing).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let thread = Some(rustix::thread::gettid());
        if let Ok(current) = rustix::process::getpriority_process(thread) {
            let _ = rustix::process::setpriority_process(thread, (current + 10).min(19));
        }
    }
}

/// What became of one device.
struct Outcome {
    result: Result<(Conn, Option<HandshakeKind>), Failure>,
    retries: usize,
    retry_causes: Errors,
}

/// Connects and registers one device, retrying as a device would.
async fn connect_device(
    client: &Client,
    endpoint: &Endpoint,
    device: &Device,
    index: usize,
    gate: &Semaphore,
    retries: usize,
) -> Outcome {
    let mut retry_causes = Errors::new();
    let mut tries = 0;
    loop {
        let attempt = {
            let _slot = gate.acquire().await.expect("the gate is never closed");
            client.register_server_via(endpoint, &device.uuid, "bench-storm", &device.tls).await
        };
        match attempt {
            Err(failure) if tries < retries => {
                *retry_causes.entry(failure.key()).or_default() += 1;
                tries += 1;
                tokio::time::sleep(backoff(tries, index)).await;
            }
            result => return Outcome { result, retries: tries, retry_causes },
        }
    }
}

/// The wait before retry `tries` (1, 2, ...): 100 ms doubled per retry, plus a jitter of up to as
/// much again that differs between devices, so failed devices do not come back in lockstep.
fn backoff(tries: usize, device: usize) -> Duration {
    let base = RETRY_BACKOFF * (1u32 << (tries - 1).min(6));
    let mut x = (device as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ tries as u64;
    x ^= x >> 29;
    let jitter = base.mul_f64((x % 1000) as f64 / 1000.0);
    base + jitter
}

/// Waits (bounded) until `server` has no more descriptors open than before the storm.
async fn wait_for_descriptors(server: &Server, before: Option<Sample>) {
    let Some(before) = before else { return };
    let start = Instant::now();
    while let Some(now) = server.sample() {
        if now.fds <= before.fds || start.elapsed() >= RELEASE_LIMIT {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Shared between the storm and the ping-pong tasks.
#[derive(Default)]
struct Flags {
    recording: AtomicBool,
    stop: AtomicBool,
}

/// K tunnels doing ping-pong until stopped, on a thread and runtime of their own: the storm's
/// thousands of device tasks in the bench's runtime would otherwise queue the ping-pong behind
/// them, and the RTT would measure the bench rather than the server.
struct Pingers {
    flags: Arc<Flags>,
    thread: std::thread::JoinHandle<(Vec<Duration>, Errors)>,
}

impl Pingers {
    async fn start(client: &Arc<Client>, server: &Server, count: usize) -> Pingers {
        let flags = Arc::new(Flags::default());
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (client, server, thread_flags) = (client.clone(), server.clone(), flags.clone());
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            let Ok(runtime) = runtime else {
                let _ = ready_tx.send(());
                return (Vec::new(), Errors::from([("cannot start the ping-pong runtime".to_string(), 1)]));
            };
            runtime.block_on(async move {
                let mut errors = Errors::new();
                let mut tasks = JoinSet::new();
                for _ in 0..count {
                    match client.open_tunnel(&server.stream, &server.stream, server.handshake).await {
                        Ok((a, b)) => {
                            tasks.spawn(ping_pong(a, b, thread_flags.clone(), client.step_timeout));
                        }
                        Err(failure) => {
                            *errors.entry(format!("opening: {}", failure.key())).or_default() += 1
                        }
                    }
                }
                let _ = ready_tx.send(());
                let mut samples = Vec::new();
                while let Some(joined) = tasks.join_next().await {
                    match joined {
                        Ok((s, failure)) => {
                            samples.extend(s);
                            if let Some(failure) = failure {
                                *errors.entry(failure.key()).or_default() += 1;
                            }
                        }
                        Err(panic) => *errors.entry(format!("bench task failed: {panic}")).or_default() += 1,
                    }
                }
                (samples, errors)
            })
        });
        let _ = ready_rx.await;
        Pingers { flags, thread }
    }

    /// Stops the tunnels; the round trips recorded, and the failures.
    async fn stop(self) -> (Vec<Duration>, Errors) {
        self.flags.stop.store(true, Ordering::Release);
        let thread = self.thread;
        match tokio::task::spawn_blocking(move || thread.join()).await {
            Ok(Ok(outcome)) => outcome,
            _ => (Vec::new(), Errors::from([("the ping-pong thread failed".to_string(), 1)])),
        }
    }
}

/// How often each ping-pong tunnel starts a round trip. Paced, not back to back: established
/// tunnels then put the same load on broker and baseline, and the RTT measures how long a tunnel's
/// message waits during the storm rather than how much CPU a busy loop can take from it (which
/// would also move that CPU away from the storm, differently on broker and baseline).
const PING_EVERY: Duration = Duration::from_millis(5);

/// Round trips through one tunnel, one every [`PING_EVERY`], until `flags.stop`; keeps those that
/// started while `flags.recording`.
async fn ping_pong(a: Conn, b: Conn, flags: Arc<Flags>, limit: Duration) -> (Vec<Duration>, Option<Failure>) {
    let (mut a_in, mut a_out) = a.split();
    let (mut b_in, mut b_out) = b.split();
    let message: Bytes = payload_chunk(PING_BYTES);
    let mut scratch = [0u8; PING_BYTES];
    let mut samples = Vec::new();
    let mut ticks = tokio::time::interval(PING_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !flags.stop.load(Ordering::Acquire) {
        ticks.tick().await;
        let recording = flags.recording.load(Ordering::Acquire);
        let start = Instant::now();
        let round_trip = async {
            a_out.write(&message).await?;
            a_out.flush().await?;
            b_in.read_exactly(PING_BYTES as u64, &mut scratch).await?;
            b_out.write(&message).await?;
            b_out.flush().await?;
            a_in.read_exactly(PING_BYTES as u64, &mut scratch).await
        };
        match tokio::time::timeout(limit, round_trip).await {
            Ok(Ok(())) if recording => samples.push(start.elapsed()),
            Ok(Ok(())) => {}
            Ok(Err(failure)) => return (samples, Some(failure)),
            Err(_) => return (samples, Some(Failure::Timeout("a ping-pong round trip"))),
        }
    }
    (samples, None)
}

/// The broker's `remoteproxy_tls_handshakes_total` by kind: (full, resumed).
async fn handshake_counts(addr: SocketAddr) -> anyhow::Result<(u64, u64)> {
    let fetch = async {
        let mut tcp = TcpStream::connect(addr).await?;
        tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").await?;
        let mut text = String::new();
        tcp.read_to_string(&mut text).await?;
        anyhow::Ok(text)
    };
    let text = tokio::time::timeout(Duration::from_secs(5), fetch)
        .await
        .context("metrics: no answer within 5 s")??;
    parse_handshake_counts(&text).context("metrics: no remoteproxy_tls_handshakes_total")
}

fn parse_handshake_counts(text: &str) -> Option<(u64, u64)> {
    let (mut full, mut resumed) = (None, None);
    for line in text.lines().filter(|l| l.starts_with("remoteproxy_tls_handshakes_total{")) {
        let value = line.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok())? as u64;
        if line.contains(r#"kind="full""#) {
            full = Some(value);
        } else if line.contains(r#"kind="resumed""#) {
            resumed = Some(value);
        }
    }
    Some((full.unwrap_or(0), resumed.unwrap_or(0))).filter(|_| full.is_some() || resumed.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarted_line_parses() {
        let r = parse_restarted("url=ssl://127.0.0.1:1 v2-url=ssl://127.0.0.1:2 pid=42 metrics=127.0.0.1:3")
            .unwrap();
        assert_eq!(
            (r.url.as_str(), r.v2_url.as_str(), r.pid),
            ("ssl://127.0.0.1:1", "ssl://127.0.0.1:2", Some(42))
        );
        assert_eq!(r.metrics, Some("127.0.0.1:3".parse().unwrap()));
        let r = parse_restarted("v2-url=ssl://h:2 url=ssl://h:1").unwrap();
        assert_eq!((r.pid, r.metrics), (None, None));
        assert!(parse_restarted("url=ssl://h:1").is_err(), "v2-url is required");
        assert!(parse_restarted("url=ssl://h:1 v2-url=ssl://h:2 pid=x").is_err());
        assert!(parse_restarted("url=ssl://h:1 v2-url=ssl://h:2 colour=blue").is_err());
        assert!(parse_restarted("").is_err());
    }

    #[test]
    fn handshake_counts_parse() {
        let text = "HTTP/1.1 200 OK\r\n\r\n# TYPE remoteproxy_tls_handshakes counter\n\
                    remoteproxy_tls_handshakes_total{kind=\"full\"} 2012\n\
                    remoteproxy_tls_handshakes_total{kind=\"resumed\"} 1990\n\
                    remoteproxy_tunnels_total 3\n# EOF\n";
        assert_eq!(parse_handshake_counts(text), Some((2012, 1990)));
        assert_eq!(parse_handshake_counts("remoteproxy_tunnels_total 3\n"), None);
    }

    #[test]
    fn backoff_doubles_with_jitter() {
        for device in 0..50 {
            let first = backoff(1, device);
            assert!(first >= RETRY_BACKOFF && first < 2 * RETRY_BACKOFF, "{first:?}");
            let third = backoff(3, device);
            assert!(third >= 4 * RETRY_BACKOFF && third < 8 * RETRY_BACKOFF, "{third:?}");
        }
        assert_ne!(backoff(1, 1), backoff(1, 2), "devices do not retry in lockstep");
        assert!(backoff(40, 0) < 2 * RETRY_BACKOFF * 64, "the doubling stops");
    }
}
