//! Group commit of enrollments.
//!
//! A durable commit costs one fsync (SQLite WAL with `synchronous=FULL`), and an fsync costs
//! milliseconds on ordinary storage — far more than the rest of an enrollment. So one writer
//! task takes every enrollment waiting at that moment (up to [`MAX_BATCH`]) and applies them
//! in one transaction, each inside its own savepoint: an enrollment that fails (lost
//! compare-and-set, pool exhausted) is rolled back alone, the others commit together, and every
//! request is answered only after the commit is on disk. The queue holds work in flight, never
//! a record: a request whose commit did not happen gets an error.

use sqlx::{Acquire, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

use super::{EnrollError, Plan};
use crate::clock::Clock;
use crate::db::{Db, DbError, QueryContext, audit, certificates, devices, pending};
use crate::hawkbit::TargetOutcome;
use crate::wg::pool::AddressPool;
use std::sync::Arc;

/// Largest number of enrollments committed in one transaction.
pub const MAX_BATCH: usize = 256;
/// Requests waiting for the writer before senders wait too.
const QUEUE_DEPTH: usize = 4 * MAX_BATCH;

/// Everything an enrollment writes, prepared (and signed) before it reaches the writer.
#[derive(Debug, Clone)]
pub struct EnrollmentWrite {
    pub id: String,
    pub plan: Plan,
    /// The device row's generation when it was read (compare-and-set).
    pub generation: i64,
    pub existing_host: Option<i64>,
    pub profile_revision: i64,
    pub ec_spki_sha256: String,
    pub wg_public_key: String,
    pub machine_uid: Option<String>,
    pub hostname: Option<String>,
    pub serial: String,
    pub not_before: i64,
    pub not_after: i64,
    pub superseded_serial: Option<String>,
    pub source: Option<String>,
    /// The device's hawkBit target was provisioned (and given a new token) for this write.
    pub hawkbit_target: Option<TargetOutcome>,
    /// Register the device first (a site key authorized an unknown id).
    pub register: Option<Registration>,
    /// The site (id, code) whose key authorized this enrollment.
    pub site: Option<(String, String)>,
    /// The code of the site the device moves away from.
    pub moved_from: Option<String>,
    /// (tenant, machine_uid) no other live device may hold when this commits.
    pub machine_guard: Option<(String, String)>,
    /// Revoke (rather than supersede) the previous certificate: new keys under an authority
    /// other than the operator's window, so the old key must never be trusted again.
    pub revoke_previous: bool,
    /// The approved pending enrollment this write completes.
    pub complete_pending: Option<String>,
    /// Who the audit trail names: `device:<id>`, or the technician who re-enrolled it.
    pub actor: String,
    /// What authorized it, for the audit trail.
    pub authorized_by: Option<String>,
}

/// A device registered by its enrollment.
#[derive(Debug, Clone)]
pub struct Registration {
    pub tenant: String,
    pub site_id: String,
}

/// A committed enrollment.
#[derive(Debug, Clone, Copy)]
pub struct Committed {
    pub host: i64,
}

/// Why a write did not commit.
#[derive(Debug)]
pub enum CommitError {
    /// Another writer changed the device (or took the address) first; re-read and retry.
    Conflict,
    Failed(EnrollError),
}

type Reply = oneshot::Sender<Result<Committed, CommitError>>;

/// Handle to the writer task.
#[derive(Debug, Clone)]
pub struct Committer {
    queue: mpsc::Sender<(EnrollmentWrite, Reply)>,
}

impl Committer {
    /// Starts the writer task. Must be called inside a Tokio runtime.
    pub fn spawn(db: Db, pool: AddressPool, clock: Arc<dyn Clock>) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE_DEPTH);
        tokio::spawn(writer(db, pool, clock, rx));
        Self { queue }
    }

    /// Queues `write` and waits until it is committed (or refused).
    pub async fn commit(&self, write: EnrollmentWrite) -> Result<Committed, CommitError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || CommitError::Failed(EnrollError::WriterStopped);
        self.queue
            .send((write, reply))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn writer(
    db: Db,
    pool: AddressPool,
    clock: Arc<dyn Clock>,
    mut rx: mpsc::Receiver<(EnrollmentWrite, Reply)>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let results = commit_batch(&db, &pool, clock.unix(), &batch).await;
        for ((_, reply), result) in batch.drain(..).zip(results) {
            // A requester that went away (client disconnected) simply gets no answer.
            let _ = reply.send(result);
        }
    }
}

