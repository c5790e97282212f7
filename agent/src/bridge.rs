//! The HTTPS client of the bridge API, trusting only the pinned root.
//!
//! Each call's failure is classified: [`BridgeError::is_retryable`] is true for network
//! errors, 5xx and 429 (the bridge or its CA is down or busy), false for refusals (4xx) and
//! trust failures, which no retry can fix.

use std::sync::Arc;
use std::time::Duration;

use nexa_proto::{DeviceId, EnrollRequest, EnrollResponse, RenewRequest, RenewResponse};
use reqwest::{StatusCode, Url, header};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::config::BridgeSettings;
use crate::trust::{ClientIdentity, PinMismatch, PinnedRootVerifier, client_config};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a bridge call failed.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error(
        "the bridge at {url} is not trusted: its certificate chain ends in root {}, \
         but the pinned root fingerprint is {}; check root_fingerprint against `nexa-server ca fingerprint`",
        .mismatch.presented, .mismatch.expected
    )]
    Untrusted { url: String, mismatch: PinMismatch },
    #[error("the bridge refused the request ({status}, {code}): {message}")]
    Refused {
        status: StatusCode,
        code: String,
        message: String,
    },
    #[error("the bridge is unavailable ({status}): {message}")]
    Unavailable {
        status: StatusCode,
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("cannot reach the bridge at {url}: {detail}")]
    Network { url: String, detail: String },
    #[error("the bridge sent an unusable answer ({status}): {detail}")]
    BadResponse { status: StatusCode, detail: String },
    #[error("TLS with the bridge at {url} failed: {detail}")]
    TlsRejected { url: String, detail: String },
    #[error("cannot set up TLS: {0}")]
    Tls(String),
}

impl BridgeError {
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            BridgeError::Unavailable { .. } | BridgeError::Network { .. }
        )
    }

    /// A server-suggested delay before the next attempt.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            BridgeError::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// A successful enrollment answer.
#[derive(Debug)]
pub struct Enrolled {
    pub status: StatusCode,
    pub response: EnrollResponse,
}

/// The bridge client.
#[derive(Debug, Clone)]
pub struct BridgeClient {
    http: reqwest::Client,
    base: Url,
    verifier: Arc<PinnedRootVerifier>,
}

impl BridgeClient {
    /// A client that trusts only the pinned root and presents no certificate (enrollment).
    pub fn new(settings: &BridgeSettings) -> Result<Self, BridgeError> {
        Self::build(settings, None)
    }

    /// A client that also authenticates with the device's certificate (mTLS, renewal).
    pub fn with_identity(
        settings: &BridgeSettings,
        identity: ClientIdentity,
    ) -> Result<Self, BridgeError> {
        Self::build(settings, Some(identity))
    }

    fn build(
        settings: &BridgeSettings,
        identity: Option<ClientIdentity>,
    ) -> Result<Self, BridgeError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(PinnedRootVerifier::new(
            settings.root_fingerprint,
            provider.clone(),
        ));
        let tls = client_config(verifier.clone(), provider, identity)
            .map_err(|e| BridgeError::Tls(e.to_string()))?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("nexa-agent/", env!("CARGO_PKG_VERSION")))
            .no_proxy()
            .build()
            .map_err(|e| BridgeError::Tls(e.to_string()))?;
        Ok(Self {
            http,
            base: settings.url.clone(),
            verifier,
        })
    }

    fn url(&self, path: &str) -> Result<Url, BridgeError> {
        self.base.join(path).map_err(|e| BridgeError::Network {
            url: self.base.to_string(),
            detail: e.to_string(),
        })
    }

    /// `POST api/devices/{id}/enroll`.
    pub async fn enroll(
        &self,
        id: &DeviceId,
        request: &EnrollRequest,
    ) -> Result<Enrolled, BridgeError> {
        let (status, response) = self
            .post_json(
                &format!("api/devices/{id}/enroll"),
                request,
                "an enrollment response",
            )
            .await?;
        Ok(Enrolled { status, response })
    }

    /// `POST api/devices/{id}/renew` (the client must have been built with the device's
    /// identity).
    pub async fn renew(
        &self,
        id: &DeviceId,
        request: &RenewRequest,
    ) -> Result<RenewResponse, BridgeError> {
        let (_, response) = self
            .post_json(
                &format!("api/devices/{id}/renew"),
                request,
                "a renewal response",
            )
            .await?;
        Ok(response)
    }

    /// Posts `request` as JSON; a 2xx body is parsed as `T` (`what` names it in errors), any
    /// other answer is classified.
    async fn post_json<R: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        request: &R,
        what: &str,
    ) -> Result<(StatusCode, T), BridgeError> {
        let url = self.url(path)?;
        let resp = match self.http.post(url.clone()).json(request).send().await {
            Ok(r) => r,
            Err(e) => return Err(self.classify_send_error(&url, &e)),
        };
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = resp.bytes().await.map_err(|e| BridgeError::Network {
            url: url.to_string(),
            detail: chain(&e),
        })?;
        if status.is_success() {
            let response: T =
                serde_json::from_slice(&body).map_err(|e| BridgeError::BadResponse {
                    status,
                    detail: format!("not {what}: {e}"),
                })?;
            return Ok((status, response));
        }
        let (code, message) = error_of(&body);
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(BridgeError::Unavailable {
                status,
                message,
                retry_after,
            });
        }
        Err(BridgeError::Refused {
            status,
            code,
            message,
        })
    }

    fn classify_send_error(&self, url: &Url, e: &reqwest::Error) -> BridgeError {
        if let Some(mismatch) = self.verifier.mismatch() {
            return BridgeError::Untrusted {
                url: url.to_string(),
                mismatch,
            };
        }
        if let Some(tls) = rustls_error(e) {
            return BridgeError::TlsRejected {
                url: url.to_string(),
                detail: tls.to_string(),
            };
        }
        BridgeError::Network {
            url: url.to_string(),
            detail: chain(e),
        }
    }
}

/// The code and message of an error body, `{"error":{"code","message"}}`. Codes this agent
/// does not know yet are kept as sent; a body that is not the contract becomes `unknown` with
/// its first 300 characters.
fn error_of(body: &[u8]) -> (String, String) {
    #[derive(Deserialize)]
    struct Body {
        error: Detail,
    }
    #[derive(Deserialize)]
    struct Detail {
        code: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_slice::<Body>(body) {
        Ok(b) => (b.error.code, b.error.message),
        Err(_) => (
            "unknown".to_owned(),
            String::from_utf8_lossy(body).chars().take(300).collect(),
        ),
    }
}

/// An error with all its sources, for messages.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        src = s.source();
    }
    out
}

/// The rustls error inside a request failure, if TLS itself failed (not the network).
fn rustls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(r) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|i| i.downcast_ref::<rustls::Error>())
        {
            return Some(r);
        }
        cur = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_keep_unknown_codes_and_quote_foreign_ones() {
        let (code, message) =
            error_of(br#"{"error":{"code":"device_revoked","message":"revoked by ops"}}"#);
        assert_eq!(
            (code.as_str(), message.as_str()),
            ("device_revoked", "revoked by ops")
        );
        let (code, _) = error_of(br#"{"error":{"code":"some_future_code","message":"x"}}"#);
        assert_eq!(code, "some_future_code");
        let (code, message) = error_of(b"<html>bad gateway</html>");
        assert_eq!(code, "unknown");
        assert!(message.contains("bad gateway"));
    }
}
