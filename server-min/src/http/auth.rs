//! Shared-secret checks: the webhook's header secret and the admin API's bearer token.
//!
//! Secrets are compared as SHA-256 digests, so the time taken says nothing about how much of
//! a presented value matched.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nexa_proto::ErrorCode;
use sha2::{Digest, Sha256};

use super::error::ApiError;
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

/// The refusal of a call to the admin API, if it is refused: 503 `admin_not_configured`
/// without a configured token, 401 `admin_unauthorized` (with `WWW-Authenticate: Bearer`) for
/// a missing or wrong one.
pub(crate) fn admin_refusal(token: Option<&Secret>, headers: &HeaderMap) -> Option<Response> {
    let Some(token) = token else {
        return Some(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::AdminNotConfigured,
            "the admin API is off: set NEXA_ADMIN_TOKEN_FILE (or NEXA_ADMIN_TOKEN) on the bridge",
        )
        .into_response());
    };
    if secret_matches(token, bearer(headers)) {
        return None;
    }
    let mut resp = ApiError::new(
        StatusCode::UNAUTHORIZED,
        ErrorCode::AdminUnauthorized,
        "missing or wrong admin token: send Authorization: Bearer <token>",
    )
    .into_response();
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"nexa-admin\""),
    );
    Some(resp)
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
