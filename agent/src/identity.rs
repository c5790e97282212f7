//! The device's TLS client identity from `/certs`: the device key, the device certificate
//! followed by the CA chain (peers that map devices by chain need the issuing CA in the
//! handshake). Presented to the bridge for a renewal, to hawkBit for certificate
//! authentication and to the MQTT broker (`mqtt::tls`); the current pair or a renewal's
//! staged one.

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use zeroize::Zeroizing;

use crate::certs::CertsDir;

/// Why the TLS identity could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read {path}: {source}; is the device enrolled (`nexa-agent status`)?")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no usable {what}; re-enroll with `nexa-agent enroll --force`")]
    Material { path: PathBuf, what: &'static str },
    #[error("broker CA file {path} holds no certificate the TLS stack accepts: {reason}")]
    BrokerCa { path: PathBuf, reason: String },
    #[error("the device key does not fit the certificate or is unsupported: {0}")]
    Identity(rustls::Error),
}

fn read(path: &Path) -> Result<Zeroizing<Vec<u8>>, TlsSetupError> {
    std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|source| TlsSetupError::Read {
            path: path.to_owned(),
            source,
        })
}

fn certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let bytes = read(path)?;
    let list: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|_| TlsSetupError::Material {
            path: path.to_owned(),
            what,
        })?;
    if list.is_empty() {
        return Err(TlsSetupError::Material {
            path: path.to_owned(),
            what,
        });
    }
    Ok(list)
}

/// Where a TLS client identity is read from: the current pair in `/certs`, or a renewal's
/// staged pair before it is promoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityFiles {
    pub key: PathBuf,
    pub cert: PathBuf,
    /// Issuing CA(s) first, root last.
    pub chain: PathBuf,
}

impl IdentityFiles {
    /// The current pair: `device.key`, `device.crt`, `ca-chain.crt`.
    pub fn current(certs_dir: &CertsDir) -> Self {
        Self {
            key: certs_dir.device_key(),
            cert: certs_dir.device_cert(),
            chain: certs_dir.ca_chain(),
        }
    }
}

/// Whether the CA chain must be readable to present an identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chain {
    Required,
    /// Present the leaf alone when the chain file is missing or holds no certificate.
    IfPresent,
}

/// The device's TLS client identity from `/certs`: leaf, then the CA chain, and the key.
/// Also used for hawkBit's certificate authentication.
pub fn client_identity(
    certs_dir: &CertsDir,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsSetupError> {
    identity_from(&IdentityFiles::current(certs_dir), Chain::Required)
}

/// A TLS client identity from `files`: leaf, then the CA chain, and the key.
pub fn identity_from(
    files: &IdentityFiles,
    chain: Chain,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsSetupError> {
    let mut presented = certs(&files.cert, "certificate")?;
    match (certs(&files.chain, "CA certificate"), chain) {
        (Ok(list), _) => presented.extend(list),
        (Err(e), Chain::Required) => return Err(e),
        (Err(e), Chain::IfPresent) => {
            tracing::debug!(error = %e, "presenting the device certificate without its chain");
        }
    }
    let key_pem = read(&files.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsSetupError::Material {
        path: files.key.clone(),
        what: "private key",
    })?;
    Ok((presented, key))
}

/// The certificates of a PEM file (at least one).
pub fn pem_certs(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    certs(path, what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_broken_material_names_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = CertsDir::new(tmp.path());
        let e = client_identity(&dir).unwrap_err().to_string();
        assert!(e.contains("device.crt") && e.contains("status"), "{e}");
        std::fs::write(dir.device_cert(), "junk").unwrap();
        let e = client_identity(&dir).unwrap_err().to_string();
        assert!(
            e.contains("device.crt") && e.contains("enroll --force"),
            "{e}"
        );
        // Without its chain the leaf may be presented alone, when the caller allows it.
        let files = IdentityFiles::current(&dir);
        let e = identity_from(&files, Chain::IfPresent)
            .unwrap_err()
            .to_string();
        assert!(e.contains("device.crt"), "{e}");
    }
}
