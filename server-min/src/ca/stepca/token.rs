//! The JWK provisioner's private key and the one-time tokens (OTTs) it signs: ES256 JWTs
//! whose `kid` is the key's RFC 7638 thumbprint, one fresh `jti` each.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// `nbf` lies this far before `iat`.
const NBF_LEEWAY_S: i64 = 60;

/// Why the provisioner key is unusable or a token could not be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the provisioner key is not a P-256 EC private JWK: {0}")]
    Key(String),
    #[error("signing a token failed: {0}")]
    Sign(String),
}

/// The private JWK as step-ca stores it (inside the JWE).
#[derive(Deserialize)]
struct PrivateJwk {
    kty: String,
    crv: String,
    x: String,
    y: String,
    d: String,
}

/// The provisioner's signing key.
pub struct ProvisionerKey {
    name: String,
    kid: String,
    pair: EcdsaKeyPair,
    rng: SystemRandom,
}

impl std::fmt::Debug for ProvisionerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProvisionerKey")
            .field("name", &self.name)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// What one token says; the issuer is the provisioner's name.
#[derive(Debug, Clone)]
pub struct Claims<'a> {
    /// The subject: the device id for a sign, the decimal serial for a revoke.
    pub sub: &'a str,
    /// The URL the token is for, e.g. `https://ca:9000/1.0/sign`.
    pub aud: &'a str,
    /// The exact SAN set the certificate may carry (sign only).
    pub sans: Option<&'a [String]>,
    /// The pinned root's fingerprint, lower-case hex.
    pub sha: &'a str,
    /// Seconds since the epoch.
    pub now: i64,
    /// Seconds the token stays valid.
    pub lifetime: i64,
}

impl ProvisionerKey {
    /// The key of provisioner `name` from its private JWK's JSON.
    pub fn from_jwk(name: &str, jwk_json: &[u8]) -> Result<Self, TokenError> {
        let jwk: PrivateJwk =
            serde_json::from_slice(jwk_json).map_err(|e| TokenError::Key(e.to_string()))?;
        if jwk.kty != "EC" || jwk.crv != "P-256" {
            return Err(TokenError::Key(format!("kty {} crv {}", jwk.kty, jwk.crv)));
        }
        let coord = |what: &str, s: &str| -> Result<Zeroizing<Vec<u8>>, TokenError> {
            let bytes = Zeroizing::new(
                B64.decode(s)
                    .map_err(|e| TokenError::Key(format!("{what}: {e}")))?,
            );
            if bytes.len() == 32 {
                Ok(bytes)
            } else {
                Err(TokenError::Key(format!("{what} is {} bytes", bytes.len())))
            }
        };
        let secret = Zeroizing::new(jwk.d);
        let (x, y, d) = (
            coord("x", &jwk.x)?,
            coord("y", &jwk.y)?,
            coord("d", &secret)?,
        );
        let mut public = vec![4u8];
        public.extend_from_slice(&x);
        public.extend_from_slice(&y);
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_private_key_and_public_key(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &d,
            &public,
            &rng,
        )
        .map_err(|e| TokenError::Key(format!("d does not match x/y: {e}")))?;
        // RFC 7638: the required members in lexicographic order, no whitespace.
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk.x, jwk.y
        );
        let kid = B64.encode(Sha256::digest(canonical.as_bytes()));
        Ok(Self {
            name: name.to_owned(),
            kid,
            pair,
            rng,
        })
    }

    /// The key's thumbprint, which step-ca looks the provisioner up by.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The uncompressed public point (tests verify tokens with it).
    pub fn public_key(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    /// A fresh one-time token.
    pub fn token(&self, claims: &Claims<'_>) -> Result<String, TokenError> {
        let mut jti = [0u8; 16];
        self.rng
            .fill(&mut jti)
            .map_err(|e| TokenError::Sign(e.to_string()))?;
        let header = serde_json::json!({"alg": "ES256", "kid": self.kid, "typ": "JWT"});
        let mut body = serde_json::json!({
            "iss": self.name,
            "sub": claims.sub,
            "aud": claims.aud,
            // A minute of leeway for a bridge clock slightly ahead of step-ca's.
            "nbf": claims.now - NBF_LEEWAY_S,
            "iat": claims.now,
            "exp": claims.now + claims.lifetime,
            "jti": hex::encode(jti),
            "sha": claims.sha,
        });
        if let Some(sans) = claims.sans {
            body["sans"] = serde_json::json!(sans);
        }
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(body.to_string())
        );
        let signature = self
            .pair
            .sign(&self.rng, input.as_bytes())
            .map_err(|e| TokenError::Sign(e.to_string()))?;
        Ok(format!("{input}.{}", B64.encode(signature.as_ref())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};

    /// A private JWK made by ring, as step-ca would store it.
    fn jwk() -> String {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let public = pair.public_key().as_ref();
        // The PKCS#8 of ring's P-256 keys holds the scalar at a fixed place: after the
        // 36-byte prefix, 32 bytes.
        let d = &pkcs8.as_ref()[36..68];
        serde_json::json!({
            "use": "sig", "kty": "EC", "crv": "P-256", "alg": "ES256",
            "x": B64.encode(&public[1..33]), "y": B64.encode(&public[33..65]), "d": B64.encode(d),
        })
        .to_string()
    }

    #[test]
    fn tokens_are_es256_jwts_with_the_claims_and_a_fresh_jti() {
        let private = jwk();
        let key = ProvisionerKey::from_jwk("iot-bridge", private.as_bytes()).unwrap();
        let d: serde_json::Value = serde_json::from_str(&private).unwrap();
        assert!(!format!("{key:?}").contains(d["d"].as_str().unwrap()));
        let sans = vec!["dev-1".to_owned()];
        let claims = Claims {
            sub: "dev-1",
            aud: "https://ca:9000/1.0/sign",
            sans: Some(&sans),
            sha: "ab",
            now: 1_800_000_000,
            lifetime: 300,
        };
        let a = key.token(&claims).unwrap();
        let b = key.token(&claims).unwrap();
        let parts: Vec<&str> = a.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&B64.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["kid"], key.kid());
        let body: serde_json::Value =
            serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(body["iss"], "iot-bridge");
        assert_eq!(body["sub"], "dev-1");
        assert_eq!(body["aud"], "https://ca:9000/1.0/sign");
        assert_eq!(body["sans"], serde_json::json!(["dev-1"]));
        assert_eq!(
            body["exp"].as_i64().unwrap() - body["iat"].as_i64().unwrap(),
            300
        );
        let other: serde_json::Value =
            serde_json::from_slice(&B64.decode(b.split('.').nth(1).unwrap()).unwrap()).unwrap();
        assert_ne!(body["jti"], other["jti"], "each token has its own jti");
        let signature = B64.decode(parts[2]).unwrap();
        assert_eq!(signature.len(), 64, "raw R||S");
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key.public_key())
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
            .expect("the signature verifies with the provisioner's public key");
    }

    #[test]
    fn unusable_keys_are_refused() {
        let good: serde_json::Value = serde_json::from_str(&jwk()).unwrap();
        let mut rsa = good.clone();
        rsa["kty"] = "RSA".into();
        let mut mismatched = good.clone();
        mismatched["d"] = serde_json::from_str::<serde_json::Value>(&jwk()).unwrap()["d"].clone();
        let mut short = good;
        short["x"] = B64.encode([1u8; 31]).into();
        for (what, bad) in [("rsa", rsa), ("mismatched", mismatched), ("short", short)] {
            assert!(
                ProvisionerKey::from_jwk("p", bad.to_string().as_bytes()).is_err(),
                "{what}"
            );
        }
    }
}
