//! Decommissioning a device in one idempotent call, shared by `nexa-server device
//! decommission` and `DELETE /api/devices/{id}`.
//!
//! Steps, in order ([`Step`]): mark the device decommissioned and withdraw it from the
//! gateway's peer set (one transaction: from then on it can neither enroll nor renew, and the
//! managed gateway drops its peer), revoke its certificates (step-ca: `POST /1.0/revoke` per
//! serial; built-in CA: recorded revoked, so `GET /api/crl` lists them), delete its hawkBit
//! target (404 = already gone), audit the run. Each step's completion is stored
//! (`decommission_steps`) in the transaction that completes it, so a re-run does only what
//! is left and reports the rest as already done. A step that fails transiently is retried
//! with backoff within the run ([`RetryPolicy`]); a refusal is reported at once.

pub mod report;
pub mod retry;
pub mod revoker;

use std::sync::Arc;

use nexa_proto::DeviceId;
use serde_json::json;

pub use report::{Outcome, Progress, Report, Step, StepReport};
pub use retry::{RetryPolicy, StepError};
pub use revoker::{CaRevoker, ConnectingStepCa};

use crate::clock::Clock;
use crate::db::{Db, DbError, QueryContext, audit, certificates, decommission, devices, peer_set};
use crate::hawkbit::{DeleteOutcome, HawkbitError, TargetRegistry};

/// Who removes the device's peer from the gateway interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerRemoval {
    /// The bridge's own gateway manager (polls the peer-set version every second).
    Managed,
    /// Another process; it must drop the peer itself.
    External,
}

impl From<&crate::config::GatewayMode> for PeerRemoval {
    fn from(mode: &crate::config::GatewayMode) -> Self {
        match mode {
            crate::config::GatewayMode::Managed(_) => PeerRemoval::Managed,
            crate::config::GatewayMode::External => PeerRemoval::External,
        }
    }
}

/// Who asked, and why.
#[derive(Debug, Clone)]
pub struct Request {
    /// `operator:<user>` or `admin:api`.
    pub actor: String,
    /// Client address, or `cli`.
    pub source: Option<String>,
    pub reason: Option<String>,
}

/// Why a decommission could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum DecommissionError {
    #[error("device {0} is not registered on this bridge")]
    UnknownDevice(DeviceId),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Decommissions devices.
#[derive(Debug, Clone)]
pub struct DecommissionService {
    db: Db,
    /// `None`: the built-in CA, whose record is the database.
    revoker: Option<Arc<dyn CaRevoker>>,
    /// `None`: hawkBit is not configured.
    registry: Option<Arc<dyn TargetRegistry>>,
    peers: PeerRemoval,
    clock: Arc<dyn Clock>,
}

