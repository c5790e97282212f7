//! The DDI handlers: parse and check a request the way hawkBit does (authentication, then
//! content negotiation, then the body, then the entities), ask `state.rs` what happens, and
//! answer with hawkBit's status codes and bodies.

// Handlers answer with a `Response` either way; `Result<_, Response>` lets them use `?`.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Value, json};

use super::content::{
    DownloadBody, Misbehaviour, Part, RangeAsk, StoredArtifact, http_date, md5_hex, parse_range,
};
use super::spec::HeaderAuth;
use super::state::{ActionFeedback, Base, ConfirmationFeedback, Refusal};
use super::{Inner, Shared, error};

type Answer = Result<Response, Response>;

const HAL_JSON: &str = "application/hal+json";
const JSON: &str = "application/json";
const EXECUTIONS: [&str; 8] = [
    "closed",
    "proceeding",
    "canceled",
    "scheduled",
    "rejected",
    "resumed",
    "downloaded",
    "download",
];
const FINISHED: [&str; 3] = ["success", "failure", "none"];
const BOUNDARY: &str = "NEXA_FAKE_HAWKBIT_BYTERANGES";

pub(crate) fn routes() -> Router<Shared> {
    const C: &str = "/{tenant}/controller/v1/{cid}";
    Router::new()
        .route(C, get(poll))
        .route(&format!("{C}/configData"), put(config_data))
        .route(&format!("{C}/deploymentBase/{{aid}}"), get(deployment_base))
        .route(
            &format!("{C}/deploymentBase/{{aid}}/feedback"),
            post(deployment_feedback),
        )
        .route(&format!("{C}/cancelAction/{{aid}}"), get(cancel_action))
        .route(
            &format!("{C}/cancelAction/{{aid}}/feedback"),
            post(cancel_feedback),
        )
        .route(&format!("{C}/installedBase"), put(installed_version))
        .route(&format!("{C}/installedBase/{{aid}}"), get(installed_base))
        .route(&format!("{C}/confirmationBase"), get(confirmation_state))
        .route(
            &format!("{C}/confirmationBase/activateAutoConfirm"),
            post(activate_auto_confirm),
        )
        .route(
            &format!("{C}/confirmationBase/deactivateAutoConfirm"),
            post(deactivate_auto_confirm),
        )
        .route(
            &format!("{C}/confirmationBase/{{aid}}"),
            get(confirmation_base),
        )
        .route(
            &format!("{C}/confirmationBase/{{aid}}/feedback"),
            post(confirmation_feedback),
        )
        .route(
            &format!("{C}/softwaremodules/{{sm}}/artifacts"),
            get(artifact_list),
        )
        .route(
            &format!("{C}/softwaremodules/{{sm}}/artifacts/{{file}}"),
            get(artifact),
        )
        .route("/external/{sm}/{file}", get(external_artifact))
}

// ---------------------------------------------------------------------------------------
// Checks shared by the handlers.

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn base(g: &Inner, headers: &HeaderMap, cid: &str) -> Base {
    let host = header_str(headers, "host").unwrap_or("localhost");
    Base {
        origin: format!("http://{host}"),
        tenant: g.ddi.tenant.clone(),
        controller_id: cid.to_owned(),
    }
}

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
fn authenticate(
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

/// The media type of a JSON answer from `Accept`, or 406. The fake speaks no CBOR.
fn negotiate(headers: &HeaderMap) -> Result<&'static str, Response> {
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
fn json_body(headers: &HeaderMap, body: &Bytes) -> Result<Value, Response> {
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

fn bad_request(message: &str) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "hawkbit.server.error.rest.body.notReadable",
        message,
    )
}

fn not_found(what: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "hawkbit.server.error.repo.entitiyNotFound",
        &format!("{what} not found"),
    )
}

fn known(g: &Inner, cid: &str) -> Result<(), Response> {
    if g.targets.contains_key(cid) {
        Ok(())
    } else {
        Err(not_found(&format!("target {cid}")))
    }
}

