//! Certificate signing behind one narrow trait.
//!
//! The enrollment service only ever talks to [`Signer`]; the built-in Sub-CA
//! ([`builtin::BuiltinCa`]) is the default backend; [`stepca::StepCa`] signs through a tenant
//! step-ca instead.

pub mod builtin;
pub mod crl;
pub mod stepca;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use nexa_proto::DeviceId;
use time::OffsetDateTime;

/// What the signer is asked to certify: a device id and the public key taken from a CSR that
/// has already been validated (signature, key type, CN).
#[derive(Debug, Clone)]
pub struct SignRequest {
    pub device_id: DeviceId,
    /// DER `SubjectPublicKeyInfo` of the device key.
    pub spki_der: Vec<u8>,
    /// The CSR as received, for backends that forward it.
    pub csr_der: Vec<u8>,
}

/// A freshly issued device certificate.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    pub pem: String,
    /// The chain after the leaf: issuing CA first, root last, PEM.
    pub chain_pem: String,
    /// Lower-case hex, no leading zero bytes.
    pub serial_hex: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

/// Why a signature could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    /// The backend is down or overloaded; the client should retry later.
    #[error("certificate signer unavailable: {reason}")]
    Unavailable {
        reason: String,
        retry_after: Duration,
    },
    /// The backend refused this request for a reason the client can act on.
    #[error("certificate signer rejected the request: {reason}")]
    Rejected { reason: String },
    /// A fault on our side (bad CA material, encoding failure).
    #[error("certificate signer failed: {0}")]
    Internal(String),
}

/// Boxed future returned by [`Signer::sign`].
pub type SignFuture<'a> =
    Pin<Box<dyn Future<Output = Result<IssuedCert, SignerError>> + Send + 'a>>;

/// A certificate authority backend.
pub trait Signer: Send + Sync + std::fmt::Debug {
    /// Issues a client certificate for `req`.
    fn sign<'a>(&'a self, req: &'a SignRequest) -> SignFuture<'a>;
}
