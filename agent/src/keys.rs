//! Key material generated on the device: the EC P-256 identity key with its CSR, and the
//! WireGuard key pair. Private keys live only in `Zeroizing` buffers and files of mode 0600;
//! they are never logged and never sent anywhere.

use nexa_proto::{DeviceId, WgPublicKey};
use nexa_wg::PrivateKey;
use p256::elliptic_curve::Generate;
use p256::pkcs8::{EncodePrivateKey, LineEnding};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PublicKeyData};
use zeroize::Zeroizing;

/// Key errors; never carry key bytes.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("generating the device key failed: {0}")]
    Generate(String),
    #[error("{what} is not a usable EC P-256 private key: {reason}")]
    BadDeviceKey { what: String, reason: String },
    #[error("{what} is not a WireGuard private key (32 bytes, base64)")]
    BadWgKey { what: String },
    #[error("building the CSR failed: {0}")]
    Csr(String),
}

/// The device's EC P-256 identity key.
pub struct DeviceKey {
    pem: Zeroizing<String>,
    pair: KeyPair,
}

impl std::fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceKey(<private>)")
    }
}

impl DeviceKey {
    /// A fresh key from the OS CSPRNG.
    pub fn generate() -> Result<Self, KeyError> {
        let secret = p256::SecretKey::generate();
        let pem = secret
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| KeyError::Generate(e.to_string()))?;
        Self::from_pem(pem, "the generated key")
    }

    /// Parses a PKCS#8 PEM key; `what` names it in errors (usually the file).
    pub fn from_pem(pem: Zeroizing<String>, what: &str) -> Result<Self, KeyError> {
        let bad = |reason: String| KeyError::BadDeviceKey {
            what: what.to_owned(),
            reason,
        };
        let pair = KeyPair::from_pem(&pem).map_err(|e| bad(e.to_string()))?;
        if pair.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
            return Err(bad("the key is not EC P-256".into()));
        }
        Ok(Self { pem, pair })
    }

    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// DER SubjectPublicKeyInfo of the key.
    pub fn spki_der(&self) -> Vec<u8> {
        self.pair.subject_public_key_info()
    }

    /// A PKCS#10 CSR with CN = device id and a DNS SAN of the device id.
    pub fn csr_pem(&self, id: &DeviceId) -> Result<String, KeyError> {
        let mut params = CertificateParams::new(vec![id.to_string()])
            .map_err(|e| KeyError::Csr(e.to_string()))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, id.as_str());
        params.distinguished_name = dn;
        let csr = params
            .serialize_request(&self.pair)
            .map_err(|e| KeyError::Csr(e.to_string()))?;
        csr.pem().map_err(|e| KeyError::Csr(e.to_string()))
    }
}

/// The device's WireGuard key pair.
pub struct WgKeyPair {
    private_b64: Zeroizing<String>,
    public: WgPublicKey,
}

impl std::fmt::Debug for WgKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WgKeyPair(public {})", self.public)
    }
}

impl WgKeyPair {
    /// A fresh, clamped Curve25519 key (identical to what `wg genkey` produces).
    pub fn generate() -> Self {
        Self::from_key(&PrivateKey::generate())
    }

    fn from_key(key: &PrivateKey) -> Self {
        Self {
            private_b64: key.to_base64(),
            public: key.public_key(),
        }
    }

    /// Parses a base64 private key; `what` names it in errors.
    pub fn from_private_b64(b64: &str, what: &str) -> Result<Self, KeyError> {
        let key = PrivateKey::from_base64(b64).map_err(|_| KeyError::BadWgKey {
            what: what.to_owned(),
        })?;
        Ok(Self::from_key(&key))
    }

    pub fn private_b64(&self) -> &str {
        &self.private_b64
    }

    pub fn public(&self) -> &WgPublicKey {
        &self.public
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_key_round_trips_and_makes_a_csr() {
        let key = DeviceKey::generate().unwrap();
        assert!(key.pem().starts_with("-----BEGIN PRIVATE KEY-----"));
        let again = DeviceKey::from_pem(Zeroizing::new(key.pem().to_owned()), "test").unwrap();
        assert_eq!(again.spki_der(), key.spki_der());
        let id = DeviceId::parse("dev-1").unwrap();
        assert!(
            key.csr_pem(&id)
                .unwrap()
                .starts_with("-----BEGIN CERTIFICATE REQUEST-----")
        );
        let err =
            DeviceKey::from_pem(Zeroizing::new("junk".into()), "/certs/device.key").unwrap_err();
        assert!(err.to_string().contains("/certs/device.key"));
    }

    #[test]
    fn wg_key_round_trips() {
        let k = WgKeyPair::generate();
        let again = WgKeyPair::from_private_b64(k.private_b64(), "test").unwrap();
        assert_eq!(again.public(), k.public());
        assert!(WgKeyPair::from_private_b64("AAAA", "x").is_err());
        assert!(
            !format!("{k:?}").contains(k.private_b64()),
            "Debug must not show the private key"
        );
    }
}
