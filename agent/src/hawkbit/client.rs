//! The DDI HTTP client: one reqwest client with the device's authentication, the controller's
//! base URL, and one method per DDI call. Every failure is classified the way the DDI contract
//! asks the device to react: 401 (credentials), 404 (re-poll), 410 (stop reporting on that
//! action), 429 and 5xx (back off, honouring `Retry-After`), network (retry).

use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use rustls::RootCertStore;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use super::model::{CancelAction, ConfigData, ControllerBase, DeploymentBase, Feedback};
use super::settings::{AuthMode, HawkbitSettings};
use crate::certs::CertsDir;
use crate::identity::{TlsSetupError, client_identity, pem_certs};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// For DDI calls; downloads have no overall timeout, only the read timeout.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a DDI call failed, classified for the caller's reaction.
#[derive(Debug, thiserror::Error)]
pub enum DdiError {
    #[error(
        "hawkBit refused the device's credentials (HTTP 401) at {url}; check hawkbit.auth and the token or certificate"
    )]
    Unauthorized { url: String },
    #[error("hawkBit does not know {url} (HTTP 404)")]
    NotFound { url: String },
    #[error("hawkBit no longer accepts feedback for this action (HTTP 410) at {url}")]
    Gone { url: String },
    #[error("hawkBit asks the device to slow down (HTTP 429)")]
    RateLimited { retry_after: Option<Duration> },
    #[error("hawkBit is unavailable (HTTP {status}) at {url}")]
    Unavailable {
        url: String,
        status: u16,
        retry_after: Option<Duration>,
    },
    #[error("cannot reach hawkBit at {url}: {reason}")]
    Network { url: String, reason: String },
    #[error("hawkBit answered HTTP {status} at {url}: {body}")]
    Rejected {
        url: String,
        status: u16,
        body: String,
    },
    #[error("hawkBit's answer from {url} is not what DDI defines: {reason}")]
    Decode { url: String, reason: String },
    #[error("cannot set up the hawkBit client: {0}")]
    Setup(String),
}

impl DdiError {
    /// What the server asked the device to wait, if anything.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            DdiError::RateLimited { retry_after } | DdiError::Unavailable { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    /// Worth retrying unchanged after a pause.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            DdiError::RateLimited { .. } | DdiError::Unavailable { .. } | DdiError::Network { .. }
        )
    }
}

impl From<TlsSetupError> for DdiError {
    fn from(e: TlsSetupError) -> Self {
        DdiError::Setup(e.to_string())
    }
}

/// A controller's DDI endpoint.
#[derive(Debug, Clone)]
pub struct DdiClient {
    http: reqwest::Client,
    /// `{url}{tenant}/controller/v1/{controllerId}` (no trailing slash).
    base: Url,
    /// Authentication (tokens) and `Accept`; also sent with downloads from hawkBit itself.
    headers: HeaderMap,
}

