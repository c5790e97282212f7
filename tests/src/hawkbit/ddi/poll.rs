//! The controller base and configData: the poll (which registers unknown controllers
//! unless the test turned that off, and links what the device should do next) and the
//! attributes the device reports, merged, replaced or removed.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::Value;

use super::Answer;
use super::auth::authenticate;
use super::request::{bad_request, base, find_or_register, json_body, json_ok, known, negotiate};
use crate::hawkbit::Shared;

pub(super) async fn poll(
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

pub(super) async fn config_data(
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
