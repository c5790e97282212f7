//! Devices (`devices`): registration, lookup, enrollment state and WireGuard host indexes.

use sqlx::SqliteConnection;

use super::{DbError, QueryContext};

/// A device row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct DeviceRow {
    pub id: String,
    pub state: String,
    pub note: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub machine_uid: Option<String>,
    pub hostname: Option<String>,
    pub ec_spki_sha256: Option<String>,
    pub wg_public_key: Option<String>,
    pub wg_host: Option<i64>,
    pub profile_revision: i64,
    pub cert_serial: Option<String>,
    pub cert_not_after: Option<i64>,
    pub enrolled_at: Option<i64>,
    pub reenroll_until: Option<i64>,
    pub generation: i64,
    pub revoked_at: Option<i64>,
    /// When hawkBit confirmed the device's target exists.
    pub hawkbit_target_at: Option<i64>,
    /// When an operator decommissioned the device.
    pub decommissioned_at: Option<i64>,
    pub tenant: String,
    /// The site it enrolled at with a site key, if any.
    pub site_id: Option<String>,
    /// The last time it proved itself: enrollment, renewal, broker connect.
    pub last_seen_at: Option<i64>,
}

impl DeviceRow {
    /// A decommissioned device never enrolls or renews a certificate again.
    pub fn is_decommissioned(&self) -> bool {
        self.state == STATE_DECOMMISSIONED
    }
}

pub const STATE_REGISTERED: &str = "registered";
pub const STATE_ENROLLED: &str = "enrolled";
pub const STATE_REVOKED: &str = "revoked";
/// Taken out of service for good (`device decommission`, `DELETE /api/devices/{id}`).
pub const STATE_DECOMMISSIONED: &str = "decommissioned";

const COLUMNS: &str = "id, state, note, created_at, updated_at, machine_uid, hostname, ec_spki_sha256, \
     wg_public_key, wg_host, profile_revision, cert_serial, cert_not_after, enrolled_at, reenroll_until, generation, revoked_at, hawkbit_target_at, decommissioned_at, tenant, site_id, last_seen_at";

/// Registers a device id; returns false if it already existed (left unchanged).
pub async fn register(
    conn: &mut SqliteConnection,
    id: &str,
    note: Option<&str>,
    now: i64,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        "INSERT INTO devices (id, state, note, created_at, updated_at) VALUES ($1, 'registered', $2, $3, $3) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(note)
    .bind(now)
    .execute(conn)
    .await
    .doing("registering a device")?;
    Ok(done.rows_affected() == 1)
}

/// Registers a device id that a site key authorized, inside the enrollment's transaction;
/// false if the id exists already (a racing request registered it first).
pub async fn register_at_site(
    conn: &mut SqliteConnection,
    id: &str,
    tenant: &str,
    site_id: &str,
    now: i64,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        "INSERT INTO devices (id, state, note, created_at, updated_at, tenant, site_id) \
         VALUES ($1, 'registered', 'enrolled with a site key', $2, $2, $3, $4) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(now)
    .bind(tenant)
    .bind(site_id)
    .execute(conn)
    .await
    .doing("registering a device at its site")?;
    Ok(done.rows_affected() == 1)
}

/// Which device other than `except_id` holds this WireGuard key, if any.
pub async fn wg_key_owner(
    conn: &mut SqliteConnection,
    wg_key: &str,
    except_id: &str,
) -> Result<Option<String>, DbError> {
    sqlx::query_scalar("SELECT id FROM devices WHERE wg_public_key = $1 AND id <> $2")
        .bind(wg_key)
        .bind(except_id)
        .fetch_optional(conn)
        .await
        .doing("looking for the WireGuard key's device")
}

/// Another live device (not revoked or decommissioned) of the tenant holding `machine_uid`.
pub async fn machine_owner(
    conn: &mut SqliteConnection,
    tenant: &str,
    machine_uid: &str,
    except_id: &str,
) -> Result<Option<String>, DbError> {
    sqlx::query_scalar(
        "SELECT id FROM devices WHERE tenant = $1 AND machine_uid = $2 AND id <> $3 \
             AND state NOT IN ('revoked', 'decommissioned') ORDER BY id LIMIT 1",
    )
    .bind(tenant)
    .bind(machine_uid)
    .bind(except_id)
    .fetch_optional(conn)
    .await
    .doing("looking for the machine's device")
}

/// Notes that the device proved itself now (a broker connect).
pub async fn touch_seen(conn: &mut SqliteConnection, id: &str, now: i64) -> Result<(), DbError> {
    sqlx::query("UPDATE devices SET last_seen_at = $1 WHERE id = $2")
        .bind(now)
        .bind(id)
        .execute(conn)
        .await
        .doing("noting when a device was seen")?;
    Ok(())
}

