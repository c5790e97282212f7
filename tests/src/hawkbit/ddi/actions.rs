//! What the device reads about its actions: deploymentBase (not while the action waits
//! for confirmation or is canceling), cancelAction, installedBase of a closed action, and
//! the installed version a device reports on its own (`PUT installedBase`). Reading an
//! open action adds a RETRIEVED entry.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::Answer;
use super::auth::authenticate;
use super::request::{
    bad_request, base, history_param, json_body, json_ok, known, not_found, read_action,
};
use crate::hawkbit::Shared;

pub(super) async fn deployment_base(
    State(s): State<Shared>,
    Path((tenant, cid, aid)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Answer {
    use crate::hawkbit::spec::ActionState::*;
    let mut guard = s.lock().unwrap();
    let g = &mut *guard;
    let (media, aid) = read_action(g, &tenant, &cid, &aid, &headers, |st| {
        !matches!(st, Canceling | Canceled | WaitingForConfirmation)
    })?;
    let history = history_param(&q)?;
    let b = base(g, &headers, &cid);
    let a = g.ddi.action_of(&cid, aid).expect("checked by read_action");
    let body = g.ddi.action_body(a, &b, "deployment", history);
    g.ddi.retrieved(aid, "the update action");
    Ok(json_ok(&headers, media, &body))
}

pub(super) async fn cancel_action(
    State(s): State<Shared>,
    Path((tenant, cid, aid)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Answer {
    use crate::hawkbit::spec::ActionState::*;
    let mut guard = s.lock().unwrap();
    let g = &mut *guard;
    let (media, aid) = read_action(g, &tenant, &cid, &aid, &headers, |st| {
        matches!(st, Canceling | Canceled)
    })?;
    let id = aid.to_string();
    let body = json!({ "id": id, "cancelAction": { "stopId": id } });
    g.ddi.retrieved(aid, "the cancel action");
    Ok(json_ok(&headers, media, &body))
}

pub(super) async fn installed_base(
    State(s): State<Shared>,
    Path((tenant, cid, aid)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Answer {
    use crate::hawkbit::spec::ActionState::*;
    let mut guard = s.lock().unwrap();
    let g = &mut *guard;
    let (media, aid) = read_action(g, &tenant, &cid, &aid, &headers, |st| {
        !(st.is_active() || st == Canceled)
    })?;
    let history = history_param(&q)?;
    let b = base(g, &headers, &cid);
    let a = g.ddi.action_of(&cid, aid).expect("checked by read_action");
    let body = g.ddi.action_body(a, &b, "deployment", history);
    Ok(json_ok(&headers, media, &body))
}

pub(super) async fn installed_version(
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
