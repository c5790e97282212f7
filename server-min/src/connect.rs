//! What the bridge does when ThingsBoard reports that a device connected to the broker: make
//! sure the device has its hawkBit target, once.
//!
//! The first confirmed target (created, or already there) is recorded on the device row; later
//! connects answer from the store without calling hawkBit. Two connects racing both call
//! hawkBit; the second gets 409, which counts as success, so the target exists exactly once.
//! No database transaction is held while hawkBit is called.

use std::sync::Arc;

use nexa_proto::DeviceId;
use serde_json::json;

use crate::clock::Clock;
use crate::db::{Db, DbError, QueryContext, audit, devices};
use crate::hawkbit::{HawkbitError, TargetOutcome, TargetRegistry};

/// The actor of audit events this module records.
pub const ACTOR: &str = "thingsboard";

/// What a connect event came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectOutcome {
    /// hawkBit was called and the target exists now.
    Target(TargetOutcome),
    /// The store already records the target; hawkBit was not called.
    AlreadyProvisioned,
    /// The bridge has no hawkBit configured; nothing to do.
    HawkbitNotConfigured,
}

impl ConnectOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectOutcome::Target(t) => t.as_str(),
            ConnectOutcome::AlreadyProvisioned => "already_provisioned",
            ConnectOutcome::HawkbitNotConfigured => "not_configured",
        }
    }
}

