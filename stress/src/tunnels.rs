//! Tunnels as the scenarios use them: opened over a mix of transports, carrying checked
//! pattern streams both ways, and the canary that measures round trips while a scenario runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use remoteproxy_bench::client::{Client, Conn, Endpoint, Handshake, Reader, Writer};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::broker::Broker;
use crate::pattern::{Pattern, Verifier};

/// The two endpoints of tunnel `n`: TLS-TCP and WebSocket-over-TLS in every combination.
pub fn mix(broker: &Broker, n: u64) -> (Endpoint, Endpoint) {
    let (tcp, ws) = (broker.v1_tcp(), broker.v1_ws());
    match n % 4 {
        0 => (tcp.clone(), tcp),
        1 => (tcp, ws),
        2 => (ws, tcp),
        _ => (ws.clone(), ws),
    }
}

/// Opens tunnel `n` of the mix.
pub async fn open(client: &Client, broker: &Broker, n: u64) -> Result<(Conn, Conn), String> {
    let (a, b) = mix(broker, n);
    client.open_tunnel(&a, &b, Handshake::V1).await.map_err(|e| e.to_string())
}

/// How a transfer writes: `chunk` bytes every `interval` until `until`.
#[derive(Clone, Copy)]
pub struct Pace {
    pub chunk: usize,
    pub interval: Duration,
    pub until: Instant,
}

/// Both directions of a tunnel carry their pattern at `pace`; every byte is checked on arrival.
/// The bytes verified both ways, or what went wrong.
pub async fn transfer(a: Conn, b: Conn, seed: u64, tunnel: u64, pace: Pace) -> Result<u64, String> {
    let (a_read, a_write) = a.split();
    let (b_read, b_write) = b.split();
    let (a_total, b_total) = (oneshot::channel(), oneshot::channel());
    let forward = tokio::spawn(send(a_write, Pattern::new(seed, tunnel, 0), pace, a_total.0));
    let backward = tokio::spawn(send(b_write, Pattern::new(seed, tunnel, 1), pace, b_total.0));
    let got_forward = tokio::spawn(receive(b_read, Pattern::new(seed, tunnel, 0), a_total.1, pace.until));
    let got_backward = tokio::spawn(receive(a_read, Pattern::new(seed, tunnel, 1), b_total.1, pace.until));
    let (f, b, gf, gb) = tokio::join!(forward, backward, got_forward, got_backward);
    let flat =
        |r: Result<Result<u64, String>, tokio::task::JoinError>| r.map_err(|e| e.to_string()).and_then(|r| r);
    // The writers' ends are kept until the readers are done, so no close cuts a direction short.
    let (_w1, _w2) = (flat(f.map(|r| r.map(|(n, _)| n)))?, flat(b.map(|r| r.map(|(n, _)| n)))?);
    Ok(flat(gf)? + flat(gb)?)
}

type Sent = (u64, Writer);

async fn send(
    mut writer: Writer,
    mut pattern: Pattern,
    pace: Pace,
    total: oneshot::Sender<u64>,
) -> Result<Sent, String> {
    let mut sent = 0u64;
    // Start at a random point of the interval, so thousands of tunnels do not write in lockstep.
    let offset = pace
        .interval
        .mul_f64((std::process::id() as u64 ^ (&pattern as *const _ as u64)) as f64 % 1000.0 / 1000.0);
    tokio::time::sleep(offset).await;
    let mut next = tokio::time::Instant::now();
    while Instant::now() < pace.until {
        let data = Bytes::from(pattern.next(pace.chunk));
        writer.write(&data).await.map_err(|e| format!("after {sent} bytes: {e}"))?;
        writer.flush().await.map_err(|e| format!("after {sent} bytes: {e}"))?;
        sent += pace.chunk as u64;
        next += pace.interval;
        tokio::time::sleep_until(next).await;
    }
    let _ = total.send(sent);
    Ok((sent, writer))
}

