//! abuse: one broker (TLS, the HTTP authenticator, `[Limits]` and the PROXY protocol on) under
//! the attacks SECURITY.md names, while a canary tunnel does a round trip every 10 ms. Each
//! attack checks the defence it meets:
//!
//! * slowloris on every listener (a ClientHello, a JSON request or a WebSocket upgrade dripped
//!   one byte a second): each connection is closed by its own timer and not before it:
//!   `tlsHandshakeTimeout` for the ClientHello, `inactiveTimeout` for the upgrade, and
//!   `handshakeDeadline` for JSON, which a drip restarts `inactiveTimeout` for but cannot extend;
//! * TLS handshakes left unfinished after a complete ClientHello: closed by `tlsHandshakeTimeout`;
//! * a burst from one source past `maxConnectionsPerIp`: exactly the excess refused and counted,
//!   another source served meanwhile;
//! * PROXY protocol headers from an untrusted address: closed and counted
//!   (`proxyProtocolTrusted`); a trusted balancer's header names the client the broker then
//!   shows; a trusted sender without a header is closed and counted (`proxyProtocolHeader`);
//! * bad tokens from one address: every one refused, slowed down by the throttle, while a good
//!   token from another address is answered at once;
//! * thousands of silent connections (TLS done, perhaps a Hello or a WebSocket upgrade, then
//!   nothing) held at once: nothing refused below the limits, a fresh tunnel still opens and
//!   carries data, and the timers close every one of them;
//! * oversized and deeply nested JSON over TLS-TCP and WebSocket, v1 and v2: closed with an
//!   error message or a close frame;
//! * random bytes on every listener, both unix sockets and the monitor socket: closed.
//!
//! Afterwards the broker still answers (Hello, the monitor), has logged no panic, the canary saw
//! no error and a round-trip p99 under 20 ms, and the broker's descriptors are back to where they
//! started.
//!
//! Every attack comes from 127.0.1.x, the trusted balancer from 127.0.2.250: the bench client,
//! which carries the canary and the fresh tunnels, binds 127.0.0.2..=254 only, so no attack
//! shares a source address (a per-source limit, a throttle, the PROXY protocol's trust) with
//! them. The attackers run on a runtime of their own, so the canary's round trips in this process
//! never queue behind thousands of client handshakes.
//!
//! Each attack has a file of its own, named after it; `attack`, `tls`, `json_client`, `sources`,
//! `support` and `counters` hold what the attackers use, `still_serving` and `settled` what is checked
//! afterwards.

mod attack;
mod bad_tokens;
mod burst;
mod counters;
mod garbage;
mod json_client;
mod oversized_json;
mod proxy_headers;
mod settled;
mod silent_flood;
mod slowloris;
mod sources;
mod stalled_tls;
mod still_serving;
mod support;
mod tls;

use std::net::Ipv4Addr;
use std::time::Duration;

use self::attack::Attack;
use self::settled::{connections_to, settled};
use crate::Ctx;
use crate::auth_server::AuthServer;
use crate::broker::Setup;
use crate::scenarios::common::{Peak, start_broker, start_canary};
use crate::tunnels::ms;

/// The broker's timers here: short, so every attack meets its timer within seconds, but
/// `inactiveTimeout` long enough for the whole silent flood to be open at once before the first
/// of it is closed (1,000 full TLS handshakes take a debug build on 2 cores 4 s, and 12 s when
/// the machine is busy with other work).
const TLS_TIMEOUT: Duration = Duration::from_millis(2000);
const INACTIVE: Duration = Duration::from_millis(15_000);
const DEADLINE: Duration = Duration::from_millis(18_000);
/// How late after its timer a connection may still be closed (a loaded debug build).
const MARGIN: Duration = Duration::from_millis(1500);
/// How much before its timer a close may be seen: each clock here starts just before the
/// broker's, so only the clocks' granularity.
const EARLY: Duration = Duration::from_millis(50);
/// Bound of each step of our own connections (connect, TLS, upgrade, a response).
const STEP: Duration = Duration::from_secs(10);
/// The canary's round trips must stay below this at the 99th percentile.
const CANARY_P99: Duration = Duration::from_millis(20);
/// The trusted PROXY protocol sender (`[ProxyProtocol] trusted`).
const BALANCER: Ipv4Addr = Ipv4Addr::new(127, 0, 2, 250);

