//! The built-in two-level CA: an offline-capable root and an online issuing Sub-CA, both EC
//! P-256, created once by `nexa-server init` and kept in the data directory.
//!
//! Issued device certificates carry CN = device id, a DNS SAN of the device id, EKU
//! clientAuth and a random 128-bit serial. Nothing is copied from the CSR but its public key:
//! a CSR asking for extra names, CA rights or other extensions gets none of them.

use std::path::Path;
use std::time::Duration;

use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber, SubjectPublicKeyInfo,
};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use super::{IssuedCert, SignFuture, SignRequest, Signer, SignerError};
use crate::datadir::{DataDir, DataDirError};

/// Validity of the root CA.
const ROOT_LIFETIME: Duration = Duration::from_secs(20 * 365 * 86_400);
/// Validity of the issuing Sub-CA.
const ISSUING_LIFETIME: Duration = Duration::from_secs(10 * 365 * 86_400);
/// Backdating of `notBefore` to tolerate device clocks running slightly behind.
const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// Errors creating or loading the CA.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error("CA material in {path} is unusable: {reason}")]
    Material { path: String, reason: String },
    #[error("generating CA material failed: {0}")]
    Generate(#[from] rcgen::Error),
}

/// PEM material of a freshly created CA, as written by `init`.
#[derive(Debug)]
pub struct CaMaterial {
    pub root_pem: String,
    pub root_key_pem: String,
    pub issuing_pem: String,
    pub issuing_key_pem: String,
}

/// Creates a new root and issuing CA. `org` names the organisation in both subjects.
pub fn create_ca(org: &str) -> Result<CaMaterial, CaError> {
    let now = OffsetDateTime::now_utc();
    let root_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut root = CertificateParams::default();
    root.distinguished_name = dn(org, &format!("{org} Root CA"));
    root.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    root.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    root.not_before = now - BACKDATE;
    root.not_after = now + ROOT_LIFETIME;
    root.serial_number = Some(random_serial());
    let root_cert = root.self_signed(&root_key)?;
    let root_issuer = Issuer::new(root, root_key);

    let issuing_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut issuing = CertificateParams::default();
    issuing.distinguished_name = dn(org, &format!("{org} Issuing CA"));
    issuing.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    issuing.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    issuing.not_before = now - BACKDATE;
    issuing.not_after = now + ISSUING_LIFETIME;
    issuing.serial_number = Some(random_serial());
    issuing.use_authority_key_identifier_extension = true;
    let issuing_cert = issuing.signed_by(&issuing_key, &root_issuer)?;

    Ok(CaMaterial {
        root_pem: root_cert.pem(),
        root_key_pem: root_issuer.key().serialize_pem(),
        issuing_pem: issuing_cert.pem(),
        issuing_key_pem: issuing_key.serialize_pem(),
    })
}

fn dn(org: &str, cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, org);
    dn.push(DnType::CommonName, cn);
    dn
}

/// A random positive 128-bit serial (RFC 5280 allows up to 20 octets).
pub fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01; // keep the full length so the hex form is stable
    SerialNumber::from_slice(&bytes)
}

/// The issuing Sub-CA loaded from the data directory.
pub struct BuiltinCa {
    issuer: Issuer<'static, KeyPair>,
    chain_pem: String,
    device_lifetime: Duration,
}

impl std::fmt::Debug for BuiltinCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuiltinCa")
            .field("device_lifetime", &self.device_lifetime)
            .finish_non_exhaustive()
    }
}

impl BuiltinCa {
    /// Loads the issuing CA from `dir`. `device_lifetime` is the validity of issued certificates.
    pub fn load(dir: &DataDir, device_lifetime: Duration) -> Result<Self, CaError> {
        let root_pem = dir.read_string(&dir.root_cert())?;
        let issuing_pem = dir.read_string(&dir.issuing_cert())?;
        let issuing_key_pem = dir.read_string(&dir.issuing_key())?;
        let material = |path: &Path, reason: String| CaError::Material {
            path: path.display().to_string(),
            reason,
        };
        // The root must be readable even though only its PEM travels: fail at start, not per request.
        pem_to_der(&root_pem).map_err(|r| material(&dir.root_cert(), r))?;
        let issuing_der = pem_to_der(&issuing_pem).map_err(|r| material(&dir.issuing_cert(), r))?;
        let key = KeyPair::from_pem(&issuing_key_pem)
            .map_err(|e| material(&dir.issuing_key(), e.to_string()))?;
        let issuer = Issuer::from_ca_cert_der(&CertificateDer::from(issuing_der), key)
            .map_err(|e| material(&dir.issuing_cert(), e.to_string()))?;
        Ok(Self {
            issuer,
            chain_pem: format!(
                "{}{}",
                ensure_newline(&issuing_pem),
                ensure_newline(&root_pem)
            ),
            device_lifetime,
        })
    }

    /// Issuing CA first, root last, PEM.
    pub fn ca_chain_pem(&self) -> &str {
        &self.chain_pem
    }

    /// Issues a certificate for an arbitrary subject; used for the bridge's own TLS certificate.
    pub fn issue(
        &self,
        params: &CertificateParams,
        public_key: &impl rcgen::PublicKeyData,
    ) -> Result<rcgen::Certificate, rcgen::Error> {
        params.signed_by(public_key, &self.issuer)
    }

