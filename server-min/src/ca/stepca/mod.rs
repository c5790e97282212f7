//! The step-ca backend: device CSRs are signed by a tenant step-ca through its JWK
//! provisioner (`POST /1.0/sign` with a fresh one-time token each), and certificates are
//! revoked there (`POST /1.0/revoke`, passive).
//!
//! At start the bridge fetches step-ca's root (`GET /root/{sha256}`) over an unverified
//! connection and accepts it only if its SHA-256 is the configured fingerprint; from then on
//! step-ca must chain to that root. It reads the provisioner's encrypted key from
//! `GET /provisioners` and decrypts it once with the password. Every later call has
//! timeouts, and a step-ca that cannot be reached or answers 5xx is "unavailable" (the
//! device retries), one that answers 4xx "rejected" with step-ca's reason.

mod api;
pub mod jwe;
pub mod token;

use std::sync::Arc;
use std::time::Duration;

use nexa_proto::Fingerprint;
use rustls_pki_types::CertificateDer;
use url::Url;

use self::token::ProvisionerKey;
use super::{IssuedCert, SignFuture, SignRequest, Signer};
use crate::clock::Clock;
use crate::config::StepCaSettings;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a one-time token is valid; it is used at once.
const TOKEN_LIFETIME_S: i64 = 300;
/// What a device is told to wait when step-ca is unavailable.
pub const RETRY_AFTER: Duration = Duration::from_secs(10);

/// Why the bridge cannot use the configured step-ca.
#[derive(Debug, thiserror::Error)]
pub enum StepCaError {
    #[error("cannot reach step-ca at {url}: {detail}; check STEP_CA_URL and that step-ca runs")]
    Unreachable { url: String, detail: String },
    #[error(
        "step-ca's root has fingerprint {presented}, but STEP_CA_FINGERPRINT is {expected}; check the fingerprint (`step certificate fingerprint root_ca.crt`)"
    )]
    Fingerprint {
        expected: Fingerprint,
        presented: Fingerprint,
    },
    #[error(
        "step-ca has no root certificate with fingerprint {expected}; check STEP_CA_FINGERPRINT (`step certificate fingerprint root_ca.crt`)"
    )]
    NoSuchRoot { expected: Fingerprint },
    #[error("step-ca at {url} answered {status}: {message}")]
    Refused {
        url: String,
        status: u16,
        message: String,
    },
    #[error("step-ca at {url} sent an unusable answer: {detail}")]
    BadAnswer { url: String, detail: String },
    #[error(
        "step-ca has no JWK provisioner named {name:?} (it has: {available}); check STEP_CA_PROVISIONER_NAME"
    )]
    NoProvisioner { name: String, available: String },
    #[error(
        "cannot decrypt the key of step-ca provisioner {name:?}: {source}; check STEP_CA_PROVISIONER_PASSWORD(_FILE)"
    )]
    Key { name: String, source: jwe::JweError },
    #[error("the key of step-ca provisioner {name:?} is unusable: {source}")]
    KeyFormat {
        name: String,
        source: token::TokenError,
    },
    #[error("TLS set-up for step-ca failed: {0}")]
    Tls(String),
    #[error("{0}")]
    Internal(String),
}

/// A connected step-ca: its pinned root, the provisioner key and an HTTPS client that
/// trusts only that root.
pub struct StepCa {
    http: reqwest::Client,
    base: Url,
    fingerprint: Fingerprint,
    root_pem: String,
    root_der: CertificateDer<'static>,
    key: ProvisionerKey,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for StepCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepCa")
            .field("base", &self.base.as_str())
            .field("fingerprint", &self.fingerprint)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl StepCa {
    /// Pins the root, loads and decrypts the provisioner key.
    pub async fn connect(
        settings: &StepCaSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StepCaError> {
        let base = settings.url.clone();
        let (root_pem, root_der) = api::fetch_root(&base, &settings.fingerprint).await?;
        let http = api::trusting(&root_der)?;
        let provisioner = api::find_provisioner(&http, &base, &settings.provisioner).await?;
        let name = settings.provisioner.clone();
        let password = settings.password.clone();
        // PBKDF2 with step-ca's 100,000 iterations: tens of milliseconds, once.
        let key = tokio::task::spawn_blocking(move || {
            let jwk = jwe::decrypt(&provisioner.encrypted_key, password.expose().as_bytes())
                .map_err(|source| StepCaError::Key {
                    name: name.clone(),
                    source,
                })?;
            let key =
                ProvisionerKey::from_jwk(&name, &jwk).map_err(|source| StepCaError::KeyFormat {
                    name: name.clone(),
                    source,
                })?;
            if key.kid() != provisioner.kid {
                return Err(StepCaError::KeyFormat {
                    name,
                    source: token::TokenError::Key(format!(
                        "its thumbprint {} is not the provisioner's kid {}",
                        key.kid(),
                        provisioner.kid
                    )),
                });
            }
            Ok(key)
        })
        .await
        .map_err(|e| StepCaError::Internal(format!("the key decryption task failed: {e}")))??;
        tracing::info!(url = %base, provisioner = %settings.provisioner, kid = %key.kid(), fingerprint = %settings.fingerprint, "step-ca signs device certificates");
        Ok(Self {
            http,
            base,
            fingerprint: settings.fingerprint,
            root_pem,
            root_der,
            key,
            clock,
        })
    }

    /// The pinned root's fingerprint: what devices pin.
    pub fn root_fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    pub fn root_der(&self) -> &CertificateDer<'static> {
        &self.root_der
    }

    fn url(&self, path: &str) -> Url {
        // `base` is a validated base URL ending in '/', and `path` a fixed relative path.
        self.base.join(path).unwrap_or_else(|_| self.base.clone())
    }

    /// A fresh token for `aud`.
    fn token(&self, sub: &str, aud: &Url, sans: Option<&[String]>) -> Result<String, String> {
        self.key
            .token(&token::Claims {
                sub,
                aud: aud.as_str(),
                sans,
                sha: &self.fingerprint.to_string(),
                now: self.clock.unix(),
                lifetime: TOKEN_LIFETIME_S,
            })
            .map_err(|e| e.to_string())
    }

    /// Revokes the certificate with serial `serial_hex` (passive: step-ca records it and
    /// refuses to renew it).
    pub async fn revoke(&self, serial_hex: &str, reason: &str) -> Result<(), super::SignerError> {
        api::revoke(self, serial_hex, reason).await
    }

    /// A server certificate for the bridge itself, for `sans` (the first is the CN), on the
    /// key behind `csr_der`: the leaf, and the chain after it up to the root, PEM.
    pub async fn issue_server(
        &self,
        sans: &[String],
        csr_der: &[u8],
    ) -> Result<IssuedCert, super::SignerError> {
        api::sign(self, &sans[0], sans, csr_der).await
    }
}

impl Signer for StepCa {
    fn sign<'a>(&'a self, req: &'a SignRequest) -> SignFuture<'a> {
        Box::pin(async move {
            let id = req.device_id.as_str();
            let issued = api::sign(self, id, &[id.to_owned()], &req.csr_der).await?;
            api::check_issued(&issued, id, &req.spki_der)?;
            Ok(issued)
        })
    }
}
