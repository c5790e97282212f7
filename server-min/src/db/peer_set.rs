//! The change counter of the gateway's peer set (`peer_set`). Writers outside the serving
//! process bump it in the same transaction as their change; the gateway manager polls it.

use sqlx::SqliteConnection;

use super::{DbError, QueryContext};

pub async fn bump(conn: &mut SqliteConnection) -> Result<(), DbError> {
    sqlx::query("UPDATE peer_set SET version = version + 1 WHERE id = 1")
        .execute(conn)
        .await
        .doing("bumping the peer-set version")?;
    Ok(())
}

pub async fn version(conn: &mut SqliteConnection) -> Result<i64, DbError> {
    sqlx::query_scalar("SELECT version FROM peer_set WHERE id = 1")
        .fetch_one(conn)
        .await
        .doing("reading the peer-set version")
}
