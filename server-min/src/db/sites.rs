//! Sites (`sites`) and their enrollment keys (`site_enrollment_keys`).

use serde::Serialize;
use sqlx::SqliteConnection;

use super::{DbError, QueryContext};

/// The tenant of a single-tenant bridge.
pub const DEFAULT_TENANT: &str = "default";

/// A site row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct SiteRow {
    pub id: String,
    pub tenant: String,
    pub site_code: String,
    pub name: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A site with what people need to know of its key and devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct SiteSummary {
    #[sqlx(flatten)]
    #[serde(flatten)]
    pub site: SiteRow,
    /// The active key's version, if the site has one.
    pub key_version: Option<i64>,
    pub key_fingerprint: Option<String>,
    pub key_created_at: Option<i64>,
    pub devices: i64,
}

/// One enrollment key version (never the key: only its hash, and that is not read out).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ActiveKey {
    pub version: i64,
    pub key_hash: String,
    pub fingerprint: String,
}

const SUMMARY: &str = "SELECT s.id, s.tenant, s.site_code, s.name, s.created_at, s.updated_at, \
     k.version AS key_version, k.fingerprint AS key_fingerprint, k.created_at AS key_created_at, \
     (SELECT COUNT(*) FROM devices d WHERE d.site_id = s.id) AS devices \
     FROM sites s LEFT JOIN site_enrollment_keys k ON k.site_id = s.id AND k.active = 1";

/// Creates a site; false if the code is taken in the tenant.
pub async fn create(conn: &mut SqliteConnection, site: &SiteRow) -> Result<bool, DbError> {
    let done = sqlx::query(
        "INSERT INTO sites (id, tenant, site_code, name, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (tenant, site_code) DO NOTHING",
    )
    .bind(&site.id)
    .bind(&site.tenant)
    .bind(&site.site_code)
    .bind(&site.name)
    .bind(site.created_at)
    .execute(conn)
    .await
    .doing("creating a site")?;
    Ok(done.rows_affected() == 1)
}

pub async fn get_by_code(
    conn: &mut SqliteConnection,
    tenant: &str,
    code: &str,
) -> Result<Option<SiteRow>, DbError> {
    sqlx::query_as(
        "SELECT id, tenant, site_code, name, created_at, updated_at FROM sites \
         WHERE tenant = $1 AND site_code = $2",
    )
    .bind(tenant)
    .bind(code)
    .fetch_optional(conn)
    .await
    .doing("reading a site")
}

/// The code of the site with this id.
pub async fn code_of(conn: &mut SqliteConnection, id: &str) -> Result<Option<String>, DbError> {
    sqlx::query_scalar("SELECT site_code FROM sites WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
        .doing("reading a site's code")
}

pub async fn summary(
    conn: &mut SqliteConnection,
    tenant: &str,
    code: &str,
) -> Result<Option<SiteSummary>, DbError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SUMMARY} WHERE s.tenant = $1 AND s.site_code = $2"
    )))
    .bind(tenant)
    .bind(code)
    .fetch_optional(conn)
    .await
    .doing("reading a site")
}

pub async fn list(conn: &mut SqliteConnection, tenant: &str) -> Result<Vec<SiteSummary>, DbError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SUMMARY} WHERE s.tenant = $1 ORDER BY s.site_code"
    )))
    .bind(tenant)
    .fetch_all(conn)
    .await
    .doing("listing sites")
}

/// Renames a site (its display name; the code is what devices carry and never changes).
pub async fn rename(
    conn: &mut SqliteConnection,
    id: &str,
    name: Option<&str>,
    now: i64,
) -> Result<(), DbError> {
    sqlx::query("UPDATE sites SET name = $1, updated_at = $2 WHERE id = $3")
        .bind(name)
        .bind(now)
        .bind(id)
        .execute(conn)
        .await
        .doing("renaming a site")?;
    Ok(())
}