/// Why a connect event was not acted on.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("device {0} is not known to this bridge")]
    UnknownDevice(DeviceId),
    #[error("device {0} is revoked; it must not get an update target")]
    Revoked(DeviceId),
    #[error("device {0} is decommissioned; it must not get an update target")]
    Decommissioned(DeviceId),
    #[error("device {0} is registered but has never enrolled")]
    NotEnrolled(DeviceId),
    #[error(transparent)]
    Hawkbit(#[from] HawkbitError),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Handles connect events.
#[derive(Debug, Clone)]
pub struct ConnectService {
    db: Db,
    registry: Option<Arc<dyn TargetRegistry>>,
    clock: Arc<dyn Clock>,
}

impl ConnectService {
    pub fn new(db: Db, registry: Option<Arc<dyn TargetRegistry>>, clock: Arc<dyn Clock>) -> Self {
        Self {
            db,
            registry,
            clock,
        }
    }

    /// A device connected to the broker. `source` is the caller's address, for the audit.
    pub async fn device_connected(
        &self,
        id: &DeviceId,
        source: Option<String>,
    ) -> Result<ConnectOutcome, ConnectError> {
        let row = {
            let mut conn = self.db.acquire().await?;
            devices::get(&mut conn, id.as_str()).await?
        };
        let Some(row) = row else {
            self.audit_rejection("unknown_device", Some(id.as_str()), source, json!({}))
                .await?;
            return Err(ConnectError::UnknownDevice(id.clone()));
        };
        match row.state.as_str() {
            devices::STATE_ENROLLED => {}
            devices::STATE_REVOKED => {
                self.audit_rejection("device_revoked", Some(id.as_str()), source, json!({}))
                    .await?;
                return Err(ConnectError::Revoked(id.clone()));
            }
            devices::STATE_DECOMMISSIONED => {
                self.audit_rejection(
                    "device_decommissioned",
                    Some(id.as_str()),
                    source,
                    json!({}),
                )
                .await?;
                return Err(ConnectError::Decommissioned(id.clone()));
            }
            _ => return Err(ConnectError::NotEnrolled(id.clone())),
        }
        // The collision gate asks whether a device was online recently.
        {
            let mut conn = self.db.acquire().await?;
            devices::touch_seen(&mut conn, id.as_str(), self.clock.unix()).await?;
        }
        let Some(registry) = &self.registry else {
            return Ok(ConnectOutcome::HawkbitNotConfigured);
        };
        if row.hawkbit_target_at.is_some() {
            return Ok(ConnectOutcome::AlreadyProvisioned);
        }
        match registry.ensure_target(id).await {
            Ok(outcome) => {
                self.record_target(id, outcome, source).await?;
                tracing::info!(device = %id, result = outcome.as_str(), "hawkBit target ready");
                Ok(ConnectOutcome::Target(outcome))
            }
            Err(e) => {
                tracing::warn!(device = %id, error = %e, "cannot create the hawkBit target");
                self.record(
                    "hawkbit.target_failed",
                    Some(id.as_str()),
                    source,
                    json!({ "error": e.to_string() }),
                )
                .await?;
                Err(e.into())
            }
        }
    }

    /// Records a refused call (bad secret, unknown or revoked device).
    pub async fn audit_rejection(
        &self,
        reason: &str,
        device: Option<&str>,
        source: Option<String>,
        mut detail: serde_json::Value,
    ) -> Result<(), DbError> {
        detail["reason"] = json!(reason);
        self.record("webhook.rejected", device, source, detail)
            .await
    }

    async fn record_target(
        &self,
        id: &DeviceId,
        outcome: TargetOutcome,
        source: Option<String>,
    ) -> Result<(), DbError> {
        let mut tx = self.db.begin_write().await?;
        let first = devices::mark_hawkbit_target(&mut tx, id.as_str(), self.clock.unix()).await?;
        if first {
            let ev = audit::AuditEvent::new(
                ACTOR.to_owned(),
                "hawkbit.target_created",
                Some(id.as_str()),
                source,
                json!({ "result": outcome.as_str() }),
            );
            audit::record(&mut tx, &ev).await?;
        }
        tx.commit().await.doing("recording the hawkBit target")?;
        Ok(())
    }

    async fn record(
        &self,
        action: &str,
        device: Option<&str>,
        source: Option<String>,
        detail: serde_json::Value,
    ) -> Result<(), DbError> {
        let mut tx = self.db.begin_write().await?;
        let ev = audit::AuditEvent::new(ACTOR.to_owned(), action, device, source, detail);
        audit::record(&mut tx, &ev).await?;
        tx.commit().await.doing("recording an audit event")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::hawkbit::BoxFuture;
    use std::sync::Mutex;

    /// Behaves like hawkBit's target table: 201 once per controller id, then 409.
    #[derive(Debug, Default)]
    struct Registry {
        targets: Mutex<Vec<String>>,
        calls: Mutex<usize>,
        down: bool,
    }

    impl TargetRegistry for Registry {
        fn ensure_target<'a>(
            &'a self,
            id: &'a DeviceId,
        ) -> BoxFuture<'a, Result<TargetOutcome, HawkbitError>> {
            Box::pin(async move {
                *self.calls.lock().unwrap() += 1;
                if self.down {
                    return Err(HawkbitError::Unavailable {
                        url: "http://hawkbit".into(),
                        reason: "connection refused".into(),
                    });
                }
                let mut t = self.targets.lock().unwrap();
                if t.iter().any(|x| x == id.as_str()) {
                    Ok(TargetOutcome::AlreadyExisted)
                } else {
                    t.push(id.to_string());
                    Ok(TargetOutcome::Created)
                }
            })
        }

        fn set_token<'a>(
            &'a self,
            id: &'a DeviceId,
            _token: &'a crate::hawkbit::TargetToken,
        ) -> BoxFuture<'a, Result<TargetOutcome, HawkbitError>> {
            self.ensure_target(id)
        }

        fn delete_target<'a>(
            &'a self,
            id: &'a DeviceId,
        ) -> BoxFuture<'a, Result<crate::hawkbit::DeleteOutcome, HawkbitError>> {
            Box::pin(async move {
                let mut t = self.targets.lock().unwrap();
                let before = t.len();
                t.retain(|x| x != id.as_str());
                Ok(if t.len() < before {
                    crate::hawkbit::DeleteOutcome::Deleted
                } else {
                    crate::hawkbit::DeleteOutcome::AlreadyGone
                })
            })
        }
    }

    async fn db_with(devices_: &[(&str, &str)]) -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_sqlite(&dir.path().join("t.db")).await.unwrap();
        let mut conn = db.acquire().await.unwrap();
        for (id, state) in devices_ {
            devices::register(&mut conn, id, None, 1).await.unwrap();
            sqlx::query("UPDATE devices SET state = $1 WHERE id = $2")
                .bind(state)
                .bind(id)
                .execute(&mut *conn)
                .await
                .unwrap();
        }
        (dir, db)
    }

    async fn actions(db: &Db) -> Vec<String> {
        let mut conn = db.acquire().await.unwrap();
        audit::list(&mut conn, None, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect()
    }

    fn id(s: &str) -> DeviceId {
        DeviceId::parse(s).unwrap()
    }

    #[tokio::test]
    async fn a_target_is_created_once_and_later_connects_skip_hawkbit() {
        let (_d, db) = db_with(&[("dev-1", "enrolled")]).await;
        let reg = Arc::new(Registry::default());
        let svc = ConnectService::new(db.clone(), Some(reg.clone()), Arc::new(SystemClock));
        let first = svc.device_connected(&id("dev-1"), None).await.unwrap();
        assert_eq!(first, ConnectOutcome::Target(TargetOutcome::Created));
        let again = svc.device_connected(&id("dev-1"), None).await.unwrap();
        assert_eq!(again, ConnectOutcome::AlreadyProvisioned);
        assert_eq!(*reg.calls.lock().unwrap(), 1);
        assert_eq!(actions(&db).await, ["hawkbit.target_created"]);
    }

    #[tokio::test]
    async fn unknown_revoked_and_unenrolled_devices_are_refused() {
        let (_d, db) = db_with(&[
            ("gone", "revoked"),
            ("new", "registered"),
            ("retired", "decommissioned"),
        ])
        .await;
        let reg = Arc::new(Registry::default());
        let svc = ConnectService::new(db.clone(), Some(reg.clone()), Arc::new(SystemClock));
        assert!(matches!(
            svc.device_connected(&id("nobody"), Some("10.0.0.9".into()))
                .await,
            Err(ConnectError::UnknownDevice(_))
        ));
        assert!(matches!(
            svc.device_connected(&id("gone"), None).await,
            Err(ConnectError::Revoked(_))
        ));
        assert!(matches!(
            svc.device_connected(&id("new"), None).await,
            Err(ConnectError::NotEnrolled(_))
        ));
        assert!(matches!(
            svc.device_connected(&id("retired"), None).await,
            Err(ConnectError::Decommissioned(_))
        ));
        assert_eq!(*reg.calls.lock().unwrap(), 0);
        assert_eq!(
            actions(&db).await,
            ["webhook.rejected", "webhook.rejected", "webhook.rejected"]
        );
    }

    #[tokio::test]
    async fn hawkbit_down_is_reported_audited_and_retried_next_time() {
        let (_d, db) = db_with(&[("dev-1", "enrolled")]).await;
        let down = Arc::new(Registry {
            down: true,
            ..Default::default()
        });
        let svc = ConnectService::new(db.clone(), Some(down), Arc::new(SystemClock));
        assert!(matches!(
            svc.device_connected(&id("dev-1"), None).await,
            Err(ConnectError::Hawkbit(HawkbitError::Unavailable { .. }))
        ));
        let up = Arc::new(Registry::default());
        let svc = ConnectService::new(db.clone(), Some(up), Arc::new(SystemClock));
        assert_eq!(
            svc.device_connected(&id("dev-1"), None).await.unwrap(),
            ConnectOutcome::Target(TargetOutcome::Created)
        );
        assert_eq!(
            actions(&db).await,
            ["hawkbit.target_failed", "hawkbit.target_created"]
        );
    }

    #[tokio::test]
    async fn without_hawkbit_nothing_is_called_or_recorded() {
        let (_d, db) = db_with(&[("dev-1", "enrolled")]).await;
        let svc = ConnectService::new(db.clone(), None, Arc::new(SystemClock));
        assert_eq!(
            svc.device_connected(&id("dev-1"), None).await.unwrap(),
            ConnectOutcome::HawkbitNotConfigured
        );
        assert!(actions(&db).await.is_empty());
    }
}
