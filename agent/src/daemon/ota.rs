//! Starting the update engine inside `nexa-agent run` when `[hawkbit]` is configured or the
//! bridge announced hawkBit at enrollment (feature `ota`). A failure to start it (unreadable
//! token, no trust anchors) is reported in the log and in `status`, and the daemon carries on
//! without updates: degraded, not dead. Without the feature `ota_off.rs` stands in.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Daemon;
use crate::certs::{CertsDir, EnrolledFlag};
use crate::config::AgentConfig;
use crate::error::AgentError;
use crate::hawkbit::client::DdiClient;
use crate::hawkbit::download::Spool;
use crate::hawkbit::engine::{Engine, Parts, Timing};
use crate::hawkbit::pending::PendingFile;
use crate::hawkbit::reboot::{RequestFile, for_settings};
use crate::hawkbit::settings::{AfterInstall, HawkbitSettings, RebootVia};
use crate::hawkbit::status::{OtaStatus, Phase};
use crate::rauc::DbusRauc;

/// The running engine.
#[derive(Debug)]
struct Ota {
    task: JoinHandle<()>,
    status: watch::Receiver<OtaStatus>,
}

/// The update engine as the daemon holds it: running, or off and why.
#[derive(Debug, Default)]
pub(super) struct Updates {
    engine: Option<Ota>,
    /// Why the update engine could not start.
    error: Option<String>,
}

impl Updates {
    /// The hawkBit configuration must be usable on its own (before any announcement).
    pub fn check(cfg: &AgentConfig) -> Result<(), AgentError> {
        cfg.hawkbit()?;
        Ok(())
    }

    /// The engine can be replaced without cutting an action short.
    pub fn idle(&self) -> bool {
        self.engine
            .as_ref()
            .is_none_or(|o| o.status.borrow().phase == Phase::Idle)
    }

    pub fn stop(&mut self) {
        if let Some(o) = self.engine.take() {
            o.task.abort();
        }
    }

    /// What `status` shows; `None` when hawkBit is not configured.
    pub fn status(&self) -> Option<OtaStatus> {
        match (&self.engine, &self.error) {
            (Some(o), _) => Some(o.status.borrow().clone()),
            (None, Some(why)) => Some(OtaStatus {
                error: Some(format!("updates are off: {why}")),
                ..OtaStatus::default()
            }),
            (None, None) => None,
        }
    }
}

impl Daemon {
    /// Starts the update engine when hawkBit is configured or was announced at enrollment;
    /// returns its status channel. A failure leaves updates off, with the reason in `status`.
    pub(super) fn start_ota(&mut self) -> Option<watch::Receiver<OtaStatus>> {
        self.ota.error = None;
        let settings = match self.cfg.hawkbit_with(self.flag.hawkbit.as_ref()) {
            Ok(Some(s)) => s,
            Ok(None) => {
                self.save_state();
                return None;
            }
            Err(e) => {
                tracing::error!(error = %e, "hawkBit updates are off");
                self.ota.error = Some(e.to_string());
                self.save_state();
                return None;
            }
        };
        let started = start(
            &settings,
            &self.flag.device_id,
            &self.flag,
            &self.certs,
            &self.opts.proc_root,
        );
        let rx = match started {
            Ok(o) => {
                let rx = o.status.clone();
                self.ota.engine = Some(o);
                Some(rx)
            }
            Err(why) => {
                tracing::error!(error = %why, "hawkBit updates are off");
                self.ota.error = Some(why);
                None
            }
        };
        self.save_state();
        rx
    }
}

/// This boot's id, so an agent restart is not mistaken for a reboot.
fn boot_id(proc_root: &Path) -> String {
    std::fs::read_to_string(proc_root.join("sys/kernel/random/boot_id"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// Starts the engine; `Err` says why updates are off.
fn start(
    settings: &HawkbitSettings,
    device_id: &str,
    flag: &EnrolledFlag,
    certs: &CertsDir,
    proc_root: &Path,
) -> Result<Ota, String> {
    let controller = settings.controller_id.as_deref().unwrap_or(device_id);
    let ddi = DdiClient::new(settings, controller, certs).map_err(|e| e.to_string())?;
    let via = match settings.after_install {
        AfterInstall::Reboot(via) => via,
        AfterInstall::Report => RebootVia::Logind,
    };
    let facts = BTreeMap::from([
        ("deviceId".to_owned(), device_id.to_owned()),
        ("wgAddress".to_owned(), flag.address.clone()),
        (
            "agentVersion".to_owned(),
            env!("CARGO_PKG_VERSION").to_owned(),
        ),
    ]);
    let (engine, status) = Engine::new(Parts {
        ddi,
        rauc: Arc::new(DbusRauc::system()),
        rebooter: for_settings(via, RequestFile::in_dir(&settings.data_dir)),
        spool: Spool::new(&settings.spool_dir),
        pending: PendingFile::new(settings.pending_file()),
        after_install: settings.after_install,
        facts,
        boot_id: boot_id(proc_root),
        timing: Timing::default(),
    });
    tracing::info!(server = %settings.url, tenant = %settings.tenant, controller, auth = settings.auth.label(), "hawkBit updates on");
    Ok(Ota {
        task: tokio::spawn(engine.run()),
        status,
    })
}
