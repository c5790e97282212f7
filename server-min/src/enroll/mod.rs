//! The enrollment service: validate, decide, sign, allocate, store, audit.
//!
//! 1. Validate the request (WireGuard key, CSR checks, optional fields).
//! 2. Read the device and [`plan`] what this request is: a first enrollment, an idempotent
//!    retry with the same keys, a re-enrollment consuming an operator's window, or a refusal.
//! 3. Ask the [`Signer`] for a certificate (outside any transaction: a slow CA never holds
//!    the database's write lock).
//! 4. Hand the prepared write to the group committer ([`commit`]): inside one transaction
//!    shared with the other enrollments of that moment, in its own savepoint, allocate an
//!    address if the device has none, compare-and-set the device row on its `generation`,
//!    supersede the previous certificate, record the new one and the audit event. A lost race
//!    (another request for the same device, or a replica taking the same address) rolls back
//!    that savepoint only and this request starts again from step 2.

pub mod commit;

use std::sync::Arc;

use nexa_proto::wireguard::render_wg_quick;
use nexa_proto::{
    CertificateInfo, DeviceId, EnrollRequest, EnrollResponse, HawkbitProfile, WgKeyError,
    WgPublicKey, WireguardProfile,
};
use time::format_description::well_known::Rfc3339;

use crate::ca::{SignRequest, Signer, SignerError};
use crate::clock::Clock;
use crate::config::WgSettings;
use crate::csr::{self, CsrError};
use crate::db::devices::{self, DeviceRow};
use crate::db::{Db, DbError};
use crate::hawkbit::{HawkbitError, TargetOutcome, TargetRegistry, TargetToken};
use crate::wg::manager::{GatewayHandle, PeerChange};
use crate::wg::pool::AllocError;
use commit::{CommitError, Committed, Committer, EnrollmentWrite};

/// How many times a lost compare-and-set is retried before giving up.
const MAX_ATTEMPTS: usize = 5;
/// Longest accepted `machine_uid` / `hostname`.
const MAX_FIELD_LEN: usize = 255;

/// What kind of enrollment succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// First enrollment of a registered device (HTTP 201).
    Created,
    /// Same keys again: same address, fresh certificate (HTTP 200).
    Repeated,
    /// New keys under an operator's re-enrollment window (HTTP 200).
    Reenrolled,
}

/// Why an enrollment was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error(transparent)]
    Csr(#[from] CsrError),
    #[error("wg_public_key: {0}")]
    WgKey(#[from] WgKeyError),
    #[error("{field}: {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error(
        "device {0} is not registered; an operator registers it with `nexa-server device add {0}`"
    )]
    NotRegistered(DeviceId),
    #[error(
        "device {0} is already enrolled with other keys; an operator must allow re-enrollment with \
         `nexa-server device allow-reenroll {0}` first"
    )]
    AlreadyEnrolled(DeviceId),
    #[error("device {0} is revoked and can never enroll again; register a new device id")]
    Revoked(DeviceId),
    #[error("device {0} is decommissioned and can never enroll again; register a new device id")]
    Decommissioned(DeviceId),
    #[error("this WireGuard public key belongs to another device; generate a new key pair")]
    WgKeyInUse,
    #[error("no WireGuard address left: {0}")]
    PoolExhausted(String),
    #[error(transparent)]
    Signer(#[from] SignerError),
    #[error("enrollment of {0} kept colliding with concurrent enrollments of the same device")]
    Contention(DeviceId),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("storing the enrollment failed: {0}")]
    CommitFailed(String),
    #[error("the enrollment writer has stopped")]
    WriterStopped,
    /// Provisioning the device's hawkBit target failed; nothing was committed.
    #[error("provisioning the hawkBit target: {0}")]
    Hawkbit(HawkbitError),
}

impl From<AllocError> for EnrollError {
    fn from(e: AllocError) -> Self {
        match e {
            AllocError::Exhausted { .. } => EnrollError::PoolExhausted(e.to_string()),
            AllocError::Db(db) => EnrollError::Db(db),
        }
    }
}

/// What a request is, given the device's stored state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    First,
    Repeat,
    Reenroll,
}

/// Decides what an enrollment with these keys means for `device` at time `now`.
/// `None` means refused: enrolled with other keys and no open window.
pub fn plan(device: &DeviceRow, spki_sha256: &str, wg_key: &str, now: i64) -> Option<Plan> {
    if device.state != devices::STATE_ENROLLED {
        return Some(Plan::First);
    }
    let same_keys = device.ec_spki_sha256.as_deref() == Some(spki_sha256)
        && device.wg_public_key.as_deref() == Some(wg_key);
    if same_keys {
        Some(Plan::Repeat)
    } else if device.reenroll_until.is_some_and(|until| until > now) {
        Some(Plan::Reenroll)
    } else {
        None
    }
}

/// One enrollment request.
#[derive(Debug)]
pub struct EnrollInput {
    pub id: DeviceId,
    pub request: EnrollRequest,
    /// The client's address, for the audit trail.
    pub source: Option<String>,
}

