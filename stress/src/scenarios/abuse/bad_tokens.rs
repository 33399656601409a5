//! Bad tokens: Authenticate calls with tokens the authenticator refuses, all from one address.
//! This shows that every one is refused and its connection closed, that the throttle slows the
//! later ones down, and that a good token from another address is still answered at once: the
//! throttle is per address.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use super::attack::Attack;
use super::sources::abuser;
use super::tls::Kit;
use crate::Ctx;
use crate::broker::Broker;
use crate::scenarios::common::first;
use crate::tunnels::ms;

/// A good token must be answered within this while bad tokens are being throttled: half the
/// throttle's longest delay (4 s), with room for a loaded 2-core machine.
const PROMPT: Duration = Duration::from_secs(2);

/// `bad_tokens` Authenticate calls with tokens the authenticator refuses, all from one address
/// over up to 256 connections at a time (a refusal closes its connection). Every one must be
/// refused, the throttle must slow the later ones down, and meanwhile a good token from another
/// address must be answered within a second, every 100 ms: the throttle is per address.
pub(super) async fn bad_tokens(ctx: &Ctx, broker: &Broker, attack: &Attack) {
    let (r, n) = (&ctx.report, ctx.size.bad_tokens);
    // The throttle makes each call wait up to throttleMaxDelay (4 s): three rounds of workers.
    let workers = n.div_ceil(3).clamp(1, 256);
    let (source, addr) = (abuser(40), broker.tcp);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let (kit, next) = (attack.kit.clone(), next.clone());
            attack.spawn(async move {
                let mut results = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return results;
                    }
                    results.push((i, one_bad_token(&kit, source, addr, i).await));
                }
            })
        })
        .collect();
    let done = AtomicBool::new(false);
    let flood = async {
        let results = futures_util::future::join_all(tasks).await;
        done.store(true, Ordering::Relaxed);
        results
    };
    // A good token meanwhile every 100 ms, from another address. On this process's own runtime:
    // the time is the broker's, not the attackers' threads'.
    let probes = async {
        let mut times = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        for k in 0.. {
            tick.tick().await;
            if done.load(Ordering::Relaxed) {
                break;
            }
            times.push(good_token(&attack.kit, addr, k).await);
        }
        times
    };
    let (results, probes) = tokio::join!(flood, probes);
    let elapsed = start.elapsed();
    let mut calls: Vec<(u64, Result<BadCall, String>)> = Vec::new();
    for result in results {
        match result {
            Ok(list) => calls.extend(list),
            Err(e) => calls.push((u64::MAX, Err(e.to_string()))),
        }
    }
    calls.sort_by_key(|(i, _)| *i);
    let (mut accepted, mut failed, mut open, mut outcomes) = (0, Vec::new(), 0, Vec::<(String, u64)>::new());
    let mut times = Vec::new();
    for (_, call) in &calls {
        match call {
            Ok(BadCall { took: t, outcome, closed }) => {
                times.push(*t);
                accepted += u64::from(outcome == "AuthenticationErrorNoError");
                open += u64::from(!closed);
                match outcomes.iter_mut().find(|(o, _)| o == outcome) {
                    Some((_, count)) => *count += 1,
                    None => outcomes.push((outcome.clone(), 1)),
                }
            }
            Err(e) => failed.push(e.clone()),
        }
    }
    let batch = (workers as usize).min(times.len());
    let (first_ones, last_ones) = (median(&times[..batch]), median(&times[times.len() - batch..]));
    let slowest = times.iter().max().copied().unwrap_or_default();
    let outcomes: Vec<String> = outcomes.iter().map(|(o, c)| format!("{c} {o}")).collect();
    r.figure(
        "bad tokens: calls from one address",
        format!("{n} over {workers} connections at a time, in {:.1} s", elapsed.as_secs_f64()),
    );
    r.figure("bad tokens: answers", outcomes.join(", "));
    r.figure(
        &format!("bad tokens: first / last {batch} calls took (median)"),
        format!("{} / {} (slowest {})", ms(first_ones), ms(last_ones), ms(slowest)),
    );
    r.check(
        &format!("bad tokens: all {n} answered and refused, never AuthenticationErrorNoError"),
        accepted == 0 && failed.is_empty() && calls.len() as u64 == n,
        format!("{accepted} accepted, {} unanswered{}", failed.len(), first(&failed)),
    );
    r.check("bad tokens: every refusal closed its connection", open == 0, format!("{open} left open"));
    r.check(
        "bad tokens: the throttle slowed the later calls down (median ≥ 1 s)",
        last_ones >= Duration::from_secs(1),
        ms(last_ones),
    );
    let probe_errors: Vec<String> = probes.iter().filter_map(|p| p.as_ref().err().cloned()).collect();
    let slowest_probe = probes.iter().filter_map(|p| p.as_ref().ok()).max().copied().unwrap_or_default();
    r.check(
        &format!("bad tokens: a good token from another address answered within {} meanwhile", ms(PROMPT)),
        !probes.is_empty() && probe_errors.is_empty() && slowest_probe < PROMPT,
        format!(
            "{} answered, slowest {}, {} failed{}",
            probes.len(),
            ms(slowest_probe),
            probe_errors.len(),
            first(&probe_errors)
        ),
    );
}

/// A good token from 127.0.1.201: TLS, then `Authenticate`; how long the answer took.
async fn good_token(kit: &Kit, addr: SocketAddr, k: u64) -> Result<Duration, String> {
    let mut json = kit.json(abuser(201), addr, false).await?;
    let pid = std::process::id();
    let params = json!({
        "uuid": format!("900d900d-{:04x}-4000-8000-{k:012x}", pid & 0xffff),
        "name": "abuse-good",
        "token": format!("bench-abuse-{pid}-{k}"),
        "nonce": format!("good{k}"),
    });
    let start = Instant::now();
    let answer = json.call(1, "Authentication.Authenticate", params).await?;
    let took = start.elapsed();
    match answer["params"]["authenticationError"].as_str() {
        Some("AuthenticationErrorNoError") => Ok(took),
        _ => Err(format!("a good token refused: {answer}")),
    }
}

/// How one bad token's call went.
struct BadCall {
    /// From `Authenticate` to its answer.
    took: Duration,
    /// The answer's `authenticationError`.
    outcome: String,
    /// Whether the broker closed the connection after it.
    closed: bool,
}

/// One bad token: TLS, `Authenticate` with a token the authenticator refuses; how long the answer
/// took, the answer, and whether the broker then closed the connection.
async fn one_bad_token(kit: &Kit, source: IpAddr, addr: SocketAddr, i: u64) -> Result<BadCall, String> {
    let mut json = kit.json(source, addr, false).await?;
    let params = json!({
        "uuid": format!("badbad00-0000-4000-8000-{i:012x}"),
        "name": "abuse",
        "token": format!("wrong-{}-{i}", std::process::id()),
        "nonce": format!("n{i}"),
    });
    let start = Instant::now();
    let answer = json.call(1, "Authentication.Authenticate", params).await?;
    let took = start.elapsed();
    let outcome = answer["params"]["authenticationError"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| answer.to_string());
    Ok(BadCall { took, outcome, closed: json.closed(Duration::from_secs(5)).await })
}

/// The median of `times` (zero when empty).
fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}
