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

/// The status of certificate `serial` if it is one of `device_id`'s.
pub async fn status_of(
    conn: &mut SqliteConnection,
    device_id: &str,
    serial: &str,
) -> Result<Option<String>, DbError> {
    sqlx::query_scalar("SELECT status FROM certificates WHERE device_id = $1 AND serial = $2")
        .bind(device_id)
        .bind(serial)
        .fetch_optional(conn)
        .await
        .doing("reading a certificate's status")
}

/// Whether the device's active certificate was issued by renewing `serial`, at
/// `issued_since` or later.
pub async fn active_renews(
    conn: &mut SqliteConnection,
    device_id: &str,
    serial: &str,
    issued_since: i64,
) -> Result<bool, DbError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM certificates WHERE device_id = $1 AND status = 'active' \
         AND renewed_from = $2 AND issued_at >= $3",
    )
    .bind(device_id)
    .bind(serial)
    .bind(issued_since)
    .fetch_one(conn)
    .await
    .doing("reading a renewal")?;
    Ok(n > 0)
}

/// Records a certificate issued by renewing `renewed_from` as the device's active one.
pub async fn insert_renewed(
    conn: &mut SqliteConnection,
    issued: &NewCertificate<'_>,
    renewed_from: &str,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO certificates (serial, device_id, not_before, not_after, issued_at, status, renewed_from) \
         VALUES ($1, $2, $3, $4, $5, 'active', $6)",
    )
    .bind(issued.serial)
    .bind(issued.device_id)
    .bind(issued.not_before)
    .bind(issued.not_after)
    .bind(issued.now)
    .bind(renewed_from)
    .execute(conn)
    .await
    .doing("recording a renewed certificate")?;
    Ok(())
}

/// A certificate to record.
#[derive(Debug, Clone, Copy)]
pub struct NewCertificate<'a> {
    pub serial: &'a str,
    pub device_id: &'a str,
    pub not_before: i64,
    pub not_after: i64,
    pub now: i64,
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

/// Marks every certificate of the device that is not revoked yet (active or superseded: a
/// superseded certificate is valid until it expires) revoked; returns their serials.
pub async fn revoke_all(
    conn: &mut SqliteConnection,
    device_id: &str,
    now: i64,
) -> Result<Vec<String>, DbError> {
    sqlx::query_scalar(
        "UPDATE certificates SET status = 'revoked', revoked_at = $1 \
         WHERE device_id = $2 AND status <> 'revoked' RETURNING serial",
    )
    .bind(now)
    .bind(device_id)
    .fetch_all(conn)
    .await
    .doing("revoking the device's certificates")
}

/// The device's certificates step-ca has not confirmed as revoked yet, oldest first.
pub async fn pending_stepca_revocations(
    conn: &mut SqliteConnection,
    device_id: &str,
) -> Result<Vec<String>, DbError> {
    sqlx::query_scalar(
        "SELECT serial FROM certificates WHERE device_id = $1 AND stepca_revoked_at IS NULL \
         ORDER BY issued_at, serial",
    )
    .bind(device_id)
    .fetch_all(conn)
    .await
    .doing("listing certificates to revoke at step-ca")
}

/// Records that step-ca revoked `serial` (and marks it revoked here, if it was not).
pub async fn mark_stepca_revoked(
    conn: &mut SqliteConnection,
    serial: &str,
    now: i64,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE certificates SET status = 'revoked', revoked_at = COALESCE(revoked_at, $1), \
             stepca_revoked_at = $1 WHERE serial = $2",
    )
    .bind(now)
    .bind(serial)
    .execute(conn)
    .await
    .doing("recording a revocation at step-ca")?;
    Ok(())
}

/// Whether the bridge recorded the certificate with serial `serial_hex` (lower-case hex, no
/// leading zero bytes, as issued) as revoked: by `device revoke` or a decommission. A renewal
/// must refuse a revoked certificate.
pub async fn is_revoked(conn: &mut SqliteConnection, serial_hex: &str) -> Result<bool, DbError> {
    let found: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM certificates WHERE serial = $1 AND status = 'revoked'")
            .bind(serial_hex)
            .fetch_optional(conn)
            .await
            .doing("checking whether a certificate is revoked")?;
    Ok(found.is_some())
}

/// A revoked certificate, as the CRL lists it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RevokedCert {
    pub serial: String,
    /// Unix seconds; the issue time for rows revoked before the time was recorded.
    pub revoked_at: i64,
}

/// Every revoked certificate, by serial.
pub async fn revoked(conn: &mut SqliteConnection) -> Result<Vec<RevokedCert>, DbError> {
    sqlx::query_as(
        "SELECT serial, COALESCE(revoked_at, issued_at) AS revoked_at FROM certificates \
         WHERE status = 'revoked' ORDER BY serial",
    )
    .fetch_all(conn)
    .await
    .doing("listing revoked certificates")
}
