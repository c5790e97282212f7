//! Certificate renewal inside `nexa-agent run`.
//!
//! A task sleeps until the policy says the certificate is due (looking again at least every
//! `renew_recheck`, and whenever the daemon takes up a new certificate), renews under the
//! certs lock (retrying an unavailable bridge with the reconnect backoff) and hands the staged
//! pair, with the lock, to the main loop. The main loop proves it by reconnecting its MQTT
//! session with it (`daemon::mqtt`): accepted → promoted, and that session carries on;
//! refused → discarded, and the session reconnects with the current pair. A build without
//! the `mqtt` feature promotes the verified pair at once. An expired certificate makes the task
//! re-enroll (`enroll --force`); a revocation makes the main loop bring the tunnel down, and
//! the task stop.

use std::path::PathBuf;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::{Daemon, Tunnel};
use crate::backoff::Backoff;
use crate::bridge::BridgeError;
use crate::config::AgentConfig;
use crate::enroll::approval::ApprovalWait;
use crate::enroll::{EnrollOptions, enroll};
use crate::error::AgentError;
use crate::renew::lock::CertsLock;
use crate::renew::policy::Decision;
use crate::renew::revoked::{self, Revoked};
use crate::renew::stage::{self, Staged, rfc3339};
use crate::renew::{CurrentCert, RenewError, Renewer, ensure_not_revoked, retry_hint};
use crate::tunnel;

/// What the renewal task asks of the main loop.
#[derive(Debug)]
pub(super) enum RenewEvent {
    /// A verified pair is staged; prove it with the MQTT session, then promote or discard it
    /// (under `lock`) and answer on `done` how that went.
    Staged {
        staged: Staged,
        lock: CertsLock,
        done: oneshot::Sender<Adoption>,
    },
    /// The certificate had expired and the device enrolled again: take the new set up.
    ReEnrolled,
    /// The bridge revoked the device (the marker is written).
    Revoked(Revoked),
}

/// What became of a staged pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Adoption {
    /// Promoted; the MQTT session uses it.
    InUse,
    /// The broker refused it (or it could not be promoted); discarded.
    Rejected,
    /// The broker could not be reached, so nothing was proven; discarded, to be tried again
    /// with the reconnect backoff.
    #[cfg_attr(not(feature = "mqtt"), allow(dead_code))]
    Inconclusive,
}

/// The task's timing.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timing {
    /// Longest sleep before the clock and `/certs` are looked at again (wall-clock jumps,
    /// certificates changed by another command).
    pub recheck: Duration,
    /// Wait after a refusal, a failed re-enrollment or a pair the broker did not accept.
    pub after_refusal: Duration,
    /// Retries of an unavailable bridge.
    pub backoff: Backoff,
}

/// The task's parts.
#[derive(Debug)]
pub(super) struct Task {
    pub renewer: Renewer,
    pub cfg: AgentConfig,
    pub sysroot: PathBuf,
    pub timing: Timing,
    pub events: mpsc::Sender<RenewEvent>,
    /// Changes when the daemon takes up another certificate.
    pub serial: watch::Receiver<String>,
}

enum Next {
    Wait(Duration),
    Stop,
}

impl Task {
    pub fn spawn(self) -> JoinHandle<()> {
        tokio::spawn(self.run())
    }

    async fn run(mut self) {
        let mut attempt = 0u32;
        loop {
            let wait = match self.step(&mut attempt).await {
                Next::Wait(d) => d.min(self.timing.recheck),
                Next::Stop => return,
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                changed = self.serial.changed() => if changed.is_err() { return },
            }
        }
    }