async fn receive(
    mut reader: Reader,
    pattern: Pattern,
    total: oneshot::Receiver<u64>,
    until: Instant,
) -> Result<u64, String> {
    let mut verifier = Verifier::new(pattern);
    let mut scratch = vec![0u8; 64 << 10];
    let mut received = Vec::with_capacity(64 << 10);
    let mut total = Box::pin(total);
    let mut expected: Option<u64> = None;
    // Time for the last bytes to arrive after the writers stop.
    let deadline = tokio::time::Instant::from_std(until + Duration::from_secs(30));
    loop {
        if expected.is_some_and(|e| verifier.verified >= e) {
            break;
        }
        received.clear();
        let read = tokio::select! {
            t = &mut total, if expected.is_none() => {
                expected = Some(t.map_err(|_| "the writer failed".to_string())?);
                continue;
            }
            read = tokio::time::timeout_at(deadline, reader.read_into(&mut received, &mut scratch)) => read,
        };
        match read {
            Err(_) => return Err(format!("timed out after {} bytes", verifier.verified)),
            Ok(Err(e)) => return Err(format!("after {} bytes: {e}", verifier.verified)),
            Ok(Ok(0)) => return Err(format!("the tunnel ended after {} bytes", verifier.verified)),
            Ok(Ok(_)) => {
                verifier.check(&received).map_err(|at| format!("byte {at} differs from what was sent"))?
            }
        }
    }
    let expected = expected.unwrap_or(0);
    if verifier.verified != expected {
        return Err(format!("received {} bytes, {expected} were sent", verifier.verified));
    }
    Ok(verifier.verified)
}

/// One round trip: `a` sends 32 bytes, `b` echoes them; the time it took.
pub async fn round_trip(
    a: &mut (Reader, Writer),
    b: &mut (Reader, Writer),
    scratch: &mut Vec<u8>,
) -> Result<Duration, String> {
    let ping = Bytes::from_static(b"canary canary canary canary 0123");
    let start = Instant::now();
    a.1.write(&ping).await.map_err(|e| e.to_string())?;
    a.1.flush().await.map_err(|e| e.to_string())?;
    read_n(&mut b.0, ping.len(), scratch).await?;
    b.1.write(&ping).await.map_err(|e| e.to_string())?;
    b.1.flush().await.map_err(|e| e.to_string())?;
    read_n(&mut a.0, ping.len(), scratch).await?;
    Ok(start.elapsed())
}

async fn read_n(reader: &mut Reader, n: usize, scratch: &mut Vec<u8>) -> Result<(), String> {
    let mut got = Vec::new();
    let mut buf = std::mem::take(scratch);
    buf.resize(n.max(64), 0);
    while got.len() < n {
        let want = n - got.len();
        let read = tokio::time::timeout(Duration::from_secs(5), reader.read_into(&mut got, &mut buf[..want]));
        match read.await {
            Err(_) => return Err("no echo within 5 s".into()),
            Ok(Err(e)) => return Err(e.to_string()),
            Ok(Ok(0)) => return Err("the canary tunnel ended".into()),
            Ok(Ok(_)) => {}
        }
    }
    *scratch = buf;
    Ok(())
}

/// A tunnel doing round trips every 10 ms while a scenario runs.
pub struct Canary {
    stop: Arc<AtomicBool>,
    task: JoinHandle<(Vec<Duration>, Option<String>)>,
}

/// What the canary saw.
pub struct CanaryResult {
    /// Round-trip times, sorted.
    pub rtts: Vec<Duration>,
    /// The error that ended it early, if any.
    pub error: Option<String>,
}

impl CanaryResult {
    /// The `p`th percentile (nearest rank).
    pub fn percentile(&self, p: f64) -> Duration {
        if self.rtts.is_empty() {
            return Duration::MAX;
        }
        let rank = ((p / 100.0) * self.rtts.len() as f64).ceil().max(1.0) as usize;
        self.rtts[rank.min(self.rtts.len()) - 1]
    }
}

impl Canary {
    /// Opens the canary's tunnel (TLS-TCP to WebSocket) and starts its round trips.
    pub async fn start(client: &Client, broker: &Broker) -> Result<Canary, String> {
        let (a, b) = client
            .open_tunnel(&broker.v1_tcp(), &broker.v1_ws(), Handshake::V1)
            .await
            .map_err(|e| e.to_string())?;
        let (mut a, mut b) = (a.split(), b.split());
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let task = tokio::spawn(async move {
            let mut rtts = Vec::new();
            let mut scratch = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !stopping.load(Ordering::Relaxed) {
                tick.tick().await;
                match round_trip(&mut a, &mut b, &mut scratch).await {
                    Ok(rtt) => rtts.push(rtt),
                    Err(e) => return (rtts, Some(e)),
                }
            }
            (rtts, None)
        });
        Ok(Canary { stop, task })
    }

    /// Stops the round trips; what they measured.
    pub async fn finish(self) -> CanaryResult {
        self.stop.store(true, Ordering::Relaxed);
        let (mut rtts, error) = self.task.await.unwrap_or_else(|e| (Vec::new(), Some(e.to_string())));
        rtts.sort();
        CanaryResult { rtts, error }
    }
}

/// Milliseconds with two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}
