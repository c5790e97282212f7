//! A field technician's login at the bridge, for `enroll --force --user NAME`.
//!
//! `POST api/v1/auth/login` gives an access token (sent as `Authorization: Bearer …` with the
//! enrollment, which lets the bridge accept new keys for an existing device) and a refresh
//! token (spent on `POST api/v1/auth/refresh` when the access token expires during a long
//! retry). Password and tokens live in [`SecretString`]s: zeroized, never in `Debug`, never
//! logged.

use crate::backoff::Backoff;
use crate::bridge::{BridgeClient, BridgeError};
use crate::secret::SecretString;

/// Who re-enrolls the device, with the password they gave.
#[derive(Debug, Clone)]
pub struct Technician {
    pub user: String,
    pub password: SecretString,
}

/// The bridge's tokens for one login.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub access: SecretString,
    pub refresh: SecretString,
    pub username: String,
    pub role: String,
    /// Seconds the access token was valid for when issued.
    pub expires_in: u64,
}

impl From<nexa_proto::TokenResponse> for Tokens {
    fn from(t: nexa_proto::TokenResponse) -> Self {
        // The strings move into zeroized storage; nothing is copied.
        Self {
            access: SecretString::new(t.access_token),
            refresh: SecretString::new(t.refresh_token),
            username: t.username,
            role: t.role,
            expires_in: t.expires_in,
        }
    }
}

/// A logged-in technician for the length of one enrollment: the bearer token, refreshed at
/// most once.
#[derive(Debug)]
pub struct Session {
    user: String,
    tokens: Tokens,
    refreshed: bool,
}

impl Session {
    /// Logs in, retrying an unreachable or busy bridge within `backoff`.
    pub async fn login(
        client: &BridgeClient,
        who: &Technician,
        backoff: Backoff,
    ) -> Result<Self, AuthError> {
        let tokens = crate::bridge::with_retry(backoff, || client.login(&who.user, &who.password))
            .await
            .map_err(|source| AuthError::Login {
                user: who.user.clone(),
                hint: refusal_hint(&source),
                source,
            })?;
        tracing::info!(user = %tokens.username, role = %tokens.role, expires_in_s = tokens.expires_in, "logged in at the bridge");
        Ok(Self {
            user: who.user.clone(),
            tokens,
            refreshed: false,
        })
    }

    /// The access token, for `Authorization: Bearer`.
    pub fn bearer(&self) -> &SecretString {
        &self.tokens.access
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    /// After a 401 `token_expired`: trades the refresh token for a new pair, once per session.
    /// `Ok(false)` when it was already done (the caller reports the refusal).
    pub async fn refresh_once(
        &mut self,
        client: &BridgeClient,
        backoff: Backoff,
    ) -> Result<bool, AuthError> {
        if self.refreshed {
            return Ok(false);
        }
        self.refreshed = true;
        let tokens = crate::bridge::with_retry(backoff, || client.refresh(&self.tokens))
            .await
            .map_err(|source| self.refused(source))?;
        tracing::info!(user = %self.user, "the access token expired; refreshed it");
        self.tokens = tokens;
        Ok(true)
    }

    /// A refusal of this session's authorization, with what to do about it.
    pub fn refused(&self, source: BridgeError) -> AuthError {
        AuthError::Session {
            user: self.user.clone(),
            hint: refusal_hint(&source),
            source,
        }
    }
}

fn refusal_hint(e: &BridgeError) -> Option<&'static str> {
    match e {
        BridgeError::Refused { code, .. } => hint(code),
        BridgeError::Unavailable { status, .. }
            if *status == reqwest::StatusCode::TOO_MANY_REQUESTS =>
        {
            hint("rate_limited")
        }
        _ => None,
    }
}

/// Why the technician's authorization did not work.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("logging in as {user:?} failed: {source}{}", hint_suffix(*.hint))]
    Login {
        user: String,
        #[source]
        source: BridgeError,
        hint: Option<&'static str>,
    },
    #[error("the bridge did not accept {user:?}'s authorization: {source}{}", hint_suffix(*.hint))]
    Session {
        user: String,
        #[source]
        source: BridgeError,
        hint: Option<&'static str>,
    },
}

impl AuthError {
    /// The bridge's answer underneath (its kind decides the exit code).
    pub fn bridge(&self) -> &BridgeError {
        match self {
            AuthError::Login { source, .. } | AuthError::Session { source, .. } => source,
        }
    }
}

fn hint_suffix(hint: Option<&'static str>) -> String {
    hint.map(|h| format!(" — {h}")).unwrap_or_default()
}

/// What to do about a refusal of a login, a refresh or an authorized enrollment, by code.
pub fn hint(code: &str) -> Option<&'static str> {
    Some(match code {
        "invalid_credentials" => "check the user name and the password and try again",
        "user_disabled" => "the account is disabled; ask an administrator to enable the account",
        "forbidden" => {
            "the account may not re-enroll devices; ask an administrator for the technician role"
        }
        "token_expired" | "token_invalid" => {
            "the login session ended; run the command again to log in anew"
        }
        "rate_limited" => "too many attempts; wait a few minutes and try again",
        _ => return None,
    })
}

/// True for the codes that are about the technician's authorization rather than the device.
pub fn is_auth_refusal(code: &str) -> bool {
    matches!(
        code,
        "invalid_credentials" | "user_disabled" | "forbidden" | "token_expired" | "token_invalid"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    #[test]
    fn tokens_and_technicians_never_show_secrets() {
        let t = Tokens::from(nexa_proto::TokenResponse {
            access_token: "acc-SECRET".into(),
            token_type: "Bearer".into(),
            expires_in: 900,
            refresh_token: "ref-SECRET".into(),
            refresh_expires_in: 86_400,
            username: "tech".into(),
            role: "technician".into(),
        });
        let dbg = format!("{t:?}");
        assert!(!dbg.contains("SECRET") && dbg.contains("tech"), "{dbg}");
        assert_eq!(t.access.expose(), "acc-SECRET");
        let who = Technician {
            user: "tech".into(),
            password: SecretString::new("pw-SECRET".into()),
        };
        assert!(!format!("{who:?}").contains("SECRET"));
    }

    #[test]
    fn refusals_say_what_to_do() {
        let refused = |code: &str| BridgeError::Refused {
            status: StatusCode::FORBIDDEN,
            code: code.into(),
            message: "no".into(),
        };
        let e = AuthError::Login {
            user: "tech".into(),
            source: refused("user_disabled"),
            hint: hint("user_disabled"),
        }
        .to_string();
        assert!(
            e.contains("\"tech\"") && e.contains("ask an administrator to enable the account"),
            "{e}"
        );
        assert!(hint("invalid_credentials").unwrap().contains("password"));
        assert!(hint("forbidden").unwrap().contains("technician role"));
        assert_eq!(hint("device_already_enrolled"), None);
        let e = AuthError::Session {
            user: "tech".into(),
            source: refused("some_code"),
            hint: None,
        }
        .to_string();
        assert!(!e.contains(" — "), "{e}");
        assert!(is_auth_refusal("token_invalid") && !is_auth_refusal("device_revoked"));
    }
}