/// Poll and confirmationBase register unknown controllers (gateway, certificate and
/// anonymous authentication let them through) unless the test turned that off.
fn find_or_register(g: &mut Inner, cid: &str) -> Result<(), Response> {
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

fn parse_id(s: &str) -> Result<u64, Response> {
    s.parse()
        .map_err(|_| bad_request(&format!("{s} is not an id")))
}

fn history_param(q: &HashMap<String, String>) -> Result<i64, Response> {
    q.get("actionHistory").map_or(Ok(0), |v| {
        v.parse()
            .map_err(|_| bad_request("actionHistory must be a number"))
    })
}

/// Whether an `If-None-Match` / `If-Match` list names `tag` (unquoted).
fn etag_listed(list: &str, tag: &str) -> bool {
    list.split(',').any(|t| {
        let t = t.trim();
        t == "*" || t.trim_start_matches("W/").trim_matches('"') == tag
    })
}

/// 200 with the JSON body and a shallow ETag (`"0"` + md5 of the body, as Spring's filter
/// makes it); 304 when `If-None-Match` names it.
fn json_ok(headers: &HeaderMap, media: &'static str, body: &Value) -> Response {
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

fn refusal(r: Refusal) -> Response {
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

fn int32(v: Option<&Value>) -> Result<Option<i64>, Response> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .filter(|n| i32::try_from(*n).is_ok())
            .map(Some)
            .ok_or_else(|| bad_request("expected a 32-bit integer")),
    }
}

fn strings(v: Option<&Value>) -> Result<Vec<String>, Response> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|d| {
                d.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| bad_request("details must be strings"))
            })
            .collect(),
        Some(_) => Err(bad_request("details must be an array")),
    }
}

/// A `DdiActionFeedback`: `status.execution` and `status.result.finished` required, the
/// rest optional; unknown members ignored.
fn parse_action_feedback(body: Value) -> Result<ActionFeedback, Response> {
    let status = body
        .get("status")
        .filter(|s| s.is_object())
        .ok_or_else(|| bad_request("status is required"))?;
    let execution = status
        .get("execution")
        .and_then(Value::as_str)
        .filter(|e| EXECUTIONS.contains(e))
        .ok_or_else(|| bad_request("status.execution is missing or unknown"))?
        .to_owned();
    let result = status
        .get("result")
        .filter(|r| r.is_object())
        .ok_or_else(|| bad_request("status.result is required"))?;
    let finished = result
        .get("finished")
        .and_then(Value::as_str)
        .filter(|f| FINISHED.contains(f))
        .ok_or_else(|| bad_request("status.result.finished is missing or unknown"))?
        .to_owned();
    let progress = match result.get("progress") {
        None | Some(Value::Null) => None,
        Some(p) if p.is_object() => {
            let cnt = int32(p.get("cnt"))?
                .ok_or_else(|| bad_request("status.result.progress.cnt is required"))?;
            Some((cnt, int32(p.get("of"))?))
        }
        Some(_) => return Err(bad_request("status.result.progress must be an object")),
    };
    let timestamp = match body.get("timestamp") {
        None | Some(Value::Null) => None,
        Some(t) => Some(
            t.as_i64()
                .ok_or_else(|| bad_request("timestamp must be epoch milliseconds"))?,
        ),
    };
    Ok(ActionFeedback {
        progress,
        code: int32(status.get("code"))?,
        details: strings(status.get("details"))?,
        timestamp,
        execution,
        finished,
        body,
    })
}

// ---------------------------------------------------------------------------------------
// Poll, configData.

