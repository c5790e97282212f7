//! The update engine: polls hawkBit, reports configuration data, and carries one action at a
//! time from download through RAUC install to the reboot that decides it.
//!
//! Order of an action: `proceeding` (retrieved) → download with `proceeding` progress →
//! `downloaded` → (waiting while the maintenance window is closed) → `proceeding` (installing)
//! → either `closed`+`success` at once (`after_install = "report"`) or a pending-update file,
//! a reboot request, and after the boot `closed`+`success` once the new slot runs and is
//! marked good, `closed`+`failure` if the device came back on the old one. Every failure on
//! the way ends the action with `closed`+`failure` and the reason. The spool is emptied after
//! every action. A cancel is accepted until the install starts and rejected afterwards.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

mod action;

use super::client::{DdiClient, DdiError};
use super::download::{Retry, Spool};
use super::model::{ConfigData, Execution, Feedback, Finished};
use super::pending::{BootVerdict, PendingFile};
use super::reboot::Rebooter;
use super::settings::AfterInstall;
use super::sleep::{DEFAULT_SLEEP, clamp, parse_sleep};
use super::status::{OtaStatus, Phase};
use crate::backoff::Backoff;
use crate::rauc::Installer;

/// Timings of the engine; the defaults suit a device, tests shorten them.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Poll interval while an action runs (to see a cancel) or waits for its window.
    pub active_poll: Duration,
    /// Resuming interrupted downloads.
    pub download: Retry,
    /// Pauses after a failed poll (a server's `Retry-After` wins).
    pub error_backoff: Backoff,
    /// Attempts for one feedback message before it is given up.
    pub feedback_attempts: u32,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            active_poll: Duration::from_secs(5),
            download: Retry::default(),
            error_backoff: Backoff {
                initial: Duration::from_secs(5),
                max: Duration::from_secs(300),
                give_up_after: Duration::MAX,
            },
            feedback_attempts: 5,
        }
    }
}

/// What the engine works with.
#[derive(Debug)]
pub struct Parts {
    pub ddi: DdiClient,
    pub rauc: Arc<dyn Installer>,
    pub rebooter: Arc<dyn Rebooter>,
    pub spool: Spool,
    pub pending: PendingFile,
    pub after_install: AfterInstall,
    /// Device facts sent as configData (values must be strings); RAUC's are added.
    pub facts: BTreeMap<String, String>,
    /// This boot's id (`/proc/sys/kernel/random/boot_id`), to tell a reboot from a restart.
    pub boot_id: String,
    pub timing: Timing,
}

/// The running engine.
#[derive(Debug)]
pub struct Engine {
    p: Parts,
    status: watch::Sender<OtaStatus>,
    config_sent: bool,
}

/// How handling an action ended, for the status line.
enum Outcome {
    Done(String),
    /// The action is not ours to finish now (waiting for a reboot, or nothing to do yet).
    Left,
    /// Given up without a final report: the server closed the action (404/410), or would
    /// not take its feedback; the status returns to idle with this reason.
    Dropped(String),
}

impl Engine {
    pub fn new(parts: Parts) -> (Self, watch::Receiver<OtaStatus>) {
        let (status, rx) = watch::channel(OtaStatus::default());
        (
            Self {
                p: parts,
                status,
                config_sent: false,
            },
            rx,
        )
    }

