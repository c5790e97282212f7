//! Site enrollment keys: `cek_` + 256 bits, shown once, stored as a keyed hash.

use ring::hmac;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::secret::{self, Pepper, RandomError};

/// The prefix of every enrollment key.
pub const PREFIX: &str = "cek_";

/// A site enrollment key in plaintext: exists only between minting and the one answer that
/// shows it, and while a presented key is checked.
pub struct SiteKey(Zeroizing<String>);

impl std::fmt::Debug for SiteKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SiteKey({})", self.fingerprint())
    }
}

impl SiteKey {
    /// A fresh key from the OS CSPRNG.
    pub fn mint() -> Result<Self, RandomError> {
        Ok(Self(secret::random_token(PREFIX)?))
    }

    /// A presented key, if it has the shape of one (a wrong shape is never looked up).
    pub fn parse(s: &str) -> Option<Self> {
        secret::is_token_shaped(s, PREFIX).then(|| Self(Zeroizing::new(s.to_owned())))
    }

    /// The plaintext, for the one answer that shows it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// 4 upper-case hex characters of the key's SHA-256: enough for a support call to tell
    /// two keys apart, far too little to help guess one.
    pub fn fingerprint(&self) -> String {
        hex::encode_upper(&Sha256::digest(self.0.as_bytes())[..2])
    }
}

/// How a key version is shown to people: `v3 (1A2B)`.
pub fn display_fingerprint(version: i64, fingerprint: &str) -> String {
    format!("v{version} ({fingerprint})")
}

/// Hashes and checks enrollment keys (and tokens) with the data directory's pepper.
#[derive(Clone)]
pub struct KeyHasher {
    key: hmac::Key,
}

impl std::fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyHasher([redacted])")
    }
}

impl KeyHasher {
    pub fn new(pepper: &Pepper) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, pepper.bytes()),
        }
    }

    /// Lower-case hex HMAC-SHA-256 of `secret`.
    pub fn hash(&self, secret: &str) -> String {
        hex::encode(hmac::sign(&self.key, secret.as_bytes()).as_ref())
    }

    /// Whether `secret` hashes to `stored_hex`, in constant time.
    pub fn verify(&self, secret: &str, stored_hex: &str) -> bool {
        match hex::decode(stored_hex) {
            Ok(tag) => hmac::verify(&self.key, secret.as_bytes(), &tag).is_ok(),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_hash_verify_and_fingerprint() {
        let hasher = KeyHasher::new(&Pepper::from_bytes([7; 32]));
        let key = SiteKey::mint().unwrap();
        let stored = hasher.hash(key.expose());
        assert_eq!(stored.len(), 64);
        assert!(hasher.verify(key.expose(), &stored));
        let other = SiteKey::mint().unwrap();
        assert!(!hasher.verify(other.expose(), &stored));
        assert!(!hasher.verify(key.expose(), "zz"));
        let peppered = KeyHasher::new(&Pepper::from_bytes([8; 32]));
        assert!(
            !peppered.verify(key.expose(), &stored),
            "another pepper verifies nothing"
        );
        assert_eq!(key.fingerprint().len(), 4);
        assert!(!format!("{key:?}").contains(key.expose()));
        assert_eq!(display_fingerprint(3, "1A2B"), "v3 (1A2B)");
    }

    #[test]
    fn only_well_formed_keys_parse() {
        let key = SiteKey::mint().unwrap();
        assert!(SiteKey::parse(key.expose()).is_some());
        assert!(SiteKey::parse("cek_").is_none());
        assert!(SiteKey::parse(&key.expose().replace("cek_", "cak_")).is_none());
    }
}
