//! The ThingsBoard device API over MQTT: topic names, payloads, and the parsing of what the
//! server sends (shared-attribute updates, server-side RPC). No I/O.
//!
//! `me` in every topic is the device the connection authenticated as (the certificate's CN).

use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

pub const TELEMETRY: &str = "v1/devices/me/telemetry";
pub const ATTRIBUTES: &str = "v1/devices/me/attributes";
pub const RPC_REQUESTS: &str = "v1/devices/me/rpc/request/+";
const RPC_REQUEST_PREFIX: &str = "v1/devices/me/rpc/request/";
const RPC_RESPONSE_PREFIX: &str = "v1/devices/me/rpc/response/";

/// Shared attribute that sets the telemetry interval, in seconds.
pub const TELEMETRY_INTERVAL_KEY: &str = "telemetryIntervalS";
/// Bounds of the telemetry interval a shared attribute may set.
pub const MIN_INTERVAL: Duration = Duration::from_secs(5);
pub const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// A telemetry message with the device's timestamp (ms), so buffered samples keep their time.
pub fn telemetry(ts_ms: u64, values: &impl Serialize) -> Value {
    json!({ "ts": ts_ms, "values": values })
}

/// A server-side RPC request.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcRequest {
    /// The id from the topic; the response goes to `…/rpc/response/<id>`.
    pub id: String,
    pub method: String,
    pub params: Value,
}

/// Why an incoming message could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TbError {
    #[error("RPC topic {0:?} has no request id")]
    RpcTopic(String),
    #[error("RPC request {id} is not JSON with a \"method\" string")]
    RpcBody { id: String },
    #[error("attribute update is not a JSON object")]
    Attributes,
}

/// Parses a message received on `v1/devices/me/rpc/request/<id>`. `Ok(None)`: not an RPC topic.
pub fn parse_rpc(topic: &str, payload: &[u8]) -> Result<Option<RpcRequest>, TbError> {
    let Some(id) = topic.strip_prefix(RPC_REQUEST_PREFIX) else {
        return Ok(None);
    };
    if id.is_empty() || id.contains('/') {
        return Err(TbError::RpcTopic(topic.to_owned()));
    }
    let body: Value =
        serde_json::from_slice(payload).map_err(|_| TbError::RpcBody { id: id.to_owned() })?;
    let method = body
        .get("method")
        .and_then(Value::as_str)
        .ok_or_else(|| TbError::RpcBody { id: id.to_owned() })?
        .to_owned();
    Ok(Some(RpcRequest {
        id: id.to_owned(),
        method,
        params: body.get("params").cloned().unwrap_or(Value::Null),
    }))
}

/// The topic the response to request `id` is published on.
pub fn rpc_response_topic(id: &str) -> String {
    format!("{RPC_RESPONSE_PREFIX}{id}")
}

/// The error response for a request the agent cannot serve.
pub fn rpc_error(code: &str, message: &str) -> Value {
    json!({ "error": { "code": code, "message": message } })
}

/// What a shared-attribute update asks of the agent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SharedUpdate {
    /// A new telemetry interval, clamped to [`MIN_INTERVAL`]..=[`MAX_INTERVAL`].
    pub telemetry_interval: Option<Duration>,
    /// The interval key was deleted: back to the configured default.
    pub interval_reset: bool,
    /// Keys this agent does not use (logged, not an error).
    pub ignored: Vec<String>,
}

/// Parses a push on `v1/devices/me/attributes`: changed keys, or `{"deleted":[…]}`.
pub fn parse_shared(payload: &[u8]) -> Result<SharedUpdate, TbError> {
    let body: Value = serde_json::from_slice(payload).map_err(|_| TbError::Attributes)?;
    let obj = body.as_object().ok_or(TbError::Attributes)?;
    let mut update = SharedUpdate::default();
    for (key, value) in obj {
        match key.as_str() {
            TELEMETRY_INTERVAL_KEY => {
                let secs = value
                    .as_u64()
                    .or_else(|| value.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
                    .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()));
                match secs {
                    Some(s) => {
                        update.telemetry_interval =
                            Some(Duration::from_secs(s).clamp(MIN_INTERVAL, MAX_INTERVAL));
                    }
                    None => update.ignored.push(key.clone()),
                }
            }
            "deleted" => {
                for k in value.as_array().into_iter().flatten() {
                    match k.as_str() {
                        Some(TELEMETRY_INTERVAL_KEY) => update.interval_reset = true,
                        Some(other) => update.ignored.push(format!("deleted {other}")),
                        None => {}
                    }
                }
            }
            _ => update.ignored.push(key.clone()),
        }
    }
    Ok(update)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_requests_parse_and_answer_on_the_same_id() {
        let req = parse_rpc(
            "v1/devices/me/rpc/request/42",
            br#"{"method":"status","params":{}}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(req.method, "status");
        assert_eq!(rpc_response_topic(&req.id), "v1/devices/me/rpc/response/42");
        assert_eq!(parse_rpc("v1/devices/me/attributes", b"{}"), Ok(None));
        assert_eq!(
            parse_rpc("v1/devices/me/rpc/request/7", b"not json"),
            Err(TbError::RpcBody { id: "7".into() })
        );
        assert_eq!(
            parse_rpc("v1/devices/me/rpc/request/7", br#"{"params":1}"#),
            Err(TbError::RpcBody { id: "7".into() })
        );
        assert!(matches!(
            parse_rpc("v1/devices/me/rpc/request/", b"{}"),
            Err(TbError::RpcTopic(_))
        ));
    }

    #[test]
    fn shared_updates_set_clamp_and_reset_the_interval() {
        let u = parse_shared(br#"{"telemetryIntervalS": 30, "colour": "red"}"#).unwrap();
        assert_eq!(u.telemetry_interval, Some(Duration::from_secs(30)));
        assert_eq!(u.ignored, vec!["colour".to_owned()]);
        let u = parse_shared(br#"{"telemetryIntervalS": "1"}"#).unwrap();
        assert_eq!(u.telemetry_interval, Some(MIN_INTERVAL));
        let u = parse_shared(br#"{"telemetryIntervalS": 1e9}"#).unwrap();
        assert_eq!(u.telemetry_interval, Some(MAX_INTERVAL));
        let u = parse_shared(br#"{"deleted": ["telemetryIntervalS"]}"#).unwrap();
        assert!(u.interval_reset);
        assert_eq!(parse_shared(b"[1,2]"), Err(TbError::Attributes));
        let u = parse_shared(br#"{"telemetryIntervalS": "soon"}"#).unwrap();
        assert_eq!(u.telemetry_interval, None);
        assert_eq!(u.ignored, vec!["telemetryIntervalS".to_owned()]);
    }

    #[test]
    fn telemetry_carries_the_device_timestamp() {
        let v = telemetry(1_700_000_000_000, &json!({"uptime_s": 5}));
        assert_eq!(v["ts"], 1_700_000_000_000u64);
        assert_eq!(v["values"]["uptime_s"], 5);
    }
}
