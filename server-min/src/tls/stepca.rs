//! The bridge's TLS identity when step-ca signs: a key made here and a server certificate
//! from step-ca for the configured SANs, presented with step-ca's intermediate and root (so
//! a device pinning the root's fingerprint finds it in the handshake). step-ca certificates
//! are short-lived (24 h by default), so a task replaces the identity at two thirds of its
//! lifetime, without a restart; new handshakes get the new one.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use ::time::OffsetDateTime;
use rcgen::{CertificateParams, DnType, KeyPair};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::TlsError;
use super::client_auth::ClientCertOffer;
use crate::ca::stepca::StepCa;

/// A failed replacement is retried this often while the current identity lasts.
const RETRY: Duration = Duration::from_secs(30);

/// The current identity, swapped by the refresh task.
#[derive(Debug)]
pub struct Rotating {
    current: RwLock<Arc<CertifiedKey>>,
}

impl Rotating {
    fn set(&self, key: Arc<CertifiedKey>) {
        // A panicking writer cannot leave an `Arc` half-written: poisoning is ignored.
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = key;
    }
}

impl ResolvesServerCert for Rotating {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        )
    }
}

/// One identity from step-ca, and its validity.
struct Identity {
    key: Arc<CertifiedKey>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

async fn issue(ca: &StepCa, sans: &[String]) -> Result<Identity, TlsError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(sans.to_vec())?;
    params
        .distinguished_name
        .push(DnType::CommonName, sans[0].as_str());
    let csr = params.serialize_request(&key)?;
    let issued = ca
        .issue_server(sans, csr.der())
        .await
        .map_err(|e| TlsError::StepCa(e.to_string()))?;
    let pem = format!("{}{}", issued.pem, issued.chain_pem);
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::StepCa(format!("step-ca's chain: {e}")))?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider.key_provider.load_private_key(der)?;
    Ok(Identity {
        key: Arc::new(CertifiedKey::new(chain, signing)),
        not_before: issued.not_before,
        not_after: issued.not_after,
    })
}

/// When to replace an identity valid from `not_before` to `not_after`, from `now`.
fn refresh_in(
    now: OffsetDateTime,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Duration {
    let at = not_before + (not_after - not_before) * 2 / 3;
    Duration::try_from(at - now).unwrap_or(Duration::ZERO)
}

/// The server configuration with a step-ca identity for `sans`, kept fresh by a task that
/// lives as long as the runtime.
pub async fn server_config(
    ca: Arc<StepCa>,
    sans: Vec<String>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let first = issue(&ca, &sans).await?;
    tracing::info!(not_after = %first.not_after, "bridge TLS certificate issued by step-ca");
    let rotating = Arc::new(Rotating {
        current: RwLock::new(first.key),
    });
    let mut wait = refresh_in(OffsetDateTime::now_utc(), first.not_before, first.not_after);
    let mut expires = first.not_after;
    let swap = Arc::clone(&rotating);
    let offer_root = ca.root_der().clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(wait).await;
            match issue(&ca, &sans).await {
                Ok(next) => {
                    swap.set(next.key);
                    expires = next.not_after;
                    // Never back to back, whatever the certificate says (a clock far ahead
                    // of step-ca's, a lifetime shorter than the step-ca backdate).
                    wait = refresh_in(OffsetDateTime::now_utc(), next.not_before, next.not_after)
                        .max(RETRY);
                    tracing::info!(not_after = %expires, "bridge TLS certificate renewed by step-ca");
                }
                Err(e) => {
                    tracing::error!(error = %e, %expires, retry_in_s = RETRY.as_secs(), "cannot renew the bridge TLS certificate at step-ca");
                    wait = RETRY;
                }
            }
        }
    });
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let offer = ClientCertOffer::new(provider.clone(), &offer_root);
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(Arc::new(offer))
        .with_cert_resolver(rotating);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_comes_at_two_thirds_and_never_in_the_past() {
        let nb = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let na = nb + Duration::from_secs(24 * 3600);
        assert_eq!(refresh_in(nb, nb, na), Duration::from_secs(16 * 3600));
        assert_eq!(
            refresh_in(nb + Duration::from_secs(3600), nb, na),
            Duration::from_secs(15 * 3600)
        );
        assert_eq!(refresh_in(na, nb, na), Duration::ZERO);
    }
}
