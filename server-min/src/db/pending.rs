//! Enrollments held by the collision gate (`pending_enrollments`).

use serde::Serialize;
use sqlx::SqliteConnection;

use super::{DbError, QueryContext};

pub const STATE_PENDING: &str = "pending";
pub const STATE_APPROVED: &str = "approved";
pub const STATE_REJECTED: &str = "rejected";
pub const STATE_COMPLETED: &str = "completed";

/// A pending enrollment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct PendingRow {
    pub id: String,
    pub device_id: String,
    pub site_id: Option<String>,
    pub machine_uid: Option<String>,
    pub hostname: Option<String>,
    pub ec_spki_sha256: String,
    pub wg_public_key: String,
    pub source: Option<String>,
    pub reason: String,
    pub state: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub completed_at: Option<i64>,
}

const COLUMNS: &str = "id, device_id, site_id, machine_uid, hostname, ec_spki_sha256, \
     wg_public_key, source, reason, state, created_at, last_seen_at, decided_by, decided_at, completed_at";

/// The pending enrollment of these keys for this device, if any.
pub async fn find(
    conn: &mut SqliteConnection,
    device_id: &str,
    spki: &str,
    wg_key: &str,
) -> Result<Option<PendingRow>, DbError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM pending_enrollments \
         WHERE device_id = $1 AND ec_spki_sha256 = $2 AND wg_public_key = $3"
    )))
    .bind(device_id)
    .bind(spki)
    .bind(wg_key)
    .fetch_optional(conn)
    .await
    .doing("reading a pending enrollment")
}

pub async fn get(conn: &mut SqliteConnection, id: &str) -> Result<Option<PendingRow>, DbError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM pending_enrollments WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await
    .doing("reading a pending enrollment")
}

/// Pending enrollments, oldest first; `state` None = those still waiting for a decision.
pub async fn list(
    conn: &mut SqliteConnection,
    state: Option<&str>,
) -> Result<Vec<PendingRow>, DbError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM pending_enrollments WHERE state = COALESCE($1, 'pending') \
         ORDER BY created_at, id"
    )))
    .bind(state)
    .fetch_all(conn)
    .await
    .doing("listing pending enrollments")
}

/// Records a new pending enrollment; false if one for the same keys exists already.
pub async fn insert(conn: &mut SqliteConnection, row: &PendingRow) -> Result<bool, DbError> {
    let done = sqlx::query(
        "INSERT INTO pending_enrollments (id, device_id, site_id, machine_uid, hostname, \
             ec_spki_sha256, wg_public_key, source, reason, state, created_at, last_seen_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', $10, $10) \
         ON CONFLICT (device_id, ec_spki_sha256, wg_public_key) DO NOTHING",
    )
    .bind(&row.id)
    .bind(&row.device_id)
    .bind(&row.site_id)
    .bind(&row.machine_uid)
    .bind(&row.hostname)
    .bind(&row.ec_spki_sha256)
    .bind(&row.wg_public_key)
    .bind(&row.source)
    .bind(&row.reason)
    .bind(row.created_at)
    .execute(conn)
    .await
    .doing("recording a pending enrollment")?;
    Ok(done.rows_affected() == 1)
}

/// Notes the device's latest poll.
pub async fn touch(conn: &mut SqliteConnection, id: &str, now: i64) -> Result<(), DbError> {
    sqlx::query("UPDATE pending_enrollments SET last_seen_at = $1 WHERE id = $2")
        .bind(now)
        .bind(id)
        .execute(conn)
        .await
        .doing("noting a pending enrollment's poll")?;
    Ok(())
}

/// Approves or rejects a pending enrollment; false if it was not pending any more.
pub async fn decide(
    conn: &mut SqliteConnection,
    id: &str,
    state: &str,
    by: &str,
    now: i64,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE pending_enrollments SET state = $1, decided_by = $2, decided_at = $3 \
         WHERE id = $4 AND state = 'pending'",
    )
    .bind(state)
    .bind(by)
    .bind(now)
    .bind(id)
    .execute(conn)
    .await
    .doing("deciding a pending enrollment")?;
    Ok(done.rows_affected() == 1)
}

/// Marks an approved enrollment completed (the device got its certificate); false if it was
/// not approved (a racing request completed it first).
pub async fn complete(conn: &mut SqliteConnection, id: &str, now: i64) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE pending_enrollments SET state = 'completed', completed_at = $1 \
         WHERE id = $2 AND state = 'approved'",
    )
    .bind(now)
    .bind(id)
    .execute(conn)
    .await
    .doing("completing a pending enrollment")?;
    Ok(done.rows_affected() == 1)
}
