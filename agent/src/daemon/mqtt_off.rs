//! Stands in for `daemon::mqtt` in a build without the `mqtt` feature: `run` enrolls, keeps
//! the tunnel up, renews the certificate and runs the update engine, with no broker session.
//! `status` says the session is off and why; a broker the bridge announced is logged and
//! ignored. A renewed pair, verified by the renewal, is promoted at once (there is no broker
//! to prove it against).

use std::convert::Infallible;
use std::fmt;

use nexa_proto::DeviceId;

use super::renewal::Adoption;
use super::{Daemon, RunOptions};
use crate::certs::{CertsDir, EnrolledFlag};
use crate::config::AgentConfig;
use crate::error::AgentError;
use crate::features::Feature;
use crate::renew::stage::{self, Staged, rfc3339};
use crate::runstate::Part;

/// Nothing to check: MQTT settings were warned about at load.
#[derive(Debug)]
pub(super) struct Settings;

impl Settings {
    pub fn check(_cfg: &AgentConfig) -> Result<Self, AgentError> {
        Ok(Self)
    }
}

/// Never produced.
pub(super) type Incoming = Infallible;

/// No session.
#[derive(Debug)]
pub(super) struct Session;

/// What a new enrollment would change about the (absent) session: nothing.
#[derive(Debug)]
pub(super) struct Target;

impl fmt::Display for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("none (no `mqtt` feature)")
    }
}

impl Session {
    pub fn open(
        _settings: Settings,
        _id: &DeviceId,
        flag: &EnrolledFlag,
        _certs: &CertsDir,
        _cfg: &AgentConfig,
        _opts: &RunOptions,
    ) -> Result<Self, AgentError> {
        if let Some(url) = &flag.mqtt_url {
            tracing::info!(broker = %url, "the bridge announced an MQTT broker; {}", Feature::Mqtt.missing());
        }
        Ok(Self)
    }

    /// Never ready: the main loop waits for its other events.
    pub async fn next(&mut self) -> Incoming {
        std::future::pending().await
    }

    pub fn settled(&self) -> bool {
        true
    }

    pub fn part(&self) -> Part {
        Part::new("off", Some("not_built"), Some(&Feature::Mqtt.missing()))
    }

    pub fn target(&self, _cfg: &AgentConfig, _flag: &EnrolledFlag) -> Result<Target, String> {
        Ok(Target)
    }

    pub fn is_current(&self, _target: &Target) -> bool {
        true
    }

    pub fn retarget(&mut self, _target: Target) {}
}

impl Daemon {
    pub(super) async fn on_mqtt(&mut self, incoming: Incoming) {
        match incoming {}
    }

    pub(super) fn announce(&mut self) {}

    pub(super) async fn rebuild_session(&mut self) {}

    pub(super) async fn close_session(&mut self) {}

    /// Promotes the verified pair (the caller holds the certs lock).
    pub(super) async fn adopt(&mut self, _id: &DeviceId, staged: Staged) -> Adoption {
        if let Err(e) = stage::promote(&self.certs, &staged) {
            tracing::error!(error = %e, "cannot promote the renewed certificate");
            if let Err(e) = stage::recover(&self.certs) {
                tracing::error!(error = %e, "cannot resolve the interrupted promotion");
            }
            return Adoption::Rejected;
        }
        match self.certs.read_flag() {
            Ok(Some(Ok(flag))) => self.flag = flag,
            _ => tracing::warn!("the enrolled flag is unreadable after the renewal"),
        }
        tracing::info!(serial = %staged.facts.serial_hex, not_after = %rfc3339(staged.facts.not_after), "certificate renewed");
        self.ota_restart = true;
        self.serial.send_replace(self.flag.serial.clone());
        self.save_state();
        Adoption::InUse
    }
}
