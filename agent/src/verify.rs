//! Verification of certificate material before it is trusted or written.
//!
//! A device certificate is accepted only if its chain (`ca-chain.crt`: issuing CA first, root
//! last) ends in the pinned root, WebPKI validates it for client authentication, its CN is the
//! device id, and its public key is the device's own key.

use std::time::SystemTime;

use nexa_proto::{DeviceId, Fingerprint};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, UnixTime};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Facts read from a verified certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    /// Lower-case hex without leading zeros.
    pub serial_hex: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

/// Why material was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("{what} holds no PEM certificate")]
    NoCertificate { what: String },
    #[error("{what} is not a valid certificate: {reason}")]
    BadCertificate { what: String, reason: String },
    #[error("the CA chain ends in root {presented}, not the pinned root {expected}")]
    RootMismatch {
        expected: Fingerprint,
        presented: Fingerprint,
    },
    #[error("the certificate does not verify against the pinned root: {0}")]
    Chain(String),
    #[error("the certificate is for {found:?}, not for device {expected:?}")]
    Subject { expected: String, found: String },
    #[error("the certificate's public key is not the device key")]
    KeyMismatch,
}

fn certs(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, VerifyError> {
    let list = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| VerifyError::BadCertificate {
            what: what.to_owned(),
            reason: e.to_string(),
        })?;
    if list.is_empty() {
        return Err(VerifyError::NoCertificate {
            what: what.to_owned(),
        });
    }
    Ok(list)
}

/// Verifies a device certificate and its chain; returns what the certificate says.
pub fn verify_device_cert(
    cert_pem: &str,
    chain_pem: &str,
    pin: Fingerprint,
    id: &DeviceId,
    device_spki: &[u8],
    now: SystemTime,
) -> Result<CertFacts, VerifyError> {
    let leaf = certs(cert_pem, "the device certificate")?.swap_remove(0);
    let mut chain = certs(chain_pem, "the CA chain")?;
    let root = chain.pop().ok_or_else(|| VerifyError::NoCertificate {
        what: "the CA chain".into(),
    })?;
    let presented = Fingerprint::of_der(&root);
    if presented != pin {
        return Err(VerifyError::RootMismatch {
            expected: pin,
            presented,
        });
    }
    let anchor = webpki::anchor_from_trusted_cert(&root)
        .map_err(|e| VerifyError::Chain(format!("root: {e}")))?;
    let ee =
        webpki::EndEntityCert::try_from(&leaf).map_err(|e| VerifyError::Chain(e.to_string()))?;
    let since_epoch = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let algs = rustls::crypto::ring::default_provider()
        .signature_verification_algorithms
        .all;
    ee.verify_for_usage(
        algs,
        &[anchor],
        &chain,
        UnixTime::since_unix_epoch(since_epoch),
        webpki::KeyUsage::client_auth(),
        None,
        None,
    )
    .map_err(|e| VerifyError::Chain(e.to_string()))?;

    let bad = |reason: String| VerifyError::BadCertificate {
        what: "the device certificate".into(),
        reason,
    };
    let (_, cert) = X509Certificate::from_der(&leaf).map_err(|e| bad(e.to_string()))?;
    let cns: Vec<&str> = cert
        .subject()
        .iter_common_name()
        .filter_map(|c| c.as_str().ok())
        .collect();
    if cns != [id.as_str()] {
        return Err(VerifyError::Subject {
            expected: id.to_string(),
            found: cns.join(","),
        });
    }
    if cert.public_key().raw != device_spki {
        return Err(VerifyError::KeyMismatch);
    }
    Ok(facts_of(&cert))
}

fn facts_of(cert: &X509Certificate<'_>) -> CertFacts {
    let to_time = |t: x509_parser::time::ASN1Time| t.to_datetime();
    let serial = cert.tbs_certificate.raw_serial();
    let start = serial
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(serial.len().saturating_sub(1));
    CertFacts {
        serial_hex: serial[start..].iter().map(|b| format!("{b:02x}")).collect(),
        not_before: to_time(cert.validity().not_before),
        not_after: to_time(cert.validity().not_after),
    }
}

/// What a certificate says about itself, read without verifying anything: for deciding when
/// to renew and for matching a key to a certificate. Never a reason to trust it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    pub facts: CertFacts,
    /// DER SubjectPublicKeyInfo.
    pub spki: Vec<u8>,
    /// The certificate's DER encoding.
    pub der: Vec<u8>,
}

/// Reads the first certificate of `pem`; `what` names it in errors (usually the file).
pub fn inspect(pem: &str, what: &str) -> Result<Inspected, VerifyError> {
    let der = certs(pem, what)?.swap_remove(0);
    let (_, cert) = X509Certificate::from_der(&der).map_err(|e| VerifyError::BadCertificate {
        what: what.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(Inspected {
        facts: facts_of(&cert),
        spki: cert.public_key().raw.to_vec(),
        der: der.to_vec(),
    })
}