/// Deletes a site and its key history; false while any device or pending enrollment still
/// names it.
pub async fn delete(conn: &mut SqliteConnection, id: &str) -> Result<bool, DbError> {
    let used: i64 = sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM devices WHERE site_id = $1) \
              + (SELECT COUNT(*) FROM pending_enrollments WHERE site_id = $1)",
    )
    .bind(id)
    .fetch_one(&mut *conn)
    .await
    .doing("checking a site's devices")?;
    if used > 0 {
        return Ok(false);
    }
    sqlx::query("DELETE FROM site_enrollment_keys WHERE site_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await
        .doing("deleting a site's keys")?;
    sqlx::query("DELETE FROM sites WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await
        .doing("deleting a site")?;
    Ok(true)
}

/// The site with this code and its active key, in one query (the enrollment hot path).
pub async fn with_active_key(
    conn: &mut SqliteConnection,
    tenant: &str,
    code: &str,
) -> Result<Option<(SiteRow, ActiveKey)>, DbError> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        site: SiteRow,
        #[sqlx(flatten)]
        key: ActiveKey,
    }
    let row: Option<Row> = sqlx::query_as(
        "SELECT s.id, s.tenant, s.site_code, s.name, s.created_at, s.updated_at, \
             k.version, k.key_hash, k.fingerprint \
         FROM sites s JOIN site_enrollment_keys k ON k.site_id = s.id AND k.active = 1 \
         WHERE s.tenant = $1 AND s.site_code = $2",
    )
    .bind(tenant)
    .bind(code)
    .fetch_optional(conn)
    .await
    .doing("reading a site and its enrollment key")?;
    Ok(row.map(|r| (r.site, r.key)))
}

/// The site's active key.
pub async fn active_key(
    conn: &mut SqliteConnection,
    site_id: &str,
) -> Result<Option<ActiveKey>, DbError> {
    sqlx::query_as(
        "SELECT version, key_hash, fingerprint FROM site_enrollment_keys \
         WHERE site_id = $1 AND active = 1",
    )
    .bind(site_id)
    .fetch_optional(conn)
    .await
    .doing("reading a site's enrollment key")
}

/// Rotation, inside the caller's transaction: the active key (if any) is deactivated and the
/// new one inserted as the next version, so there is never a moment with two active keys (the
/// partial unique index would refuse it) nor a lost version. Returns the new version.
pub async fn rotate_key(
    conn: &mut SqliteConnection,
    site_id: &str,
    key_hash: &str,
    fingerprint: &str,
    created_by: &str,
    now: i64,
) -> Result<i64, DbError> {
    sqlx::query(
        "UPDATE site_enrollment_keys SET active = 0, deactivated_at = $1 \
         WHERE site_id = $2 AND active = 1",
    )
    .bind(now)
    .bind(site_id)
    .execute(&mut *conn)
    .await
    .doing("deactivating the old enrollment key")?;
    let version: i64 = sqlx::query_scalar(
        "SELECT COALESCE(MAX(version), 0) + 1 FROM site_enrollment_keys WHERE site_id = $1",
    )
    .bind(site_id)
    .fetch_one(&mut *conn)
    .await
    .doing("numbering the new enrollment key")?;
    sqlx::query(
        "INSERT INTO site_enrollment_keys \
         (site_id, version, key_hash, fingerprint, active, created_at, created_by) \
         VALUES ($1, $2, $3, $4, 1, $5, $6)",
    )
    .bind(site_id)
    .bind(version)
    .bind(key_hash)
    .bind(fingerprint)
    .bind(now)
    .bind(created_by)
    .execute(&mut *conn)
    .await
    .doing("storing the new enrollment key")?;
    sqlx::query("UPDATE sites SET updated_at = $1 WHERE id = $2")
        .bind(now)
        .bind(site_id)
        .execute(conn)
        .await
        .doing("touching the site")?;
    Ok(version)
}

/// Deactivates the site's key without a successor: no device can enroll with it any more.
pub async fn deactivate_key(
    conn: &mut SqliteConnection,
    site_id: &str,
    now: i64,
) -> Result<Option<i64>, DbError> {
    sqlx::query_scalar(
        "UPDATE site_enrollment_keys SET active = 0, deactivated_at = $1 \
         WHERE site_id = $2 AND active = 1 RETURNING version",
    )
    .bind(now)
    .bind(site_id)
    .fetch_optional(conn)
    .await
    .doing("deactivating an enrollment key")
}
