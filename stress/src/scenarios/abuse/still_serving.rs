//! After the abuse: the broker process still runs, answers a Hello over TLS-TCP and WebSocket,
//! its monitor answers, and its log holds no panic. This shows that no attack left the broker
//! broken for the clients that come next.

use crate::Ctx;
use crate::broker::Broker;

/// After everything: the process runs, a Hello is answered over TLS-TCP and WebSocket, the
/// monitor answers, and the log holds no panic.
pub(super) async fn still_serving(ctx: &Ctx, broker: &mut Broker) {
    let r = &ctx.report;
    r.check("the broker is still running", broker.alive(), format!("pid {}", broker.pid));
    let (tcp, ws) = (ctx.client.hello(&broker.v1_tcp()).await, ctx.client.hello(&broker.v1_ws()).await);
    match (tcp, ws) {
        (Ok(v), Ok(_)) => r.check("a Hello is answered after the abuse (TLS-TCP and WebSocket)", true, v),
        (Err(e), _) | (_, Err(e)) => {
            r.error("a Hello is answered after the abuse (TLS-TCP and WebSocket)", e)
        }
    }
    match broker.snapshot().await {
        Ok(s) => r.check(
            "the monitor answers after the garbage",
            true,
            format!("uptime {} s", s.uptime.unwrap_or(0)),
        ),
        Err(e) => r.error("the monitor answers after the garbage", e),
    }
    let log = broker.log_text();
    let panics = log.lines().filter(|l| l.contains("panicked")).count();
    r.check(
        "the broker logged no panic",
        panics == 0,
        format!(
            "{panics}{}",
            log.lines().find(|l| l.contains("panicked")).map(|l| format!(": {l}")).unwrap_or_default()
        ),
    );
}
