//! `DELETE /api/devices/{id}`: decommission a device (admin bearer token required).
//!
//! 200 with the report when every step is done; 502 with `Retry-After` and the same report
//! (plus the `decommission_incomplete` error) when a step failed; the next call completes it.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nexa_proto::ErrorCode;
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::auth::require_admin;
use super::error::{ApiError, internal};
use crate::config::Secret;
use crate::decommission::{DecommissionError, DecommissionService, Report, Request, RetryPolicy};

/// What the caller should wait before calling again after a failed step.
pub const RETRY_AFTER_S: u64 = 30;
/// Longest `reason` accepted.
const MAX_REASON: usize = 500;

/// The admin API's state.
#[derive(Debug)]
pub struct AdminApi {
    /// `None`: the admin API answers 503 `admin_not_configured`.
    pub token: Option<Secret>,
    pub decommission: DecommissionService,
}

#[derive(Debug, Deserialize)]
pub struct DeleteQuery {
    /// Why, for the audit trail.
    reason: Option<String>,
}

pub async fn delete_device(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<DeleteQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let principal = match require_admin(state.admin.token.as_ref(), &state.tokens, &headers).await {
        Ok(p) => p,
        Err(refused) => {
            tracing::warn!(%peer, status = refused.status().as_u16(), "admin call refused");
            return refused;
        }
    };
    decommission(&state, peer, path, query, principal.actor())
        .await
        .unwrap_or_else(|refused| *refused)
}

async fn decommission(
    state: &AppState,
    peer: SocketAddr,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<DeleteQuery>, QueryRejection>,
    actor: String,
) -> Result<Response, Box<Response>> {
    let id = super::path_device_id(path).map_err(|e| Box::new(e.into_response()))?;
    let invalid = |m: String| {
        Box::new(
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::InvalidField, m)
                .into_response(),
        )
    };
    let Query(query) = query.map_err(|e| invalid(format!("query: {e}")))?;
    if let Some(r) = &query.reason
        && (r.chars().count() > MAX_REASON || r.chars().any(char::is_control))
    {
        return Err(invalid(format!(
            "reason: at most {MAX_REASON} characters without control characters"
        )));
    }
    let req = Request {
        actor,
        source: Some(peer.ip().to_string()),
        reason: query.reason.filter(|r| !r.trim().is_empty()),
    };
    let report = state
        .admin
        .decommission
        .run(&id, &req, &RetryPolicy::HTTP)
        .await
        .map_err(|e| match e {
            DecommissionError::UnknownDevice(_) => ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::DeviceUnknown,
                e.to_string(),
            )
            .into_response(),
            DecommissionError::Db(_) => internal(&e).into_response(),
        })?;
    if report.complete {
        return Ok((StatusCode::OK, Json(report)).into_response());
    }
    Ok(incomplete(&report))
}

/// 502 with the report and the error contract's `error` object; `Retry-After` only when
/// every failure may heal by itself (a refusal needs the configuration fixed first).
fn incomplete(report: &Report) -> Response {
    let failed: Vec<&str> = report.failed().map(|s| s.step.as_str()).collect();
    let transient = report.only_transient_failures();
    let advice = if transient {
        "call again to complete it"
    } else {
        "a service refused a step (see each step's error); fix that, then call again"
    };
    let message = format!(
        "decommission of {} is incomplete: {} failed; {advice}",
        report.device_id,
        failed.join(", ")
    );
    let mut body = serde_json::to_value(report).unwrap_or_else(|_| json!({}));
    body["error"] = json!({ "code": ErrorCode::DecommissionIncomplete, "message": message });
    let mut resp = (StatusCode::BAD_GATEWAY, Json(body)).into_response();
    if transient {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S));
    }
    resp
}