/// Applies a batch in one transaction; returns one result per write, in order.
async fn commit_batch(
    db: &Db,
    pool: &AddressPool,
    now: i64,
    batch: &[(EnrollmentWrite, Reply)],
) -> Vec<Result<Committed, CommitError>> {
    let failed_all = |what: String| {
        batch
            .iter()
            .map(|_| Err(CommitError::Failed(EnrollError::CommitFailed(what.clone()))))
            .collect()
    };
    let mut tx = match db.begin_write().await {
        Ok(tx) => tx,
        Err(e) => return failed_all(e.to_string()),
    };
    let mut results = Vec::with_capacity(batch.len());
    for (write, _) in batch {
        let outcome = match tx.begin().await.doing("opening a savepoint") {
            Ok(mut sp) => match apply(&mut sp, pool, write, now).await {
                Ok(done) => sp
                    .commit()
                    .await
                    .doing("releasing a savepoint")
                    .map(|()| done)
                    .map_err(|e| CommitError::Failed(e.into())),
                Err(e) => {
                    if let Err(rb) = sp.rollback().await {
                        tracing::error!(error = %rb, "rolling back a savepoint failed");
                    }
                    Err(e)
                }
            },
            Err(e) => Err(CommitError::Failed(e.into())),
        };
        results.push(outcome);
    }
    match tx.commit().await {
        Ok(()) => results,
        Err(e) => {
            tracing::error!(error = %e, size = batch.len(), "committing an enrollment batch failed");
            failed_all(format!("committing enrollments: {e}"))
        }
    }
}

