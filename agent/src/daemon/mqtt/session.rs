//! The daemon's MQTT session: a client and event loop for the device's current identity.

use rumqttc::{AsyncClient, EventLoop};

use crate::certs::CertsDir;
use crate::config::{AgentConfig, Broker};
use crate::error::AgentError;
use crate::mqtt::tls::client_config;
use nexa_proto::DeviceId;

pub(super) use crate::mqtt::session::disconnect;

/// A new MQTT client and event loop for the device's current identity in `/certs`.
pub(super) fn session(
    id: &DeviceId,
    broker: &Broker,
    certs: &CertsDir,
    cfg: &AgentConfig,
) -> Result<(AsyncClient, EventLoop), AgentError> {
    let tls = client_config(certs, cfg.mqtt_ca.as_deref()).map_err(AgentError::MqttTls)?;
    Ok(crate::mqtt::session::open(id, broker, tls))
}
