//! systemd's notify protocol for `nexa-server serve` under `Type=notify`
//! (nexa-server.service): `READY=1` once the HTTPS listener is bound, `WATCHDOG=1` while the
//! runtime schedules work, `STOPPING=1` when a signal starts the graceful shutdown, with a
//! `STATUS=` line each time. Outside systemd (no `NOTIFY_SOCKET`) every call is a no-op.

use std::net::SocketAddr;
use std::time::Duration;

use sd_notify::NotifyState;

/// The listener is bound: units ordered after nexa-server.service may connect now.
pub fn ready(addr: SocketAddr) {
    let status = format!("serving on https://{addr}");
    send(&[NotifyState::Ready, NotifyState::Status(&status)]);
}

/// A signal arrived: open requests are finished, new connections refused.
pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping: finishing open requests"),
    ]);
}

/// How often to send `WATCHDOG=1`: half of `WatchdogSec=` (`WATCHDOG_USEC`, for this
/// process), as systemd advises; `None` without a watchdog.
pub fn watchdog_every() -> Option<Duration> {
    sd_notify::watchdog_enabled()
        .filter(|w| !w.is_zero())
        .map(|w| w / 2)
}

/// Feeds the watchdog from a task on the runtime until the returned handle is aborted or
/// dropped with the runtime: when the runtime stops scheduling tasks (every worker blocked),
/// the pings stop and systemd restarts the bridge. Without a watchdog nothing is spawned.
pub fn spawn_watchdog() -> Option<tokio::task::JoinHandle<()>> {
    let every = watchdog_every()?;
    tracing::debug!(?every, "feeding the systemd watchdog");
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            send(&[NotifyState::Watchdog]);
        }
    }))
}

/// Errors are logged, never fatal: the bridge serves whether or not systemd listens.
fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd (NOTIFY_SOCKET)");
    }
}
