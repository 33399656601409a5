//! `BENCHMARKS.md`-ready markdown tables from a results document.

use std::fmt::Write;

use crate::goals::Check;
use crate::results::{HoldSide, Results, StormPhase, error_total};
use crate::stats::Percentiles;
use crate::stats::{format_bytes, format_ratio, three_digits};

/// The method in a few sentences: printed under the tables so a reader knows what the numbers
/// compare.
pub const METHOD: &str = "\
Every measure runs the same bench client against the broker and against a baseline in the same run; \
each baseline is a separate process started by the bench (a multi-threaded tokio runtime like the \
broker's), so bench client, broker and baseline compete for the same cores in the same way. \
Ratios are broker / baseline. Rates are the median of the rounds (broker and baseline alternate \
which goes first); latency percentiles pool all rounds (nearest rank). MB = 10^6 bytes. \
Baselines: **relay**: accept, read one line (the Authenticate request), pair by token+nonce, answer \
one line (TunnelEstablished), then `tokio::io::copy_bidirectional_with_sizes` with 64 KiB per \
direction, with TLS termination (tokio-rustls, ring, ECDSA P-256 self-signed) when the broker uses \
TLS; **WebSocket**: the same pairing, then a tokio-tungstenite message relay (`forward` per \
direction); **mixed**: 64 KiB stream reads become binary messages and messages are written to the \
stream; **setup**: the same server: TLS handshakes, one line in and one line out per connection, \
paired, which is the least protocol a broker can do (the broker additionally answers Hello and \
Authenticate, one more round trip each). Hold: after a warm-up (as many tunnels as are opened at \
once, with the same traffic, opened and closed, so one-time costs such as allocator thread caches are \
paid), N tunnels each carry 1 MiB both ways (or the size in the table), then sit idle, both ends on \
the stream listener (tls-tcp) or the WebSocket listener (wss, baseline: the WebSocket relay); RSS per \
tunnel = (RSS held − RSS warmed up) / N from /proc/<pid>/status; \"after\" is read once descriptors \
are back and RSS stopped falling. **Idle v2 servers**: the same, with N TunnelProxy servers registered \
(`TunnelProxy.RegisterServer`, NoError, SLIP) and held by the bench (reading; echoing what clients send; \
`TunnelProxy.Ping` right after registering, unless the table says otherwise, then every 30 s); the baseline answers the one registration line with a fixed reply and \
holds the TLS (or tokio-tungstenite, 4 KiB read buffer) connection reading, in a uuid map, which is the \
least a registry can keep. **Reach**: while they are held, M clients each connect, \
`TunnelProxy.RegisterClient` a random held server and send 32 bytes; the time from before the connect \
until the server has echoed them (ClientConnected on SLIP address 0, then the data on the client's \
address) is the reach latency; the baseline routes the same way with no more than a map lookup.";

fn checks_cell(checks: &[Check]) -> String {
    if checks.is_empty() {
        return "—".into();
    }
    checks.iter().map(|c| format!("{} {}", c.verdict(), c.target)).collect::<Vec<_>>().join("<br>")
}

fn opt(value: Option<f64>) -> String {
    value.map(three_digits).unwrap_or_else(|| "n/a".into())
}

fn errors_cell(broker: usize, baseline: usize) -> String {
    format!("{broker} / {baseline}")
}

