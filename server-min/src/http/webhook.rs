//! `POST /webhooks/thingsboard`: ThingsBoard's rule engine reports device connects.
//!
//! The rule chain's REST API Call node sends the secret in `X-Nexa-Webhook-Secret` and a JSON
//! object with `msgType` and `deviceName` (top level, or under `metadata` as a script node
//! passes it through). `POST_CONNECT` and ThingsBoard's own `CONNECT_EVENT` create the device's
//! hawkBit target; any other event type is acknowledged and ignored, so a chain that forwards
//! every device event does not fail.

use std::net::SocketAddr;

use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use nexa_proto::{DeviceId, ErrorCode};
use serde_json::{Value, json};

use super::AppState;
use super::auth::secret_matches;
use super::body::read_json;
use super::error::{ApiError, internal};
use crate::connect::ConnectError;
use crate::hawkbit::HawkbitError;

/// The header carrying the shared secret.
pub const SECRET_HEADER: &str = "x-nexa-webhook-secret";
/// Event types that mean "the device connected".
pub const CONNECT_EVENTS: [&str; 2] = ["POST_CONNECT", "CONNECT_EVENT"];
/// How long ThingsBoard should wait before retrying when hawkBit is unavailable.
pub(crate) const HAWKBIT_RETRY_AFTER_S: u64 = 30;

pub async fn thingsboard(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let source = Some(peer.ip().to_string());
    let Some(secret) = &state.webhook_secret else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::WebhookNotConfigured,
            "the ThingsBoard webhook is off: set THINGSBOARD_WEBHOOK_SECRET_FILE on the bridge",
        ));
    };
    if !secret_matches(secret, headers.get(SECRET_HEADER).map(|v| v.as_bytes())) {
        let reason = if headers.contains_key(SECRET_HEADER) {
            "bad_secret"
        } else {
            "missing_secret"
        };
        tracing::warn!(%peer, reason, "webhook call refused");
        if let Err(e) = state
            .connect
            .audit_rejection(reason, None, source, json!({}))
            .await
        {
            tracing::error!(error = %e, "cannot record the refused webhook call");
        }
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::WebhookUnauthorized,
            format!("missing or wrong {SECRET_HEADER} header"),
        ));
    }

    let event: Value = read_json(&headers, body, state.max_body, "ThingsBoard event").await?;
    let msg_type = field(&event, "msgType").ok_or_else(|| {
        invalid(
            "msgType is missing: the rule chain's script node must pass it on (msgType: msgType)",
        )
    })?;
    if !CONNECT_EVENTS.contains(&msg_type) {
        tracing::debug!(msg_type, "webhook event ignored");
        return Ok(Json(json!({ "result": "ignored", "msgType": msg_type })));
    }
    let name = field(&event, "deviceName").ok_or_else(|| {
        invalid("deviceName is missing: pass metadata.deviceName on as deviceName")
    })?;
    let id = DeviceId::parse(name).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidDeviceId,
            format!("deviceName: {e}"),
        )
    })?;

    match state.connect.device_connected(&id, source).await {
        Ok(outcome) => Ok(Json(json!({
            "result": "ok",
            "device_id": id.as_str(),
            "hawkbit": outcome.as_str(),
        }))),
        Err(e) => Err(connect_error(e)),
    }
}

/// `name` at the top level, else under `metadata` (ThingsBoard's metadata values are strings).
fn field<'a>(event: &'a Value, name: &str) -> Option<&'a str> {
    event
        .get(name)
        .or_else(|| event.get("metadata").and_then(|m| m.get(name)))
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn invalid(message: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::InvalidField,
        message,
    )
}

fn connect_error(e: ConnectError) -> ApiError {
    use StatusCode as S;
    let msg = e.to_string();
    match e {
        ConnectError::UnknownDevice(_) => {
            ApiError::new(S::NOT_FOUND, ErrorCode::DeviceUnknown, msg)
        }
        ConnectError::Revoked(_) => ApiError::new(S::FORBIDDEN, ErrorCode::DeviceRevoked, msg),
        ConnectError::Decommissioned(_) => {
            ApiError::new(S::FORBIDDEN, ErrorCode::DeviceDecommissioned, msg)
        }
        ConnectError::NotEnrolled(_) => {
            ApiError::new(S::CONFLICT, ErrorCode::DeviceNotEnrolled, msg)
        }
        ConnectError::Hawkbit(HawkbitError::Unavailable { .. }) => ApiError {
            retry_after_secs: Some(HAWKBIT_RETRY_AFTER_S),
            ..ApiError::new(S::BAD_GATEWAY, ErrorCode::HawkbitUnavailable, msg)
        },
        ConnectError::Hawkbit(HawkbitError::Refused { .. }) => {
            ApiError::new(S::BAD_GATEWAY, ErrorCode::HawkbitRefused, msg)
        }
        ConnectError::Hawkbit(HawkbitError::Setup(_)) | ConnectError::Db(_) => internal(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_found_at_the_top_or_in_metadata() {
        let top = json!({"msgType": "POST_CONNECT", "deviceName": " dev-1 "});
        assert_eq!(field(&top, "deviceName"), Some("dev-1"));
        let nested = json!({"msgType": "CONNECT_EVENT", "metadata": {"deviceName": "dev-2"}});
        assert_eq!(field(&nested, "deviceName"), Some("dev-2"));
        assert_eq!(field(&json!({"deviceName": ""}), "deviceName"), None);
        assert_eq!(field(&json!({"deviceName": 5}), "deviceName"), None);
    }
}
