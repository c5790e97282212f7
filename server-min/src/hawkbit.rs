//! hawkBit Management API: creating and deleting a device's target.
//!
//! The `TargetRegistry` trait is the boundary to hawkBit, so the enrollment's, the webhook's
//! and the decommission's logic is tested without it; `HawkbitClient` is the real one
//! (`POST {url}/rest/v1/targets`, HTTP Basic, body
//! `[{"controllerId","name","description"[,"securityToken"]}]`; 201 created, 409 already
//! there, then `PUT {url}/rest/v1/targets/{id}` `{"securityToken"}` to replace the token;
//! `DELETE {url}/rest/v1/targets/{id}`, 404 meaning already gone).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use nexa_proto::DeviceId;
use rustls_pki_types::pem::PemObject;
use url::Url;

use crate::config::HawkbitSettings;

/// What creating a target came to. Both mean the target exists now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetOutcome {
    Created,
    /// hawkBit answered 409: the controller id was already known.
    AlreadyExisted,
}

impl TargetOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetOutcome::Created => "created",
            TargetOutcome::AlreadyExisted => "already_existed",
        }
    }
}

/// What deleting a target came to. Both mean the target is gone now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    /// hawkBit answered 404: there was no such target.
    AlreadyGone,
}

impl DeleteOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            DeleteOutcome::Deleted => "deleted",
            DeleteOutcome::AlreadyGone => "already_gone",
        }
    }
}

/// Why hawkBit did not do what the bridge asked.
#[derive(Debug, thiserror::Error)]
pub enum HawkbitError {
    /// Worth retrying: hawkBit unreachable, timed out, 5xx or 429.
    #[error("hawkBit at {url} is unavailable: {reason}")]
    Unavailable { url: String, reason: String },
    /// Retrying will not help until someone changes something (credentials, permissions).
    #[error("hawkBit at {url} refused the request (HTTP {status}): {reason}")]
    Refused {
        url: String,
        status: u16,
        reason: String,
    },
    #[error("cannot set up the hawkBit client: {0}")]
    Setup(String),
}

/// A boxed future, so the trait can be used as `dyn`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where targets are created.
pub trait TargetRegistry: Send + Sync + std::fmt::Debug {
    /// Creates the device's target unless it exists.
    fn ensure_target<'a>(
        &'a self,
        id: &'a DeviceId,
    ) -> BoxFuture<'a, Result<TargetOutcome, HawkbitError>>;

    /// Creates the device's target with `token` as its security token, or replaces the
    /// existing target's token (the old one stops working).
    fn set_token<'a>(
        &'a self,
        id: &'a DeviceId,
        token: &'a TargetToken,
    ) -> BoxFuture<'a, Result<TargetOutcome, HawkbitError>>;

    /// Deletes the device's target (its actions and token go with it).
    fn delete_target<'a>(
        &'a self,
        id: &'a DeviceId,
    ) -> BoxFuture<'a, Result<DeleteOutcome, HawkbitError>>;
}

/// A target's security token (`Authorization: TargetToken …` on DDI): 32 random bytes in
/// hex. Zeroized on drop, redacted in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct TargetToken(zeroize::Zeroizing<String>);

impl TargetToken {
    /// A fresh token from the operating system's random source.
    pub fn generate() -> Self {
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        rand::fill(&mut bytes[..]);
        let mut hex = String::with_capacity(64);
        for b in bytes.iter() {
            hex.push_str(&format!("{b:02x}"));
        }
        Self(zeroize::Zeroizing::new(hex))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for TargetToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TargetToken([redacted])")
    }
}

