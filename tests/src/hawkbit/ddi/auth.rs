//! Who may call: hawkBit's DDI authentication as the tenant configures it — target token,
//! gateway token, a reverse proxy's certificate verdict in headers, anonymous access — and
//! the tenant of the path. Anything else is counted and answered 401 without a body.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::request::header_str;
use crate::hawkbit::Inner;
use crate::hawkbit::spec::HeaderAuth;

/// `<scheme> <credentials>` with the scheme compared case-insensitively and the
/// credentials verbatim (a second space or a trailing one is part of them).
fn credentials<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (s, rest) = value.split_once(' ')?;
    s.eq_ignore_ascii_case(scheme).then_some(rest)
}

/// The reverse proxy's verdict: controller id header equal to the path's, and one trusted
/// authority among the authority headers.
fn proxy_headers_ok(h: &HeaderAuth, cid: &str, headers: &HeaderMap) -> bool {
    let get = |name: &str| header_str(headers, name).map(str::trim);
    let (id_header, numbered, single, first) = if h.legacy_names {
        ("x-ssl-client-cn", "x-ssl-issuer-hash-", None, 1)
    } else {
        ("x-controller-id", "x-authority-", Some("x-authority"), 0)
    };
    if get(id_header) != Some(cid) {
        return false;
    }
    let mut values: Vec<String> = Vec::new();
    if let Some(name) = single {
        for v in headers.get_all(name) {
            if let Ok(v) = v.to_str() {
                values.extend(v.split([',', ';']).map(|s| s.trim().to_owned()));
            }
        }
    }
    // Numbered headers start at 0 or 1 and stop at the first gap.
    let mut i = if get(&format!("{numbered}{first}")).is_some() {
        first
    } else {
        1
    };
    while let Some(v) = get(&format!("{numbered}{i}")) {
        values.push(v.to_owned());
        i += 1;
    }
    values
        .iter()
        .any(|v| h.authorities.iter().any(|a| a.eq_ignore_ascii_case(v)))
}

/// Tenant and credentials; 401 without a body otherwise, as hawkBit's security filters
/// answer.
pub(super) fn authenticate(
    g: &mut Inner,
    tenant: &str,
    cid: &str,
    headers: &HeaderMap,
    download: bool,
) -> Result<(), Response> {
    let ddi = &g.ddi;
    let auth = &ddi.auth;
    let mut ok = false;
    if tenant.eq_ignore_ascii_case(&ddi.tenant) {
        if let Some(value) = header_str(headers, "authorization") {
            if auth.target_token
                && let Some(token) = credentials(value, "TargetToken")
                && g.targets
                    .get(cid)
                    .is_some_and(|t| t.security_token == token)
            {
                ok = true;
            }
            if let Some(key) = &auth.gateway_token
                && credentials(value, "GatewayToken") == Some(key.as_str())
            {
                ok = true;
            }
        }
        if let Some(h) = &auth.header
            && proxy_headers_ok(h, cid, headers)
        {
            ok = true;
        }
        if auth.anonymous || (download && auth.anonymous_download) {
            ok = true;
        }
    }
    if ok {
        Ok(())
    } else {
        g.ddi.unauthorized += 1;
        Err(StatusCode::UNAUTHORIZED.into_response())
    }
}
