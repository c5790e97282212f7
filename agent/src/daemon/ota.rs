//! Starting the update engine inside `nexa-agent run` when `[hawkbit]` is configured. A
//! failure to start it (unreadable token, no trust anchors) is reported in the log and in
//! `status`, and the daemon carries on without updates: degraded, not dead.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::certs::{CertsDir, EnrolledFlag};
use crate::hawkbit::client::DdiClient;
use crate::hawkbit::download::Spool;
use crate::hawkbit::engine::{Engine, Parts, Timing};
use crate::hawkbit::pending::PendingFile;
use crate::hawkbit::reboot::DbusRebooter;
use crate::hawkbit::settings::{AfterInstall, HawkbitSettings, RebootVia};
use crate::hawkbit::status::OtaStatus;
use crate::rauc::DbusRauc;

/// The running engine.
#[derive(Debug)]
pub(super) struct Ota {
    task: JoinHandle<()>,
    pub status: watch::Receiver<OtaStatus>,
}

impl Ota {
    pub fn stop(&self) {
        self.task.abort();
    }
}

/// This boot's id, so an agent restart is not mistaken for a reboot.
fn boot_id(proc_root: &Path) -> String {
    std::fs::read_to_string(proc_root.join("sys/kernel/random/boot_id"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// Starts the engine; `Err` says why updates are off.
pub(super) fn start(
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
        rebooter: Arc::new(DbusRebooter::new(via)),
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
