//! Logins, refreshes and bearer-token checks for users.
//!
//! Tokens are opaque 256-bit secrets (`nxa_…` access, `nxr_…` refresh) stored only as keyed
//! hashes, so they are revocable at once: a disabled user or a changed password ends every
//! token on the next request. A refresh token is spent by its use and answered with a new
//! pair of the same login ("family"); presenting a spent one again is taken as theft and
//! revokes the whole family.

use std::sync::Arc;

use nexa_proto::TokenResponse;
use zeroize::Zeroizing;

use super::password;
use super::principal::{Principal, Role};
use super::secret::{self, RandomError};
use super::site_key::KeyHasher;
use crate::clock::Clock;
use crate::db::users::{self, TOKEN_ACCESS, TOKEN_REFRESH, TokenRow, UserRow};
use crate::db::{Db, DbError, audit};

pub const ACCESS_PREFIX: &str = "nxa_";
pub const REFRESH_PREFIX: &str = "nxr_";

/// How long tokens live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenLifetimes {
    /// Seconds an access token is valid (default 15 minutes).
    pub access_s: i64,
    /// Seconds a refresh token is valid (default 12 hours: a technician's shift).
    pub refresh_s: i64,
}

impl Default for TokenLifetimes {
    fn default() -> Self {
        Self {
            access_s: 15 * 60,
            refresh_s: 12 * 3600,
        }
    }
}

/// Why a login, refresh or token check failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("wrong user name or password")]
    InvalidCredentials,
    #[error("the account {0} is disabled; ask an administrator to enable it")]
    UserDisabled(String),
    #[error("the token is not valid (unknown, revoked or malformed); log in again")]
    TokenInvalid,
    #[error("the token has expired; refresh it or log in again")]
    TokenExpired,
    #[error(transparent)]
    Random(#[from] RandomError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("the password check could not run: {0}")]
    Task(String),
}

/// Where a login comes from, for the audit trail.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub source: Option<String>,
}

/// The token service.
#[derive(Debug, Clone)]
pub struct TokenService {
    db: Db,
    hasher: KeyHasher,
    clock: Arc<dyn Clock>,
    lifetimes: TokenLifetimes,
}

impl TokenService {
    pub fn new(
        db: Db,
        hasher: KeyHasher,
        clock: Arc<dyn Clock>,
        lifetimes: TokenLifetimes,
    ) -> Self {
        Self {
            db,
            hasher,
            clock,
            lifetimes,
        }
    }

    /// Checks the password and issues a token pair. Every attempt is audited (the user name,
    /// never the password).
    pub async fn login(
        &self,
        username: &str,
        password: Zeroizing<String>,
        origin: &Origin,
    ) -> Result<TokenResponse, AuthError> {
        let user = {
            let mut conn = self.db.acquire().await?;
            users::by_name(&mut conn, username).await?
        };
        let phc = user.as_ref().map_or_else(
            || password::dummy_hash().to_owned(),
            |u| u.password_hash.clone(),
        );
        let matches = tokio::task::spawn_blocking(move || password::verify(&password, &phc))
            .await
            .map_err(|e| AuthError::Task(e.to_string()))?;
        let refused = match &user {
            None => Some(AuthError::InvalidCredentials),
            Some(_) if !matches => Some(AuthError::InvalidCredentials),
            Some(u) if u.disabled_at.is_some() => Some(AuthError::UserDisabled(u.username.clone())),
            Some(_) => None,
        };
        let (Some(user), None) = (user, refused.as_ref()) else {
            let reason = match &refused {
                Some(AuthError::UserDisabled(_)) => "user_disabled",
                _ => "invalid_credentials",
            };
            self.audit_alone(
                format!("user:{username}"),
                "auth.login_failed",
                origin,
                serde_json::json!({ "username": username, "reason": reason }),
            )
            .await?;
            tracing::warn!(username, reason, source = ?origin.source, "login refused");
            return Err(refused.unwrap_or(AuthError::InvalidCredentials));
        };
        let family = secret::random_id::<16>()?;
        let response = self.issue(&user, &family, "auth.login", origin).await?;
        tracing::info!(username = %user.username, role = %user.role, "logged in");
        Ok(response)
    }