pub async fn get(conn: &mut SqliteConnection, id: &str) -> Result<Option<DeviceRow>, DbError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM devices WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await
    .doing("reading a device")
}

pub async fn list(conn: &mut SqliteConnection) -> Result<Vec<DeviceRow>, DbError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM devices ORDER BY id"
    )))
    .fetch_all(conn)
    .await
    .doing("listing devices")
}

/// The device row and, in the same query, which other device holds `wg_key` (if any).
pub async fn get_with_key_owner(
    conn: &mut SqliteConnection,
    id: &str,
    wg_key: &str,
) -> Result<Option<(DeviceRow, Option<String>)>, DbError> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        device: DeviceRow,
        key_owner: Option<String>,
    }
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS}, (SELECT o.id FROM devices o WHERE o.wg_public_key = $2 AND o.id <> $1) AS key_owner \
         FROM devices WHERE id = $1"
    )))
    .bind(id)
    .bind(wg_key)
    .fetch_optional(conn)
    .await
    .doing("reading a device")?;
    Ok(row.map(|r| (r.device, r.key_owner)))
}

/// Opens (or moves) the one-time re-enrollment window; false if the device does not exist.
pub async fn set_reenroll_window(
    conn: &mut SqliteConnection,
    id: &str,
    until: i64,
    now: i64,
) -> Result<bool, DbError> {
    let done = sqlx::query("UPDATE devices SET reenroll_until = $1, updated_at = $2 WHERE id = $3")
        .bind(until)
        .bind(now)
        .bind(id)
        .execute(conn)
        .await
        .doing("opening a re-enrollment window")?;
    Ok(done.rows_affected() == 1)
}

/// Highest allocated host index, if any.
pub async fn max_host(conn: &mut SqliteConnection) -> Result<Option<i64>, DbError> {
    sqlx::query_scalar("SELECT MAX(wg_host) FROM devices")
        .fetch_one(conn)
        .await
        .doing("reading the highest WireGuard address")
}

/// Lowest free host index in `[first, last]`, scanning for gaps. Used only once the top of the
/// pool is reached, so the common path stays an index lookup.
pub async fn lowest_free_host(
    conn: &mut SqliteConnection,
    first: i64,
    last: i64,
) -> Result<Option<i64>, DbError> {
    sqlx::query_scalar(
        "SELECT c FROM ( \
             SELECT $1 AS c WHERE NOT EXISTS (SELECT 1 FROM devices WHERE wg_host = $1) \
             UNION ALL \
             SELECT d.wg_host + 1 AS c FROM devices d \
             WHERE d.wg_host >= $1 AND d.wg_host < $2 \
               AND NOT EXISTS (SELECT 1 FROM devices e WHERE e.wg_host = d.wg_host + 1) \
         ) AS free ORDER BY c LIMIT 1",
    )
    .bind(first)
    .bind(last)
    .fetch_optional(conn)
    .await
    .doing("searching for a free WireGuard address")
}

/// The state an enrollment leaves a device in.
#[derive(Debug, Clone)]
pub struct EnrolledState<'a> {
    pub id: &'a str,
    pub machine_uid: Option<&'a str>,
    pub hostname: Option<&'a str>,
    pub ec_spki_sha256: &'a str,
    pub wg_public_key: &'a str,
    pub wg_host: i64,
    pub profile_revision: i64,
    pub cert_serial: &'a str,
    pub cert_not_after: i64,
    /// Close the re-enrollment window (a re-enrollment consumed it).
    pub consume_window: bool,
    /// The site whose key authorized this enrollment (None leaves the site as it is).
    pub site_id: Option<&'a str>,
    pub now: i64,
}

/// Compare-and-set: applies `st` only if the row is still at `expected_generation`.
/// Returns false when another enrollment got there first.
pub async fn apply_enrollment(
    conn: &mut SqliteConnection,
    st: &EnrolledState<'_>,
    expected_generation: i64,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE devices SET state = 'enrolled', machine_uid = COALESCE($1, machine_uid), \
             hostname = COALESCE($2, hostname), ec_spki_sha256 = $3, wg_public_key = $4, wg_host = $5, \
             profile_revision = $6, cert_serial = $7, cert_not_after = $8, \
             enrolled_at = COALESCE(enrolled_at, $9), updated_at = $9, last_seen_at = $9, \
             site_id = COALESCE($13, site_id), \
             reenroll_until = CASE WHEN $10 THEN NULL ELSE reenroll_until END, \
             generation = generation + 1 \
         WHERE id = $11 AND generation = $12",
    )
    .bind(st.machine_uid)
    .bind(st.hostname)
    .bind(st.ec_spki_sha256)
    .bind(st.wg_public_key)
    .bind(st.wg_host)
    .bind(st.profile_revision)
    .bind(st.cert_serial)
    .bind(st.cert_not_after)
    .bind(st.now)
    .bind(st.consume_window)
    .bind(st.id)
    .bind(expected_generation)
    .bind(st.site_id)
    .execute(conn)
    .await
    .doing("storing an enrollment")?;
    Ok(done.rows_affected() == 1)
}

