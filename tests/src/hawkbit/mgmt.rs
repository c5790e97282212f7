//! The Management API part of the fake: the target table Nexa's bridge provisions.
//!
//! - HTTP Basic authentication on every call: 401 without or with wrong credentials;
//! - `POST /rest/v1/targets`: `Content-Type: application/json` or 415; the body must be a
//!   JSON array of objects with `controllerId` and `name` (400 otherwise, also for
//!   whitespace in `controllerId`); 409 if any controller id already exists, and then nothing
//!   is created; else 201 with the created targets, a `securityToken` generated when none
//!   was given;
//! - `GET /rest/v1/targets/{id}`: 200 with the target, or 404;
//! - `PUT /rest/v1/targets/{id}`: a JSON object whose `name`, `description` and
//!   `securityToken` replace the target's (others are ignored); 200 with the target, 404, or
//!   400 for a body that is not an object or an empty token;
//! - `DELETE /rest/v1/targets/{id}`: 204, or 404.
//!
//! Errors carry hawkBit's body shape `{"exceptionClass","errorCode","message"}`. A test can
//! queue failures (`fail_next`) to play an unavailable or refusing hawkBit.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::{PASSWORD, Shared, Target, USER};

pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({
            "exceptionClass": "org.eclipse.hawkbit.repository.exception.Fake",
            "errorCode": code,
            "message": message,
        })),
    )
        .into_response()
}

/// Basic auth, then any queued failure. `Some` is the response to send instead.
fn gate(inner: &Shared, headers: &HeaderMap) -> Option<Response> {
    let expected = format!("Basic {}", STANDARD.encode(format!("{USER}:{PASSWORD}")));
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let mut g = inner.lock().unwrap();
    if presented != Some(expected.as_str()) {
        g.unauthorized += 1;
        return Some(
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Basic realm=\"hawkBit\"")],
            )
                .into_response(),
        );
    }
    let status = g.failures.pop_front()?;
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Some(error(
        status,
        "hawkbit.server.error.fake",
        "injected failure",
    ))
}

fn target_json(t: &Target, request_attributes: bool) -> Value {
    json!({
        "controllerId": t.controller_id,
        "name": t.name,
        "description": t.description,
        "securityToken": t.security_token,
        "updateStatus": "registered",
        "requestAttributes": request_attributes,
        "_links": { "self": { "href": format!("/rest/v1/targets/{}", t.controller_id) } },
    })
}

pub(crate) async fn create_targets(
    State(inner): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(r) = gate(&inner, &headers) {
        return r;
    }
    inner.lock().unwrap().create_calls += 1;
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    if !matches!(
        json_type.as_deref(),
        Some("application/json" | "application/hal+json")
    ) {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "hawkbit.server.error.rest.body.notReadable",
            "content type not supported",
        );
    }
    let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "hawkbit.server.error.rest.body.notReadable",
            "the body must be a JSON array of targets",
        );
    };
    let mut wanted = Vec::with_capacity(items.len());
    for item in &items {
        let field = |k: &str| item.get(k).and_then(Value::as_str).map(str::to_owned);
        let (Some(controller_id), Some(name)) = (field("controllerId"), field("name")) else {
            return error(
                StatusCode::BAD_REQUEST,
                "hawkbit.server.error.repo.constraintViolation",
                "controllerId and name are required",
            );
        };
        if controller_id.is_empty() || controller_id.contains(char::is_whitespace) {
            return error(
                StatusCode::BAD_REQUEST,
                "hawkbit.server.error.repo.constraintViolation",
                "controllerId must not be empty or contain whitespace",
            );
        }
        let request_attributes = item
            .get("requestAttributes")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        wanted.push((
            controller_id,
            name,
            field("description"),
            field("securityToken"),
            request_attributes,
        ));
    }
    let mut g = inner.lock().unwrap();
    if let Some((id, ..)) = wanted.iter().find(|(id, ..)| g.targets.contains_key(id)) {
        return error(
            StatusCode::CONFLICT,
            "hawkbit.server.error.repo.entitiyAlreayExists",
            &format!("target {id} already exists"),
        );
    }
    let mut created = Vec::new();
    for (controller_id, name, description, token, request_attributes) in wanted {
        let security_token = token.unwrap_or_else(|| g.token());
        let t = Target {
            controller_id: controller_id.clone(),
            name,
            description,
            security_token,
        };
        created.push(target_json(&t, request_attributes));
        g.ddi.controller(&controller_id).request_attributes = request_attributes;
        g.targets.insert(controller_id, t);
    }
    (StatusCode::CREATED, axum::Json(Value::Array(created))).into_response()
}

pub(crate) async fn get_target(
    State(inner): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = gate(&inner, &headers) {
        return r;
    }
    let g = inner.lock().unwrap();
    match g.targets.get(&id) {
        Some(t) => {
            let requested = g
                .ddi
                .controllers
                .get(&id)
                .is_none_or(|c| c.request_attributes);
            axum::Json(target_json(t, requested)).into_response()
        }
        None => error(
            StatusCode::NOT_FOUND,
            "hawkbit.server.error.repo.entitiyNotFound",
            &format!("target {id} not found"),
        ),
    }
}

pub(crate) async fn update_target(
    State(inner): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if let Some(r) = gate(&inner, &headers) {
        return r;
    }
    inner.lock().unwrap().update_calls += 1;
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "hawkbit.server.error.rest.body.notReadable",
            "the body must be a JSON object",
        );
    };
    let text = |k: &str| fields.get(k).and_then(Value::as_str).map(str::to_owned);
    if text("securityToken").is_some_and(|t| t.trim().is_empty()) {
        return error(
            StatusCode::BAD_REQUEST,
            "hawkbit.server.error.repo.constraintViolation",
            "securityToken must not be empty",
        );
    }
    let mut g = inner.lock().unwrap();
    let requested = g
        .ddi
        .controllers
        .get(&id)
        .is_none_or(|c| c.request_attributes);
    let Some(t) = g.targets.get_mut(&id) else {
        return error(
            StatusCode::NOT_FOUND,
            "hawkbit.server.error.repo.entitiyNotFound",
            &format!("target {id} not found"),
        );
    };
    if let Some(name) = text("name") {
        t.name = name;
    }
    if let Some(description) = text("description") {
        t.description = Some(description);
    }
    if let Some(token) = text("securityToken") {
        t.security_token = token;
    }
    axum::Json(target_json(t, requested)).into_response()
}

pub(crate) async fn delete_target(
    State(inner): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = gate(&inner, &headers) {
        return r;
    }
    let mut g = inner.lock().unwrap();
    g.delete_calls += 1;
    match g.targets.remove(&id) {
        Some(_) => {
            g.ddi.controllers.remove(&id);
            g.deleted.push(id);
            StatusCode::NO_CONTENT.into_response()
        }
        None => error(
            StatusCode::NOT_FOUND,
            "hawkbit.server.error.repo.entitiyNotFound",
            &format!("target {id} not found"),
        ),
    }
}
