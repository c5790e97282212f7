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

/// The device's TLS client identity from `/certs`: leaf, then the CA chain, and the key.
/// Also used for hawkBit's certificate authentication.
pub fn client_identity(
    certs_dir: &CertsDir,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsSetupError> {
    let mut presented = certs(&certs_dir.device_cert(), "certificate")?;
    presented.extend(certs(&certs_dir.ca_chain(), "CA certificate")?);
    let key_path = certs_dir.device_key();
    let key_pem = read(&key_path)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsSetupError::Material {
        path: key_path.clone(),
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

/// The client configuration for the broker.
pub fn client_config(
    certs_dir: &CertsDir,
    broker_ca: Option<&Path>,
) -> Result<ClientConfig, TlsSetupError> {
    let (presented, key) = client_identity(certs_dir)?;
    let chain = certs(&certs_dir.ca_chain(), "CA certificate")?;

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
                    path: certs_dir.ca_chain(),
                    what: "root certificate",
                })?;
            roots.add(root).map_err(|_| TlsSetupError::Material {
                path: certs_dir.ca_chain(),
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