/// Compare-and-set: the device's certificate is now `serial` (on the key whose SPKI hash is
/// `spki_sha256`), if the row is still at `expected_generation` and enrolled.
pub async fn apply_renewal(
    conn: &mut SqliteConnection,
    id: &str,
    spki_sha256: &str,
    serial: &str,
    not_after: i64,
    now: i64,
    expected_generation: i64,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE devices SET ec_spki_sha256 = $1, cert_serial = $2, cert_not_after = $3, \
             updated_at = $4, last_seen_at = $4, generation = generation + 1 \
         WHERE id = $5 AND generation = $6 AND state = 'enrolled'",
    )
    .bind(spki_sha256)
    .bind(serial)
    .bind(not_after)
    .bind(now)
    .bind(id)
    .bind(expected_generation)
    .execute(conn)
    .await
    .doing("storing a renewal")?;
    Ok(done.rows_affected() == 1)
}

/// Revokes a device: it stops being a gateway peer and never enrolls again. Bumps the
/// generation so an enrollment racing with it loses its compare-and-set. False when the device
/// does not exist or was already revoked or decommissioned.
pub async fn revoke(conn: &mut SqliteConnection, id: &str, now: i64) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE devices SET state = 'revoked', revoked_at = $1, updated_at = $1, \
             reenroll_until = NULL, generation = generation + 1 \
         WHERE id = $2 AND state NOT IN ('revoked', 'decommissioned')",
    )
    .bind(now)
    .bind(id)
    .execute(conn)
    .await
    .doing("revoking a device")?;
    Ok(done.rows_affected() == 1)
}

/// Records that hawkBit holds the device's target (first confirmation wins).
pub async fn mark_hawkbit_target(
    conn: &mut SqliteConnection,
    id: &str,
    now: i64,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE devices SET hawkbit_target_at = $1, updated_at = $1 \
         WHERE id = $2 AND hawkbit_target_at IS NULL",
    )
    .bind(now)
    .bind(id)
    .execute(conn)
    .await
    .doing("recording the hawkBit target")?;
    Ok(done.rows_affected() == 1)
}

/// Decommissions a device: it stops being a gateway peer and never enrolls or renews again;
/// its address stays reserved. Bumps the generation so an enrollment racing with it loses its
/// compare-and-set. False when the device does not exist or was already decommissioned.
pub async fn mark_decommissioned(
    conn: &mut SqliteConnection,
    id: &str,
    now: i64,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE devices SET state = 'decommissioned', decommissioned_at = $1, updated_at = $1, \
             reenroll_until = NULL, generation = generation + 1 \
         WHERE id = $2 AND state <> 'decommissioned'",
    )
    .bind(now)
    .bind(id)
    .execute(conn)
    .await
    .doing("decommissioning a device")?;
    Ok(done.rows_affected() == 1)
}

/// Forgets the device's hawkBit target (it was deleted there).
pub async fn clear_hawkbit_target(
    conn: &mut SqliteConnection,
    id: &str,
    now: i64,
) -> Result<(), DbError> {
    sqlx::query("UPDATE devices SET hawkbit_target_at = NULL, updated_at = $1 WHERE id = $2")
        .bind(now)
        .bind(id)
        .execute(conn)
        .await
        .doing("forgetting the hawkBit target")?;
    Ok(())
}

/// A device the gateway must carry as a peer.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ActivePeer {
    pub id: String,
    pub wg_public_key: String,
    pub wg_host: i64,
}

/// Every enrolled device with its WireGuard key and host index.
pub async fn active_peers(conn: &mut SqliteConnection) -> Result<Vec<ActivePeer>, DbError> {
    sqlx::query_as(
        "SELECT id, wg_public_key, wg_host FROM devices \
         WHERE state = 'enrolled' AND wg_public_key IS NOT NULL AND wg_host IS NOT NULL",
    )
    .fetch_all(conn)
    .await
    .doing("listing gateway peers")
}

/// Which of `keys` belong to enrolled devices right now.
pub async fn enrolled_keys(
    conn: &mut SqliteConnection,
    keys: &[String],
) -> Result<Vec<String>, DbError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders: Vec<String> = (1..=keys.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT wg_public_key FROM devices WHERE state = 'enrolled' AND wg_public_key IN ({})",
        placeholders.join(", ")
    );
    let mut query = sqlx::query_scalar(sqlx::AssertSqlSafe(sql));
    for key in keys {
        query = query.bind(key);
    }
    query
        .fetch_all(conn)
        .await
        .doing("checking gateway peers against the store")
}
