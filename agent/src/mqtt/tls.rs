//! The TLS identity the agent presents to the MQTT broker, from `/certs`: the device key, the
//! device certificate followed by the CA chain (brokers that map devices by chain need the
//! issuing CA in the handshake), and the roots the broker's certificate must chain to — the
//! enrollment's root (last in `ca-chain.crt`) unless a broker CA file is configured.
//! TLS 1.2 is the minimum (rustls offers 1.2 and 1.3 only).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};
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

/// The client configuration for the broker, with the current pair.
pub fn client_config(
    certs_dir: &CertsDir,
    broker_ca: Option<&Path>,
) -> Result<ClientConfig, TlsSetupError> {
    client_config_from(&IdentityFiles::current(certs_dir), broker_ca)
}

/// The client configuration for the broker, with the pair in `files`.
pub fn client_config_from(
    files: &IdentityFiles,
    broker_ca: Option<&Path>,
) -> Result<ClientConfig, TlsSetupError> {
    let (presented, key) = identity_from(files, Chain::Required)?;
    let chain = certs(&files.chain, "CA certificate")?;

    let mut roots = RootCertStore::empty();
    match broker_ca {
        Some(path) => {
            for cert in certs(path, "CA certificate").map_err(|e| match e {
                TlsSetupError::Material { .. } => TlsSetupError::BrokerCa {
                    path: path.to_owned(),
                    reason: "no PEM certificate in it".into(),
                },
                other => other,
            })? {
                roots.add(cert).map_err(|e| TlsSetupError::BrokerCa {
                    path: path.to_owned(),
                    reason: e.to_string(),
                })?;
            }
        }
        None => {
            // ca-chain.crt is issuing CA(s) first, root last.
            let root = chain
                .last()
                .cloned()
                .ok_or_else(|| TlsSetupError::Material {
                    path: files.chain.clone(),
                    what: "root certificate",
                })?;
            roots.add(root).map_err(|_| TlsSetupError::Material {
                path: files.chain.clone(),
                what: "root certificate",
            })?;
        }
    }

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsSetupError::Identity)?
        .with_root_certificates(roots)
        .with_client_auth_cert(presented, key)
        .map_err(TlsSetupError::Identity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_broken_material_names_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = CertsDir::new(tmp.path());
        let e = client_config(&dir, None).unwrap_err().to_string();
        assert!(e.contains("device.crt") && e.contains("status"), "{e}");
        std::fs::write(tmp.path().join("device.crt"), "junk").unwrap();
        let e = client_config(&dir, None).unwrap_err().to_string();
        assert!(
            e.contains("device.crt") && e.contains("enroll --force"),
            "{e}"
        );
    }
}
