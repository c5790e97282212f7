//! The decommission service against a real SQLite store.

use super::*;
use crate::clock::SystemClock;
use crate::hawkbit::{BoxFuture, TargetOutcome, TargetToken};
use std::collections::VecDeque;
use std::sync::Mutex;

/// hawkBit's target table with queued failures.
#[derive(Debug, Default)]
struct Registry {
    targets: Mutex<Vec<String>>,
    failures: Mutex<VecDeque<HawkbitError>>,
    deletes: Mutex<usize>,
}

impl TargetRegistry for Registry {
    fn ensure_target<'a>(
        &'a self,
        _id: &'a DeviceId,
    ) -> BoxFuture<'a, Result<TargetOutcome, HawkbitError>> {
        Box::pin(async { Ok(TargetOutcome::Created) })
    }

    fn set_token<'a>(
        &'a self,
        _id: &'a DeviceId,
        _token: &'a TargetToken,
    ) -> BoxFuture<'a, Result<TargetOutcome, HawkbitError>> {
        Box::pin(async { Ok(TargetOutcome::Created) })
    }

    fn delete_target<'a>(
        &'a self,
        id: &'a DeviceId,
    ) -> BoxFuture<'a, Result<DeleteOutcome, HawkbitError>> {
        Box::pin(async move {
            *self.deletes.lock().unwrap() += 1;
            if let Some(e) = self.failures.lock().unwrap().pop_front() {
                return Err(e);
            }
            let mut t = self.targets.lock().unwrap();
            let before = t.len();
            t.retain(|x| x != id.as_str());
            Ok(if t.len() < before {
                DeleteOutcome::Deleted
            } else {
                DeleteOutcome::AlreadyGone
            })
        })
    }
}

/// A CA keeping revoked serials, failing while `down`.
#[derive(Debug, Default)]
struct Ca {
    revoked: Mutex<Vec<String>>,
    down: Mutex<bool>,
}

impl CaRevoker for Ca {
    fn revoke<'a>(
        &'a self,
        serial_hex: &'a str,
        _reason: &'a str,
    ) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move {
            if *self.down.lock().unwrap() {
                return Err(StepError::transient("step-ca unreachable"));
            }
            self.revoked.lock().unwrap().push(serial_hex.to_owned());
            Ok(())
        })
    }
}

fn unavailable() -> HawkbitError {
    HawkbitError::Unavailable {
        url: "http://hawkbit".into(),
        reason: "HTTP 503".into(),
    }
}

/// A database with device `dev-1` enrolled with an active and a superseded certificate.
async fn enrolled_db() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open_sqlite(&dir.path().join("t.db")).await.unwrap();
    let mut conn = db.acquire().await.unwrap();
    devices::register(&mut conn, "dev-1", None, 1)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE devices SET state = 'enrolled', wg_public_key = 'K', wg_host = 2, \
         hawkbit_target_at = 5 WHERE id = 'dev-1'",
    )
    .execute(&mut *conn)
    .await
    .unwrap();
    certificates::insert_active(&mut conn, "0a", "dev-1", 1, i64::MAX / 2, 1)
        .await
        .unwrap();
    certificates::supersede_active(&mut conn, "dev-1", 2)
        .await
        .unwrap();
    certificates::insert_active(&mut conn, "0b", "dev-1", 2, i64::MAX / 2, 2)
        .await
        .unwrap();
    drop(conn);
    (dir, db)
}

fn service(db: &Db, ca: Option<Arc<Ca>>, registry: Option<Arc<Registry>>) -> DecommissionService {
    DecommissionService::new(
        db.clone(),
        ca.map(|c| c as Arc<dyn CaRevoker>),
        registry.map(|r| r as Arc<dyn TargetRegistry>),
        PeerRemoval::Managed,
        Arc::new(SystemClock),
    )
}

fn req() -> Request {
    Request {
        actor: "operator:test".into(),
        source: Some("cli".into()),
        reason: Some("end of life".into()),
    }
}

fn outcomes(r: &Report) -> Vec<(&'static str, &'static str)> {
    r.steps
        .iter()
        .map(|s| (s.step.as_str(), s.outcome.as_str()))
        .collect()
}

