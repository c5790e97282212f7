//! The bridge's own TLS identity.
//!
//! Without configured files, the bridge holds a server certificate issued by its own issuing
//! CA for the configured SANs, and re-issues it when the SANs change, the issuing CA changed,
//! or it expires within 30 days. The handshake presents leaf, issuing CA and root, so a device
//! that knows only the root's fingerprint can find and pin the root in the handshake itself.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ::time::OffsetDateTime;
use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::prelude::*;

use self::client_auth::ClientCertOffer;
use crate::ca::builtin::{BuiltinCa, random_serial};
use crate::datadir::{DataDir, DataDirError};

pub mod client_auth;
pub mod stepca;

const SERVER_CERT_LIFETIME: Duration = Duration::from_secs(365 * 86_400);
const RENEW_BEFORE: Duration = Duration::from_secs(30 * 86_400);

/// TLS set-up errors, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error("TLS file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("issuing the bridge TLS certificate failed: {0}")]
    Issue(#[from] rcgen::Error),
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("cannot get the bridge TLS certificate from step-ca: {0}")]
    StepCa(String),
}

fn file_err(path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Builds the rustls server configuration.
pub fn server_config(
    dir: &DataDir,
    ca: &BuiltinCa,
    sans: &[String],
    files: Option<&(std::path::PathBuf, std::path::PathBuf)>,
    device_root: &CertificateDer<'_>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let (cert_path, key_path) = match files {
        Some((c, k)) => (c.clone(), k.clone()),
        None => {
            ensure_issued(dir, ca, sans)?;
            (dir.tls_cert(), dir.tls_key())
        }
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| file_err(&cert_path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(&cert_path, e))?;
    if chain.is_empty() {
        return Err(file_err(&cert_path, "holds no certificate"));
    }
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| file_err(&key_path, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(Arc::new(ClientCertOffer::new(provider, device_root)))
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The built-in CA's root, which device certificates chain to.
pub fn builtin_root(dir: &DataDir) -> Result<CertificateDer<'static>, TlsError> {
    let path = dir.root_cert();
    CertificateDer::from_pem_file(&path).map_err(|e| file_err(&path, e))
}

/// Issues `tls/server.{crt,key}` unless the current pair is still right.
fn ensure_issued(dir: &DataDir, ca: &BuiltinCa, sans: &[String]) -> Result<(), TlsError> {
    let chain_tail = ca.ca_chain_pem();
    if dir.tls_cert().is_file() && dir.tls_key().is_file() {
        let pem = dir.read_string(&dir.tls_cert())?;
        if current_is_usable(&pem, chain_tail, sans) {
            return Ok(());
        }
        tracing::info!("re-issuing the bridge TLS certificate (SANs, issuer or expiry changed)");
    }
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(sans.to_vec())?;
    params
        .distinguished_name
        .push(DnType::CommonName, sans[0].as_str());
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::from_secs(300);
    params.not_after = now + SERVER_CERT_LIFETIME;
    params.serial_number = Some(random_serial());
    params.use_authority_key_identifier_extension = true;
    let cert = ca.issue(&params, &key)?;
    dir.write_secret(&dir.tls_key(), key.serialize_pem().as_bytes())?;
    dir.write_public(
        &dir.tls_cert(),
        format!("{}{chain_tail}", cert.pem()).as_bytes(),
    )?;
    Ok(())
}

fn current_is_usable(pem: &str, chain_tail: &str, sans: &[String]) -> bool {
    let Ok((_, block)) = x509_parser::pem::parse_x509_pem(pem.as_bytes()) else {
        return false;
    };
    let Ok(leaf) = block.parse_x509() else {
        return false;
    };
    let renew_at = OffsetDateTime::now_utc() + RENEW_BEFORE;
    if leaf.validity().not_after.to_datetime() < renew_at {
        return false;
    }
    let Some(end_of_leaf) = pem.find("-----END CERTIFICATE-----") else {
        return false;
    };
    let rest = pem[end_of_leaf + "-----END CERTIFICATE-----".len()..].trim_start();
    if rest.trim() != chain_tail.trim() {
        return false;
    }
    let mut have: Vec<String> = match leaf.subject_alternative_name() {
        Ok(Some(ext)) => ext
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some((*d).to_owned()),
                GeneralName::IPAddress(b) => ip_from_bytes(b).map(|ip| ip.to_string()),
                _ => None,
            })
            .collect(),
        _ => return false,
    };
    let mut want: Vec<String> = sans
        .iter()
        .map(|s| {
            s.parse::<std::net::IpAddr>()
                .map_or_else(|_| s.clone(), |ip| ip.to_string())
        })
        .collect();
    have.sort();
    want.sort();
    have == want
}

fn ip_from_bytes(b: &[u8]) -> Option<std::net::IpAddr> {
    match b.len() {
        4 => Some(std::net::IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
        16 => Some(std::net::IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
        _ => None,
    }
}