/// The whole markdown text.
pub fn markdown(results: &Results) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## Benchmark results\n");
    let mut listed = Vec::new();
    for run in &results.runs {
        // Several invocations against one broker (throughput, then latency) are one line.
        let broker = (&run.broker_url, &run.broker_ws_url, run.broker_pid);
        if listed.contains(&broker) {
            continue;
        }
        listed.push(broker);
        let _ = writeln!(
            out,
            "* {}: broker `{}` at `{}`{}, {} × {}, {} round(s) per side{}",
            utc_date(run.started_unix),
            run.broker_server,
            run.broker_url,
            run.broker_ws_url.as_ref().map(|ws| format!(" and `{ws}`")).unwrap_or_default(),
            run.cpus,
            if run.cpu_model.is_empty() { "CPU" } else { run.cpu_model.as_str() },
            run.rounds,
            if run.quick { " (quick sizes: indicative only)" } else { "" }
        );
    }
    let _ = writeln!(out);

    if !results.throughput.is_empty() {
        let _ = writeln!(out, "### Throughput through one tunnel\n");
        let _ = writeln!(
            out,
            "| transport | direction | size | broker | baseline | ratio | server CPU s/GB (broker / baseline) | errors | target |"
        );
        let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|---|");
        for r in &results.throughput {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} MB/s | {} MB/s | {} | {} / {} | {} | {} |",
                r.transport,
                r.direction,
                format_bytes(r.bytes as f64),
                three_digits(r.broker.mb_per_s),
                three_digits(r.baseline.mb_per_s),
                format_ratio(r.ratio),
                opt(r.broker.cpu_s_per_gb),
                opt(r.baseline.cpu_s_per_gb),
                errors_cell(error_total(&r.broker.errors), error_total(&r.baseline.errors)),
                checks_cell(&r.checks)
            );
        }
        let _ = writeln!(out);
    }

    if !results.setup.is_empty() {
        let _ = writeln!(out, "### Tunnel setup\n");
        let _ = writeln!(
            out,
            "| transport | N | C | broker tunnels/s | baseline tunnels/s | ratio | broker p50 / p99 / max ms | baseline p50 / p99 / max ms | server CPU ms/tunnel (broker / baseline) | errors | target |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
        for r in &results.setup {
            let (b, s) = (&r.broker, &r.baseline);
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} / {} / {} | {} / {} / {} | {} / {} | {} | {} |",
                r.transport,
                r.tunnels,
                r.concurrency,
                three_digits(b.tunnels_per_s),
                three_digits(s.tunnels_per_s),
                format_ratio(r.ratio),
                three_digits(b.latency_ms.p50),
                three_digits(b.latency_ms.p99),
                three_digits(b.latency_ms.max),
                three_digits(s.latency_ms.p50),
                three_digits(s.latency_ms.p99),
                three_digits(s.latency_ms.max),
                opt(b.cpu_ms_per_tunnel),
                opt(s.cpu_ms_per_tunnel),
                errors_cell(error_total(&b.errors), error_total(&s.errors)),
                checks_cell(&r.checks)
            );
        }
        let _ = writeln!(out);
    }

    if !results.latency.is_empty() {
        let _ = writeln!(out, "### Round-trip latency through one tunnel\n");
        let _ = writeln!(
            out,
            "| transport | message | round trips | broker p50 / p99 / p99.9 µs | baseline p50 / p99 / p99.9 µs | ratio p50 | ratio p99 | errors | target |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---|");
        for r in &results.latency {
            let (b, s) = (&r.broker.rtt_us, &r.baseline.rtt_us);
            let _ = writeln!(
                out,
                "| {} | {} B | {} | {} / {} / {} | {} / {} / {} | {} | {} | {} | {} |",
                r.transport,
                r.message_bytes,
                r.round_trips,
                three_digits(b.p50),
                three_digits(b.p99),
                three_digits(b.p999),
                three_digits(s.p50),
                three_digits(s.p99),
                three_digits(s.p999),
                format_ratio(r.ratio_p50),
                format_ratio(r.ratio_p99),
                errors_cell(error_total(&r.broker.errors), error_total(&r.baseline.errors)),
                checks_cell(&r.checks)
            );
        }
        let _ = writeln!(out);
    }

    if !results.hold.is_empty() {
        let _ = writeln!(out, "### Idle tunnels after traffic\n");
        let _ = writeln!(
            out,
            "| transport | tunnels | traffic each way | broker RSS/tunnel | baseline RSS/tunnel | ratio | broker RSS cold, warmed up → held → after | broker fds before → held → after | held (broker / baseline) | errors | target |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
        for r in &results.hold {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {} | {} |",
                r.transport,
                r.tunnels,
                format_bytes(r.bytes_each_way as f64),
                r.broker.rss_bytes_per_tunnel.map(format_bytes).unwrap_or_else(|| "n/a".into()),
                r.baseline.rss_bytes_per_tunnel.map(format_bytes).unwrap_or_else(|| "n/a".into()),
                format_ratio(r.ratio),
                rss_cell(&r.broker),
                fds_cell(&r.broker),
                r.broker.established,
                r.baseline.established,
                errors_cell(error_total(&r.broker.errors), error_total(&r.baseline.errors)),
                checks_cell(&r.checks)
            );
        }
        let _ = writeln!(out);
    }

    if !results.fleet.is_empty() {
        let _ = writeln!(out, "### Idle v2 TunnelProxy servers, and clients reaching them\n");
        let _ = writeln!(
            out,
            "| transport | servers | broker RSS/server | baseline RSS/server | ratio | broker RSS cold, warmed up → held → after | broker fds before → held → after | held (broker / baseline) | reach clients (C) | broker reach p50 / p99 / max ms | baseline reach p50 / p99 / max ms | errors | target |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
        for r in &results.fleet {
            let (b, s) = (&r.broker, &r.baseline);
            let errors = |side: &crate::results::FleetSide| {
                error_total(&side.hold.errors) + error_total(&side.reach_errors)
            };
            let _ = writeln!(
                out,
                "| {}{} | {} | {} | {} | {} | {} | {} | {} / {} | {} ({}) | {} | {} | {} | {} |",
                r.transport,
                if r.first_ping_s > 0.0 {
                    format!(" (first ping after {} s)", r.first_ping_s)
                } else {
                    String::new()
                },
                r.servers,
                b.hold.rss_bytes_per_tunnel.map(format_bytes).unwrap_or_else(|| "n/a".into()),
                s.hold.rss_bytes_per_tunnel.map(format_bytes).unwrap_or_else(|| "n/a".into()),
                format_ratio(r.ratio),
                rss_cell(&b.hold),
                fds_cell(&b.hold),
                b.hold.established,
                s.hold.established,
                r.reach_clients,
                r.reach_concurrency,
                reach_cell(b.reach_ok, &b.reach_ms),
                reach_cell(s.reach_ok, &s.reach_ms),
                errors_cell(errors(b), errors(s)),
                checks_cell(&r.checks)
            );
        }
        let _ = writeln!(out);
    }

    if !results.storm.is_empty() {
        storm_table(&mut out, results);
    }

    let _ = writeln!(out, "{METHOD}");
    out
}

