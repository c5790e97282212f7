//! Issued certificates (`certificates`).

use sqlx::SqliteConnection;

use super::{DbError, QueryContext};

/// Marks the device's active certificate(s) superseded.
pub async fn supersede_active(
    conn: &mut SqliteConnection,
    device_id: &str,
    now: i64,
) -> Result<u64, DbError> {
    let done = sqlx::query(
        "UPDATE certificates SET status = 'superseded', superseded_at = $1 WHERE device_id = $2 AND status = 'active'",
    )
    .bind(now)
    .bind(device_id)
    .execute(conn)
    .await
    .doing("superseding a certificate")?;
    Ok(done.rows_affected())
}

/// Marks the device's active certificate revoked; returns its serial, if there was one.
pub async fn revoke_active(
    conn: &mut SqliteConnection,
    device_id: &str,
    now: i64,
) -> Result<Option<String>, DbError> {
    sqlx::query_scalar(
        "UPDATE certificates SET status = 'revoked', revoked_at = $1 \
         WHERE device_id = $2 AND status = 'active' RETURNING serial",
    )
    .bind(now)
    .bind(device_id)
    .fetch_optional(conn)
    .await
    .doing("revoking a certificate")
}

/// Records a newly issued certificate as the device's active one.
pub async fn insert_active(
    conn: &mut SqliteConnection,
    serial: &str,
    device_id: &str,
    not_before: i64,
    not_after: i64,
    now: i64,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO certificates (serial, device_id, not_before, not_after, issued_at, status) \
         VALUES ($1, $2, $3, $4, $5, 'active')",
    )
    .bind(serial)
    .bind(device_id)
    .bind(not_before)
    .bind(not_after)
    .bind(now)
    .execute(conn)
    .await
    .doing("recording a certificate")?;
    Ok(())
}

/// Number of certificates of a device by status, for `device show`.
pub async fn count_by_status(
    conn: &mut SqliteConnection,
    device_id: &str,
) -> Result<Vec<(String, i64)>, DbError> {
    sqlx::query_as("SELECT status, COUNT(*) FROM certificates WHERE device_id = $1 GROUP BY status ORDER BY status")
        .bind(device_id)
        .fetch_all(conn)
        .await
        .doing("counting certificates")
}
