//! `POST /api/devices/{id}/enroll`.

use std::net::SocketAddr;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nexa_proto::EnrollRequest;

use super::AppState;
use super::auth::caller;
use super::body::read_json;
use super::error::ApiError;
use crate::enroll::{EnrollAnswer, EnrollInput, Outcome};

/// 201 first enrollment, 200 repeat or re-enrollment, 202 held for an administrator.
pub async fn enroll(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let id = super::path_device_id(path)?;
    // A field technician's token authorizes new keys; a bad one is refused, never ignored.
    let user = caller(state.admin.token.as_ref(), &state.tokens, &headers).await?;
    let request: EnrollRequest =
        read_json(&headers, body, state.max_body, "enrollment request").await?;
    let answer = state
        .enroll
        .enroll(EnrollInput {
            id,
            request,
            source: Some(peer.ip()),
            user,
        })
        .await?;
    Ok(match answer {
        EnrollAnswer::Enrolled { response, outcome } => {
            let status = match outcome {
                Outcome::Created => StatusCode::CREATED,
                Outcome::Repeated | Outcome::Reenrolled => StatusCode::OK,
            };
            (status, Json(response)).into_response()
        }
        EnrollAnswer::Pending(pending) => {
            let retry = HeaderValue::from(pending.retry_after_s);
            let mut resp = (StatusCode::ACCEPTED, Json(pending)).into_response();
            resp.headers_mut().insert(header::RETRY_AFTER, retry);
            resp
        }
    })
}
