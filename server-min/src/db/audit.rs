//! The audit trail (`audit_events`): append-only, written in the same transaction as the
//! change it records.

use rand::RngCore;
use serde::Serialize;
use sqlx::SqliteConnection;

use super::{DbError, QueryContext};

/// One audit event.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AuditEvent {
    pub id: String,
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub device_id: Option<String>,
    pub source: Option<String>,
    /// JSON object.
    pub detail: String,
}

impl AuditEvent {
    pub fn new(
        actor: String,
        action: &str,
        device_id: Option<&str>,
        source: Option<String>,
        detail: serde_json::Value,
    ) -> Self {
        let mut id = [0u8; 16];
        rand::rng().fill_bytes(&mut id);
        let at_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
        Self {
            id: hex::encode(id),
            at_ms,
            actor,
            action: action.to_owned(),
            device_id: device_id.map(str::to_owned),
            source,
            detail: detail.to_string(),
        }
    }
}

pub async fn record(conn: &mut SqliteConnection, ev: &AuditEvent) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO audit_events (id, at_ms, actor, action, device_id, source, detail) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&ev.id)
    .bind(ev.at_ms)
    .bind(&ev.actor)
    .bind(&ev.action)
    .bind(&ev.device_id)
    .bind(&ev.source)
    .bind(&ev.detail)
    .execute(conn)
    .await
    .doing("recording an audit event")?;
    Ok(())
}

/// The newest `limit` events, optionally for one device, oldest first.
pub async fn list(
    conn: &mut SqliteConnection,
    device_id: Option<&str>,
    limit: i64,
) -> Result<Vec<AuditEvent>, DbError> {
    let mut rows: Vec<AuditEvent> = sqlx::query_as(
        "SELECT id, at_ms, actor, action, device_id, source, detail FROM audit_events \
         WHERE ($1 IS NULL OR device_id = $1) ORDER BY at_ms DESC, id DESC LIMIT $2",
    )
    .bind(device_id)
    .bind(limit)
    .fetch_all(conn)
    .await
    .doing("listing audit events")?;
    rows.reverse();
    Ok(rows)
}

/// Which audit events to read.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditFilter {
    pub device: Option<String>,
    pub actor: Option<String>,
    /// An action (`device.enrolled`), or a prefix ending in `.` (`enrollment.`).
    pub action: Option<String>,
    /// Unix milliseconds, inclusive.
    pub since_ms: Option<i64>,
    /// Unix milliseconds, exclusive.
    pub until_ms: Option<i64>,
    /// At most this many, the newest (default 100, at most 10,000).
    pub limit: Option<i64>,
}

/// The newest events matching `f`, oldest first.
pub async fn query(
    conn: &mut SqliteConnection,
    f: &AuditFilter,
) -> Result<Vec<AuditEvent>, DbError> {
    let (action_exact, action_prefix) = match f.action.as_deref() {
        Some(a) if a.ends_with('.') => (
            None,
            Some(format!("{}%", a.replace('%', "").replace('_', "\\_"))),
        ),
        Some(a) => (Some(a.to_owned()), None),
        None => (None, None),
    };
    let mut rows: Vec<AuditEvent> = sqlx::query_as(
        "SELECT id, at_ms, actor, action, device_id, source, detail FROM audit_events \
         WHERE ($1 IS NULL OR device_id = $1) AND ($2 IS NULL OR actor = $2) \
           AND ($3 IS NULL OR action = $3) AND ($4 IS NULL OR action LIKE $4 ESCAPE '\\') \
           AND ($5 IS NULL OR at_ms >= $5) AND ($6 IS NULL OR at_ms < $6) \
         ORDER BY at_ms DESC, id DESC LIMIT $7",
    )
    .bind(&f.device)
    .bind(&f.actor)
    .bind(action_exact)
    .bind(action_prefix)
    .bind(f.since_ms)
    .bind(f.until_ms)
    .bind(f.limit.unwrap_or(100).clamp(1, 10_000))
    .fetch_all(conn)
    .await
    .doing("querying audit events")?;
    rows.reverse();
    Ok(rows)
}
