//! Proof that a staged pair works where it matters: an MQTT session to the broker opened with
//! it. The connected session is returned so the daemon can keep it as its own.

use std::path::Path;
use std::time::Duration;

use nexa_proto::DeviceId;
use rumqttc::{AsyncClient, EventLoop};

use crate::config::Broker;
use crate::mqtt::errors::Failure;
use crate::mqtt::session::{open, wait_connected};
use crate::mqtt::tls::{IdentityFiles, TlsSetupError, client_config_from};

/// How long the broker has to accept a staged pair.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a staged pair could not connect.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("the staged identity cannot be used for TLS: {0}")]
    Tls(#[from] TlsSetupError),
    #[error("the broker did not accept the new certificate ({}): {}", .0.code(), .0.message())]
    Connect(Failure),
}

/// Opens an MQTT session with the pair in `files` and waits for the broker's CONNACK.
pub async fn connect_with(
    id: &DeviceId,
    broker: &Broker,
    files: &IdentityFiles,
    broker_ca: Option<&Path>,
    timeout: Duration,
) -> Result<(AsyncClient, EventLoop), ProbeError> {
    let tls = client_config_from(files, broker_ca)?;
    let (client, mut events) = open(id, broker, tls);
    wait_connected(&mut events, timeout)
        .await
        .map_err(ProbeError::Connect)?;
    Ok((client, events))
}
