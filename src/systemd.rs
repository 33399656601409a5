//! What the service manager hears from the broker (`sd_notify`): `READY=1` once every listener is
//! bound, `RELOADING=1` … `READY=1` around a SIGHUP reload, `STOPPING=1` at the stop signal, and
//! `WATCHDOG=1` from a task on the runtime at half the unit's `WatchdogSec`, so a runtime that
//! stops scheduling tasks is restarted. Outside systemd (no `NOTIFY_SOCKET`) every call does
//! nothing. The `sd-notify` crate does the socket work.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;
use tracing::warn;

fn send(states: &[NotifyState]) {
    if let Err(error) = sd_notify::notify(states) {
        warn!(%error, "cannot notify the service manager");
    }
}

/// Every listener is bound: clients can connect.
pub fn ready() {
    send(&[NotifyState::Ready, NotifyState::Status("serving")]);
}

/// The stop signal arrived: the broker drains.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("draining")]);
}

/// A reload starts (SIGHUP); [`reloaded`] ends it.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// A reload ended (whatever its outcome: a failed reload keeps the old state, which serves).
pub fn reloaded() {
    send(&[NotifyState::Ready]);
}

/// Pings the watchdog at half the interval the unit asked for, until `stop`. Returns at once
/// when the unit has no watchdog.
pub async fn watchdog(stop: CancellationToken) {
    let Some(interval) = sd_notify::watchdog_enabled() else {
        return;
    };
    let mut ticks = tokio::time::interval((interval / 2).max(Duration::from_millis(100)));
    loop {
        tokio::select! {
            _ = ticks.tick() => send(&[NotifyState::Watchdog]),
            _ = stop.cancelled() => return,
        }
    }
}
