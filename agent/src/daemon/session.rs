//! The MQTT session: a client and event loop for the device's current identity, and a
//! bounded, flushing disconnect.

use std::sync::Arc;
use std::time::Duration;

use nexa_proto::DeviceId;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, TlsConfiguration, Transport};
use tokio::time::Instant;

use crate::certs::CertsDir;
use crate::config::{AgentConfig, Broker};
use crate::error::AgentError;
use crate::mqtt::tls::client_config;

/// A new MQTT client and event loop for the device's current identity in `/certs`.
pub(super) fn session(
    id: &DeviceId,
    broker: &Broker,
    certs: &CertsDir,
    cfg: &AgentConfig,
) -> Result<(AsyncClient, EventLoop), AgentError> {
    let tls = client_config(certs, cfg.mqtt_ca.as_deref()).map_err(AgentError::MqttTls)?;
    let mut mqtt = MqttOptions::new(id.to_string(), broker.host.clone(), broker.port);
    mqtt.set_keep_alive(Duration::from_secs(30))
        .set_clean_session(true)
        .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(tls),
        )));
    Ok(AsyncClient::new(mqtt, 64))
}

/// Sends what is queued, then DISCONNECT; never longer than 900 ms.
pub(super) async fn disconnect(client: &AsyncClient, events: &mut EventLoop) {
    if client.try_disconnect().is_err() {
        return;
    }
    let deadline = Instant::now() + Duration::from_millis(900);
    while let Ok(Ok(ev)) = tokio::time::timeout_at(deadline, events.poll()).await {
        if matches!(ev, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
            break;
        }
    }
}
