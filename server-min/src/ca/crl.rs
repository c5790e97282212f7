//! The built-in CA's certificate revocation list: every certificate the bridge recorded as
//! revoked (`device revoke`, decommission), signed by the issuing CA that issued them, valid
//! for [`VALIDITY`]. Built from the database on each request: the database is the only record.

use std::time::Duration;

use rcgen::{
    CertificateRevocationListParams, KeyIdMethod, RevocationReason, RevokedCertParams, SerialNumber,
};
use time::OffsetDateTime;

use super::builtin::BuiltinCa;
use crate::db::certificates::RevokedCert;

/// How long a CRL is current (`nextUpdate - thisUpdate`).
pub const VALIDITY: Duration = Duration::from_secs(86_400);

/// Why a CRL could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CrlError {
    #[error("stored serial {serial:?} is not hex: {source}")]
    Serial {
        serial: String,
        source: hex::FromHexError,
    },
    #[error("stored revocation time {0} of a certificate is out of range")]
    Time(i64),
    #[error("signing the CRL failed: {0}")]
    Sign(#[from] rcgen::Error),
}

/// A signed CRL.
#[derive(Debug, Clone)]
pub struct Crl {
    pub der: Vec<u8>,
    pub pem: String,
}

/// The CRL listing `revoked` at `now`. Its number is `now` in milliseconds, so a later CRL
/// always has a higher number.
pub fn build(
    ca: &BuiltinCa,
    revoked: &[RevokedCert],
    now: OffsetDateTime,
) -> Result<Crl, CrlError> {
    let revoked_certs = revoked
        .iter()
        .map(|r| {
            let bytes = hex::decode(&r.serial).map_err(|source| CrlError::Serial {
                serial: r.serial.clone(),
                source,
            })?;
            let revocation_time = OffsetDateTime::from_unix_timestamp(r.revoked_at)
                .map_err(|_| CrlError::Time(r.revoked_at))?;
            Ok(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&bytes),
                revocation_time,
                reason_code: Some(RevocationReason::CessationOfOperation),
                invalidity_date: None,
            })
        })
        .collect::<Result<Vec<_>, CrlError>>()?;
    let millis = u64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    let params = CertificateRevocationListParams {
        // Whole seconds: the encoding has no fractions.
        this_update: now.replace_nanosecond(0).unwrap_or(now),
        next_update: now.replace_nanosecond(0).unwrap_or(now) + VALIDITY,
        crl_number: SerialNumber::from(millis),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let crl = ca.sign_crl(&params)?;
    Ok(Crl {
        der: crl.der().to_vec(),
        pem: crl.pem()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::{FromDer, X509Certificate};
    use x509_parser::revocation_list::CertificateRevocationList;

    #[test]
    fn the_crl_lists_the_serials_and_verifies_with_the_issuing_key() {
        let (tmp, ca) = crate::ca::builtin::test_ca(Duration::from_secs(3600));
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let revoked = [
            RevokedCert {
                serial: "7f01".into(),
                revoked_at: 1_799_999_000,
            },
            RevokedCert {
                serial: "0badcafe".into(),
                revoked_at: 1_799_999_500,
            },
        ];
        let crl = build(&ca, &revoked, now).unwrap();
        assert!(crl.pem.starts_with("-----BEGIN X509 CRL-----"));
        let (_, parsed) = CertificateRevocationList::from_der(&crl.der).unwrap();
        let serials: Vec<String> = parsed
            .iter_revoked_certificates()
            .map(|r| hex::encode(r.raw_serial()))
            .collect();
        assert_eq!(serials, ["7f01", "0badcafe"]);
        assert_eq!(parsed.last_update().timestamp(), 1_800_000_000);
        assert_eq!(
            parsed.next_update().unwrap().timestamp(),
            1_800_000_000 + 86_400
        );
        let issuing_der = crate::ca::builtin::pem_to_der(
            &std::fs::read_to_string(tmp.path().join("data/ca/issuing.crt")).unwrap(),
        )
        .unwrap();
        let (_, issuing) = X509Certificate::from_der(&issuing_der).unwrap();
        assert_eq!(parsed.issuer(), issuing.subject());
        parsed
            .verify_signature(issuing.public_key())
            .expect("signed by the issuing CA");

        let bad = [RevokedCert {
            serial: "xyz".into(),
            revoked_at: 1,
        }];
        assert!(
            build(&ca, &bad, now)
                .unwrap_err()
                .to_string()
                .contains("xyz")
        );
    }
}
