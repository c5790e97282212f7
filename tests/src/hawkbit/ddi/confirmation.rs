//! confirmationBase: the auto-confirm state with its links, the action waiting for the
//! device's confirmation, and switching auto-confirm on (409 when it already is) and off.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::Value;

use super::Answer;
use super::auth::authenticate;
use super::request::{
    base, find_or_register, history_param, json_body, json_ok, known, negotiate, read_action,
};
use crate::hawkbit::{Shared, error};

pub(super) async fn confirmation_state(
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

pub(super) async fn confirmation_base(
    State(s): State<Shared>,
    Path((tenant, cid, aid)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Answer {
    let mut guard = s.lock().unwrap();
    let g = &mut *guard;
    let (media, aid) = read_action(g, &tenant, &cid, &aid, &headers, |st| {
        st == crate::hawkbit::spec::ActionState::WaitingForConfirmation
    })?;
    let history = history_param(&q)?;
    let b = base(g, &headers, &cid);
    let a = g.ddi.action_of(&cid, aid).expect("checked by read_action");
    let body = g.ddi.action_body(a, &b, "confirmation", history);
    Ok(json_ok(&headers, media, &body))
}

pub(super) async fn activate_auto_confirm(
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

pub(super) async fn deactivate_auto_confirm(
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