async fn poll(
    State(s): State<Shared>,
    Path((tenant, cid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Answer {
    let mut guard = s.lock().unwrap();
    let g = &mut *guard;
    authenticate(g, &tenant, &cid, &headers, false)?;
    let media = negotiate(&headers)?;
    find_or_register(g, &cid)?;
    let b = base(g, &headers, &cid);
    let body = g.ddi.poll_body(&b);
    Ok(json_ok(&headers, media, &body))
}

#[derive(Debug, PartialEq, Eq)]
enum Mode {
    Merge,
    Replace,
    Remove,
}

async fn config_data(
    State(s): State<Shared>,
    Path((tenant, cid)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let mut guard = s.lock().unwrap();
    let g = &mut *guard;
    authenticate(g, &tenant, &cid, &headers, false)?;
    let v = json_body(&headers, &body)?;
    let Some(Value::Object(data)) = v.get("data") else {
        return Err(bad_request("data is required"));
    };
    if data.is_empty() {
        return Err(bad_request("data must not be empty"));
    }
    let mut entries: Vec<(String, Option<String>)> = Vec::new();
    for (k, v) in data {
        let value = match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Null => None,
            _ => return Err(bad_request("attribute values must be strings")),
        };
        entries.push((k.clone(), value));
    }
    let mode = match v.get("mode") {
        None | Some(Value::Null) => Mode::Merge,
        Some(Value::String(m)) if m == "merge" => Mode::Merge,
        Some(Value::String(m)) if m == "replace" => Mode::Replace,
        Some(Value::String(m)) if m == "remove" => Mode::Remove,
        Some(_) => return Err(bad_request("mode must be merge, replace or remove")),
    };
    known(g, &cid)?;
    let c = g.ddi.controller(&cid);
    if mode == Mode::Replace {
        c.attributes.clear();
    }
    for (k, value) in entries {
        match (&mode, value) {
            (Mode::Remove, _) | (_, None) => {
                c.attributes.remove(&k);
            }
            (_, Some(value)) => {
                c.attributes.insert(k, value);
            }
        }
    }
    if mode != Mode::Remove {
        c.request_attributes = false;
    }
    Ok(StatusCode::OK.into_response())
}

// ---------------------------------------------------------------------------------------
// deploymentBase, cancelAction, installedBase.

async fn deployment_base(
    State(s): State<Shared>,
    Path((tenant, cid, aid)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Answer {
    let mut guard = s.lock().unwrap();
    let g = &mut *guard;
    authenticate(g, &tenant, &cid, &headers, false)?;
    let media = negotiate(&headers)?;
    let aid = parse_id(&aid)?;
    let history = history_param(&q)?;
    known(g, &cid)?;
    let b = base(g, &headers, &cid);
    let a = g
        .ddi
        .action_of(&cid, aid)
        .ok_or_else(|| not_found(&format!("action {aid}")))?;
    use super::spec::ActionState::*;
    if matches!(a.state, Canceling | Canceled | WaitingForConfirmation) {
        return Err(StatusCode::NOT_FOUND.into_response());
    }
    let body = g.ddi.action_body(a, &b, "deployment", history);
    g.ddi.retrieved(aid, "the update action");
    Ok(json_ok(&headers, media, &body))
}

async fn deployment_feedback(
    State(s): State<Shared>,
    Path((tenant, cid, aid)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let mut guard = s.lock().unwrap();
    let g = &mut *guard;
    authenticate(g, &tenant, &cid, &headers, false)?;
    let fb = parse_action_feedback(json_body(&headers, &body)?)?;
    let aid = parse_id(&aid)?;
    known(g, &cid)?;
    g.ddi.deployment_feedback(&cid, aid, &fb).map_err(refusal)?;
    Ok(StatusCode::OK.into_response())
}

async fn cancel_action(
    State(s): State<Shared>,
    Path((tenant, cid, aid)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Answer {
    let mut guard = s.lock().unwrap();
    let g = &mut *guard;
    authenticate(g, &tenant, &cid, &headers, false)?;
    let media = negotiate(&headers)?;
    let aid = parse_id(&aid)?;
    known(g, &cid)?;
    let a = g
        .ddi
        .action_of(&cid, aid)
        .ok_or_else(|| not_found(&format!("action {aid}")))?;
    use super::spec::ActionState::*;
    if !matches!(a.state, Canceling | Canceled) {
        return Err(StatusCode::NOT_FOUND.into_response());
    }
    let id = aid.to_string();
    let body = json!({ "id": id, "cancelAction": { "stopId": id } });
    g.ddi.retrieved(aid, "the cancel action");
    Ok(json_ok(&headers, media, &body))
}

async fn cancel_feedback(
    State(s): State<Shared>,
    Path((tenant, cid, aid)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let mut guard = s.lock().unwrap();
    let g = &mut *guard;
    authenticate(g, &tenant, &cid, &headers, false)?;
    let fb = parse_action_feedback(json_body(&headers, &body)?)?;
    let aid = parse_id(&aid)?;
    known(g, &cid)?;
    g.ddi.cancel_feedback(&cid, aid, &fb).map_err(refusal)?;
    Ok(StatusCode::OK.into_response())
}

async fn installed_base(
    State(s): State<Shared>,
    Path((tenant, cid, aid)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Answer {
    let mut guard = s.lock().unwrap();
    let g = &mut *guard;
    authenticate(g, &tenant, &cid, &headers, false)?;
    let media = negotiate(&headers)?;
    let aid = parse_id(&aid)?;
    let history = history_param(&q)?;
    known(g, &cid)?;
    let b = base(g, &headers, &cid);
    let a = g
        .ddi
        .action_of(&cid, aid)
        .ok_or_else(|| not_found(&format!("action {aid}")))?;
    use super::spec::ActionState::*;
    if a.state.is_active() || a.state == Canceled {
        return Err(StatusCode::NOT_FOUND.into_response());
    }
    let body = g.ddi.action_body(a, &b, "deployment", history);
    Ok(json_ok(&headers, media, &body))
}

async fn installed_version(
    State(s): State<Shared>,
    Path((tenant, cid)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let mut guard = s.lock().unwrap();
    let g = &mut *guard;
    authenticate(g, &tenant, &cid, &headers, false)?;
    let v = json_body(&headers, &body)?;
    let field = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad_request(&format!("{k} is required")))
    };
    let (name, version) = (field("name")?, field("version")?);
    known(g, &cid)?;
    match g.ddi.offline_version(&cid, name, version) {
        Ok(true) => Ok(StatusCode::CREATED.into_response()),
        Ok(false) => Ok(StatusCode::OK.into_response()),
        Err(_) => Err(not_found(&format!("distribution set {name}:{version}"))),
    }
}

// ---------------------------------------------------------------------------------------
// confirmationBase.

async fn confirmation_state(
    State(s): State<Shared>,
    Path((tenant, cid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Answer {
    let mut guard = s.lock().unwrap();
    let g = &mut *guard;
    authenticate(g, &tenant, &cid, &headers, false)?;
    let media = negotiate(&headers)?;
    find_or_register(g, &cid)?;
    let b = base(g, &headers, &cid);
    let body = g.ddi.confirmation_state(&b);
    Ok(json_ok(&headers, media, &body))
}

async fn confirmation_base(
    State(s): State<Shared>,
    Path((tenant, cid, aid)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Answer {
    let mut guard = s.lock().unwrap();
    let g = &mut *guard;
    authenticate(g, &tenant, &cid, &headers, false)?;
    let media = negotiate(&headers)?;
    let aid = parse_id(&aid)?;
    let history = history_param(&q)?;
    known(g, &cid)?;
    let b = base(g, &headers, &cid);
    let a = g
        .ddi
        .action_of(&cid, aid)
        .ok_or_else(|| not_found(&format!("action {aid}")))?;
    if a.state != super::spec::ActionState::WaitingForConfirmation {
        return Err(StatusCode::NOT_FOUND.into_response());
    }
    let body = g.ddi.action_body(a, &b, "confirmation", history);
    Ok(json_ok(&headers, media, &body))
}

async fn confirmation_feedback(
    State(s): State<Shared>,
    Path((tenant, cid, aid)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let mut guard = s.lock().unwrap();
    let g = &mut *guard;
    authenticate(g, &tenant, &cid, &headers, false)?;
    let v = json_body(&headers, &body)?;
    let confirmed = match v.get("confirmation").and_then(Value::as_str) {
        Some("confirmed") => true,
        Some("denied") => false,
        _ => return Err(bad_request("confirmation must be confirmed or denied")),
    };
    let fb = ConfirmationFeedback {
        confirmed,
        code: int32(v.get("code"))?,
        details: strings(v.get("details"))?,
        body: v,
    };
    let aid = parse_id(&aid)?;
    known(g, &cid)?;
    g.ddi
        .confirmation_feedback(&cid, aid, &fb)
        .map_err(refusal)?;
    Ok(StatusCode::OK.into_response())
}

async fn activate_auto_confirm(
    State(s): State<Shared>,
    Path((tenant, cid)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let mut guard = s.lock().unwrap();
    let g = &mut *guard;
    authenticate(g, &tenant, &cid, &headers, false)?;
    // The body is optional.
    let v = if body.is_empty() {
        Value::Null
    } else {
        json_body(&headers, &body)?
    };
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let (initiator, remark) = (text("initiator"), text("remark"));
    known(g, &cid)?;
    if g.ddi.activate_auto_confirm(&cid, initiator, remark) {
        Ok(StatusCode::OK.into_response())
    } else {
        Err(error(
            StatusCode::CONFLICT,
            "hawkbit.server.error.repo.autoConfirmationAlreadyActive",
            "auto-confirmation is already active",
        ))
    }
}

async fn deactivate_auto_confirm(
    State(s): State<Shared>,
    Path((tenant, cid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Answer {
    let mut guard = s.lock().unwrap();
    let g = &mut *guard;
    authenticate(g, &tenant, &cid, &headers, false)?;
    known(g, &cid)?;
    g.ddi.controller(&cid).auto_confirm = None;
    Ok(StatusCode::OK.into_response())
}

// ---------------------------------------------------------------------------------------
// Artifacts.

async fn artifact_list(
    State(s): State<Shared>,
    Path((tenant, cid, sm)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Answer {
    let mut guard = s.lock().unwrap();
    let g = &mut *guard;
    authenticate(g, &tenant, &cid, &headers, false)?;
    let media = negotiate(&headers)?;
    let sm = parse_id(&sm)?;
    known(g, &cid)?;
    let b = base(g, &headers, &cid);
    let body = g
        .ddi
        .artifacts_json(sm, &b)
        .ok_or_else(|| not_found(&format!("software module {sm}")))?;
    Ok(json_ok(&headers, media, &body))
}

fn find_artifact(g: &Inner, sm: u64, file: &str) -> Option<Arc<StoredArtifact>> {
    g.ddi
        .modules
        .get(&sm)?
        .artifacts
        .iter()
        .find(|a| a.filename == file)
        .cloned()
}

/// `If-Match` naming another content: 412.
fn check_if_match(headers: &HeaderMap, art: &StoredArtifact) -> Result<(), Response> {
    match header_str(headers, "if-match") {
        Some(list) if !etag_listed(list, &art.hashes.sha1) => {
            Err(StatusCode::PRECONDITION_FAILED.into_response())
        }
        _ => Ok(()),
    }
}

async fn artifact(
    State(s): State<Shared>,
    Path((tenant, cid, sm, file)): Path<(String, String, String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Answer {
    let mut guard = s.lock().unwrap();
    let g = &mut *guard;
    authenticate(g, &tenant, &cid, &headers, true)?;
    let sm = parse_id(&sm)?;
    known(g, &cid)?;
    if !g.ddi.modules.contains_key(&sm) {
        return Err(not_found(&format!("software module {sm}")));
    }
    let Some(art) = find_artifact(g, sm, &file) else {
        if let Some(name) = file.strip_suffix(".MD5SUM")
            && let Some(art) = find_artifact(g, sm, name)
        {
            return md5sum(g, &cid, sm, &art, uri.path());
        }
        return Err(StatusCode::NOT_FOUND.into_response());
    };
    check_if_match(&headers, &art)?;
    if !headers.contains_key(header::RANGE) {
        // A full download must belong to an open action; it is noted in its history.
        let action = g
            .ddi
            .download_action(&cid, sm)
            .ok_or_else(|| not_found(&format!("software module {sm} assigned to {cid}")))?;
        g.ddi.log_download(action, uri.path()).map_err(refusal)?;
    }
    let how = if method == Method::GET {
        g.ddi.take_download_fault(&art.filename)
    } else {
        Misbehaviour::default()
    };
    drop(guard);
    Ok(serve_artifact(art, &headers, how))
}

fn md5sum(g: &mut Inner, cid: &str, sm: u64, art: &StoredArtifact, path: &str) -> Answer {
    let action = g
        .ddi
        .download_action(cid, sm)
        .ok_or_else(|| not_found(&format!("software module {sm} assigned to {cid}")))?;
    g.ddi.log_download(action, path).map_err(refusal)?;
    let body = format!("{}  {}", art.hashes.md5, art.filename);
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/plain".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment;filename={}.MD5SUM", art.filename),
            ),
        ],
        body,
    )
        .into_response())
}

async fn external_artifact(
    State(s): State<Shared>,
    Path((sm, file)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
) -> Answer {
    if headers.contains_key(header::AUTHORIZATION) {
        // Like an object store handed a presigned URL plus foreign credentials.
        return Err(StatusCode::UNAUTHORIZED.into_response());
    }
    let mut guard = s.lock().unwrap();
    let g = &mut *guard;
    let sm = parse_id(&sm)?;
    let art = find_artifact(g, sm, &file)
        .filter(|a| a.external)
        .ok_or_else(|| StatusCode::NOT_FOUND.into_response())?;
    check_if_match(&headers, &art)?;
    let how = if method == Method::GET {
        g.ddi.take_download_fault(&art.filename)
    } else {
        Misbehaviour::default()
    };
    drop(guard);
    Ok(serve_artifact(art, &headers, how))
}

/// 200, 206 (one range, or `multipart/byteranges` for several) or 416, streamed.
fn serve_artifact(art: Arc<StoredArtifact>, headers: &HeaderMap, how: Misbehaviour) -> Response {
    let len = art.size();
    let etag = art.etag();
    let mut r = Response::builder()
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, &etag)
        .header(header::LAST_MODIFIED, http_date(art.created))
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment;filename={}", art.filename),
        )
        .header("x-content-type-options", "nosniff");
    // A Range counts only while If-Range (if any) still names this content.
    let range = header_str(headers, "range")
        .filter(|_| header_str(headers, "if-range").is_none_or(|v| v.trim() == etag));
    let (status, parts) = match range.map(|h| parse_range(h, len)) {
        None => {
            r = r.header(header::CONTENT_TYPE, "application/octet-stream");
            (StatusCode::OK, vec![content(&art, 0, len)])
        }
        Some(RangeAsk::Unsatisfiable) => {
            return r
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{len}"))
                .header(header::CONTENT_LENGTH, 0)
                .body(Body::empty())
                .expect("416 response");
        }
        Some(RangeAsk::Ranges(ranges)) if ranges.len() == 1 => {
            let (a, b) = ranges[0];
            r = r
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header(header::CONTENT_RANGE, format!("bytes {a}-{b}/{len}"));
            (StatusCode::PARTIAL_CONTENT, vec![content(&art, a, b + 1)])
        }
        Some(RangeAsk::Ranges(ranges)) => {
            r = r.header(
                header::CONTENT_TYPE,
                format!("multipart/byteranges; boundary={BOUNDARY}"),
            );
            let mut parts = Vec::new();
            for (i, (a, b)) in ranges.into_iter().enumerate() {
                let lead = if i == 0 { "" } else { "\r\n" };
                parts.push(Part::Raw(Bytes::from(format!(
                    "{lead}--{BOUNDARY}\r\nContent-Type: application/octet-stream\r\n\
                     Content-Range: bytes {a}-{b}/{len}\r\n\r\n"
                ))));
                parts.push(content(&art, a, b + 1));
            }
            parts.push(Part::Raw(Bytes::from(format!("\r\n--{BOUNDARY}--\r\n"))));
            (StatusCode::PARTIAL_CONTENT, parts)
        }
    };
    let body = DownloadBody::new(parts, how);
    r.status(status)
        .header(header::CONTENT_LENGTH, HeaderValue::from(body.len()))
        .body(Body::new(body))
        .expect("artifact response")
}

fn content(art: &Arc<StoredArtifact>, pos: u64, end: u64) -> Part {
    Part::Content {
        artifact: art.clone(),
        pos,
        end,
    }
}
