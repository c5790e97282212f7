//! The certificate a device presents on `renew`: it must chain to the CA that issues device
//! certificates, be valid now and be meant for client authentication. The TLS layer has
//! already proved the client holds its key (see `tls::ClientCertOffer`); this check gives a
//! precise reason for a refusal instead of a failed handshake.

use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use webpki::{EndEntityCert, KeyUsage};
use x509_parser::prelude::*;

/// What a verified client certificate says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    /// Lower-case hex, no leading zero bytes (as the store keeps serials).
    pub serial_hex: String,
    pub common_name: String,
}

/// The trust anchor of device certificates.
#[derive(Debug, Clone)]
pub struct ClientCa {
    anchor: TrustAnchor<'static>,
}

impl ClientCa {
    /// Devices' certificates chain to `root`.
    pub fn new(root: &CertificateDer<'_>) -> Result<Self, String> {
        let anchor = webpki::anchor_from_trusted_cert(root)
            .map_err(|e| format!("the device CA root is unusable: {e:?}"))?
            .to_owned();
        Ok(Self { anchor })
    }

    /// Verifies `chain` (leaf first, then the intermediates the client sent) at `now`.
    pub fn verify(&self, chain: &[Vec<u8>], now: UnixTime) -> Result<Presented, String> {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return Err("no client certificate was presented".into());
        };
        let leaf_der = CertificateDer::from(leaf.as_slice());
        let intermediates: Vec<CertificateDer<'_>> = intermediates
            .iter()
            .map(|c| CertificateDer::from(c.as_slice()))
            .collect();
        let ee = EndEntityCert::try_from(&leaf_der)
            .map_err(|e| format!("the client certificate is unreadable: {e:?}"))?;
        let algorithms = rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .all;
        ee.verify_for_usage(
            algorithms,
            std::slice::from_ref(&self.anchor),
            &intermediates,
            now,
            KeyUsage::client_auth(),
            None,
            None,
        )
        .map_err(explain)?;
        let (_, cert) = X509Certificate::from_der(leaf)
            .map_err(|e| format!("the client certificate is unreadable: {e}"))?;
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|c| c.as_str().ok())
            .unwrap_or_default()
            .to_owned();
        let serial = cert.raw_serial();
        let start = serial
            .iter()
            .position(|b| *b != 0)
            .unwrap_or(serial.len().saturating_sub(1));
        Ok(Presented {
            serial_hex: hex::encode(&serial[start..]),
            common_name,
        })
    }
}

fn explain(e: webpki::Error) -> String {
    match e {
        webpki::Error::CertExpired { .. } => {
            "the client certificate has expired; a device whose certificate expired must re-enroll \
             (nexa-server device allow-reenroll, then nexa-agent enroll --force)"
                .into()
        }
        webpki::Error::CertNotValidYet { .. } => {
            "the client certificate is not valid yet; check the device's clock".into()
        }
        webpki::Error::UnknownIssuer => {
            "the client certificate was not issued by this bridge's device CA".into()
        }
        webpki::Error::InvalidSignatureForPublicKey => {
            "the client certificate was not issued by this bridge's device CA (a CA of the same name signed it)".into()
        }
        webpki::Error::RequiredEkuNotFoundContext(_) => {
            "the client certificate is not for client authentication".into()
        }
        other => format!("the client certificate is not acceptable: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };
    use std::time::Duration;

    fn ca() -> (rcgen::Certificate, Issuer<'static, KeyPair>) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, "Test Root");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = p.self_signed(&key).unwrap();
        (cert, Issuer::new(p, key))
    }

    fn leaf(
        issuer: &Issuer<'_, KeyPair>,
        cn: &str,
        eku: ExtendedKeyUsagePurpose,
        days: (i64, i64),
    ) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec![cn.to_owned()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![eku];
        let now = ::time::OffsetDateTime::now_utc();
        p.not_before = now + ::time::Duration::days(days.0);
        p.not_after = now + ::time::Duration::days(days.1);
        p.serial_number = Some(vec![0, 0x12, 0x34].into());
        p.signed_by(&key, issuer).unwrap().der().to_vec()
    }

    fn now() -> UnixTime {
        UnixTime::since_unix_epoch(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or(Duration::ZERO),
        )
    }

    #[test]
    fn a_current_client_certificate_of_our_ca_passes_with_its_serial_and_name() {
        let (root, issuer) = ca();
        let client_ca = ClientCa::new(root.der()).unwrap();
        let cert = leaf(
            &issuer,
            "dev-1",
            ExtendedKeyUsagePurpose::ClientAuth,
            (-1, 1),
        );
        assert_eq!(
            client_ca.verify(&[cert], now()).unwrap(),
            Presented {
                serial_hex: "1234".into(),
                common_name: "dev-1".into()
            }
        );
    }

    #[test]
    fn refusals_say_why() {
        let (root, issuer) = ca();
        let client_ca = ClientCa::new(root.der()).unwrap();
        let (_, stranger) = ca();
        let cases = [
            (
                leaf(&issuer, "d", ExtendedKeyUsagePurpose::ClientAuth, (-3, -1)),
                "expired",
            ),
            (
                leaf(&issuer, "d", ExtendedKeyUsagePurpose::ClientAuth, (1, 3)),
                "not valid yet",
            ),
            (
                leaf(&stranger, "d", ExtendedKeyUsagePurpose::ClientAuth, (-1, 1)),
                "not issued by this bridge",
            ),
            (
                leaf(&issuer, "d", ExtendedKeyUsagePurpose::ServerAuth, (-1, 1)),
                "client authentication",
            ),
        ];
        for (cert, needle) in cases {
            let err = client_ca.verify(&[cert], now()).unwrap_err();
            assert!(err.contains(needle), "{needle}: {err}");
        }
        assert!(client_ca.verify(&[], now()).is_err());
    }
}