impl DecommissionService {
    pub fn new(
        db: Db,
        revoker: Option<Arc<dyn CaRevoker>>,
        registry: Option<Arc<dyn TargetRegistry>>,
        peers: PeerRemoval,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            db,
            revoker,
            registry,
            peers,
            clock,
        }
    }

    /// Runs the steps not done yet; every failing step is retried under `policy`.
    pub async fn run(
        &self,
        id: &DeviceId,
        req: &Request,
        policy: &RetryPolicy,
    ) -> Result<Report, DecommissionError> {
        let (device, progress) = {
            let mut conn = self.db.acquire().await?;
            let device = devices::get(&mut conn, id.as_str())
                .await?
                .ok_or_else(|| DecommissionError::UnknownDevice(id.clone()))?;
            let rows = decommission::steps(&mut conn, id.as_str()).await?;
            let done = rows
                .iter()
                .filter(|r| r.done_at.is_some())
                .map(|r| r.step.as_str());
            (device, Progress::from_done(done))
        };
        let mut steps = self.mark(id, &device, &progress).await?;
        steps.push(self.revoke(id, req, &progress, policy).await?);
        steps.push(self.hawkbit(id, &device, &progress, policy).await?);
        for s in &steps {
            match s.outcome {
                Outcome::Failed => {
                    tracing::warn!(device = %id, step = s.step.as_str(), error = s.error.as_deref().unwrap_or(""), "decommission step failed")
                }
                o => {
                    tracing::info!(device = %id, step = s.step.as_str(), outcome = o.as_str(), "decommission step")
                }
            }
        }
        let audit = self.audit(id, &device, req, &progress, &steps).await?;
        steps.push(audit);
        Ok(Report::new(id.to_string(), steps))
    }

    /// Steps 1 and 2: the device leaves service and the gateway's peer set, in one commit.
    async fn mark(
        &self,
        id: &DeviceId,
        device: &devices::DeviceRow,
        progress: &Progress,
    ) -> Result<Vec<StepReport>, DbError> {
        if progress.is_done(Step::MarkDecommissioned) && progress.is_done(Step::WireguardPeer) {
            return Ok(vec![
                StepReport::already_done(Step::MarkDecommissioned),
                StepReport::already_done(Step::WireguardPeer),
            ]);
        }
        let now = self.clock.unix();
        let mut tx = self.db.begin_write().await?;
        if devices::mark_decommissioned(&mut tx, id.as_str(), now).await? {
            // The serving process notices the bump and removes the peer from the gateway.
            peer_set::bump(&mut tx).await?;
        }
        let marked =
            decommission::mark_done(&mut tx, id.as_str(), Step::MarkDecommissioned.as_str(), now)
                .await?;
        let withdrawn =
            decommission::mark_done(&mut tx, id.as_str(), Step::WireguardPeer.as_str(), now)
                .await?;
        tx.commit().await.doing("committing a decommission")?;
        let mark = if marked {
            StepReport::done(
                Step::MarkDecommissioned,
                format!(
                    "{} -> decommissioned: it never enrolls or renews again; its address stays reserved",
                    device.state
                ),
            )
        } else {
            StepReport::already_done(Step::MarkDecommissioned)
        };
        let peer = if withdrawn {
            StepReport::done(Step::WireguardPeer, self.peer_detail(device))
        } else {
            StepReport::already_done(Step::WireguardPeer)
        };
        Ok(vec![mark, peer])
    }

    fn peer_detail(&self, device: &devices::DeviceRow) -> String {
        let Some(key) = &device.wg_public_key else {
            return "the device never had a WireGuard peer".into();
        };
        match self.peers {
            PeerRemoval::Managed => format!(
                "peer {key} withdrawn: a running nexa-server drops it from the gateway within about a second, otherwise at its next start"
            ),
            PeerRemoval::External => format!(
                "peer {key} withdrawn from the store; the external gateway must remove it itself (wg set IFACE peer {key} remove)"
            ),
        }
    }

    /// Step 3: every certificate of the device revoked, at step-ca when it signs.
    async fn revoke(
        &self,
        id: &DeviceId,
        req: &Request,
        progress: &Progress,
        policy: &RetryPolicy,
    ) -> Result<StepReport, DbError> {
        let step = Step::RevokeCertificate;
        if progress.is_done(step) {
            return Ok(StepReport::already_done(step));
        }
        // The bridge's own record first: from here on a renewal through the bridge is refused.
        let now = self.clock.unix();
        let mut tx = self.db.begin_write().await?;
        let serials = certificates::revoke_all(&mut tx, id.as_str(), now).await?;
        let Some(revoker) = &self.revoker else {
            decommission::mark_done(&mut tx, id.as_str(), step.as_str(), now).await?;
            tx.commit().await.doing("committing a revocation")?;
            return Ok(StepReport::done(
                step,
                format!("{} on the built-in CA's CRL", serial_list(&serials)),
            ));
        };
        tx.commit().await.doing("committing a revocation")?;
        let serials = {
            let mut conn = self.db.acquire().await?;
            certificates::pending_stepca_revocations(&mut conn, id.as_str()).await?
        };
        let reason = match &req.reason {
            Some(r) => format!("decommissioned: {r}"),
            None => "decommissioned".to_owned(),
        };
        for serial in &serials {
            let (result, attempts) = retry::retry(policy, || revoker.revoke(serial, &reason)).await;
            match result {
                Ok(()) => {
                    let mut conn = self.db.acquire().await?;
                    certificates::mark_stepca_revoked(&mut conn, serial, self.clock.unix()).await?;
                }
                Err(e) => return self.failed(id, step, e, attempts).await,
            }
        }
        let mut conn = self.db.acquire().await?;
        decommission::mark_done(&mut conn, id.as_str(), step.as_str(), self.clock.unix()).await?;
        Ok(StepReport::done(
            step,
            format!("{} revoked at step-ca", serial_list(&serials)),
        ))
    }

    /// Step 4: the device's hawkBit target deleted, and forgotten here.
    async fn hawkbit(
        &self,
        id: &DeviceId,
        device: &devices::DeviceRow,
        progress: &Progress,
        policy: &RetryPolicy,
    ) -> Result<StepReport, DbError> {
        let step = Step::HawkbitTarget;
        let Some(registry) = &self.registry else {
            let note = if device.hawkbit_target_at.is_some() {
                "hawkBit is not configured on this bridge; the target recorded for this device must be deleted in hawkBit by hand"
            } else {
                "hawkBit is not configured on this bridge"
            };
            return Ok(StepReport::skipped(step, note));
        };
        if progress.is_done(step) {
            return Ok(StepReport::already_done(step));
        }
        let (result, attempts) = retry::retry(policy, || async {
            registry.delete_target(id).await.map_err(hawkbit_step_error)
        })
        .await;
        let outcome = match result {
            Ok(o) => o,
            Err(e) => return self.failed(id, step, e, attempts).await,
        };
        let now = self.clock.unix();
        let mut tx = self.db.begin_write().await?;
        devices::clear_hawkbit_target(&mut tx, id.as_str(), now).await?;
        decommission::mark_done(&mut tx, id.as_str(), step.as_str(), now).await?;
        tx.commit()
            .await
            .doing("committing a hawkBit target deletion")?;
        Ok(StepReport::done(
            step,
            match outcome {
                DeleteOutcome::Deleted => format!("target {id} deleted"),
                DeleteOutcome::AlreadyGone => format!("target {id} was already gone"),
            },
        ))
    }

    /// Step 5: one audit event for a run that changed something or failed. The completing
    /// run's event is `device.decommissioned`; others are `device.decommission_incomplete`.
    async fn audit(
        &self,
        id: &DeviceId,
        device: &devices::DeviceRow,
        req: &Request,
        progress: &Progress,
        steps: &[StepReport],
    ) -> Result<StepReport, DbError> {
        let so_far = Report::new(id.to_string(), steps.to_vec());
        let completes = so_far.complete && !progress.is_done(Step::Audit);
        if !so_far.worth_auditing() && !completes {
            return Ok(StepReport::already_done(Step::Audit));
        }
        let action = if so_far.complete {
            "device.decommissioned"
        } else {
            "device.decommission_incomplete"
        };
        let now = self.clock.unix();
        let mut tx = self.db.begin_write().await?;
        if so_far.complete {
            decommission::mark_done(&mut tx, id.as_str(), Step::Audit.as_str(), now).await?;
        }
        let ev = audit::AuditEvent::new(
            req.actor.clone(),
            action,
            Some(id.as_str()),
            req.source.clone(),
            json!({
                "reason": req.reason,
                "previous_state": device.state,
                "cert_serial": device.cert_serial,
                "wg_public_key": device.wg_public_key,
                "steps": so_far.outcomes(),
            }),
        );
        audit::record(&mut tx, &ev).await?;
        tx.commit().await.doing("recording a decommission")?;
        Ok(StepReport::done(Step::Audit, action))
    }

    /// Records a failed step and reports it.
    async fn failed(
        &self,
        id: &DeviceId,
        step: Step,
        e: StepError,
        attempts: u32,
    ) -> Result<StepReport, DbError> {
        let mut conn = self.db.acquire().await?;
        decommission::record_failure(&mut conn, id.as_str(), step.as_str(), attempts, &e.message)
            .await?;
        Ok(StepReport::failed(step, e.message, attempts, e.transient))
    }
}

fn hawkbit_step_error(e: HawkbitError) -> StepError {
    match e {
        HawkbitError::Unavailable { .. } => {
            StepError::transient(format!("deleting the target: {e}"))
        }
        HawkbitError::Refused { .. } | HawkbitError::Setup(_) => {
            StepError::permanent(format!("deleting the target: {e}"))
        }
    }
}

fn serial_list(serials: &[String]) -> String {
    match serials {
        [] => "no certificate left to revoke".into(),
        [one] => format!("certificate {one}"),
        many => format!("{} certificates ({})", many.len(), many.join(", ")),
    }
}

#[cfg(test)]
mod tests;