/// Runs the scenario: one broker, the canary, then the attacks.
pub async fn run(ctx: &Ctx) {
    let (r, size) = (&ctx.report, ctx.size);
    r.scenario(
        "abuse",
        format!(
            "slowloris ({} per listener), {} stalled TLS handshakes, a burst past maxConnectionsPerIp, PROXY headers, \
             {} bad tokens, {} silent connections, oversized JSON and garbage against one broker, beside a canary tunnel",
            size.slowloris, size.stalled_tls, size.bad_tokens, size.silent
        ),
    );
    let auth = match AuthServer::start().await {
        Ok(auth) => auth,
        Err(e) => return r.error("the authenticator starts", e),
    };
    let per_ip = size.silent / 4 + 100;
    let setup = Setup {
        proxy_server: format!(
            "inactiveTimeout={}\nhandshakeDeadline={}\ntlsHandshakeTimeout={}",
            INACTIVE.as_millis(),
            DEADLINE.as_millis(),
            TLS_TIMEOUT.as_millis()
        ),
        sections: format!(
            "{}[Limits]\nmaxConnectionsPerIp={per_ip}\nmaxPendingHandshakes={}\n[ProxyProtocol]\nenabled=true\ntrusted={BALANCER}\n",
            auth.sections(),
            size.silent + 2000
        ),
        ..Setup::default()
    };
    let Some(mut broker) = start_broker(ctx, setup).await else { return };
    let attack = match Attack::new() {
        Ok(a) => a,
        Err(e) => return r.error("the attackers' runtime and TLS configuration", e),
    };
    let (fds, rss) = (broker.fds(), broker.rss_kib());
    let pooled = connections_to(&broker, auth.address.port());
    let peak = Peak::start(broker.pid, Duration::from_millis(100));
    let canary = start_canary(ctx, &broker).await;

    // The burst first, alone, so that it is out within tlsHandshakeTimeout; then the attacks
    // that mostly wait (on the broker's timers, on the throttle) together, each from its own
    // source address; then the silent flood alone (it holds thousands of sockets here and in
    // the broker); then the malformed input.
    burst::per_source_burst(ctx, &broker, &attack, per_ip).await;
    tokio::join!(
        slowloris::slowloris(ctx, &broker, &attack),
        stalled_tls::stalled_tls(ctx, &broker, &attack),
        proxy_headers::proxy_headers(ctx, &broker, &attack),
        bad_tokens::bad_tokens(ctx, &broker, &attack),
    );
    silent_flood::silent_flood(ctx, &broker, &attack).await;
    tokio::join!(
        oversized_json::oversized_json(ctx, &broker, &attack),
        garbage::garbage(ctx, &broker, &attack)
    );
    still_serving::still_serving(ctx, &mut broker).await;

    if let Some(canary) = canary {
        let result = canary.finish().await;
        let (p50, p99) = (result.percentile(50.0), result.percentile(99.0));
        let max = result.rtts.last().copied().unwrap_or(Duration::MAX);
        r.figure(
            "canary round trips (p50 / p99 / max)",
            format!("{} round trips: {} / {} / {}", result.rtts.len(), ms(p50), ms(p99), ms(max)),
        );
        r.check(
            "the canary tunnel carried data throughout, 0 errors",
            result.error.is_none(),
            result.error.as_deref().unwrap_or("none"),
        );
        r.check(&format!("canary round-trip p99 < {}", ms(CANARY_P99)), p99 < CANARY_P99, ms(p99));
    }
    let (peak_rss, peak_fds) = peak.finish();
    match settled(&broker, fds, pooled, auth.address.port()).await {
        Ok(t) => r.check(
            "no connection left and descriptors back to the start (the authenticator's pooled connections aside)",
            true,
            format!("after {:.1} s", t.as_secs_f64()),
        ),
        Err(left) => r.check(
            "no connection left and descriptors back to the start (the authenticator's pooled connections aside)",
            false,
            left,
        ),
    }
    let close_wait = broker.close_wait();
    r.check("no socket of the broker in CLOSE_WAIT", close_wait == 0, close_wait);
    r.figure(
        "broker RSS before / peak / after",
        format!("{rss} KiB / {peak_rss} KiB / {} KiB", broker.rss_kib()),
    );
    r.figure("broker descriptors before / peak / after", format!("{fds} / {peak_fds} / {}", broker.fds()));
}