/// The enrollment service.
#[derive(Debug, Clone)]
pub struct EnrollService {
    db: Db,
    signer: Arc<dyn Signer>,
    wg: WgSettings,
    gateway_key: WgPublicKey,
    clock: Arc<dyn Clock>,
    committer: Committer,
    gateway: GatewayHandle,
    /// Announced to devices in the response (`mqtt_url`).
    broker: Option<String>,
    /// hawkBit targets are provisioned at enrollment when set.
    hawkbit: Option<HawkbitProvisioning>,
}

/// Provisioning of the device's hawkBit target at enrollment: every enrollment creates the
/// target or replaces its security token, and the response carries the new token.
#[derive(Debug, Clone)]
pub struct HawkbitProvisioning {
    pub registry: Arc<dyn TargetRegistry>,
    /// The DDI base URL announced to the device.
    pub ddi_url: String,
    pub tenant: String,
}

impl EnrollService {
    /// Creates the service and starts its writer task; call inside a Tokio runtime.
    pub fn new(
        db: Db,
        signer: Arc<dyn Signer>,
        wg: WgSettings,
        gateway_key: WgPublicKey,
        clock: Arc<dyn Clock>,
        gateway: GatewayHandle,
    ) -> Self {
        let committer = Committer::spawn(db.clone(), wg.pool, clock.clone());
        Self {
            db,
            signer,
            wg,
            gateway_key,
            clock,
            committer,
            gateway,
            broker: None,
            hawkbit: None,
        }
    }

    /// Provisions hawkBit targets (and their tokens) at enrollment.
    pub fn with_hawkbit(mut self, hawkbit: Option<HawkbitProvisioning>) -> Self {
        self.hawkbit = hawkbit;
        self
    }

    /// Announces this MQTT broker to enrolling devices.
    pub fn with_broker(mut self, broker: Option<nexa_proto::BrokerUrl>) -> Self {
        self.broker = broker.map(|b| b.to_string());
        self
    }

    /// Runs one enrollment.
    pub async fn enroll(
        &self,
        input: EnrollInput,
    ) -> Result<(EnrollResponse, Outcome), EnrollError> {
        let EnrollInput {
            id,
            request,
            source,
        } = input;
        let wg_key = WgPublicKey::parse(&request.wg_public_key)?;
        if wg_key == self.gateway_key {
            return Err(EnrollError::WgKeyInUse);
        }
        let wg_key_b64 = wg_key.to_base64();
        check_field("machine_uid", request.machine_uid.as_deref())?;
        check_field("hostname", request.hostname.as_deref())?;
        let csr = csr::validate(&request.csr_pem, &id)?;
        // Issued once per request, even if the commit has to be retried.
        let mut target: Option<(TargetToken, TargetOutcome)> = None;

        for _ in 0..MAX_ATTEMPTS {
            let device = {
                let mut conn = self.db.acquire().await?;
                let (device, key_owner) =
                    devices::get_with_key_owner(&mut conn, id.as_str(), &wg_key_b64)
                        .await?
                        .ok_or_else(|| EnrollError::NotRegistered(id.clone()))?;
                if key_owner.is_some() {
                    return Err(EnrollError::WgKeyInUse);
                }
                device
            };
            if device.state == devices::STATE_REVOKED {
                return Err(EnrollError::Revoked(id.clone()));
            }
            if device.is_decommissioned() {
                return Err(EnrollError::Decommissioned(id.clone()));
            }
            let plan = plan(&device, &csr.spki_sha256, &wg_key_b64, self.clock.unix())
                .ok_or_else(|| EnrollError::AlreadyEnrolled(id.clone()))?;
            // Before signing and committing: when hawkBit is unreachable nothing is stored,
            // and the device's retry starts from the same state.
            if let Some(h) = &self.hawkbit
                && target.is_none()
            {
                let token = TargetToken::generate();
                let outcome = h
                    .registry
                    .set_token(&id, &token)
                    .await
                    .map_err(EnrollError::Hawkbit)?;
                target = Some((token, outcome));
            }

            // Signing happens before the write: a slow CA never holds up other commits.
            let issued = self
                .signer
                .sign(&SignRequest {
                    device_id: id.clone(),
                    spki_der: csr.spki_der.clone(),
                    csr_der: csr.der.clone(),
                })
                .await?;
            let revision = match plan {
                Plan::First => 1,
                Plan::Repeat => device.profile_revision,
                Plan::Reenroll => device.profile_revision + 1,
            };
            let write = EnrollmentWrite {
                id: id.to_string(),
                plan,
                generation: device.generation,
                existing_host: device.wg_host,
                profile_revision: revision,
                ec_spki_sha256: csr.spki_sha256.clone(),
                wg_public_key: wg_key_b64.clone(),
                machine_uid: request.machine_uid.clone(),
                hostname: request.hostname.clone(),
                serial: issued.serial_hex.clone(),
                not_before: issued.not_before.unix_timestamp(),
                not_after: issued.not_after.unix_timestamp(),
                superseded_serial: device.cert_serial.clone(),
                source: source.clone(),
                hawkbit_target: target.as_ref().map(|(_, outcome)| *outcome),
            };
            let host = match self.committer.commit(write).await {
                Ok(Committed { host }) => host,
                Err(CommitError::Conflict) => continue, // another writer won; re-read
                Err(CommitError::Failed(e)) => return Err(e),
            };
            // Every enrollment, repeats included, (re)writes its one peer on the gateway.
            self.gateway.notify(PeerChange {
                key: wg_key.clone(),
                host,
                replaces: device
                    .wg_public_key
                    .as_deref()
                    .and_then(|k| WgPublicKey::parse(k).ok()),
            });
            let address = self.wg.pool.interface_address(host);
            let outcome = match plan {
                Plan::First => Outcome::Created,
                Plan::Repeat => Outcome::Repeated,
                Plan::Reenroll => Outcome::Reenrolled,
            };
            tracing::info!(device = %id, ?outcome, %address, serial = %issued.serial_hex, "enrolled");

            let profile = WireguardProfile {
                address,
                server_public_key: self.gateway_key.to_base64(),
                endpoint: self.wg.endpoint.clone(),
                allowed_ips: self
                    .wg
                    .allowed_ips
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                persistent_keepalive: self.wg.keepalive,
            };
            let response = EnrollResponse {
                device_id: id.to_string(),
                certificate_pem: issued.pem,
                ca_chain_pem: issued.chain_pem,
                wireguard_config: render_wg_quick(&profile, None),
                wireguard: profile,
                profile_revision: u64::try_from(revision).unwrap_or(0),
                certificate: CertificateInfo {
                    serial: issued.serial_hex,
                    not_after: issued.not_after.format(&Rfc3339).unwrap_or_default(),
                },
                mqtt_url: self.broker.clone(),
                hawkbit: self
                    .hawkbit
                    .as_ref()
                    .zip(target.as_ref())
                    .map(|(h, (token, _))| HawkbitProfile {
                        url: h.ddi_url.clone(),
                        tenant: h.tenant.clone(),
                        controller_id: id.to_string(),
                        target_token: token.expose().to_owned(),
                    }),
            };
            return Ok((response, outcome));
        }
        Err(EnrollError::Contention(id))
    }
}

