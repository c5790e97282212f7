//! The TLS client configuration for the MQTT broker: the device's identity from `/certs`
//! (`crate::identity`) and the roots the broker's certificate must chain to — the
//! enrollment's root (last in `ca-chain.crt`) unless a broker CA file is configured.
//! TLS 1.2 is the minimum (rustls offers 1.2 and 1.3 only).

use std::path::Path;
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};

use crate::certs::CertsDir;
use crate::identity::{Chain, IdentityFiles, TlsSetupError, identity_from, pem_certs};

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
    let chain = pem_certs(&files.chain, "CA certificate")?;

    let mut roots = RootCertStore::empty();
    match broker_ca {
        Some(path) => {
            for cert in pem_certs(path, "CA certificate").map_err(|e| match e {
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
