//! `POST /api/devices/{id}/enroll`.

use std::net::SocketAddr;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use nexa_proto::{EnrollRequest, EnrollResponse};

use super::AppState;
use super::body::read_json;
use super::error::ApiError;
use crate::enroll::{EnrollInput, Outcome};

pub async fn enroll(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<EnrollResponse>), ApiError> {
    let id = super::path_device_id(path)?;
    let request: EnrollRequest =
        read_json(&headers, body, state.max_body, "enrollment request").await?;
    let source = Some(peer.ip().to_string());
    let (response, outcome) = state
        .enroll
        .enroll(EnrollInput {
            id,
            request,
            source,
        })
        .await?;
    let status = match outcome {
        Outcome::Created => StatusCode::CREATED,
        Outcome::Repeated | Outcome::Reenrolled => StatusCode::OK,
    };
    Ok((status, Json(response)))
}