    /// Runs until the task is dropped or aborted.
    pub async fn run(mut self) {
        let mut failures: u32 = 0;
        loop {
            self.settle_pending().await;
            let wait = match self.p.ddi.poll().await {
                Ok(base) => {
                    failures = 0;
                    self.status.send_modify(|s| {
                        s.error = None;
                        s.last_poll = Some(rfc3339_now());
                    });
                    let sleep = base
                        .sleep()
                        .and_then(|raw| match parse_sleep(raw) {
                            Ok(d) => Some(d),
                            Err(e) => {
                                tracing::warn!(error = %e, "using the default polling interval");
                                None
                            }
                        })
                        .map_or(DEFAULT_SLEEP, clamp);
                    if base.links.config_data.is_some() || !self.config_sent {
                        self.send_config().await;
                    }
                    if let Some(link) = &base.links.cancel_action {
                        self.cancel_when_idle(&link.href).await;
                    } else if let Some(link) = &base.links.deployment_base {
                        self.deployment(&link.href).await;
                    }
                    sleep
                }
                Err(e) => {
                    let pause = e
                        .retry_after()
                        .unwrap_or_else(|| self.p.timing.error_backoff.delay(failures, None));
                    failures = failures.saturating_add(1);
                    self.set_error(&e.to_string());
                    match &e {
                        DdiError::Unauthorized { .. } => tracing::error!(error = %e, "hawkBit"),
                        _ => {
                            tracing::warn!(error = %e, retry_in_s = pause.as_secs(), "hawkBit poll failed")
                        }
                    }
                    pause
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    fn set_error(&self, e: &str) {
        self.status.send_modify(|s| s.error = Some(e.to_owned()));
    }

    fn phase(&self, phase: Phase, action: &str, artifact: &str, progress: Option<u8>) {
        self.status.send_modify(|s| {
            s.phase = phase;
            s.action = Some(action.to_owned());
            s.artifact = Some(artifact.to_owned());
            s.progress = progress;
        });
    }

    fn finish(&self, result: String) {
        self.status.send_modify(|s| *s = s.finished(result));
    }

    /// Puts the device facts and RAUC's compatible, variant and booted slot to hawkBit.
    async fn send_config(&mut self) {
        let mut data = self.p.facts.clone();
        match self.p.rauc.system_info().await {
            Ok(info) => {
                data.insert("raucCompatible".into(), info.compatible);
                data.insert("raucVariant".into(), info.variant);
                data.insert("raucBootSlot".into(), info.boot_slot);
            }
            Err(e) => tracing::warn!(error = %e, "configData goes without RAUC's facts"),
        }
        match self
            .p
            .ddi
            .put_config(&ConfigData {
                data,
                mode: "merge",
            })
            .await
        {
            Ok(()) => self.config_sent = true,
            Err(e) => tracing::warn!(error = %e, "cannot send configData; trying again next poll"),
        }
    }

    /// Sends feedback for `action`, retrying what is transient. `Err` only when hawkBit does
    /// not want it (410/404) or kept failing.
    async fn report(&self, action: &str, fb: Feedback) -> Result<(), DdiError> {
        self.send_feedback(action, fb, false).await
    }

    async fn send_feedback(&self, id: &str, fb: Feedback, cancel: bool) -> Result<(), DdiError> {
        let mut attempt = 0;
        loop {
            let sent = if cancel {
                self.p.ddi.cancel_feedback(id, &fb).await
            } else {
                self.p.ddi.feedback(id, &fb).await
            };
            match sent {
                Ok(()) => return Ok(()),
                Err(e) if e.is_transient() && attempt + 1 < self.p.timing.feedback_attempts => {
                    let pause = e
                        .retry_after()
                        .unwrap_or_else(|| self.p.timing.error_backoff.delay(attempt, None));
                    attempt += 1;
                    tracing::warn!(action = id, error = %e, retry_in_s = pause.as_secs(), "feedback not accepted yet");
                    tokio::time::sleep(pause).await;
                }
                Err(e) => {
                    tracing::warn!(action = id, error = %e, "feedback given up");
                    return Err(e);
                }
            }
        }
    }

    /// After a reboot: tells hawkBit how the pending update ended.
    async fn settle_pending(&mut self) {
        let pending = match self.p.pending.load() {
            Ok(Some(p)) => p,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the pending update");
                self.set_error(&e.to_string());
                return;
            }
        };
        if pending.boot_id == self.p.boot_id {
            // Installed in this boot: the reboot has not happened yet (or was refused).
            return;
        }
        let info = match self.p.rauc.system_info().await {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(error = %e, "RAUC unavailable; the pending update is confirmed later");
                self.set_error(&e.to_string());
                return;
            }
        };
        let (fb, result) = match pending.verdict(&info.boot_slot) {
            BootVerdict::Updated => match self.p.rauc.mark_good_booted().await {
                Ok(slot) => (
                    Feedback::new(now_ms(), Execution::Closed, Finished::Success).detail(format!(
                        "booted {} (slot {slot}) and marked it good",
                        pending.what
                    )),
                    "success".to_owned(),
                ),
                Err(e) => (
                    Feedback::new(now_ms(), Execution::Closed, Finished::Failure).detail(format!(
                        "booted the new slot but could not mark it good: {e}"
                    )),
                    format!("failure: {e}"),
                ),
            },
            BootVerdict::RolledBack { booted } => (
                Feedback::new(now_ms(), Execution::Closed, Finished::Failure).detail(format!(
                    "the device came back on slot {booted}; the update to slot {} did not boot",
                    pending.target_slot
                )),
                format!("failure: rolled back to slot {booted}"),
            ),
        };
        match self.report(&pending.action, fb).await {
            Ok(()) | Err(DdiError::Gone { .. } | DdiError::NotFound { .. }) => {
                if let Err(e) = self.p.pending.clear() {
                    tracing::error!(error = %e, "cannot clear the pending update");
                }
                tracing::info!(action = %pending.action, %result, "update confirmed to hawkBit");
                self.finish(format!("{}: {result}", pending.action));
            }
            Err(_) => {} // kept; tried again next poll
        }
    }

    /// A cancel while nothing runs: accepted (or rejected for an installed, rebooting update).
    async fn cancel_when_idle(&self, href: &str) {
        let cancel = match self.p.ddi.cancel_action(href).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the cancel request");
                return;
            }
        };
        let stop = cancel.cancel_action.stop_id;
        let installed = matches!(self.p.pending.load(), Ok(Some(p)) if p.action == stop);
        let fb = if installed {
            Feedback::new(now_ms(), Execution::Rejected, Finished::Success)
                .detail("the update is installed and waits for its reboot")
        } else {
            Feedback::new(now_ms(), Execution::Closed, Finished::Success)
                .detail("canceled before the update was started")
        };
        if self.send_feedback(&stop, fb, true).await.is_ok() && !installed {
            self.clean_spool();
            self.finish(format!("{stop}: canceled"));
        }
    }

    fn clean_spool(&self) {
        if let Err(e) = self.p.spool.clean() {
            tracing::warn!(error = %e, "cannot empty the spool");
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn rfc3339_now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
