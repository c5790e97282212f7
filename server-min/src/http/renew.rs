//! `POST /api/devices/{id}/renew`: over mTLS with the device's current certificate.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::HeaderMap;
use axum::{Extension, Json};
use axum_server::tls::TlsInfo;
use nexa_proto::{RenewRequest, RenewResponse};

use super::AppState;
use super::body::read_json;
use super::error::ApiError;
use crate::renew::RenewInput;

pub async fn renew(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    tls: Option<Extension<Arc<TlsInfo>>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<RenewResponse>, ApiError> {
    let id = super::path_device_id(path)?;
    let request: RenewRequest =
        read_json(&headers, body, state.max_body, "renewal request").await?;
    let peer_chain = tls
        .map(|Extension(info)| info.peer_certificates.clone())
        .unwrap_or_default();
    let response = state
        .renew
        .renew(RenewInput {
            id,
            peer_chain,
            request,
            source: Some(peer.ip().to_string()),
        })
        .await?;
    Ok(Json(response))
}
