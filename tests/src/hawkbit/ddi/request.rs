//! The checks and answers every DDI handler shares: content negotiation (406), JSON
//! bodies (415 / 400), ids and query parameters, whether the target exists (or is
//! registered on the fly), the link base of the request, JSON answers with Spring's
//! shallow ETag and 304, and the mapping of a refused feedback to its status.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::hawkbit::content::md5_hex;
use crate::hawkbit::state::{Base, Refusal};
use crate::hawkbit::{Inner, error};

const HAL_JSON: &str = "application/hal+json";

const JSON: &str = "application/json";

pub(super) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

pub(super) fn base(g: &Inner, headers: &HeaderMap, cid: &str) -> Base {
    let host = header_str(headers, "host").unwrap_or("localhost");
    Base {
        origin: format!("http://{host}"),
        tenant: g.ddi.tenant.clone(),
        controller_id: cid.to_owned(),
    }
}

/// The media type of a JSON answer from `Accept`, or 406. The fake speaks no CBOR.
pub(super) fn negotiate(headers: &HeaderMap) -> Result<&'static str, Response> {
    let Some(accept) = header_str(headers, "accept") else {
        return Ok(HAL_JSON);
    };
    let mut ranges: Vec<(f32, String)> = accept
        .split(',')
        .filter_map(|r| {
            let mut parts = r.split(';');
            let media = parts.next()?.trim().to_ascii_lowercase();
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.parse().ok())
                .unwrap_or(1.0);
            Some((q, media))
        })
        .collect();
    ranges.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (q, media) in ranges {
        if q <= 0.0 {
            continue;
        }
        match media.as_str() {
            "application/hal+json" | "application/*" | "*/*" => return Ok(HAL_JSON),
            "application/json" => return Ok(JSON),
            _ => {}
        }
    }
    Err(StatusCode::NOT_ACCEPTABLE.into_response())
}

/// `Content-Type: application/json` (else 415) and a JSON body (else 400).
pub(super) fn json_body(headers: &HeaderMap, body: &Bytes) -> Result<Value, Response> {
    let essence = header_str(headers, "content-type").map(|v| {
        v.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    });
    if essence.as_deref() != Some(JSON) {
        return Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "hawkbit.server.error.rest.body.notReadable",
            "content type not supported",
        ));
    }
    serde_json::from_slice(body).map_err(|_| bad_request("the body is not readable JSON"))
}

pub(super) fn bad_request(message: &str) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "hawkbit.server.error.rest.body.notReadable",
        message,
    )
}

pub(super) fn not_found(what: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "hawkbit.server.error.repo.entitiyNotFound",
        &format!("{what} not found"),
    )
}

pub(super) fn known(g: &Inner, cid: &str) -> Result<(), Response> {
    if g.targets.contains_key(cid) {
        Ok(())
    } else {
        Err(not_found(&format!("target {cid}")))
    }
}

/// Poll and confirmationBase register unknown controllers (gateway, certificate and
/// anonymous authentication let them through) unless the test turned that off.
pub(super) fn find_or_register(g: &mut Inner, cid: &str) -> Result<(), Response> {
    if g.targets.contains_key(cid) {
        return Ok(());
    }
    if !g.ddi.auto_register {
        return Err(not_found(&format!("target {cid}")));
    }
    if cid.is_empty() || cid.len() > 256 || cid.contains(char::is_whitespace) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "hawkbit.server.error.repo.constraintViolation",
            "controllerId must be 1..256 characters without whitespace",
        ));
    }
    g.register_target(cid);
    Ok(())
}

pub(super) fn parse_id(s: &str) -> Result<u64, Response> {
    s.parse()
        .map_err(|_| bad_request(&format!("{s} is not an id")))
}

pub(super) fn history_param(q: &HashMap<String, String>) -> Result<i64, Response> {
    q.get("actionHistory").map_or(Ok(0), |v| {
        v.parse()
            .map_err(|_| bad_request("actionHistory must be a number"))
    })
}

/// Whether an `If-None-Match` / `If-Match` list names `tag` (unquoted).
pub(super) fn etag_listed(list: &str, tag: &str) -> bool {
    list.split(',').any(|t| {
        let t = t.trim();
        t == "*" || t.trim_start_matches("W/").trim_matches('"') == tag
    })
}

/// 200 with the JSON body and a shallow ETag (`"0"` + md5 of the body, as Spring's filter
/// makes it); 304 when `If-None-Match` names it.
pub(super) fn json_ok(headers: &HeaderMap, media: &'static str, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).expect("serialise JSON");
    let tag = format!("0{}", md5_hex(&bytes));
    let etag = format!("\"{tag}\"");
    if header_str(headers, "if-none-match").is_some_and(|l| etag_listed(l, &tag)) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, media.to_owned()),
            (header::ETAG, etag),
        ],
        bytes,
    )
        .into_response()
}

pub(super) fn refusal(r: Refusal) -> Response {
    match r {
        Refusal::NotFound => StatusCode::NOT_FOUND.into_response(),
        Refusal::Gone => StatusCode::GONE.into_response(),
        Refusal::NotCancelable => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "hawkbit.server.error.action.notCancelable",
            "only actions in canceling state accept cancel feedback",
        ),
        Refusal::Quota => error(
            StatusCode::TOO_MANY_REQUESTS,
            "hawkbit.server.error.quota.tooManyEntries",
            "too many status entries or messages for this action",
        ),
    }
}

/// What every read of one action shares: authentication, content negotiation, the action id
/// and the target. The action must exist and be in a state `readable` accepts; otherwise 404,
/// as hawkBit answers. The handler looks the action up again for its body.
pub(super) fn read_action(
    g: &mut Inner,
    tenant: &str,
    cid: &str,
    aid: &str,
    headers: &HeaderMap,
    readable: fn(crate::hawkbit::spec::ActionState) -> bool,
) -> Result<(&'static str, u64), Response> {
    super::auth::authenticate(g, tenant, cid, headers, false)?;
    let media = negotiate(headers)?;
    let aid = parse_id(aid)?;
    known(g, cid)?;
    let a = g
        .ddi
        .action_of(cid, aid)
        .ok_or_else(|| not_found(&format!("action {aid}")))?;
    if !readable(a.state) {
        return Err(StatusCode::NOT_FOUND.into_response());
    }
    Ok((media, aid))
}