impl DdiClient {
    /// Builds the client; reads the token file or the device identity now, so a broken
    /// setting is reported at start.
    pub fn new(
        settings: &HawkbitSettings,
        controller_id: &str,
        certs: &CertsDir,
    ) -> Result<Self, DdiError> {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let token = |scheme: &str, file: &std::path::Path| -> Result<HeaderValue, DdiError> {
            let text = Zeroizing::new(std::fs::read_to_string(file).map_err(|e| {
                DdiError::Setup(format!(
                    "cannot read the hawkBit token file {}: {e}",
                    file.display()
                ))
            })?);
            let token = text.trim();
            if token.is_empty() || token.len() > 128 {
                return Err(DdiError::Setup(format!(
                    "the hawkBit token in {} must be 1-128 characters",
                    file.display()
                )));
            }
            let mut v = HeaderValue::from_str(&format!("{scheme} {token}")).map_err(|_| {
                DdiError::Setup(format!(
                    "the hawkBit token in {} has characters a header cannot carry",
                    file.display()
                ))
            })?;
            v.set_sensitive(true);
            Ok(v)
        };
        let identity = match &settings.auth {
            AuthMode::TargetToken { file } => {
                headers.insert(AUTHORIZATION, token("TargetToken", file)?);
                None
            }
            AuthMode::EnrollmentToken => {
                let file = certs.hawkbit_token();
                if !file.exists() {
                    return Err(DdiError::Setup(format!(
                        "hawkbit.auth is the target token issued at enrollment, but the bridge \
                         issued none ({} does not exist): have the bridge provision hawkBit \
                         (HAWKBIT_URL) and re-enroll, or set hawkbit.auth and hawkbit.token_file",
                        file.display()
                    )));
                }
                headers.insert(AUTHORIZATION, token("TargetToken", &file)?);
                None
            }
            AuthMode::GatewayToken { file } => {
                headers.insert(AUTHORIZATION, token("GatewayToken", file)?);
                None
            }
            AuthMode::Certificate => Some(client_identity(certs)?),
        };

        let roots = roots(settings.ca_file.as_deref(), certs)?;
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| DdiError::Setup(e.to_string()))?
            .with_root_certificates(roots);
        let tls = match identity {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| DdiError::Setup(format!("the device identity: {e}")))?,
            None => builder.with_no_client_auth(),
        };
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(settings.stall_timeout)
            .user_agent(concat!("nexa-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| DdiError::Setup(e.to_string()))?;

        let mut base = settings.url.clone();
        base.path_segments_mut()
            .map_err(|()| DdiError::Setup(format!("{} cannot be a base URL", settings.url)))?
            .pop_if_empty()
            .extend([settings.tenant.as_str(), "controller", "v1", controller_id]);
        Ok(Self {
            http,
            base,
            headers,
        })
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Headers for requests to hawkBit itself (authentication included).
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// Headers for a download from `url`: the credentials go only to URLs under the
    /// controller base (hawkBit's own artifact links); anything else — a CDN or object store
    /// behind hawkBit's artifact URL handler, with its own signed URL — never sees the token.
    pub fn download_headers(&self, url: &str) -> HeaderMap {
        let ours = self.link(url).is_ok_and(|u| {
            u.origin() == self.base.origin()
                && u.path()
                    .strip_prefix(self.base.path())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        });
        if ours {
            return self.headers.clone();
        }
        let mut h = self.headers.clone();
        h.remove(AUTHORIZATION);
        h
    }

    /// The controller base URL.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// `{base}/{segments…}`.
    fn at(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.extend(segments);
        }
        url
    }

    /// `GET {base}`.
    pub async fn poll(&self) -> Result<ControllerBase, DdiError> {
        self.get_json(self.base.clone()).await
    }

    /// `GET {deploymentBase href}` (the href is followed verbatim).
    pub async fn deployment(&self, href: &str) -> Result<DeploymentBase, DdiError> {
        self.get_json(self.link(href)?).await
    }

    /// `GET {cancelAction href}`.
    pub async fn cancel_action(&self, href: &str) -> Result<CancelAction, DdiError> {
        self.get_json(self.link(href)?).await
    }

    /// `PUT {base}/configData` (where hawkBit's `configData` link always points).
    pub async fn put_config(&self, data: &ConfigData) -> Result<(), DdiError> {
        let url = self.at(&["configData"]);
        let req = self
            .http
            .put(url.clone())
            .headers(self.headers.clone())
            .json(data);
        self.send(url, req).await.map(drop)
    }

    /// `POST {base}/deploymentBase/{action}/feedback`.
    pub async fn feedback(&self, action: &str, feedback: &Feedback) -> Result<(), DdiError> {
        let url = self.at(&["deploymentBase", action, "feedback"]);
        self.post_feedback(url, feedback).await
    }

    /// `POST {base}/cancelAction/{stop}/feedback`.
    pub async fn cancel_feedback(&self, stop: &str, feedback: &Feedback) -> Result<(), DdiError> {
        let url = self.at(&["cancelAction", stop, "feedback"]);
        self.post_feedback(url, feedback).await
    }

    async fn post_feedback(&self, url: Url, feedback: &Feedback) -> Result<(), DdiError> {
        let req = self
            .http
            .post(url.clone())
            .headers(self.headers.clone())
            .json(feedback);
        self.send(url, req).await.map(drop)
    }

    /// A link from the server: absolute, or relative to the controller base.
    fn link(&self, href: &str) -> Result<Url, DdiError> {
        self.base.join(href).map_err(|e| DdiError::Decode {
            url: self.base.to_string(),
            reason: format!("link {href:?}: {e}"),
        })
    }

    async fn get_json<T: DeserializeOwned>(&self, url: Url) -> Result<T, DdiError> {
        let req = self.http.get(url.clone()).headers(self.headers.clone());
        let resp = self.send(url.clone(), req).await?;
        let bytes = resp.bytes().await.map_err(|e| DdiError::Network {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| DdiError::Decode {
            url: url.to_string(),
            reason: e.to_string(),
        })
    }

    async fn send(
        &self,
        url: Url,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, DdiError> {
        let resp = req
            .timeout(CALL_TIMEOUT)
            .send()
            .await
            .map_err(|e| DdiError::Network {
                url: url.to_string(),
                reason: crate::bridge::chain(&e),
            })?;
        classify(url, resp).await
    }
}

/// Roots for hawkBit's certificate: the configured CA file, else the system's roots plus the
/// enrollment's root (a reverse proxy inside the fleet may use the bridge's CA).
fn roots(ca_file: Option<&std::path::Path>, certs: &CertsDir) -> Result<RootCertStore, DdiError> {
    let mut roots = RootCertStore::empty();
    if let Some(path) = ca_file {
        for cert in pem_certs(path, "CA certificate")? {
            roots
                .add(cert)
                .map_err(|e| DdiError::Setup(format!("hawkbit.ca_file {}: {e}", path.display())))?;
        }
        return Ok(roots);
    }
    for cert in rustls_native_certs::load_native_certs().certs {
        // One odd certificate in the system bundle must not disable the others.
        let _ = roots.add(cert);
    }
    if let Ok(chain) = pem_certs(&certs.ca_chain(), "CA certificate")
        && let Some(root) = chain.last()
    {
        let _ = roots.add(root.clone());
    }
    if roots.is_empty() {
        return Err(DdiError::Setup(
            "no trust anchors for hawkBit: the system has no CA bundle and the device is not enrolled; set hawkbit.ca_file".into(),
        ));
    }
    Ok(roots)
}

async fn classify(url: Url, resp: reqwest::Response) -> Result<reqwest::Response, DdiError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let url = url.to_string();
    let retry_after = retry_after(resp.headers());
    Err(match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => DdiError::Unauthorized { url },
        StatusCode::NOT_FOUND => DdiError::NotFound { url },
        StatusCode::GONE => DdiError::Gone { url },
        StatusCode::TOO_MANY_REQUESTS => DdiError::RateLimited { retry_after },
        s if s.is_server_error() => DdiError::Unavailable {
            url,
            status: s.as_u16(),
            retry_after,
        },
        s => {
            let body = resp.text().await.unwrap_or_default();
            DdiError::Rejected {
                url,
                status: s.as_u16(),
                body: body.chars().take(300).collect(),
            }
        }
    })
}