/// One row per storm (full, resumed, after restart) of each storm result.
fn storm_table(out: &mut String, results: &Results) {
    let _ = writeln!(
        out,
        "### Reconnect storm: v2 servers registering at once
"
    );
    let _ = writeln!(
        out,
        "| transport | devices (in flight) | storm | broker s | broker registrations/s | baseline s | baseline registrations/s | ratio | × own full rate (broker / baseline) | resumed % (broker / baseline) | server CPU ms/handshake (broker / baseline) | broker counted full / resumed | tunnel RTT p50 / p99 / max ms (broker; baseline p99) | retries / gave up (broker / baseline) | target |"
    );
    let _ = writeln!(out, "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for r in &results.storm {
        let rows = [
            ("full", Some(&r.broker.full), Some(&r.baseline.full)),
            ("resumed", r.broker.resumed.as_ref(), r.baseline.resumed.as_ref()),
            ("resumed after broker restart", r.broker.restarted.as_ref(), r.baseline.restarted.as_ref()),
        ];
        for (i, (name, b, s)) in rows.into_iter().enumerate() {
            if b.is_none() && s.is_none() {
                continue;
            }
            let cell = |phase: Option<&StormPhase>, f: &dyn Fn(&StormPhase) -> String| {
                phase.map(f).unwrap_or_else(|| "n/a".into())
            };
            let speedup = |phase: Option<&StormPhase>, full: &StormPhase| {
                phase.and_then(|p| crate::stats::ratio(p.per_s, full.per_s))
            };
            let _ = writeln!(
                out,
                "| {} | {} ({}) | {} | {} | {} | {} | {} | {} | {} / {} | {} / {} | {} / {} | {} | {} | {} / {} | {} |",
                r.transport,
                r.servers,
                r.in_flight,
                name,
                cell(b, &|p| format!("{:.2}", p.seconds)),
                cell(b, &|p| three_digits(p.per_s)),
                cell(s, &|p| format!("{:.2}", p.seconds)),
                cell(s, &|p| three_digits(p.per_s)),
                format_ratio(b.zip(s).and_then(|(b, s)| crate::stats::ratio(b.per_s, s.per_s))),
                format_ratio(speedup(b, &r.broker.full)),
                format_ratio(speedup(s, &r.baseline.full)),
                cell(b, &|p| format!("{:.1}", p.resumed_fraction * 100.0)),
                cell(s, &|p| format!("{:.1}", p.resumed_fraction * 100.0)),
                cell(b, &|p| opt(p.cpu_ms_per_handshake)),
                cell(s, &|p| opt(p.cpu_ms_per_handshake)),
                cell(b, &|p| p
                    .server_handshakes
                    .map(|(full, resumed)| format!("{full} / {resumed}"))
                    .unwrap_or_else(|| "n/a".into())),
                cell(b, &|p| format!(
                    "{} / {} / {}; {}",
                    three_digits(p.rtt_ms.p50),
                    three_digits(p.rtt_ms.p99),
                    three_digits(p.rtt_ms.max),
                    s.map(|s| three_digits(s.rtt_ms.p99)).unwrap_or_else(|| "n/a".into())
                )),
                cell(b, &|p| format!("{} / {}", p.retries, error_total(&p.errors))),
                cell(s, &|p| format!("{} / {}", p.retries, error_total(&p.errors))),
                if i == 0 { checks_cell(&r.checks) } else { String::new() }
            );
        }
    }
    let _ = writeln!(
        out,
        "\nStorm: N devices (v2 TunnelProxy servers, each with its own TLS session store) start at once, at \
         most \"in flight\" of them between TCP connect and the RegisterServer answer; a failed attempt is retried \
         (100 ms doubling, jittered, at most 3 times). Time runs until the last device is registered; CPU is \
         the server's user+system time over the storm / registrations. Then all connections close and the same \
         devices come back with the tickets they were given (\"resumed\"; the share that actually resumed is \
         from the client's `handshake_kind()`), and, for the broker, once more after it was restarted on the same \
         `ticketKeyFile`. Baseline: the v2 registry baseline (TLS handshake, one line in, one line out) with \
         rustls' own stateless ticketer. Meanwhile 4 v1 tunnels on the same server do 64-byte ping-pong, one \
         round trip every 5 ms each; their round trips during the storm are the RTT.\n"
    );
}