async fn audit_actions(db: &Db) -> Vec<String> {
    let mut conn = db.acquire().await.unwrap();
    audit::list(&mut conn, Some("dev-1"), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect()
}

fn id() -> DeviceId {
    DeviceId::parse("dev-1").unwrap()
}

#[tokio::test]
async fn a_failed_step_is_reported_stored_and_completed_by_a_rerun() {
    let (_d, db) = enrolled_db().await;
    let reg = Arc::new(Registry::default());
    reg.targets.lock().unwrap().push("dev-1".into());
    reg.failures.lock().unwrap().push_back(unavailable());
    let svc = service(&db, None, Some(reg.clone()));

    let first = svc.run(&id(), &req(), &RetryPolicy::ONCE).await.unwrap();
    assert!(!first.complete);
    assert_eq!(
        outcomes(&first),
        [
            ("mark_decommissioned", "done"),
            ("wireguard_peer", "done"),
            ("revoke_certificate", "done"),
            ("hawkbit_target", "failed"),
            ("audit", "done"),
        ]
    );
    let failed = &first.steps[3];
    assert_eq!((failed.attempts, failed.retryable), (Some(1), Some(true)));
    assert!(failed.error.as_deref().unwrap().contains("HTTP 503"));
    let mut conn = db.acquire().await.unwrap();
    let row = devices::get(&mut conn, "dev-1").await.unwrap().unwrap();
    assert!(row.is_decommissioned() && row.decommissioned_at.is_some());
    assert_eq!(row.wg_host, Some(2), "the address stays reserved");
    assert!(devices::active_peers(&mut conn).await.unwrap().is_empty());
    assert_eq!(peer_set::version(&mut conn).await.unwrap(), 1);
    for serial in ["0a", "0b"] {
        assert!(certificates::is_revoked(&mut conn, serial).await.unwrap());
    }
    assert!(!certificates::is_revoked(&mut conn, "0c").await.unwrap());
    let stored = decommission::steps(&mut conn, "dev-1").await.unwrap();
    let hb = stored.iter().find(|s| s.step == "hawkbit_target").unwrap();
    assert_eq!((hb.done_at, hb.attempts), (None, 1));
    assert!(stored.iter().all(|s| s.step != "audit"), "not complete yet");
    drop(conn);

    let second = svc.run(&id(), &req(), &RetryPolicy::ONCE).await.unwrap();
    assert!(second.complete);
    assert_eq!(
        outcomes(&second),
        [
            ("mark_decommissioned", "already_done"),
            ("wireguard_peer", "already_done"),
            ("revoke_certificate", "already_done"),
            ("hawkbit_target", "done"),
            ("audit", "done"),
        ]
    );
    assert!(reg.targets.lock().unwrap().is_empty());
    let mut conn = db.acquire().await.unwrap();
    let row = devices::get(&mut conn, "dev-1").await.unwrap().unwrap();
    assert_eq!(row.hawkbit_target_at, None, "the record is cleared");
    assert_eq!(
        peer_set::version(&mut conn).await.unwrap(),
        1,
        "bumped once"
    );
    drop(conn);

    let third = svc.run(&id(), &req(), &RetryPolicy::ONCE).await.unwrap();
    assert!(third.complete);
    assert!(
        third
            .steps
            .iter()
            .all(|s| s.outcome == Outcome::AlreadyDone)
    );
    assert_eq!(*reg.deletes.lock().unwrap(), 2, "no call for a done step");
    assert_eq!(
        audit_actions(&db).await,
        ["device.decommission_incomplete", "device.decommissioned"],
        "a run that changes nothing is not audited"
    );
}

#[tokio::test]
async fn step_ca_revokes_every_serial_once_and_resumes_after_an_outage() {
    let (_d, db) = enrolled_db().await;
    let ca = Arc::new(Ca::default());
    *ca.down.lock().unwrap() = true;
    let svc = service(&db, Some(ca.clone()), None);

    let first = svc.run(&id(), &req(), &RetryPolicy::ONCE).await.unwrap();
    assert!(!first.complete);
    assert_eq!(first.steps[2].outcome, Outcome::Failed);
    assert!(
        first.steps[2]
            .error
            .as_deref()
            .unwrap()
            .contains("unreachable")
    );
    assert_eq!(first.steps[3].outcome, Outcome::Skipped, "no hawkBit");
    let mut conn = db.acquire().await.unwrap();
    assert!(
        certificates::is_revoked(&mut conn, "0b").await.unwrap(),
        "the bridge's record says revoked at once"
    );
    assert_eq!(
        certificates::pending_stepca_revocations(&mut conn, "dev-1")
            .await
            .unwrap(),
        ["0a", "0b"],
        "step-ca has not confirmed anything yet"
    );
    drop(conn);

    *ca.down.lock().unwrap() = false;
    let second = svc.run(&id(), &req(), &RetryPolicy::ONCE).await.unwrap();
    assert!(second.complete, "{second:?}");
    assert_eq!(second.steps[2].outcome, Outcome::Done);
    assert_eq!(*ca.revoked.lock().unwrap(), ["0a", "0b"]);
    let mut conn = db.acquire().await.unwrap();
    assert!(
        certificates::pending_stepca_revocations(&mut conn, "dev-1")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(certificates::is_revoked(&mut conn, "0a").await.unwrap());
    drop(conn);
    svc.run(&id(), &req(), &RetryPolicy::ONCE).await.unwrap();
    assert_eq!(ca.revoked.lock().unwrap().len(), 2, "never revoked twice");
}

#[tokio::test]
async fn an_unknown_device_is_an_error_and_a_refusal_is_not_retried() {
    let (_d, db) = enrolled_db().await;
    let svc = service(&db, None, None);
    let other = DeviceId::parse("nobody").unwrap();
    assert!(matches!(
        svc.run(&other, &req(), &RetryPolicy::ONCE).await,
        Err(DecommissionError::UnknownDevice(_))
    ));

    let reg = Arc::new(Registry::default());
    reg.failures
        .lock()
        .unwrap()
        .push_back(HawkbitError::Refused {
            url: "http://hawkbit".into(),
            status: 403,
            reason: "no DELETE_TARGET".into(),
        });
    let svc = service(&db, None, Some(reg.clone()));
    let r = svc.run(&id(), &req(), &RetryPolicy::CLI).await.unwrap();
    assert_eq!(r.steps[3].outcome, Outcome::Failed);
    assert_eq!(r.steps[3].retryable, Some(false));
    assert_eq!(*reg.deletes.lock().unwrap(), 1, "a refusal is not retried");
}