fn check_field(field: &'static str, value: Option<&str>) -> Result<(), EnrollError> {
    let Some(v) = value else { return Ok(()) };
    if v.len() > MAX_FIELD_LEN {
        return Err(EnrollError::InvalidField {
            field,
            reason: format!("is {} bytes; at most {MAX_FIELD_LEN} are allowed", v.len()),
        });
    }
    if v.chars().any(char::is_control) {
        return Err(EnrollError::InvalidField {
            field,
            reason: "contains control characters".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(state: &str, spki: Option<&str>, wg: Option<&str>, window: Option<i64>) -> DeviceRow {
        DeviceRow {
            id: "d".into(),
            state: state.into(),
            note: None,
            created_at: 0,
            updated_at: 0,
            machine_uid: None,
            hostname: None,
            ec_spki_sha256: spki.map(Into::into),
            wg_public_key: wg.map(Into::into),
            wg_host: None,
            profile_revision: 1,
            cert_serial: None,
            cert_not_after: None,
            enrolled_at: None,
            reenroll_until: window,
            generation: 0,
            revoked_at: None,
            hawkbit_target_at: None,
            decommissioned_at: None,
        }
    }

    #[test]
    fn plan_covers_every_case() {
        let reg = row("registered", None, None, None);
        assert_eq!(plan(&reg, "a", "w", 100), Some(Plan::First));
        let enrolled = row("enrolled", Some("a"), Some("w"), None);
        assert_eq!(plan(&enrolled, "a", "w", 100), Some(Plan::Repeat));
        assert_eq!(plan(&enrolled, "b", "w", 100), None);
        assert_eq!(plan(&enrolled, "a", "x", 100), None);
        let open = row("enrolled", Some("a"), Some("w"), Some(101));
        assert_eq!(plan(&open, "b", "x", 100), Some(Plan::Reenroll));
        assert_eq!(
            plan(&open, "a", "w", 100),
            Some(Plan::Repeat),
            "same keys never consume the window"
        );
        let expired = row("enrolled", Some("a"), Some("w"), Some(100));
        assert_eq!(
            plan(&expired, "b", "x", 100),
            None,
            "a window ending now is closed"
        );
    }

    #[test]
    fn optional_fields_are_bounded() {
        assert!(check_field("hostname", None).is_ok());
        assert!(check_field("hostname", Some("gw-01")).is_ok());
        assert!(check_field("hostname", Some(&"x".repeat(256))).is_err());
        assert!(check_field("hostname", Some("a\nb")).is_err());
    }
}
