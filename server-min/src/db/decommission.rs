//! The progress of decommissions (`decommission_steps`): one row per device and step, so a
//! re-run does only the steps that are not done yet.

use sqlx::SqliteConnection;

use super::{DbError, QueryContext};

/// A step's stored progress.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StepRow {
    pub step: String,
    pub done_at: Option<i64>,
    pub attempts: i64,
    pub last_error: Option<String>,
}

/// Every stored step of the device's decommission (none before the first run).
pub async fn steps(conn: &mut SqliteConnection, device_id: &str) -> Result<Vec<StepRow>, DbError> {
    sqlx::query_as(
        "SELECT step, done_at, attempts, last_error FROM decommission_steps \
         WHERE device_id = $1 ORDER BY step",
    )
    .bind(device_id)
    .fetch_all(conn)
    .await
    .doing("reading the decommission's progress")
}

/// Marks `step` done; false when it already was (a concurrent run got there first).
pub async fn mark_done(
    conn: &mut SqliteConnection,
    device_id: &str,
    step: &str,
    now: i64,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        "INSERT INTO decommission_steps (device_id, step, done_at, attempts) VALUES ($1, $2, $3, 0) \
         ON CONFLICT (device_id, step) DO UPDATE SET done_at = excluded.done_at, last_error = NULL \
         WHERE decommission_steps.done_at IS NULL",
    )
    .bind(device_id)
    .bind(step)
    .bind(now)
    .execute(conn)
    .await
    .doing("recording a decommission step")?;
    Ok(done.rows_affected() == 1)
}

/// Adds `attempts` failed attempts of `step`, keeping the last error.
pub async fn record_failure(
    conn: &mut SqliteConnection,
    device_id: &str,
    step: &str,
    attempts: u32,
    error: &str,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO decommission_steps (device_id, step, attempts, last_error) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (device_id, step) DO UPDATE SET attempts = decommission_steps.attempts + $3, \
             last_error = $4 WHERE decommission_steps.done_at IS NULL",
    )
    .bind(device_id)
    .bind(step)
    .bind(i64::from(attempts))
    .bind(error)
    .execute(conn)
    .await
    .doing("recording a failed decommission step")?;
    Ok(())
}
