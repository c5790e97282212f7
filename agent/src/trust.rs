//! Trust in the bridge from one SHA-256 fingerprint (like `step ca bootstrap`).
//!
//! The bridge presents leaf, issuing CA and root in its handshake. [`PinnedRootVerifier`]
//! looks for the certificate whose SHA-256 equals the pinned fingerprint, makes it the only
//! trust anchor, and then runs ordinary WebPKI verification of the leaf (chain, validity,
//! server name). If no presented certificate matches, the handshake fails and the mismatch
//! (expected and presented fingerprints) is kept for the error message.

use std::sync::{Arc, Mutex};

use nexa_proto::Fingerprint;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

/// The root the bridge presented when it was not the pinned one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinMismatch {
    pub expected: Fingerprint,
    /// Fingerprint of the last certificate of the presented chain (its root, if it sent one).
    pub presented: Fingerprint,
}

/// A rustls verifier that trusts exactly the root with the pinned fingerprint.
#[derive(Debug)]
pub struct PinnedRootVerifier {
    pin: Fingerprint,
    provider: Arc<CryptoProvider>,
    mismatch: Mutex<Option<PinMismatch>>,
}

impl PinnedRootVerifier {
    pub fn new(pin: Fingerprint, provider: Arc<CryptoProvider>) -> Self {
        Self {
            pin,
            provider,
            mismatch: Mutex::new(None),
        }
    }

    /// The last mismatch seen, if any handshake failed on the pin.
    pub fn mismatch(&self) -> Option<PinMismatch> {
        self.mismatch.lock().map(|m| *m).unwrap_or(None)
    }
}

impl ServerCertVerifier for PinnedRootVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(root) = intermediates
            .iter()
            .find(|c| Fingerprint::of_der(c) == self.pin)
        else {
            let last = intermediates.last().unwrap_or(end_entity);
            if let Ok(mut m) = self.mismatch.lock() {
                *m = Some(PinMismatch {
                    expected: self.pin,
                    presented: Fingerprint::of_der(last),
                });
            }
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            ));
        };
        let mut roots = RootCertStore::empty();
        roots.add(root.clone().into_owned())?;
        let inner =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| {
                    rustls::Error::General(format!("building the pinned-root verifier: {e}"))
                })?;
        let rest: Vec<CertificateDer<'_>> = intermediates
            .iter()
            .filter(|c| Fingerprint::of_der(c) != self.pin)
            .cloned()
            .collect();
        inner.verify_server_cert(end_entity, &rest, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A certificate chain (leaf first) and its private key, presented to the server.
pub type ClientIdentity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// A rustls client configuration trusting only the pinned root; with `identity`, it also
/// authenticates with that certificate (mTLS, for renewals).
pub fn client_config(
    verifier: Arc<PinnedRootVerifier>,
    provider: Arc<CryptoProvider>,
    identity: Option<ClientIdentity>,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
