//! The HTTP API: routing, limits and the JSON error contract.

pub mod admin;
pub mod auth;
pub mod body;
pub mod crl;
pub mod decommission;
pub mod enroll;
pub mod error;
pub mod login;
pub mod renew;
pub mod webhook;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::routing::{delete, get, post};

use crate::admin::AdminService;
use crate::auth::limiter::EnrollLimiter;
use crate::auth::tokens::TokenService;
use crate::config::Secret;
use crate::connect::ConnectService;
use crate::enroll::EnrollService;
use crate::renew::RenewService;
use crate::wg::manager::GatewayHandle;
use axum::extract::Path;
use axum::extract::rejection::PathRejection;
use axum::http::StatusCode;
use error::ApiError;
use nexa_proto::{DeviceId, ErrorCode};

/// Shared state of the handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    pub enroll: Arc<EnrollService>,
    pub gateway: GatewayHandle,
    /// Largest accepted request body in bytes.
    pub max_body: usize,
    pub renew: Arc<RenewService>,
    /// Device connects reported by ThingsBoard.
    pub connect: Arc<ConnectService>,
    /// What ThingsBoard must present on the webhook; `None` turns the webhook off.
    pub webhook_secret: Option<Secret>,
    /// The admin API (decommission).
    pub admin: Arc<decommission::AdminApi>,
    /// Who answers `GET /api/crl`.
    pub crl: Arc<crl::CrlSource>,
    /// Users' logins, refreshes and access tokens.
    pub tokens: Arc<TokenService>,
    /// Bad passwords per (user name, address).
    pub login_limiter: Arc<EnrollLimiter>,
    /// Sites, keys, pending enrollments, users.
    pub admin_ops: Arc<AdminService>,
}

/// Builds the router. `state.max_body` bounds every request body.
pub fn router(state: AppState) -> Router {
    let max_body = state.max_body;
    Router::new()
        .route("/api/devices/{id}/enroll", post(enroll::enroll))
        .route("/api/devices/{id}/renew", post(renew::renew))
        .route("/webhooks/thingsboard", post(webhook::thingsboard))
        .route("/healthz", get(healthz))
        // Certificate life cycle: decommission (admin) and the CRL.
        .route("/api/devices/{id}", delete(decommission::delete_device))
        .route("/api/crl", get(crl::crl))
        // Who may enroll: users' logins and the admin API (admin role).
        .route("/api/v1/auth/login", post(login::login))
        .route("/api/v1/auth/refresh", post(login::refresh))
        .route(
            "/api/v1/sites",
            get(admin::list_sites).post(admin::create_site),
        )
        .route(
            "/api/v1/sites/{code}",
            get(admin::get_site)
                .patch(admin::patch_site)
                .delete(admin::delete_site),
        )
        .route("/api/v1/sites/{code}/enrollment-key", get(admin::key_info))
        .route(
            "/api/v1/sites/{code}/enrollment-key/rotate",
            post(admin::rotate_key),
        )
        .route("/api/v1/enrollments/pending", get(admin::list_pending))
        .route("/api/v1/enrollments/{id}/approve", post(admin::approve))
        .route("/api/v1/enrollments/{id}/reject", post(admin::reject))
        .route("/api/v1/devices", get(admin::list_devices))
        .route("/api/v1/devices/{id}", delete(decommission::delete_device))
        .route("/api/v1/audit", get(admin::audit_log))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// Always 200 while the API serves; `status` is `degraded` when the gateway is.
async fn healthz(State(state): State<AppState>) -> axum::Json<serde_json::Value> {
    let gateway = state.gateway.health();
    let status = if gateway.is_degraded() {
        "degraded"
    } else {
        "ok"
    };
    axum::Json(serde_json::json!({ "status": status, "gateway": gateway }))
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        format!("no such endpoint: {}", uri.path()),
    )
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// The device id in the path: 400 `invalid_device_id` when it is unreadable or breaks the rule.
pub(crate) fn path_device_id(
    path: Result<Path<String>, PathRejection>,
) -> Result<DeviceId, ApiError> {
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidDeviceId, m);
    let Path(raw) = path.map_err(|e| bad(format!("device id in the path is unreadable: {e}")))?;
    DeviceId::parse(&raw).map_err(|e| bad(e.to_string()))
}