fn reach_cell(reached: usize, ms: &Percentiles) -> String {
    if reached == 0 {
        return "n/a".into();
    }
    format!("{} / {} / {}", three_digits(ms.p50), three_digits(ms.p99), three_digits(ms.max))
}

fn rss_cell(side: &HoldSide) -> String {
    match side.rss_kib {
        Some(t) => format!(
            "{}, {} → {} → {}",
            side.cold_rss_kib.map(|c| format_bytes(c as f64 * 1024.0)).unwrap_or_else(|| "n/a".into()),
            format_bytes(t.before as f64 * 1024.0),
            format_bytes(t.held as f64 * 1024.0),
            format_bytes(t.after as f64 * 1024.0)
        ),
        None => "n/a".into(),
    }
}

fn fds_cell(side: &HoldSide) -> String {
    match side.fds {
        Some(t) => format!("{} → {} → {}", t.before, t.held, t.after),
        None => "n/a".into(),
    }
}

/// `2025-01-31 14:05 UTC` from unix seconds.
pub fn utc_date(unix: u64) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    i64::try_from(unix)
        .ok()
        .and_then(|unix| time::OffsetDateTime::from_unix_timestamp(unix).ok())
        .and_then(|at| at.format(FORMAT).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc_date(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_date(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc_date(1_700_000_000), "2023-11-14 22:13 UTC");
    }

    #[test]
    fn empty_results_still_explain_the_method() {
        let text = markdown(&Results::default());
        assert!(text.starts_with("## Benchmark results"));
        assert!(text.contains("copy_bidirectional_with_sizes"));
        assert!(!text.contains("### Throughput"));
        assert!(!text.contains("### Idle v2"));
    }

    #[test]
    fn storm_rows() {
        use crate::results::{StormResult, StormSide};
        let phase = |seconds: f64, resumed: f64| StormPhase {
            attempted: 2000,
            registered: 2000,
            seconds,
            per_s: 2000.0 / seconds,
            resumed_fraction: resumed,
            cpu_ms_per_handshake: Some(0.5),
            ..StormPhase::default()
        };
        let mut results = Results::default();
        results.storm.push(StormResult {
            transport: "v2 tls-tcp".into(),
            servers: 2000,
            in_flight: 1000,
            retries_allowed: 3,
            tunnels: 4,
            broker: StormSide {
                full: phase(2.0, 0.0),
                resumed: Some(phase(0.5, 1.0)),
                restarted: Some(phase(0.8, 1.0)),
            },
            baseline: StormSide { full: phase(1.6, 0.0), resumed: Some(phase(0.4, 1.0)), restarted: None },
            ratio_full: Some(0.8),
            broker_speedup: Some(4.0),
            baseline_speedup: Some(4.0),
            checks: vec![],
        });
        let text = markdown(&results);
        assert!(text.contains("### Reconnect storm"));
        let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("| v2 tls-tcp | 2000 (1000)")).collect();
        assert_eq!(rows.len(), 3, "{text}");
        assert!(rows[0].contains("| full | 2.00 | 1000 | 1.60 | 1250 | 0.80 |"), "{}", rows[0]);
        assert!(rows[1].contains("| 4.00 / 4.00 | 100.0 / 100.0 |"), "{}", rows[1]);
        assert!(
            rows[2].contains("| resumed after broker restart | 0.80 | 2500 | n/a | n/a | n/a | 2.50 / n/a |"),
            "{}",
            rows[2]
        );
    }

    #[test]
    fn fleet_rows() {
        use crate::results::{FleetResult, FleetSide};
        let side = |kib: f64| FleetSide {
            hold: HoldSide {
                established: 2000,
                rss_bytes_per_tunnel: Some(kib * 1024.0),
                ..HoldSide::default()
            },
            reach_ok: 200,
            reach_ms: Percentiles { p50: 3.0, p99: 7.5, max: 9.0, ..Percentiles::default() },
            reach_errors: Default::default(),
        };
        let mut results = Results::default();
        results.fleet.push(FleetResult {
            transport: "v2 tls-tcp".into(),
            servers: 2000,
            reach_clients: 200,
            reach_concurrency: 8,
            first_ping_s: 0.0,
            broker: side(22.7),
            baseline: FleetSide { reach_ok: 0, ..side(10.0) },
            ratio: Some(2.27),
            reach_ratio_p50: None,
            reach_ratio_p99: None,
            checks: crate::goals::fleet(&crate::goals::FleetFacts {
                transport: "v2 tls-tcp".into(),
                requested: 2000,
                established: 2000,
                bytes_per_server: Some(22.7 * 1024.0),
                rss_before_after: None,
                fds_before_after: None,
                reach_p99_ms: Some(7.5),
                reach_errors: 0,
            }),
        });
        let text = markdown(&results);
        let row = text.lines().find(|l| l.starts_with("| v2 tls-tcp")).expect("a fleet row");
        assert!(row.contains("| 22.7 KiB | 10.0 KiB | 2.27 |"), "{row}");
        assert!(row.contains("| 200 (8) | 3.00 / 7.50 / 9.00 | n/a |"), "{row}");
        assert!(row.contains("FAIL RSS ≤ 10 KiB per registered server"), "{row}");
    }
}
