//! Client certificates on the bridge's TLS: offered, never required (enrolling devices have
//! none), and at this layer only checked for possession: the handshake signature must verify
//! with the presented certificate's key. Whether the certificate is acceptable (issuer,
//! validity, owner) is decided by the endpoint that uses it (`renew`), which can then answer
//! with a precise JSON error instead of a failed handshake.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};
use x509_parser::prelude::*;

/// Offers client authentication, names the device CA as the acceptable issuer, and checks
/// proof of possession.
#[derive(Debug)]
pub struct ClientCertOffer {
    provider: Arc<CryptoProvider>,
    hints: Vec<DistinguishedName>,
}

impl ClientCertOffer {
    /// `ca` issues device certificates (its subject is sent as the hint).
    pub fn new(provider: Arc<CryptoProvider>, ca: &CertificateDer<'_>) -> Self {
        let hints = X509Certificate::from_der(ca)
            .map(|(_, c)| vec![DistinguishedName::from(c.subject().as_raw().to_vec())])
            .unwrap_or_default();
        Self { provider, hints }
    }
}

impl ClientCertVerifier for ClientCertOffer {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
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
