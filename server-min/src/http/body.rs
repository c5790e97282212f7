//! Reading a JSON request body: content type, size limit and syntax, each failure a JSON error
//! with a stable code.
//!
//! An oversized body is not simply cut off: a client that is still sending would then get a
//! broken pipe instead of our answer. The rest is read and discarded (bounded in bytes and
//! time) so the client can read the 413, and the connection is closed after it.

use std::pin::Pin;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes, HttpBody};
use axum::http::{HeaderMap, StatusCode, header};
use nexa_proto::ErrorCode;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// How much of an oversized body is drained before the connection is simply closed.
const DRAIN_MAX_BYTES: usize = 16 << 20;
/// How long an oversized body is drained at most.
const DRAIN_MAX_TIME: Duration = Duration::from_secs(5);

/// Checks the content type, reads at most `max` bytes and parses them as a JSON object `T`.
/// `what` names the request in error messages ("enrollment request").
pub async fn read_json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
    max: usize,
    what: &str,
) -> Result<T, ApiError> {
    check_content_type(headers)?;
    let bytes = read_limited(body, max).await?;
    // serde would also read a struct from a positional array; only an object is a request.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::MalformedJson,
            "request body must be a JSON object",
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::MalformedJson,
            format!("request body is not a valid {what}: {e}"),
        )
    })
}

fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if mime.eq_ignore_ascii_case("application/json") {
        return Ok(());
    }
    let shown = if content_type.is_empty() {
        "none".to_owned()
    } else {
        format!("{content_type:?}")
    };
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorCode::UnsupportedMediaType,
        format!("Content-Type is {shown}; send application/json"),
    ))
}

async fn read_limited(mut body: Body, max: usize) -> Result<Bytes, ApiError> {
    let too_large = || ApiError {
        close_connection: true,
        ..ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            format!("request body is larger than the {max} bytes the bridge accepts"),
        )
    };
    if body.size_hint().lower() > DRAIN_MAX_BYTES as u64 {
        return Err(too_large());
    }
    let mut buf = Vec::with_capacity(
        usize::try_from(body.size_hint().lower())
            .unwrap_or(0)
            .min(max),
    );
    let mut over = false;
    let mut drained = 0usize;
    let started = Instant::now();
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::MalformedJson,
                format!("request body could not be read: {e}"),
            )
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if over {
            drained += data.len();
            if drained > DRAIN_MAX_BYTES || started.elapsed() > DRAIN_MAX_TIME {
                break;
            }
        } else if buf.len() + data.len() > max {
            over = true;
            buf = Vec::new();
        } else {
            buf.extend_from_slice(&data);
        }
    }
    if over {
        Err(too_large())
    } else {
        Ok(Bytes::from(buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            "application/json; charset=utf-8".parse().unwrap(),
        );
        h
    }

    #[tokio::test]
    async fn objects_only_and_limits_hold() {
        #[derive(serde::Deserialize, Debug)]
        struct T {
            #[allow(dead_code)]
            a: String,
        }
        let ok: Result<T, _> = read_json(
            &json_headers(),
            Body::from(r#" {"a":"x"}"#),
            100,
            "test request",
        )
        .await;
        assert!(ok.is_ok());
        let arr: Result<T, _> =
            read_json(&json_headers(), Body::from(r#"["x"]"#), 100, "test request").await;
        assert_eq!(arr.unwrap_err().code, ErrorCode::MalformedJson);
        let big: Result<T, _> = read_json(
            &json_headers(),
            Body::from(vec![b' '; 101]),
            100,
            "test request",
        )
        .await;
        let err = big.unwrap_err();
        assert_eq!(
            (err.status, err.close_connection),
            (StatusCode::PAYLOAD_TOO_LARGE, true)
        );
        let none: Result<T, _> =
            read_json(&HeaderMap::new(), Body::from("{}"), 100, "test request").await;
        assert_eq!(none.unwrap_err().status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
}
