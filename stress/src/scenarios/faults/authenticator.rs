//! Fault 3, the authenticator: the HTTP authenticator hangs, fails with 500, then answers slowly.
//! This shows that every Authenticate is still answered in time (an error within
//! `authenticationTimeout` for a hang, at once for a failure, success when slow), that a tunnel
//! opens once the authenticator answers again, and that the canary keeps working throughout.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use remoteproxy_bench::client::{Failure, Handshake};

use super::canary::check_canary;
use crate::Ctx;
use crate::auth_server::{AuthServer, Mode};
use crate::broker::{Broker, Setup};
use crate::scenarios::common::{start_broker, start_canary};
use crate::tunnels::ms;

/// `authenticationTimeout` of the authenticator step.
const AUTH_TIMEOUT: Duration = Duration::from_millis(2000);

/// 3: the HTTP authenticator hangs, fails, then is slow. Each Authenticate must be answered:
/// with an error within `authenticationTimeout` + 1 s for a hang, promptly with an error for a
/// failure, with success after ≥ 1 s when slow. The canary, open before, keeps working.
pub(super) async fn authenticator(ctx: &Ctx) {
    let r = &ctx.report;
    r.scenario(
        "faults/authenticator",
        format!(
            "the HTTP authenticator hangs, fails, is slow (authenticationTimeout={})",
            AUTH_TIMEOUT.as_millis()
        ),
    );
    let auth = match AuthServer::start().await {
        Ok(a) => a,
        Err(e) => return r.error("the authenticator starts", e),
    };
    let setup = Setup {
        mock: false,
        sections: auth.sections(),
        proxy_server: format!("authenticationTimeout={}", AUTH_TIMEOUT.as_millis()),
        ..Setup::default()
    };
    let Some(broker) = start_broker(ctx, setup).await else { return };
    let canary = start_canary(ctx, &broker).await;

    auth.set(Mode::Hang);
    let (answer, took) = authenticate_alone(ctx, &broker).await;
    // README: a dead service is answered `ProxyError` at `requestTimeout` (3/4 of
    // authenticationTimeout), before the broker's own timeout would answer `Timeout`.
    r.figure("hanging authenticator: answer", format!("{answer} after {}", ms(took)));
    let limit = AUTH_TIMEOUT + Duration::from_secs(1);
    r.check(
        "a hanging authenticator: Authenticate answered with an error within authenticationTimeout + 1 s",
        answer.is_refused() && took <= limit,
        format!("{answer} after {}", ms(took)),
    );

    auth.set(Mode::Fail);
    let (answer, took) = authenticate_alone(ctx, &broker).await;
    r.figure("failing authenticator (500): answer", format!("{answer} after {}", ms(took)));
    r.check(
        "a failing authenticator: Authenticate answered with an error within 1 s",
        answer.is_refused() && took <= Duration::from_secs(1),
        format!("{answer} after {}", ms(took)),
    );

    auth.set(Mode::Slow(1000));
    let start = Instant::now();
    let opened = tokio::time::timeout(
        AUTH_TIMEOUT * 3,
        ctx.client.open_tunnel(&broker.v1_tcp(), &broker.v1_ws(), Handshake::V1),
    )
    .await;
    let took = start.elapsed();
    let detail = match &opened {
        Ok(Ok(_)) => format!("tunnel open after {}", ms(took)),
        Ok(Err(e)) => format!("{e} after {}", ms(took)),
        Err(_) => format!("no answer within {}", ms(took)),
    };
    r.figure("slow authenticator (1 s): tunnel", &detail);
    r.check(
        "a slow authenticator (1 s): the tunnel opens, after ≥ 1 s and within authenticationTimeout",
        matches!(opened, Ok(Ok(_))) && took >= Duration::from_secs(1) && took < AUTH_TIMEOUT,
        detail,
    );

    auth.set(Mode::Answer);
    let start = Instant::now();
    let opened = tokio::time::timeout(
        AUTH_TIMEOUT * 3,
        ctx.client.open_tunnel(&broker.v1_tcp(), &broker.v1_tcp(), Handshake::V1),
    )
    .await;
    let detail = match &opened {
        Ok(Ok(_)) => format!("in {}", ms(start.elapsed())),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "no answer".into(),
    };
    r.check("the authenticator answering again: a tunnel opens", matches!(opened, Ok(Ok(_))), detail);
    r.figure("requests the authenticator received", auth.requests.load(Ordering::Relaxed));
    check_canary(r, canary, "the authenticator faults").await;
}

/// What a lone Authenticate got.
enum Answer {
    Refused(String),
    Other(Failure),
    Accepted,
    Nothing,
}

impl Answer {
    fn is_refused(&self) -> bool {
        matches!(self, Answer::Refused(_))
    }
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Answer::Refused(outcome) => write!(f, "{outcome}"),
            Answer::Other(failure) => write!(f, "{failure}"),
            Answer::Accepted => write!(f, "accepted"),
            Answer::Nothing => write!(f, "no answer"),
        }
    }
}

/// One end authenticates, without a partner: the answer and how long it took. A success shows as
/// the wait for a partner, which is cut at authenticationTimeout + 3 s.
async fn authenticate_alone(ctx: &Ctx, broker: &Broker) -> (Answer, Duration) {
    let (credentials, _) = ctx.client.fresh_credentials();
    let start = Instant::now();
    let result = tokio::time::timeout(
        AUTH_TIMEOUT + Duration::from_secs(3),
        ctx.client.open_end(&broker.v1_tcp(), Handshake::V1, &credentials),
    )
    .await;
    let answer = match result {
        Err(_) | Ok(Err(Failure::Timeout("TunnelEstablished"))) => Answer::Nothing,
        Ok(Err(Failure::Refused(outcome))) => Answer::Refused(outcome),
        Ok(Err(failure)) => Answer::Other(failure),
        Ok(Ok(_)) => Answer::Accepted,
    };
    (answer, start.elapsed())
}
