//! Pinned settings (`settings` table).

use sqlx::SqliteConnection;

use super::{DbError, QueryContext};

pub const WG_SUBNET: &str = "wg_subnet";

pub async fn get(conn: &mut SqliteConnection, name: &str) -> Result<Option<String>, DbError> {
    sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
        .bind(name)
        .fetch_optional(conn)
        .await
        .doing("reading a setting")
}

pub async fn put(conn: &mut SqliteConnection, name: &str, value: &str) -> Result<(), DbError> {
    sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = $2")
        .bind(name)
        .bind(value)
        .execute(conn)
        .await
        .doing("writing a setting")?;
    Ok(())
}
