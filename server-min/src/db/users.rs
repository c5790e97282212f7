//! Users (`users`) and their issued tokens (`auth_tokens`).

use serde::Serialize;
use sqlx::SqliteConnection;

use super::{DbError, QueryContext};

/// A user row. `password_hash` is never serialized.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct UserRow {
    pub id: String,
    pub username: String,
    #[serde(skip)]
    pub password_hash: String,
    pub role: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub disabled_at: Option<i64>,
}

const COLUMNS: &str = "id, username, password_hash, role, created_at, updated_at, disabled_at";

/// Creates a user; false if the name is taken.
pub async fn create(conn: &mut SqliteConnection, u: &UserRow) -> Result<bool, DbError> {
    let done = sqlx::query(
        "INSERT INTO users (id, username, password_hash, role, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (username) DO NOTHING",
    )
    .bind(&u.id)
    .bind(&u.username)
    .bind(&u.password_hash)
    .bind(&u.role)
    .bind(u.created_at)
    .execute(conn)
    .await
    .doing("creating a user")?;
    Ok(done.rows_affected() == 1)
}

pub async fn by_name(
    conn: &mut SqliteConnection,
    username: &str,
) -> Result<Option<UserRow>, DbError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM users WHERE username = $1"
    )))
    .bind(username)
    .fetch_optional(conn)
    .await
    .doing("reading a user")
}

pub async fn list(conn: &mut SqliteConnection) -> Result<Vec<UserRow>, DbError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM users ORDER BY username"
    )))
    .fetch_all(conn)
    .await
    .doing("listing users")
}

/// Sets a new password hash; false if there is no such user.
pub async fn set_password(
    conn: &mut SqliteConnection,
    username: &str,
    hash: &str,
    now: i64,
) -> Result<bool, DbError> {
    let done =
        sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE username = $3")
            .bind(hash)
            .bind(now)
            .bind(username)
            .execute(conn)
            .await
            .doing("changing a password")?;
    Ok(done.rows_affected() == 1)
}

/// Disables (or enables again) a user; false if there is no such user.
pub async fn set_disabled(
    conn: &mut SqliteConnection,
    username: &str,
    disabled: bool,
    now: i64,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE users SET disabled_at = CASE WHEN $1 THEN COALESCE(disabled_at, $2) ELSE NULL END, \
             updated_at = $2 WHERE username = $3",
    )
    .bind(disabled)
    .bind(now)
    .bind(username)
    .execute(conn)
    .await
    .doing("disabling a user")?;
    Ok(done.rows_affected() == 1)
}

/// An issued token.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TokenRow {
    pub token_hash: String,
    pub user_id: String,
    pub kind: String,
    pub family: String,
    pub issued_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

pub const TOKEN_ACCESS: &str = "access";
pub const TOKEN_REFRESH: &str = "refresh";

pub async fn insert_token(conn: &mut SqliteConnection, t: &TokenRow) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO auth_tokens (token_hash, user_id, kind, family, issued_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&t.token_hash)
    .bind(&t.user_id)
    .bind(&t.kind)
    .bind(&t.family)
    .bind(t.issued_at)
    .bind(t.expires_at)
    .execute(conn)
    .await
    .doing("storing a token")?;
    Ok(())
}

/// The token with this hash and its user.
pub async fn token_with_user(
    conn: &mut SqliteConnection,
    token_hash: &str,
) -> Result<Option<(TokenRow, UserRow)>, DbError> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        token: TokenRow,
        #[sqlx(flatten)]
        user: UserRow,
    }
    let row: Option<Row> = sqlx::query_as(
        "SELECT t.token_hash, t.user_id, t.kind, t.family, t.issued_at, t.expires_at, t.used_at, \
             t.revoked_at, u.id, u.username, u.password_hash, u.role, u.created_at, u.updated_at, \
             u.disabled_at \
         FROM auth_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = $1",
    )
    .bind(token_hash)
    .fetch_optional(conn)
    .await
    .doing("reading a token")?;
    Ok(row.map(|r| (r.token, r.user)))
}

/// Spends a refresh token; false if it was spent or revoked already (a replay).
pub async fn spend_refresh(
    conn: &mut SqliteConnection,
    token_hash: &str,
    now: i64,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE auth_tokens SET used_at = $1 \
         WHERE token_hash = $2 AND kind = 'refresh' AND used_at IS NULL AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(token_hash)
    .execute(conn)
    .await
    .doing("spending a refresh token")?;
    Ok(done.rows_affected() == 1)
}

/// Revokes every token of one login (a replayed refresh token).
pub async fn revoke_family(
    conn: &mut SqliteConnection,
    family: &str,
    now: i64,
) -> Result<u64, DbError> {
    let done = sqlx::query(
        "UPDATE auth_tokens SET revoked_at = $1 WHERE family = $2 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(family)
    .execute(conn)
    .await
    .doing("revoking a login's tokens")?;
    Ok(done.rows_affected())
}

/// Revokes every token of a user (password changed, account disabled).
pub async fn revoke_user_tokens(
    conn: &mut SqliteConnection,
    user_id: &str,
    now: i64,
) -> Result<u64, DbError> {
    let done = sqlx::query(
        "UPDATE auth_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(user_id)
    .execute(conn)
    .await
    .doing("revoking a user's tokens")?;
    Ok(done.rows_affected())
}

/// Forgets tokens that expired more than `keep` seconds ago.
pub async fn purge_expired(
    conn: &mut SqliteConnection,
    now: i64,
    keep: i64,
) -> Result<u64, DbError> {
    let done = sqlx::query("DELETE FROM auth_tokens WHERE expires_at < $1")
        .bind(now - keep)
        .execute(conn)
        .await
        .doing("forgetting expired tokens")?;
    Ok(done.rows_affected())
}