/// One enrollment's writes: address, device row (compare-and-set), certificates, audit.
async fn apply(
    conn: &mut SqliteConnection,
    pool: &AddressPool,
    w: &EnrollmentWrite,
    now: i64,
) -> Result<Committed, CommitError> {
    let db_err = |e: DbError| {
        if e.is_unique_violation() {
            CommitError::Conflict
        } else {
            CommitError::Failed(e.into())
        }
    };
    if let Some(reg) = &w.register
        && !devices::register_at_site(conn, &w.id, &reg.tenant, &reg.site_id, now)
            .await
            .map_err(db_err)?
    {
        return Err(CommitError::Conflict);
    }
    if let Some((tenant, uid)) = &w.machine_guard
        && devices::machine_owner(conn, tenant, uid, &w.id)
            .await
            .map_err(db_err)?
            .is_some()
    {
        // Another id took this machine meanwhile; the retry refuses with its name.
        return Err(CommitError::Conflict);
    }
    let host = match w.existing_host {
        Some(host) => host,
        None => pool
            .allocate(conn)
            .await
            .map_err(|e| CommitError::Failed(e.into()))?,
    };
    let state = devices::EnrolledState {
        id: &w.id,
        machine_uid: w.machine_uid.as_deref(),
        hostname: w.hostname.as_deref(),
        ec_spki_sha256: &w.ec_spki_sha256,
        wg_public_key: &w.wg_public_key,
        wg_host: host,
        profile_revision: w.profile_revision,
        cert_serial: &w.serial,
        cert_not_after: w.not_after,
        consume_window: w.plan == Plan::Reenroll,
        site_id: w.site.as_ref().map(|(id, _)| id.as_str()),
        now,
    };
    if !devices::apply_enrollment(conn, &state, w.generation)
        .await
        .map_err(db_err)?
    {
        return Err(CommitError::Conflict);
    }
    if w.hawkbit_target.is_some() {
        devices::mark_hawkbit_target(conn, &w.id, now)
            .await
            .map_err(db_err)?;
    }
    if let Some(p) = &w.complete_pending
        && !pending::complete(conn, p, now).await.map_err(db_err)?
    {
        return Err(CommitError::Conflict);
    }
    if w.plan != Plan::First {
        if w.revoke_previous {
            certificates::revoke_active(conn, &w.id, now)
                .await
                .map_err(db_err)?;
        } else {
            certificates::supersede_active(conn, &w.id, now)
                .await
                .map_err(db_err)?;
        }
    }
    certificates::insert_active(conn, &w.serial, &w.id, w.not_before, w.not_after, now)
        .await
        .map_err(db_err)?;
    let address = pool.interface_address(host);
    let action = match (w.plan, &w.moved_from) {
        (Plan::First, _) => "device.enrolled",
        (_, Some(_)) => "device.site_moved",
        (Plan::Repeat, None) => "device.enrollment_repeated",
        (Plan::Reenroll, None) => "device.reenrolled",
    };
    let event = audit::AuditEvent::new(
        w.actor.clone(),
        action,
        Some(&w.id),
        w.source.clone(),
        serde_json::json!({
            "address": address,
            "serial": w.serial,
            "superseded_serial": w.superseded_serial,
            "previous_certificate": if w.superseded_serial.is_none() {
                None
            } else if w.revoke_previous {
                Some("revoked")
            } else {
                Some("superseded")
            },
            "profile_revision": w.profile_revision,
            "wg_public_key": w.wg_public_key,
            "hawkbit_target": w.hawkbit_target.map(TargetOutcome::as_str),
            "site": w.site.as_ref().map(|(_, code)| code),
            "moved_from": w.moved_from,
            "authorized_by": w.authorized_by,
            "registered": w.register.is_some(),
            "outcome": "ok",
        }),
    );
    audit::record(conn, &event).await.map_err(db_err)?;
    Ok(Committed { host })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(id: &str, generation: i64, key: &str) -> EnrollmentWrite {
        EnrollmentWrite {
            id: id.into(),
            plan: Plan::First,
            generation,
            existing_host: None,
            profile_revision: 1,
            ec_spki_sha256: format!("spki-{id}"),
            wg_public_key: key.into(),
            machine_uid: None,
            hostname: None,
            serial: format!("serial-{id}"),
            not_before: 0,
            not_after: 1,
            superseded_serial: None,
            source: None,
            hawkbit_target: None,
            register: None,
            site: None,
            moved_from: None,
            machine_guard: None,
            revoke_previous: false,
            complete_pending: None,
            actor: format!("device:{id}"),
            authorized_by: None,
        }
    }

    fn batch(writes: Vec<EnrollmentWrite>) -> Vec<(EnrollmentWrite, Reply)> {
        writes
            .into_iter()
            .map(|w| (w, oneshot::channel().0))
            .collect()
    }

    async fn db_with(ids: &[&str]) -> (tempfile::TempDir, Db) {
        let tmp = tempfile::tempdir().unwrap();
        let db = Db::open_sqlite(&tmp.path().join("t.db")).await.unwrap();
        let mut tx = db.begin_write().await.unwrap();
        for id in ids {
            devices::register(&mut tx, id, None, 0).await.unwrap();
        }
        tx.commit().await.unwrap();
        (tmp, db)
    }

    #[tokio::test]
    async fn a_failing_write_is_rolled_back_alone() {
        let (_tmp, db) = db_with(&["a", "b", "c", "d"]).await;
        let pool = AddressPool::new("10.8.0.0/24".parse().unwrap()).unwrap();
        let writes = vec![
            write("a", 0, "ka"),
            write("b", 7, "kb"), // stale generation: lost compare-and-set
            write("c", 0, "ka"), // a key another write of this batch already holds
            write("d", 0, "kd"),
        ];
        let results = commit_batch(&db, &pool, 100, &batch(writes)).await;
        assert!(matches!(results[0], Ok(Committed { host: 2 })));
        assert!(matches!(results[1], Err(CommitError::Conflict)));
        assert!(matches!(results[2], Err(CommitError::Conflict)));
        assert!(
            matches!(results[3], Ok(Committed { host: 3 })),
            "hosts stay dense and distinct"
        );
        let mut conn = db.pool().acquire().await.unwrap();
        for (id, state, host) in [
            ("a", "enrolled", Some(2)),
            ("b", "registered", None),
            ("c", "registered", None),
            ("d", "enrolled", Some(3)),
        ] {
            let row = devices::get(&mut conn, id).await.unwrap().unwrap();
            assert_eq!(
                (row.state.as_str(), row.wg_host),
                (state, host),
                "device {id}"
            );
        }
        let events = audit::list(&mut conn, None, 10).await.unwrap();
        assert_eq!(events.len(), 2, "only committed writes are audited");
    }

    #[tokio::test]
    async fn exhaustion_fails_only_the_writes_that_do_not_fit() {
        let (_tmp, db) = db_with(&["a", "b"]).await;
        let pool = AddressPool::new("10.8.0.0/30".parse().unwrap()).unwrap(); // one device address
        let results = commit_batch(
            &db,
            &pool,
            100,
            &batch(vec![write("a", 0, "ka"), write("b", 0, "kb")]),
        )
        .await;
        assert!(matches!(results[0], Ok(Committed { host: 2 })));
        assert!(matches!(
            results[1],
            Err(CommitError::Failed(EnrollError::PoolExhausted(_)))
        ));
    }

    #[tokio::test]
    async fn the_writer_task_answers_every_request() {
        let (_tmp, db) = db_with(&["a", "b", "c"]).await;
        let pool = AddressPool::new("10.8.0.0/24".parse().unwrap()).unwrap();
        let committer = Committer::spawn(db.clone(), pool, Arc::new(crate::clock::SystemClock));
        let (ra, rb, rc) = tokio::join!(
            committer.commit(write("a", 0, "ka")),
            committer.commit(write("b", 0, "kb")),
            committer.commit(write("c", 0, "kc")),
        );
        let mut hosts = vec![ra.unwrap().host, rb.unwrap().host, rc.unwrap().host];
        hosts.sort_unstable();
        assert_eq!(hosts, [2, 3, 4]);
    }
}
