//! The feedback resources of deploymentBase, cancelAction and confirmationBase: parse the
//! body strictly the way hawkBit's `DdiActionFeedback` / `DdiConfirmationFeedback` are
//! read (400 for anything malformed, unknown members ignored), then let the state decide
//! and answer 200 or the refusal's status.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::Answer;
use super::auth::authenticate;
use super::request::{bad_request, json_body, known, parse_id, refusal};
use crate::hawkbit::Shared;
use crate::hawkbit::state::{ActionFeedback, ConfirmationFeedback};

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

pub(super) async fn deployment_feedback(
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

pub(super) async fn cancel_feedback(
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

pub(super) async fn confirmation_feedback(
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
