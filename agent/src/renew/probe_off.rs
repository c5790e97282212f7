//! Without the `mqtt` feature there is no broker to prove a renewed pair against: `cert
//! renew` promotes the pair the bridge issued once it is verified (chain to the pinned root,
//! device id, key), and says the MQTT check was skipped and why. Stands in for `probe.rs`.

use std::time::Duration;

use super::stage::Staged;
use super::{MqttCheck, MqttProof, RenewOptions, Renewer};
use crate::config::AgentConfig;
use crate::error::AgentError;
use crate::features::Feature;

/// How long the broker has to accept a staged pair (unused without a broker).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Always skipped: this build has no MQTT session.
pub(super) async fn prove(
    _renewer: &Renewer,
    _cfg: &AgentConfig,
    _staged: &Staged,
    opts: &RenewOptions,
) -> Result<MqttProof, AgentError> {
    let why = match opts.mqtt {
        MqttCheck::Skip => "not requested".to_owned(),
        MqttCheck::Auto => Feature::Mqtt.missing(),
    };
    Ok(MqttProof::Skipped { why })
}
