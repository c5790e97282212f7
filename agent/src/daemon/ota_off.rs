//! Stands in for `daemon::ota` in a build without the `ota` feature: no update engine. When
//! hawkBit is configured or the bridge announced it at enrollment, `status` shows updates as
//! off, naming the missing feature, and the log says so once per start.

use tokio::sync::watch;

use super::Daemon;
use crate::config::AgentConfig;
use crate::error::AgentError;
use crate::features::Feature;
use crate::hawkbit::status::OtaStatus;

/// Updates are off; `off` says why when something asked for them.
#[derive(Debug, Default)]
pub(super) struct Updates {
    off: Option<String>,
}

impl Updates {
    /// Nothing to check: hawkBit settings were warned about at load.
    pub fn check(_cfg: &AgentConfig) -> Result<(), AgentError> {
        Ok(())
    }

    pub fn idle(&self) -> bool {
        true
    }

    pub fn stop(&mut self) {}

    pub fn status(&self) -> Option<OtaStatus> {
        self.off.as_ref().map(|why| OtaStatus {
            error: Some(format!("updates are off: {why}")),
            ..OtaStatus::default()
        })
    }
}

impl Daemon {
    /// Records (and logs) that updates are off when hawkBit is configured or announced.
    pub(super) fn start_ota(&mut self) -> Option<watch::Receiver<OtaStatus>> {
        let configured = self.cfg.hawkbit.url.is_some();
        self.ota.off = match (&self.flag.hawkbit, configured) {
            (Some(announced), _) => {
                tracing::warn!(server = %announced.url, "the bridge announced hawkBit; {}; updates are off", Feature::Ota.missing());
                Some(Feature::Ota.missing())
            }
            (None, true) => Some(Feature::Ota.missing()),
            (None, false) => None,
        };
        self.save_state();
        None
    }
}