/// The real hawkBit Management API.
#[derive(Debug, Clone)]
pub struct HawkbitClient {
    http: reqwest::Client,
    targets: Url,
    user: String,
    password: crate::config::Secret,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

impl HawkbitClient {
    pub fn new(settings: &HawkbitSettings) -> Result<Self, HawkbitError> {
        let tls = tls_config(settings.ca_file.as_deref())?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("nexa-server/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| HawkbitError::Setup(e.to_string()))?;
        let targets = settings
            .url
            .join("rest/v1/targets")
            .map_err(|e| HawkbitError::Setup(e.to_string()))?;
        Ok(Self {
            http,
            targets,
            user: settings.user.clone(),
            password: settings.password.clone(),
        })
    }

    pub fn into_registry(self) -> Arc<dyn TargetRegistry> {
        Arc::new(self)
    }

    /// Creates the target, with `token` as its security token when given.
    async fn create(
        &self,
        id: &DeviceId,
        token: Option<&TargetToken>,
    ) -> Result<TargetOutcome, HawkbitError> {
        let mut target = serde_json::json!({
            "controllerId": id.as_str(),
            "name": id.as_str(),
            "description": "enrolled through the Nexa bridge",
        });
        if let Some(t) = token {
            target["securityToken"] = serde_json::Value::from(t.expose());
        }
        let req = self.http.post(self.targets.clone()).json(&[target]);
        match self.call(self.targets.clone(), req).await? {
            Answer::Done => Ok(TargetOutcome::Created),
            Answer::Conflict => Ok(TargetOutcome::AlreadyExisted),
            Answer::NotFound => Err(HawkbitError::Refused {
                url: self.targets.to_string(),
                status: 404,
                reason: "the Management API is not at this URL; check HAWKBIT_URL".into(),
            }),
        }
    }

    /// `{url}/rest/v1/targets/{id}`.
    fn target_url(&self, id: &DeviceId) -> Result<Url, HawkbitError> {
        let mut url = self.targets.clone();
        url.path_segments_mut()
            .map_err(|()| HawkbitError::Setup(format!("{} cannot be a base URL", self.targets)))?
            .push(id.as_str());
        Ok(url)
    }

    /// Deletes the target; a target hawkBit does not know is already gone.
    async fn delete(&self, id: &DeviceId) -> Result<DeleteOutcome, HawkbitError> {
        let url = self.target_url(id)?;
        let req = self.http.delete(url.clone());
        match self.call(url.clone(), req).await? {
            Answer::Done => Ok(DeleteOutcome::Deleted),
            Answer::NotFound => Ok(DeleteOutcome::AlreadyGone),
            Answer::Conflict => Err(HawkbitError::Refused {
                url: url.to_string(),
                status: 409,
                reason: format!("deleting target {id} conflicted"),
            }),
        }
    }

    /// Creates the target with `token`, or gives the existing target that token.
    async fn set_token(
        &self,
        id: &DeviceId,
        token: &TargetToken,
    ) -> Result<TargetOutcome, HawkbitError> {
        let outcome = self.create(id, Some(token)).await?;
        if outcome == TargetOutcome::Created {
            return Ok(outcome);
        }
        let url = self.target_url(id)?;
        let body = serde_json::json!({ "securityToken": token.expose() });
        let req = self.http.put(url.clone()).json(&body);
        match self.call(url, req).await? {
            Answer::Done => Ok(TargetOutcome::AlreadyExisted),
            // PUT has no conflict; hawkBit answering one is a refusal like any other.
            Answer::Conflict => Err(HawkbitError::Refused {
                url: self.targets.to_string(),
                status: 409,
                reason: format!("updating target {id} conflicted"),
            }),
            Answer::NotFound => Err(HawkbitError::Refused {
                url: self.targets.to_string(),
                status: 404,
                reason: format!("target {id} vanished while it was being updated"),
            }),
        }
    }

    /// Sends one authenticated Management API call and classifies the answer.
    async fn call(&self, url: Url, req: reqwest::RequestBuilder) -> Result<Answer, HawkbitError> {
        let url = url.to_string();
        let resp = req
            .basic_auth(&self.user, Some(self.password.expose()))
            .send()
            .await
            .map_err(|e| HawkbitError::Unavailable {
                url: url.clone(),
                reason: crate::error_chain(&e),
            })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(Answer::Done);
        }
        if status == reqwest::StatusCode::CONFLICT {
            return Ok(Answer::Conflict);
        }
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(Answer::NotFound);
        }
        let text = resp.text().await.unwrap_or_default();
        let reason = hawkbit_message(&text);
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(HawkbitError::Unavailable {
                url,
                reason: format!("HTTP {}: {reason}", status.as_u16()),
            });
        }
        let reason = match status.as_u16() {
            401 => "the credentials were not accepted; check HAWKBIT_USER and HAWKBIT_PASSWORD"
                .to_owned(),
            403 => format!(
                "the user lacks CREATE_TARGET / UPDATE_TARGET / DELETE_TARGET permission or a quota is reached: {reason}"
            ),
            _ => reason,
        };
        Err(HawkbitError::Refused {
            url,
            status: status.as_u16(),
            reason,
        })
    }
}

/// A Management API call's non-error answers.
enum Answer {
    Done,
    /// 409: the entity already exists.
    Conflict,
    /// 404: no such entity.
    NotFound,
}

impl TargetRegistry for HawkbitClient {
    fn ensure_target<'a>(
        &'a self,
        id: &'a DeviceId,
    ) -> BoxFuture<'a, Result<TargetOutcome, HawkbitError>> {
        Box::pin(self.create(id, None))
    }

    fn set_token<'a>(
        &'a self,
        id: &'a DeviceId,
        token: &'a TargetToken,
    ) -> BoxFuture<'a, Result<TargetOutcome, HawkbitError>> {
        Box::pin(HawkbitClient::set_token(self, id, token))
    }

    fn delete_target<'a>(
        &'a self,
        id: &'a DeviceId,
    ) -> BoxFuture<'a, Result<DeleteOutcome, HawkbitError>> {
        Box::pin(self.delete(id))
    }
}

/// hawkBit's error body carries `message` (and `errorCode`); keep the answer short.
fn hawkbit_message(text: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(text).ok();
    let msg = parsed
        .as_ref()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| text.trim().to_owned());
    let mut msg: String = msg.chars().take(300).collect();
    if msg.is_empty() {
        msg.push_str("no details");
    }
    msg
}

/// TLS for hawkBit: the system's roots, plus the configured CA file if any.
fn tls_config(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig, HawkbitError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // A system bundle with one odd certificate must not disable the rest.
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|e| {
            HawkbitError::Setup(format!("cannot read hawkBit CA {}: {e}", path.display()))
        })?;
        let mut added = 0;
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| {
                HawkbitError::Setup(format!("hawkBit CA {} is not PEM: {e}", path.display()))
            })?;
            roots
                .add(cert)
                .map_err(|e| HawkbitError::Setup(format!("hawkBit CA {}: {e}", path.display())))?;
            added += 1;
        }
        if added == 0 {
            return Err(HawkbitError::Setup(format!(
                "hawkBit CA {} holds no certificate",
                path.display()
            )));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| HawkbitError::Setup(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_are_summarised() {
        assert_eq!(
            hawkbit_message(r#"{"errorCode":"hawkbit.server.error.quota","message":"quota hit"}"#),
            "quota hit"
        );
        assert_eq!(hawkbit_message("  plain text "), "plain text");
        assert_eq!(hawkbit_message(""), "no details");
        assert_eq!(hawkbit_message(&"x".repeat(1000)).len(), 300);
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ca.pem");
        std::fs::write(&p, "not pem").unwrap();
        let e = tls_config(Some(&p)).unwrap_err().to_string();
        assert!(e.contains("ca.pem"), "{e}");
    }
}
