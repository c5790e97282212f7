//! Validation of a device CSR, check by check, each failure with its own error code.
//!
//! Order matters for the error a client sees: PEM framing, DER structure, key type, signature,
//! subject. A CSR that passes yields the public key the signer certifies; nothing else from the
//! CSR (requested extensions, extra names) is ever used.

use nexa_proto::{DeviceId, ErrorCode};
use sha2::{Digest, Sha256};
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY};
use x509_parser::prelude::*;

/// Upper bound on a CSR we bother to parse; a P-256 CSR is well under 1 KiB.
pub const MAX_CSR_PEM_LEN: usize = 16 * 1024;

/// A CSR that passed every check.
#[derive(Debug, Clone)]
pub struct ValidCsr {
    pub der: Vec<u8>,
    pub spki_der: Vec<u8>,
    /// Hex SHA-256 of the SPKI, how the store recognises "the same key".
    pub spki_sha256: String,
}

/// Which check failed, with a message for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CsrError {
    pub code: ErrorCode,
    pub message: String,
}

fn fail(code: ErrorCode, message: impl Into<String>) -> CsrError {
    CsrError {
        code,
        message: message.into(),
    }
}

/// Runs every check on `pem` for device `id`.
pub fn validate(pem: &str, id: &DeviceId) -> Result<ValidCsr, CsrError> {
    if pem.len() > MAX_CSR_PEM_LEN {
        return Err(fail(
            ErrorCode::CsrInvalidPem,
            format!(
                "csr_pem is {} bytes; at most {MAX_CSR_PEM_LEN} are accepted",
                pem.len()
            ),
        ));
    }
    let trimmed = pem.trim();
    if !trimmed.starts_with("-----BEGIN") {
        return Err(fail(
            ErrorCode::CsrInvalidPem,
            "csr_pem does not start with a PEM header (-----BEGIN CERTIFICATE REQUEST-----)",
        ));
    }
    let (rest, block) = x509_parser::pem::parse_x509_pem(trimmed.as_bytes()).map_err(|e| {
        fail(
            ErrorCode::CsrInvalidPem,
            format!("csr_pem is not valid PEM: {e}"),
        )
    })?;
    if block.label != "CERTIFICATE REQUEST" && block.label != "NEW CERTIFICATE REQUEST" {
        return Err(fail(
            ErrorCode::CsrInvalidPem,
            format!(
                "csr_pem holds a {:?} block; a CERTIFICATE REQUEST is expected",
                block.label
            ),
        ));
    }
    if !rest.iter().all(u8::is_ascii_whitespace) {
        return Err(fail(
            ErrorCode::CsrInvalidPem,
            "csr_pem holds more than one PEM block",
        ));
    }
    let der = block.contents;
    let (trailing, csr) = X509CertificationRequest::from_der(&der).map_err(|e| {
        fail(
            ErrorCode::CsrMalformed,
            format!("CSR is not a valid PKCS#10 structure: {e}"),
        )
    })?;
    if !trailing.is_empty() {
        return Err(fail(
            ErrorCode::CsrMalformed,
            "CSR has trailing bytes after the PKCS#10 structure",
        ));
    }
    let info = &csr.certification_request_info;
    let spki = &info.subject_pki;
    let is_p256 = spki.algorithm.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY
        && spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .is_some_and(|oid| oid == OID_EC_P256);
    if !is_p256 {
        let alg = x509_parser::oid_registry::OidRegistry::default()
            .with_crypto()
            .get(&spki.algorithm.algorithm)
            .map(|e| e.sn().to_owned())
            .unwrap_or_else(|| spki.algorithm.algorithm.to_id_string());
        return Err(fail(
            ErrorCode::CsrUnsupportedKey,
            format!("CSR key is {alg}; only EC P-256 (prime256v1) keys are accepted"),
        ));
    }
    csr.verify_signature().map_err(|e| {
        fail(
            ErrorCode::CsrSignatureInvalid,
            format!("CSR signature does not verify with its own key: {e}"),
        )
    })?;
    let cns: Vec<&str> = info
        .subject
        .iter_common_name()
        .map(|cn| cn.as_str().unwrap_or("<non-UTF-8>"))
        .collect();
    match cns.as_slice() {
        [cn] if *cn == id.as_str() => {}
        [] => {
            return Err(fail(
                ErrorCode::CsrSubjectMismatch,
                format!("CSR subject has no CN; it must be CN={id}"),
            ));
        }
        [cn] => {
            return Err(fail(
                ErrorCode::CsrSubjectMismatch,
                format!("CSR subject CN is {cn:?} but the device id is \"{id}\""),
            ));
        }
        _ => {
            return Err(fail(
                ErrorCode::CsrSubjectMismatch,
                format!(
                    "CSR subject has {} CNs; exactly one, CN={id}, is required",
                    cns.len()
                ),
            ));
        }
    }
    let spki_der = spki.raw.to_vec();
    let spki_sha256 = hex::encode(Sha256::digest(&spki_der));
    Ok(ValidCsr {
        der: der.clone(),
        spki_der,
        spki_sha256,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

    fn csr_for(cn: &str, alg: &'static rcgen::SignatureAlgorithm) -> String {
        let key = KeyPair::generate_for(alg).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.serialize_request(&key).unwrap().pem().unwrap()
    }

    fn id(s: &str) -> DeviceId {
        DeviceId::parse(s).unwrap()
    }

    #[test]
    fn accepts_good_csr() {
        let pem = csr_for("dev-1", &rcgen::PKCS_ECDSA_P256_SHA256);
        let ok = validate(&pem, &id("dev-1")).unwrap();
        assert_eq!(ok.spki_sha256.len(), 64);
    }

    #[test]
    fn each_check_has_its_code() {
        let good = csr_for("dev-1", &rcgen::PKCS_ECDSA_P256_SHA256);
        let p384 = csr_for("dev-1", &rcgen::PKCS_ECDSA_P384_SHA384);
        let ed = csr_for("dev-1", &rcgen::PKCS_ED25519);
        let cases: Vec<(String, ErrorCode)> = vec![
            ("garbage".into(), ErrorCode::CsrInvalidPem),
            (
                good.replace("CERTIFICATE REQUEST", "CERTIFICATE"),
                ErrorCode::CsrInvalidPem,
            ),
            (format!("{good}{good}"), ErrorCode::CsrInvalidPem),
            (
                "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
                    .into(),
                ErrorCode::CsrMalformed,
            ),
            (p384, ErrorCode::CsrUnsupportedKey),
            (ed, ErrorCode::CsrUnsupportedKey),
            (good.clone(), ErrorCode::CsrSubjectMismatch),
        ];
        for (i, (pem, code)) in cases.into_iter().enumerate() {
            let device = if i == 6 { id("dev-2") } else { id("dev-1") };
            assert_eq!(validate(&pem, &device).unwrap_err().code, code, "case {i}");
        }
    }
}
