//! Who is calling: the webhook's header secret, the admin API's static bearer token, and
//! users' access tokens.
//!
//! Static secrets are compared as SHA-256 digests, so the time taken says nothing about how
//! much of a presented value matched. Users' tokens are looked up by their keyed hash.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nexa_proto::ErrorCode;
use sha2::{Digest, Sha256};

use super::error::ApiError;
use crate::auth::Principal;
use crate::auth::tokens::{ACCESS_PREFIX, TokenService};
use crate::config::Secret;

/// Whether `presented` is `secret`, in time independent of where they differ.
pub(crate) fn secret_matches(secret: &Secret, presented: Option<&[u8]>) -> bool {
    let Some(presented) = presented else {
        return false;
    };
    let want = Sha256::digest(secret.expose().as_bytes());
    let got = Sha256::digest(presented);
    want.iter()
        .zip(got.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| token.trim_ascii())
}

/// The caller, if the request carries `Authorization: Bearer`: the static admin token, or a
/// user's access token (an unusable token is an error, never anonymous).
pub(crate) async fn caller(
    admin_token: Option<&Secret>,
    tokens: &TokenService,
    headers: &HeaderMap,
) -> Result<Option<Principal>, ApiError> {
    let Some(presented) = bearer(headers) else {
        return Ok(None);
    };
    if let Some(t) = admin_token
        && secret_matches(t, Some(presented))
    {
        return Ok(Some(Principal::AdminToken));
    }
    let text = std::str::from_utf8(presented).unwrap_or("");
    tokens
        .authenticate(text)
        .await
        .map(Some)
        .map_err(Into::into)
}

/// An administrator: the static admin token or an admin user's access token. 401
/// `admin_unauthorized` without a token, 401 `token_invalid`/`token_expired` for a bad user
/// token, 403 `forbidden` for a user who is not an admin, 503 `admin_not_configured` for a
/// token that is neither while no static token is configured.
pub(crate) async fn require_admin(
    admin_token: Option<&Secret>,
    tokens: &TokenService,
    headers: &HeaderMap,
) -> Result<Principal, Response> {
    let presented = bearer(headers);
    let user_token = presented.is_some_and(|p| p.starts_with(ACCESS_PREFIX.as_bytes()));
    if user_token {
        let principal = caller(admin_token, tokens, headers)
            .await
            .map_err(IntoResponse::into_response)?
            .ok_or_else(admin_unauthorized)?;
        if !principal.is_admin() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                format!(
                    "{} may not use the admin API; it needs the admin role",
                    principal.actor()
                ),
            )
            .into_response());
        }
        return Ok(principal);
    }
    match admin_refusal(admin_token, headers) {
        None => Ok(Principal::AdminToken),
        Some(refused) => Err(refused),
    }
}

fn admin_unauthorized() -> Response {
    let mut resp = ApiError::new(
        StatusCode::UNAUTHORIZED,
        ErrorCode::AdminUnauthorized,
        "missing or wrong admin token: send Authorization: Bearer <admin token or an admin user's access token>",
    )
    .into_response();
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"nexa-admin\""),
    );
    resp
}

/// The refusal of a call to the admin API by static token, if it is refused: 503
/// `admin_not_configured` without a configured token, 401 `admin_unauthorized` (with
/// `WWW-Authenticate: Bearer`) for a missing or wrong one.
pub(crate) fn admin_refusal(token: Option<&Secret>, headers: &HeaderMap) -> Option<Response> {
    let Some(token) = token else {
        return Some(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::AdminNotConfigured,
            "no admin token is set on the bridge: log in as an admin user (POST /api/v1/auth/login) \
             and send its access token, or set NEXA_ADMIN_TOKEN_FILE (or NEXA_ADMIN_TOKEN)",
        )
        .into_response());
    };
    if secret_matches(token, bearer(headers)) {
        return None;
    }
    Some(admin_unauthorized())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_exactly() {
        let s = Secret::new("0123456789abcdef".into());
        assert!(secret_matches(&s, Some(b"0123456789abcdef")));
        assert!(!secret_matches(&s, Some(b"0123456789abcde")));
        assert!(!secret_matches(&s, Some(b"")));
        assert!(!secret_matches(&s, None));
    }

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
        h
    }

    #[test]
    fn the_admin_api_needs_the_bearer_token() {
        let token = Secret::new("0123456789abcdef".into());
        assert!(admin_refusal(Some(&token), &headers("Bearer 0123456789abcdef")).is_none());
        assert!(admin_refusal(Some(&token), &headers("bearer  0123456789abcdef ")).is_none());
        for bad in [
            "Bearer 0123456789abcdeX",
            "Basic 0123456789abcdef",
            "Bearer",
            "",
        ] {
            let resp = admin_refusal(Some(&token), &headers(bad)).unwrap();
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{bad:?}");
            assert!(resp.headers().contains_key(header::WWW_AUTHENTICATE));
        }
        let resp = admin_refusal(Some(&token), &HeaderMap::new()).unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        let resp = admin_refusal(None, &headers("Bearer 0123456789abcdef")).unwrap();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
