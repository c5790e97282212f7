//! Proof that a staged pair works where it matters: an MQTT session to the broker opened with
//! it. The connected session is returned so the daemon can keep it as its own; `cert renew`
//! connects, disconnects, and promotes only what the broker accepted ([`prove`]).
//! Without the `mqtt` feature `probe_off.rs` stands in.

use std::path::Path;
use std::time::Duration;

use nexa_proto::DeviceId;
use rumqttc::{AsyncClient, EventLoop};

use super::stage::{self, Staged};
use super::{MqttCheck, MqttProof, RenewError, RenewOptions, Renewer};
use crate::certs::CertsDir;
use crate::config::{AgentConfig, Broker, ConfigError};
use crate::error::AgentError;
use crate::identity::{IdentityFiles, TlsSetupError};
use crate::mqtt::errors::Failure;
use crate::mqtt::session::{disconnect, open, wait_connected};
use crate::mqtt::tls::client_config_from;
use crate::runstate::read_live;

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

/// `cert renew`'s proof of the staged pair: a connection to the broker when one is known
/// (else skipped, saying why). A refusal discards the staged pair.
pub(super) async fn prove(
    renewer: &Renewer,
    cfg: &AgentConfig,
    staged: &Staged,
    opts: &RenewOptions,
) -> Result<MqttProof, AgentError> {
    let certs = renewer.certs();
    let broker = match target(cfg, certs, opts.mqtt) {
        Ok(broker) => broker,
        Err(why) => return Ok(MqttProof::Skipped { why }),
    };
    let id = renewer.device_id()?;
    match connect_with(
        &id,
        &broker,
        &staged.files,
        cfg.mqtt_ca.as_deref(),
        opts.mqtt_timeout,
    )
    .await
    {
        Ok((client, mut events)) => {
            disconnect(&client, &mut events).await;
            Ok(MqttProof::Connected {
                broker: broker.to_string(),
            })
        }
        Err(e) => {
            stage::discard(certs).map_err(RenewError::from)?;
            Err(RenewError::Probe(e).into())
        }
    }
}

/// The broker to prove the new pair against, or why not.
fn target(cfg: &AgentConfig, certs: &CertsDir, check: MqttCheck) -> Result<Broker, String> {
    if check == MqttCheck::Skip {
        return Err("not requested".into());
    }
    let announced = certs
        .read_flag()
        .ok()
        .flatten()
        .and_then(Result::ok)
        .and_then(|f| f.mqtt_url);
    let broker = cfg.broker(announced.as_deref()).map_err(|e| match e {
        ConfigError::MissingMqttUrl { .. } => {
            "no MQTT broker is configured or announced".to_owned()
        }
        other => other.to_string(),
    })?;
    if let Some(daemon) = read_live(&cfg.state_dir) {
        // The pair must be proven even so: the probe uses the device's client id, so the
        // broker hands the session over for a moment and the daemon reconnects; it takes the
        // promoted pair up within 30 s.
        tracing::info!(
            pid = daemon.pid,
            "a daemon is running; its MQTT session is interrupted briefly by the check"
        );
    }
    Ok(broker)
}
