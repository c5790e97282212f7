//! Certificate renewal (`POST /api/devices/{id}/renew`): a device that holds a current
//! certificate from this bridge gets a new one, normally for a new key (rekey), without any
//! fresh authorization.
//!
//! The presented certificate must chain to the device CA, be valid now, name the device in
//! the path, and be the device's active certificate, or, for 15 minutes after a renewal, the
//! one the active certificate renewed (the device never received or never installed that
//! answer, and asks again). The
//! device must be enrolled: revoked or decommissioned devices are refused. The new
//! certificate comes from the active signer (built-in or step-ca); the store records it as
//! active, the previous one as superseded, and audits the renewal.

pub mod client_cert;

use std::sync::Arc;
use std::time::Duration;

use nexa_proto::{CertificateInfo, DeviceId, RenewRequest, RenewResponse};
use rustls_pki_types::UnixTime;
use time::format_description::well_known::Rfc3339;

use self::client_cert::ClientCa;
use crate::ca::{SignRequest, Signer, SignerError};
use crate::clock::Clock;
use crate::csr::{self, CsrError};
use crate::db::{Db, DbError, QueryContext, audit, certificates, devices};

/// Attempts when concurrent writes keep changing the device row.
const ATTEMPTS: usize = 3;
/// How long after a renewal the certificate it replaced may ask again (the device did not get
/// or could not install the answer and retries). Later, only the new certificate renews: an
/// old key copied off the device cannot displace the new one.
const LOST_ANSWER_WINDOW_S: i64 = 15 * 60;

/// Why a renewal was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    #[error(
        "renewal needs the device's current certificate as TLS client certificate; a device without one enrolls instead"
    )]
    NoClientCert,
    #[error("{0}")]
    ClientCert(String),
    #[error("device {0} is not registered at this bridge")]
    Unknown(DeviceId),
    #[error("device {0} has never enrolled; it enrolls instead of renewing")]
    NotEnrolled(DeviceId),
    #[error("device {0} is revoked; it cannot renew, and needs a new registration")]
    Revoked(DeviceId),
    #[error("device {0} is decommissioned; it cannot renew or enroll again")]
    Decommissioned(DeviceId),
    #[error(transparent)]
    Csr(#[from] CsrError),
    #[error(transparent)]
    Signer(#[from] SignerError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("the device record kept changing during the renewal; try again")]
    Contention,
}

/// A renewal request as the HTTP layer hands it over.
#[derive(Debug)]
pub struct RenewInput {
    pub id: DeviceId,
    /// The TLS client chain, leaf first, DER.
    pub peer_chain: Vec<Vec<u8>>,
    pub request: RenewRequest,
    pub source: Option<String>,
}

/// Renews device certificates.
#[derive(Debug)]
pub struct RenewService {
    db: Db,
    signer: Arc<dyn Signer>,
    client_ca: ClientCa,
    clock: Arc<dyn Clock>,
}

impl RenewService {
    pub fn new(
        db: Db,
        signer: Arc<dyn Signer>,
        client_ca: ClientCa,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            db,
            signer,
            client_ca,
            clock,
        }
    }

    pub async fn renew(&self, input: RenewInput) -> Result<RenewResponse, RenewError> {
        let id = &input.id;
        if input.peer_chain.is_empty() {
            return Err(RenewError::NoClientCert);
        }
        let now = self.clock.now();
        let at = UnixTime::since_unix_epoch(Duration::from_secs(
            u64::try_from(now.unix_timestamp()).unwrap_or(0),
        ));
        let presented = self
            .client_ca
            .verify(&input.peer_chain, at)
            .map_err(RenewError::ClientCert)?;
        if presented.common_name != id.as_str() {
            return Err(RenewError::ClientCert(format!(
                "the client certificate belongs to {:?}, not to {id}",
                presented.common_name
            )));
        }
        let csr = csr::validate(&input.request.csr_pem, id)?;

        for _ in 0..ATTEMPTS {
            let generation = self.check(id, &presented.serial_hex).await?;
            let issued = self
                .signer
                .sign(&SignRequest {
                    device_id: id.clone(),
                    spki_der: csr.spki_der.clone(),
                    csr_der: csr.der.clone(),
                })
                .await?;
            let now = self.clock.unix();
            let mut tx = self.db.begin_write().await?;
            let applied = devices::apply_renewal(
                &mut tx,
                id.as_str(),
                &csr.spki_sha256,
                &issued.serial_hex,
                issued.not_after.unix_timestamp(),
                now,
                generation,
            )
            .await?;
            if !applied {
                // Another enrollment, renewal or a revocation got there first: judge again.
                drop(tx);
                continue;
            }
            certificates::supersede_active(&mut tx, id.as_str(), now).await?;
            certificates::insert_renewed(
                &mut tx,
                &certificates::NewCertificate {
                    serial: &issued.serial_hex,
                    device_id: id.as_str(),
                    not_before: issued.not_before.unix_timestamp(),
                    not_after: issued.not_after.unix_timestamp(),
                    now,
                },
                &presented.serial_hex,
            )
            .await?;
            let event = audit::AuditEvent::new(
                format!("device:{id}"),
                "device.renewed",
                Some(id.as_str()),
                input.source.clone(),
                serde_json::json!({
                    "serial": issued.serial_hex,
                    "renewed_serial": presented.serial_hex,
                    "not_after": issued.not_after.unix_timestamp(),
                }),
            );
            audit::record(&mut tx, &event).await?;
            tx.commit().await.doing("committing a renewal")?;
            tracing::info!(device = %id, serial = %issued.serial_hex, renewed = %presented.serial_hex, "certificate renewed");
            return Ok(RenewResponse {
                device_id: id.to_string(),
                certificate: CertificateInfo {
                    serial: issued.serial_hex.clone(),
                    not_after: issued.not_after.format(&Rfc3339).unwrap_or_default(),
                },
                certificate_pem: issued.pem,
                ca_chain_pem: issued.chain_pem,
            });
        }
        Err(RenewError::Contention)
    }

    /// The device may renew with certificate `serial`: its generation for the write.
    async fn check(&self, id: &DeviceId, serial: &str) -> Result<i64, RenewError> {
        let mut conn = self.db.acquire().await?;
        let device = devices::get(&mut conn, id.as_str())
            .await?
            .ok_or_else(|| RenewError::Unknown(id.clone()))?;
        match device.state.as_str() {
            devices::STATE_ENROLLED => {}
            devices::STATE_REVOKED => return Err(RenewError::Revoked(id.clone())),
            devices::STATE_DECOMMISSIONED => return Err(RenewError::Decommissioned(id.clone())),
            _ => return Err(RenewError::NotEnrolled(id.clone())),
        }
        let usable = match certificates::status_of(&mut conn, id.as_str(), serial)
            .await?
            .as_deref()
        {
            Some("active") => true,
            Some("superseded") => {
                certificates::active_renews(
                    &mut conn,
                    id.as_str(),
                    serial,
                    self.clock.unix() - LOST_ANSWER_WINDOW_S,
                )
                .await?
            }
            Some("revoked") => {
                return Err(RenewError::ClientCert(format!(
                    "the client certificate (serial {serial}) is revoked"
                )));
            }
            _ => false,
        };
        if !usable {
            return Err(RenewError::ClientCert(format!(
                "the client certificate (serial {serial}) is not {id}'s current certificate; \
                 a device holding only an older one re-enrolls"
            )));
        }
        Ok(device.generation)
    }
}
