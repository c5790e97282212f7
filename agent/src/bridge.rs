//! The HTTPS client of the bridge API, trusting only the pinned root.
//!
//! Each call's failure is classified: [`BridgeError::is_retryable`] is true for network
//! errors, 5xx and 429 (the bridge or its CA is down or busy), false for refusals (4xx) and
//! trust failures, which no retry can fix.
//!
//! An enrollment may also be answered 202 (`EnrollPending`): it waits for an administrator,
//! and the same request is asked again later ([`EnrollAnswer::Pending`]). A technician's login
//! and token refresh are here too; their secrets are borrowed into the request body and the
//! bearer header (marked sensitive), never logged.

use std::sync::Arc;
use std::time::Duration;

use nexa_proto::{
    DeviceId, EnrollPending, EnrollRequest, EnrollResponse, RenewRequest, RenewResponse,
    TokenResponse,
};
use reqwest::{StatusCode, Url, header};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::auth::Tokens;
use crate::config::BridgeSettings;
use crate::secret::SecretString;
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

/// Runs a bridge call, retrying what [`BridgeError::is_retryable`] allows with `backoff`
/// (honouring the bridge's `Retry-After`).
pub async fn with_retry<T, F, Fut>(
    backoff: crate::backoff::Backoff,
    call: F,
) -> Result<T, BridgeError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, BridgeError>>,
{
    crate::backoff::retry(
        backoff,
        |e: &BridgeError| e.is_retryable().then(|| e.retry_after()),
        call,
    )
    .await
}

/// A successful enrollment answer.
#[derive(Debug)]
pub struct Enrolled {
    pub status: StatusCode,
    pub response: EnrollResponse,
}

/// An enrollment the bridge holds for an administrator's approval (202).
#[derive(Debug)]
pub struct Pending {
    pub body: EnrollPending,
    /// The `Retry-After` header, else the body's `retry_after_s`.
    pub retry_after: Option<Duration>,
}

/// What an enrollment request came back with.
#[derive(Debug)]
pub enum EnrollAnswer {
    /// 201 (first enrollment) or 200 (repeat, re-enrollment, or approved).
    Enrolled(Box<Enrolled>),
    /// 202: ask again later with the same keys and the same request.
    Pending(Pending),
}

/// A 2xx answer, before its body is parsed.
struct Success {
    status: StatusCode,
    retry_after: Option<Duration>,
    /// Zeroized when dropped: a login answer carries tokens.
    body: Zeroizing<Vec<u8>>,
}

/// `LoginRequest` / `RefreshRequest` with borrowed secrets, so no extra copy is made (the
/// field names are the contract's; a test compares them with `nexa_proto`'s types).
#[derive(Serialize)]
struct LoginBody<'a> {
    username: &'a str,
    password: &'a str,
}

#[derive(Serialize)]
struct RefreshBody<'a> {
    refresh_token: &'a str,
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

    /// `POST api/devices/{id}/enroll`, with a technician's access token when given.
    pub async fn enroll(
        &self,
        id: &DeviceId,
        request: &EnrollRequest,
        bearer: Option<&SecretString>,
    ) -> Result<EnrollAnswer, BridgeError> {
        let ok = self
            .post(&format!("api/devices/{id}/enroll"), request, bearer)
            .await?;
        if ok.status == StatusCode::ACCEPTED {
            let body: EnrollPending = parse(&ok, "a pending enrollment (202)")?;
            let retry_after = ok.retry_after.or_else(|| {
                (body.retry_after_s > 0).then(|| Duration::from_secs(body.retry_after_s))
            });
            return Ok(EnrollAnswer::Pending(Pending { body, retry_after }));
        }
        let response = parse(&ok, "an enrollment response")?;
        Ok(EnrollAnswer::Enrolled(Box::new(Enrolled {
            status: ok.status,
            response,
        })))
    }

    /// `POST api/v1/auth/login`.
    pub async fn login(&self, user: &str, password: &SecretString) -> Result<Tokens, BridgeError> {
        let body = LoginBody {
            username: user,
            password: password.expose(),
        };
        let ok = self.post("api/v1/auth/login", &body, None).await?;
        Ok(parse::<TokenResponse>(&ok, "a login answer")?.into())
    }

    /// `POST api/v1/auth/refresh`: a new pair for `tokens`' refresh token (which is then spent).
    pub async fn refresh(&self, tokens: &Tokens) -> Result<Tokens, BridgeError> {
        let body = RefreshBody {
            refresh_token: tokens.refresh.expose(),
        };
        let ok = self.post("api/v1/auth/refresh", &body, None).await?;
        Ok(parse::<TokenResponse>(&ok, "a token refresh answer")?.into())
    }

    /// `POST api/devices/{id}/renew` (the client must have been built with the device's
    /// identity).
    pub async fn renew(
        &self,
        id: &DeviceId,
        request: &RenewRequest,
    ) -> Result<RenewResponse, BridgeError> {
        let ok = self
            .post(&format!("api/devices/{id}/renew"), request, None)
            .await?;
        parse(&ok, "a renewal response")
    }

    /// Posts `request` as JSON (with `Authorization: Bearer` when `bearer` is given); a 2xx
    /// answer is returned as is, any other is classified.
    async fn post<R: Serialize>(
        &self,
        path: &str,
        request: &R,
        bearer: Option<&SecretString>,
    ) -> Result<Success, BridgeError> {
        let url = self.url(path)?;
        let mut builder = self.http.post(url.clone()).json(request);
        if let Some(token) = bearer {
            let value = Zeroizing::new(format!("Bearer {}", token.expose()));
            let mut value =
                header::HeaderValue::from_str(&value).map_err(|_| BridgeError::BadResponse {
                    status: StatusCode::UNAUTHORIZED,
                    detail: "the access token the bridge issued is not a valid header value".into(),
                })?;
            value.set_sensitive(true);
            builder = builder.header(header::AUTHORIZATION, value);
        }
        let resp = match builder.send().await {
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
            return Ok(Success {
                status,
                retry_after,
                body: Zeroizing::new(body.to_vec()),
            });
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

/// A 2xx body parsed as `T` (`what` names it in errors).
fn parse<T: DeserializeOwned>(ok: &Success, what: &str) -> Result<T, BridgeError> {
    serde_json::from_slice(&ok.body).map_err(|e| BridgeError::BadResponse {
        status: ok.status,
        detail: format!("not {what}: {e}"),
    })
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

    #[test]
    fn borrowed_bodies_serialize_like_the_contract() {
        let borrowed = serde_json::to_value(LoginBody {
            username: "tech",
            password: "pw",
        })
        .unwrap();
        let contract = serde_json::to_value(nexa_proto::LoginRequest {
            username: "tech".into(),
            password: "pw".into(),
        })
        .unwrap();
        assert_eq!(borrowed, contract);
        let borrowed = serde_json::to_value(RefreshBody { refresh_token: "r" }).unwrap();
        let contract = serde_json::to_value(nexa_proto::RefreshRequest {
            refresh_token: "r".into(),
        })
        .unwrap();
        assert_eq!(borrowed, contract);
    }
}