/// `Retry-After` in seconds (the HTTP-date form is not used by hawkBit).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s.min(24 * 3600)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hawkbit::settings::{AfterInstall, RebootVia};

    fn settings(url: &str, auth: AuthMode) -> HawkbitSettings {
        HawkbitSettings {
            stall_timeout: crate::hawkbit::settings::DEFAULT_STALL_TIMEOUT,
            url: Url::parse(url).unwrap(),
            tenant: "DEFAULT".into(),
            controller_id: None,
            auth,
            ca_file: None,
            data_dir: "/nonexistent".into(),
            spool_dir: "/nonexistent".into(),
            after_install: AfterInstall::Reboot(RebootVia::Logind),
        }
    }

    #[test]
    fn the_base_url_is_built_with_encoded_segments() {
        let tmp = tempfile::tempdir().unwrap();
        let token = tmp.path().join("token");
        std::fs::write(&token, " abc123 \n").unwrap();
        let certs = CertsDir::new(tmp.path());
        let s = settings(
            "https://hawkbit.example.com/prefix/",
            AuthMode::TargetToken {
                file: token.clone(),
            },
        );
        let c = DdiClient::new(&s, "dev 1/x", &certs).unwrap();
        assert_eq!(
            c.base().as_str(),
            "https://hawkbit.example.com/prefix/DEFAULT/controller/v1/dev%201%2Fx"
        );
        assert_eq!(
            c.at(&["deploymentBase", "8", "feedback"]).path(),
            "/prefix/DEFAULT/controller/v1/dev%201%2Fx/deploymentBase/8/feedback"
        );
        let auth = c.headers().get(AUTHORIZATION).unwrap();
        assert_eq!(auth.to_str().unwrap(), "TargetToken abc123");
        assert!(auth.is_sensitive());
        assert_eq!(
            c.link("http://other/x?c=-5").unwrap().as_str(),
            "http://other/x?c=-5"
        );
    }

    #[test]
    fn unusable_credentials_are_reported_at_construction() {
        let tmp = tempfile::tempdir().unwrap();
        let certs = CertsDir::new(tmp.path());
        let missing = settings(
            "https://h/",
            AuthMode::GatewayToken {
                file: tmp.path().join("absent"),
            },
        );
        let e = DdiClient::new(&missing, "d", &certs)
            .unwrap_err()
            .to_string();
        assert!(e.contains("absent"), "{e}");
        let cert = settings("https://h/", AuthMode::Certificate);
        let e = DdiClient::new(&cert, "d", &certs).unwrap_err().to_string();
        assert!(e.contains("device.crt"), "{e}");
    }

    #[test]
    fn credentials_go_only_to_the_controller_base() {
        let tmp = tempfile::tempdir().unwrap();
        let token = tmp.path().join("token");
        std::fs::write(&token, "abc123").unwrap();
        let client = DdiClient::new(
            &settings("https://hb.example/", AuthMode::TargetToken { file: token }),
            "dev-1",
            &CertsDir::new(tmp.path()),
        )
        .unwrap();
        let base = "https://hb.example/DEFAULT/controller/v1/dev-1";
        for (url, auth) in [
            (format!("{base}/softwaremodules/7/artifacts/a.raucb"), true),
            ("https://cdn.example/a.raucb?sig=x".to_owned(), false),
            ("https://hb.example/external/7/a.raucb".to_owned(), false),
            (format!("{base}-other/softwaremodules/7/artifacts/a"), false),
            (
                "http://hb.example/DEFAULT/controller/v1/dev-1/x".to_owned(),
                false,
            ),
        ] {
            let h = client.download_headers(&url);
            assert_eq!(h.contains_key(AUTHORIZATION), auth, "{url}");
            assert!(h.contains_key(ACCEPT), "{url}");
        }
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), None);
    }
}