    /// Spends a refresh token and issues a new pair of the same login.
    pub async fn refresh(&self, token: &str, origin: &Origin) -> Result<TokenResponse, AuthError> {
        if !secret::is_token_shaped(token, REFRESH_PREFIX) {
            return Err(AuthError::TokenInvalid);
        }
        let hash = self.hasher.hash(token);
        let now = self.clock.unix();
        let (row, user) = {
            let mut conn = self.db.acquire().await?;
            users::token_with_user(&mut conn, &hash)
                .await?
                .ok_or(AuthError::TokenInvalid)?
        };
        if row.kind != TOKEN_REFRESH || row.revoked_at.is_some() {
            return Err(AuthError::TokenInvalid);
        }
        if row.expires_at <= now {
            return Err(AuthError::TokenExpired);
        }
        if user.disabled_at.is_some() {
            return Err(AuthError::UserDisabled(user.username));
        }
        let mut tx = self.db.begin_write().await?;
        if !users::spend_refresh(&mut tx, &hash, now).await? {
            // Spent before: someone holds a copy. End the whole login.
            let revoked = users::revoke_family(&mut tx, &row.family, now).await?;
            let ev = audit::AuditEvent::new(
                format!("{}:{}", user.role, user.username),
                "auth.refresh_replayed",
                None,
                origin.source.clone(),
                serde_json::json!({ "username": user.username, "tokens_revoked": revoked }),
            );
            audit::record(&mut tx, &ev).await?;
            tx.commit().await.map_err(|e| DbError::Query {
                doing: "committing a token revocation",
                source: e,
            })?;
            tracing::warn!(username = %user.username, "a spent refresh token was presented again; the login's tokens are revoked");
            return Err(AuthError::TokenInvalid);
        }
        tx.commit().await.map_err(|e| DbError::Query {
            doing: "committing a refresh",
            source: e,
        })?;
        self.issue(&user, &row.family, "auth.refreshed", origin)
            .await
    }

    /// Who presents this access token.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, AuthError> {
        if !secret::is_token_shaped(token, ACCESS_PREFIX) {
            return Err(AuthError::TokenInvalid);
        }
        let hash = self.hasher.hash(token);
        let (row, user) = {
            let mut conn = self.db.acquire().await?;
            users::token_with_user(&mut conn, &hash)
                .await?
                .ok_or(AuthError::TokenInvalid)?
        };
        if row.kind != TOKEN_ACCESS || row.revoked_at.is_some() {
            return Err(AuthError::TokenInvalid);
        }
        if row.expires_at <= self.clock.unix() {
            return Err(AuthError::TokenExpired);
        }
        if user.disabled_at.is_some() {
            return Err(AuthError::UserDisabled(user.username));
        }
        let role = Role::parse(&user.role).ok_or(AuthError::TokenInvalid)?;
        Ok(Principal::User {
            user_id: user.id,
            username: user.username,
            role,
        })
    }

    async fn issue(
        &self,
        user: &UserRow,
        family: &str,
        action: &str,
        origin: &Origin,
    ) -> Result<TokenResponse, AuthError> {
        let now = self.clock.unix();
        let access = secret::random_token(ACCESS_PREFIX)?;
        let refresh = secret::random_token(REFRESH_PREFIX)?;
        let mut tx = self.db.begin_write().await?;
        for (token, kind, ttl) in [
            (&access, TOKEN_ACCESS, self.lifetimes.access_s),
            (&refresh, TOKEN_REFRESH, self.lifetimes.refresh_s),
        ] {
            users::insert_token(
                &mut tx,
                &TokenRow {
                    token_hash: self.hasher.hash(token),
                    user_id: user.id.clone(),
                    kind: kind.to_owned(),
                    family: family.to_owned(),
                    issued_at: now,
                    expires_at: now + ttl,
                    used_at: None,
                    revoked_at: None,
                },
            )
            .await?;
        }
        let ev = audit::AuditEvent::new(
            format!("{}:{}", user.role, user.username),
            action,
            None,
            origin.source.clone(),
            serde_json::json!({ "username": user.username, "outcome": "ok" }),
        );
        audit::record(&mut tx, &ev).await?;
        // Tokens that expired a day ago are of no use even to the audit trail.
        users::purge_expired(&mut tx, now, 86_400).await?;
        tx.commit().await.map_err(|e| DbError::Query {
            doing: "committing issued tokens",
            source: e,
        })?;
        Ok(TokenResponse {
            access_token: access.to_string(),
            token_type: "Bearer".into(),
            expires_in: u64::try_from(self.lifetimes.access_s).unwrap_or(0),
            refresh_token: refresh.to_string(),
            refresh_expires_in: u64::try_from(self.lifetimes.refresh_s).unwrap_or(0),
            username: user.username.clone(),
            role: user.role.clone(),
        })
    }

    async fn audit_alone(
        &self,
        actor: String,
        action: &str,
        origin: &Origin,
        detail: serde_json::Value,
    ) -> Result<(), AuthError> {
        let mut tx = self.db.begin_write().await?;
        let ev = audit::AuditEvent::new(actor, action, None, origin.source.clone(), detail);
        audit::record(&mut tx, &ev).await?;
        tx.commit().await.map_err(|e| DbError::Query {
            doing: "committing an audit event",
            source: e,
        })?;
        Ok(())
    }
}
