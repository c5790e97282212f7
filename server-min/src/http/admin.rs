//! The admin API (`/api/v1/…`, admin role): sites and enrollment keys, pending enrollments,
//! devices, the audit log. Decommission is `DELETE /api/v1/devices/{id}` (also at its older
//! path, `DELETE /api/devices/{id}`).

use std::net::SocketAddr;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use nexa_proto::ErrorCode;
use serde::Deserialize;

use super::AppState;
use super::auth::require_admin;
use super::body::read_json;
use super::error::{ApiError, internal};
use crate::admin::pending::Verdict;
use crate::admin::{Actor, AdminError};
use crate::db::audit::{self, AuditFilter};
use crate::db::devices;

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        use StatusCode as S;
        let msg = e.to_string();
        match e {
            AdminError::InvalidField { .. } | AdminError::Password(_) => {
                ApiError::new(S::UNPROCESSABLE_ENTITY, ErrorCode::InvalidField, msg)
            }
            AdminError::SiteUnknown(_) => ApiError::new(S::NOT_FOUND, ErrorCode::SiteUnknown, msg),
            AdminError::SiteExists(_) => ApiError::new(S::CONFLICT, ErrorCode::SiteExists, msg),
            AdminError::SiteInUse(_) => ApiError::new(S::CONFLICT, ErrorCode::SiteInUse, msg),
            AdminError::PendingUnknown(_) => {
                ApiError::new(S::NOT_FOUND, ErrorCode::PendingUnknown, msg)
            }
            AdminError::PendingDecided { .. } => {
                ApiError::new(S::CONFLICT, ErrorCode::PendingDecided, msg)
            }
            AdminError::UserExists(_) | AdminError::UserUnknown(_) => {
                ApiError::new(S::UNPROCESSABLE_ENTITY, ErrorCode::InvalidField, msg)
            }
            AdminError::Random(_) | AdminError::Db(_) | AdminError::Task(_) => internal(&e),
        }
    }
}

/// The admin caller as audited, or the refusal.
async fn admin(state: &AppState, peer: SocketAddr, headers: &HeaderMap) -> Result<Actor, Response> {
    match require_admin(state.admin.token.as_ref(), &state.tokens, headers).await {
        Ok(p) => Ok(Actor {
            name: p.actor(),
            source: Some(peer.ip().to_string()),
        }),
        Err(refused) => {
            tracing::warn!(%peer, status = refused.status().as_u16(), "admin call refused");
            Err(refused)
        }
    }
}

fn path_text(path: Result<Path<String>, PathRejection>, what: &str) -> Result<String, ApiError> {
    path.map(|Path(p)| p).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidField,
            format!("{what} in the path is unreadable: {e}"),
        )
    })
}

fn query_of<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(v)| v).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::InvalidField,
            format!("query: {e}"),
        )
    })
}

fn done<T: serde::Serialize>(status: StatusCode, r: Result<T, AdminError>) -> Response {
    match r {
        Ok(v) => (status, Json(v)).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

macro_rules! admin_or_return {
    ($state:expr, $peer:expr, $headers:expr) => {
        match admin(&$state, $peer, &$headers).await {
            Ok(actor) => actor,
            Err(refused) => return refused,
        }
    };
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSite {
    site_code: String,
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SitePatch {
    name: Option<String>,
}

pub async fn list_sites(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    admin_or_return!(state, peer, headers);
    done(StatusCode::OK, state.admin_ops.list_sites().await)
}

/// 201 with the first enrollment key in plaintext: the only time it is shown.
pub async fn create_site(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let actor = admin_or_return!(state, peer, headers);
    let new: NewSite = match read_json(&headers, body, state.max_body, "site").await {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    done(
        StatusCode::CREATED,
        state
            .admin_ops
            .create_site(&new.site_code, new.name.as_deref(), &actor)
            .await,
    )
}

pub async fn get_site(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    admin_or_return!(state, peer, headers);
    let code = match path_text(path, "site code") {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    done(StatusCode::OK, state.admin_ops.site(&code).await)
}

pub async fn patch_site(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let actor = admin_or_return!(state, peer, headers);
    let code = match path_text(path, "site code") {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let patch: SitePatch = match read_json(&headers, body, state.max_body, "site change").await {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    done(
        StatusCode::OK,
        state
            .admin_ops
            .rename_site(&code, patch.name.as_deref(), &actor)
            .await,
    )
}

pub async fn delete_site(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let actor = admin_or_return!(state, peer, headers);
    let code = match path_text(path, "site code") {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    match state.admin_ops.delete_site(&code, &actor).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// The new key in plaintext, once; the old one stops working in the same transaction.
pub async fn rotate_key(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let actor = admin_or_return!(state, peer, headers);
    let code = match path_text(path, "site code") {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    done(
        StatusCode::OK,
        state.admin_ops.rotate_key(&code, &actor).await,
    )
}

/// Version and fingerprint of the active key; never the key.
pub async fn key_info(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    admin_or_return!(state, peer, headers);
    let code = match path_text(path, "site code") {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    match state.admin_ops.key_info(&code).await {
        Ok(Some(info)) => Json(info).into_response(),
        Ok(None) => ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("site {code:?} has no active enrollment key; rotate to mint one"),
        )
        .into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingQuery {
    state: Option<String>,
}

pub async fn list_pending(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    query: Result<Query<PendingQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    admin_or_return!(state, peer, headers);
    let q = match query_of(query) {
        Ok(q) => q,
        Err(r) => return r.into_response(),
    };
    done(
        StatusCode::OK,
        state.admin_ops.list_pending(q.state.as_deref()).await,
    )
}

async fn decide(
    state: AppState,
    peer: SocketAddr,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    verdict: Verdict,
) -> Response {
    let actor = admin_or_return!(state, peer, headers);
    let id = match path_text(path, "pending enrollment id") {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    done(
        StatusCode::OK,
        state.admin_ops.decide_pending(&id, verdict, &actor).await,
    )
}

pub async fn approve(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    decide(state, peer, path, headers, Verdict::Approve).await
}

pub async fn reject(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    decide(state, peer, path, headers, Verdict::Reject).await
}

pub async fn list_devices(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    admin_or_return!(state, peer, headers);
    let rows = async {
        let mut conn = state.admin_ops.db().acquire().await?;
        devices::list(&mut conn).await
    }
    .await
    .map_err(AdminError::from);
    done(StatusCode::OK, rows)
}

pub async fn audit_log(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    query: Result<Query<AuditFilter>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    admin_or_return!(state, peer, headers);
    let filter = match query_of(query) {
        Ok(q) => q,
        Err(r) => return r.into_response(),
    };
    let rows = async {
        let mut conn = state.admin_ops.db().acquire().await?;
        audit::query(&mut conn, &filter).await
    }
    .await
    .map_err(AdminError::from);
    done(StatusCode::OK, rows)
}
