//! `POST /api/v1/auth/login` and `POST /api/v1/auth/refresh`.
//!
//! Bad passwords count per (user name, address) in the same limiter design as site keys:
//! after the configured number of failures the pair is locked out (429 with `Retry-After`).

use std::net::SocketAddr;
use std::time::Instant;

use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use nexa_proto::{ErrorCode, LoginRequest, RefreshRequest, TokenResponse};
use zeroize::Zeroizing;

use super::AppState;
use super::body::read_json;
use super::error::ApiError;
use crate::auth::limiter::Verdict;
use crate::auth::tokens::{AuthError, Origin};

/// Longest user name looked up.
const MAX_USERNAME: usize = 64;

pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<TokenResponse>, ApiError> {
    let LoginRequest { username, password } =
        read_json(&headers, body, state.max_body, "login request").await?;
    let password = Zeroizing::new(password);
    if username.is_empty() || username.len() > MAX_USERNAME {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::InvalidField,
            format!("username: 1-{MAX_USERNAME} characters"),
        ));
    }
    let key = format!("login:{username}");
    let limited = |wait: std::time::Duration, what: &str| ApiError {
        retry_after_secs: Some(wait.as_secs().max(1)),
        ..ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            format!("{what}; try again in {} s", wait.as_secs().max(1)),
        )
    };
    match state.login_limiter.check(&key, peer.ip(), Instant::now()) {
        Verdict::Allowed => {}
        Verdict::RateLimited(wait) => {
            return Err(limited(wait, "too many logins from this address"));
        }
        Verdict::LockedOut(wait) => {
            return Err(limited(
                wait,
                "too many wrong passwords for this user from this address",
            ));
        }
    }
    let origin = Origin {
        source: Some(peer.ip().to_string()),
    };
    match state.tokens.login(&username, password, &origin).await {
        Ok(tokens) => {
            state.login_limiter.success(&key, peer.ip());
            Ok(Json(tokens))
        }
        Err(e @ AuthError::InvalidCredentials) => {
            state.login_limiter.failure(&key, peer.ip(), Instant::now());
            Err(e.into())
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn refresh(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<TokenResponse>, ApiError> {
    let RefreshRequest { refresh_token } =
        read_json(&headers, body, state.max_body, "refresh request").await?;
    let refresh_token = Zeroizing::new(refresh_token);
    let origin = Origin {
        source: Some(peer.ip().to_string()),
    };
    Ok(Json(state.tokens.refresh(&refresh_token, &origin).await?))
}