    async fn step(&mut self, attempt: &mut u32) -> Next {
        let certs = self.renewer.certs().clone();
        if let Err(RenewError::Revoked { revoked, .. }) = ensure_not_revoked(&certs) {
            let _ = self.events.send(RenewEvent::Revoked(revoked)).await;
            return Next::Stop;
        }
        let now = OffsetDateTime::now_utc();
        let decision = match CurrentCert::read(&certs) {
            Ok(c) => c.decide(&self.renewer.policy, now),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the device certificate; looking again later");
                return Next::Wait(self.timing.recheck);
            }
        };
        match decision {
            Decision::NotYet { at } => {
                tracing::debug!(at = %rfc3339(at), "certificate renewal scheduled");
                return Next::Wait(decision.wait(now));
            }
            Decision::Expired { not_after } => return self.re_enroll(not_after, attempt).await,
            Decision::Due { .. } => {}
        }
        let lock = match CertsLock::acquire(certs.root()).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot lock the certs directory; renewal postponed");
                return Next::Wait(self.timing.recheck);
            }
        };
        // Another command may have renewed or broken off a renewal meanwhile.
        if let Err(e) = stage::recover(&certs) {
            tracing::warn!(error = %e, "cannot resolve an interrupted renewal; renewal postponed");
            return Next::Wait(self.timing.recheck);
        }
        match CurrentCert::read(&certs).map(|c| c.decide(&self.renewer.policy, now)) {
            Ok(Decision::Due { .. }) => {}
            _ => return Next::Wait(Duration::ZERO),
        }
        match self.renewer.request(&lock).await {
            Ok(staged) => {
                let (done, answer) = oneshot::channel();
                let event = RenewEvent::Staged { staged, lock, done };
                if self.events.send(event).await.is_err() {
                    return Next::Stop;
                }
                match answer.await {
                    Ok(Adoption::InUse) => {
                        *attempt = 0;
                        let now = OffsetDateTime::now_utc();
                        match CurrentCert::read(&certs).map(|c| c.decide(&self.renewer.policy, now))
                        {
                            Ok(Decision::NotYet { .. }) => Next::Wait(Duration::ZERO),
                            // Renewing again at once would loop: the device clock runs ahead
                            // of the CA's, or the CA caps the lifetime.
                            _ => {
                                tracing::error!(
                                    retry_in_s = self.timing.after_refusal.as_secs(),
                                    "the renewed certificate is due for renewal at once (is the device clock ahead, or does the CA cap the lifetime?)"
                                );
                                Next::Wait(self.timing.after_refusal)
                            }
                        }
                    }
                    Ok(Adoption::Rejected) => Next::Wait(self.timing.after_refusal),
                    Ok(Adoption::Inconclusive) => {
                        let delay = self.timing.backoff.delay(*attempt, None);
                        *attempt = attempt.saturating_add(1);
                        Next::Wait(delay)
                    }
                    Err(_) => Next::Stop,
                }
            }
            Err(AgentError::Renew(RenewError::Revoked { revoked, .. })) => {
                let _ = self.events.send(RenewEvent::Revoked(revoked)).await;
                Next::Stop
            }
            Err(e) => match retry_hint(&e) {
                Some(retry_after) => {
                    let delay = self.timing.backoff.delay(*attempt, retry_after);
                    *attempt = attempt.saturating_add(1);
                    tracing::warn!(error = %e, retry_s = delay.as_secs(), "certificate renewal failed; retrying");
                    Next::Wait(delay)
                }
                None => {
                    tracing::error!(error = %e, retry_s = self.timing.after_refusal.as_secs(), "certificate renewal refused; the current certificate stays in use");
                    Next::Wait(self.timing.after_refusal)
                }
            },
        }
    }

    /// The fallback for an expired certificate: the `enroll --force` path.
    async fn re_enroll(&mut self, not_after: OffsetDateTime, attempt: &mut u32) -> Next {
        tracing::warn!(not_after = %rfc3339(not_after), "the certificate has expired and cannot authenticate a renewal; falling back to re-enrollment with new keys (the bridge must allow it: `nexa-server device allow-reenroll`)");
        let opts = EnrollOptions::new(
            true,
            Backoff {
                give_up_after: self.timing.after_refusal,
                ..self.timing.backoff
            },
            self.sysroot.clone(),
            ApprovalWait::with_timeout(self.timing.after_refusal),
        );
        match enroll(&self.cfg, &opts).await {
            Ok(_) => {
                tracing::info!("re-enrolled after the certificate expired");
                *attempt = 0;
                if self.events.send(RenewEvent::ReEnrolled).await.is_err() {
                    return Next::Stop;
                }
                Next::Wait(Duration::ZERO)
            }
            Err(AgentError::Bridge(BridgeError::Refused { code, message, .. }))
                if revoked::is_revocation(&code) =>
            {
                let revoked = self.renewer.mark_revoked(&code, &message, None);
                let _ = self.events.send(RenewEvent::Revoked(revoked)).await;
                Next::Stop
            }
            Err(e @ AgentError::ApprovalPending { .. }) => {
                // The staged keys are kept; the next attempt continues the same enrollment.
                tracing::warn!(error = %e, retry_s = self.timing.after_refusal.as_secs(), "the re-enrollment waits for an administrator's approval");
                Next::Wait(self.timing.after_refusal)
            }
            Err(e) => {
                tracing::error!(error = %e, retry_s = self.timing.after_refusal.as_secs(), "re-enrollment after the certificate expired failed");
                Next::Wait(self.timing.after_refusal)
            }
        }
    }
}

impl Daemon {
    /// The bridge revoked the device: the tunnel goes down and stays down.
    pub(super) async fn on_revoked(&mut self, revoked: &Revoked) {
        tracing::error!(reason = %revoked.describe(), "this device is revoked; bringing the tunnel down and stopping renewals");
        if self.tunnel != Tunnel::Disabled {
            let link = self.link.clone();
            let name = self.cfg.wg_interface.clone();
            match tokio::task::spawn_blocking(move || tunnel::down(link.as_ref(), &name)).await {
                Ok(Ok(true)) => {
                    tracing::info!(interface = %self.cfg.wg_interface, "WireGuard interface removed")
                }
                Ok(Ok(false)) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "cannot remove the WireGuard interface"),
                Err(e) => tracing::error!(error = %e, "the tunnel task failed"),
            }
            self.tunnel = Tunnel::Revoked(revoked.describe());
        }
        self.save_state();
        self.announce();
    }

    /// Starts the renewal task unless the device is revoked or the task already runs.
    pub(super) fn start_renewal(&mut self) {
        if self.renewal.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        if let Ok(Some(_)) = revoked::read(&self.certs) {
            return;
        }
        let renewer = match Renewer::new(&self.cfg) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "certificate renewal is off");
                return;
            }
        };
        let task = Task {
            renewer,
            cfg: self.cfg.clone(),
            sysroot: self.opts.sysroot.clone(),
            timing: Timing {
                recheck: self.opts.renew_recheck,
                after_refusal: self.opts.renew_after_refusal,
                backoff: self.reconnect,
            },
            events: self.renew_tx.clone(),
            serial: self.serial.subscribe(),
        };
        self.renewal = Some(task.spawn());
    }
}