    /// Signs a CRL with the issuing CA's key: the CA that issued the listed certificates.
    pub fn sign_crl(
        &self,
        params: &rcgen::CertificateRevocationListParams,
    ) -> Result<rcgen::CertificateRevocationList, rcgen::Error> {
        params.signed_by(&self.issuer)
    }

    fn sign_device(&self, req: &SignRequest) -> Result<IssuedCert, SignerError> {
        let spki =
            SubjectPublicKeyInfo::from_der(&req.spki_der).map_err(|e| SignerError::Rejected {
                reason: format!("public key: {e}"),
            })?;
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::new(vec![req.device_id.to_string()])
            .map_err(|e| SignerError::Internal(format!("device SAN: {e}")))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, req.device_id.as_str());
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        // Short lifetimes get a proportionate backdate: a device renews at two thirds of
        // not_before..not_after, which must stay after the moment of issue.
        params.not_before = now - BACKDATE.min(self.device_lifetime / 10);
        params.not_after = now + self.device_lifetime;
        params.use_authority_key_identifier_extension = true;
        let serial = random_serial();
        let serial_hex = hex_serial(&serial);
        params.serial_number = Some(serial);
        let cert = params
            .signed_by(&spki, &self.issuer)
            .map_err(|e| SignerError::Internal(format!("signing: {e}")))?;
        Ok(IssuedCert {
            pem: cert.pem(),
            chain_pem: self.chain_pem.clone(),
            serial_hex,
            not_before: params.not_before,
            not_after: params.not_after,
        })
    }
}

impl Signer for BuiltinCa {
    fn sign<'a>(&'a self, req: &'a SignRequest) -> SignFuture<'a> {
        Box::pin(async move { self.sign_device(req) })
    }
}

/// Serial as lower-case hex without leading zero bytes.
pub fn hex_serial(serial: &SerialNumber) -> String {
    let bytes = serial.to_bytes();
    let start = bytes
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bytes.len().saturating_sub(1));
    hex::encode(&bytes[start..])
}

fn ensure_newline(pem: &str) -> String {
    if pem.ends_with('\n') {
        pem.to_owned()
    } else {
        format!("{pem}\n")
    }
}

/// Decodes the first PEM block of `pem` to DER.
pub fn pem_to_der(pem: &str) -> Result<Vec<u8>, String> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| e.to_string())?;
    Ok(block.contents)
}

/// A fresh CA in a temporary data directory (tests of this crate).
#[cfg(test)]
pub(crate) fn test_ca(device_lifetime: Duration) -> (tempfile::TempDir, BuiltinCa) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = DataDir::new(tmp.path().join("data"));
    dir.create_layout().expect("layout");
    let m = create_ca("Nexa").expect("CA");
    dir.write_public(&dir.root_cert(), m.root_pem.as_bytes())
        .expect("root");
    dir.write_public(&dir.issuing_cert(), m.issuing_pem.as_bytes())
        .expect("issuing");
    dir.write_secret(&dir.issuing_key(), m.issuing_key_pem.as_bytes())
        .expect("key");
    let ca = BuiltinCa::load(&dir, device_lifetime).expect("load");
    (tmp, ca)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::PublicKeyData;
    use x509_parser::prelude::{FromDer, X509Certificate};

    fn ca_in_tempdir() -> (tempfile::TempDir, BuiltinCa) {
        test_ca(Duration::from_secs(86_400))
    }

    #[test]
    fn issued_certificate_has_only_what_we_put_in() {
        let (_tmp, ca) = ca_in_tempdir();
        let device_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let req = SignRequest {
            device_id: nexa_proto::DeviceId::parse("dev-1").unwrap(),
            spki_der: device_key.subject_public_key_info(),
            csr_der: Vec::new(),
        };
        let issued = ca.sign_device(&req).unwrap();
        let der = pem_to_der(&issued.pem).unwrap();
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let cn: Vec<_> = cert
            .subject()
            .iter_common_name()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(cn, ["dev-1"]);
        assert!(!cert.is_ca());
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        assert_eq!(
            cert.raw_serial_as_string().replace(':', ""),
            issued.serial_hex
        );
        let lifetime = issued.not_after - issued.not_before;
        assert_eq!(lifetime.whole_seconds(), 86_400 + BACKDATE.as_secs() as i64);
        assert_eq!(cert.public_key().raw, req.spki_der.as_slice());
    }

    #[test]
    fn chain_is_issuing_then_root() {
        let (tmp, ca) = ca_in_tempdir();
        let blocks: Vec<_> = x509_parser::pem::Pem::iter_from_buffer(ca.ca_chain_pem().as_bytes())
            .map(|p| p.unwrap())
            .collect();
        assert_eq!(blocks.len(), 2);
        let issuing = blocks[0].parse_x509().unwrap();
        let root = blocks[1].parse_x509().unwrap();
        assert_eq!(issuing.issuer(), root.subject());
        let root_file = std::fs::read_to_string(tmp.path().join("data/ca/root.crt")).unwrap();
        assert_eq!(
            pem_to_der(&root_file).unwrap(),
            blocks[1].contents,
            "the chain ends in the root on disk"
        );
    }
}
