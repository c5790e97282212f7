//! SHA-256 certificate fingerprints, the one thing a device must know about its bridge's CA.
//!
//! Printed as 64 lower-case hex digits (the form `step certificate fingerprint` prints);
//! parsed case-insensitively, with or without `:` separators and an optional `sha256:` prefix.

use sha2::{Digest, Sha256};
use std::fmt;

/// The SHA-256 digest of a DER-encoded certificate.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

/// Why a string is not a fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FingerprintError {
    #[error("fingerprint must be 64 hex digits (SHA-256), got {0} digits")]
    Length(usize),
    #[error("fingerprint contains a non-hex character {0:?}")]
    NotHex(char),
}

impl Fingerprint {
    /// Fingerprint of a DER certificate.
    pub fn of_der(der: &[u8]) -> Self {
        Self(Sha256::digest(der).into())
    }

    pub fn parse(s: &str) -> Result<Self, FingerprintError> {
        let s = s.trim();
        let s = s
            .strip_prefix("sha256:")
            .or_else(|| s.strip_prefix("SHA256:"))
            .unwrap_or(s);
        let mut digits = Vec::with_capacity(64);
        for c in s.chars().filter(|c| *c != ':') {
            if !c.is_ascii_hexdigit() {
                return Err(FingerprintError::NotHex(c));
            }
            digits.push(c.to_ascii_lowercase() as u8);
        }
        if digits.len() != 64 {
            return Err(FingerprintError::Length(digits.len()));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(&digits, &mut out)
            .map_err(|_| FingerprintError::Length(digits.len()))?;
        Ok(Self(out))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl std::str::FromStr for Fingerprint {
    type Err = FingerprintError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_accepts_common_spellings() {
        let fp = Fingerprint::of_der(b"not really a certificate");
        let hex = fp.to_string();
        assert_eq!(hex.len(), 64);
        assert_eq!(Fingerprint::parse(&hex).unwrap(), fp);
        assert_eq!(Fingerprint::parse(&hex.to_uppercase()).unwrap(), fp);
        let colons: Vec<String> = hex
            .as_bytes()
            .chunks(2)
            .map(|c| String::from_utf8_lossy(c).into())
            .collect();
        assert_eq!(Fingerprint::parse(&colons.join(":")).unwrap(), fp);
        assert_eq!(Fingerprint::parse(&format!("sha256:{hex}\n")).unwrap(), fp);
    }

    #[test]
    fn rejects_wrong_length_and_non_hex() {
        assert_eq!(Fingerprint::parse("abcd"), Err(FingerprintError::Length(4)));
        let bad = format!("{}zz", "0".repeat(62));
        assert_eq!(Fingerprint::parse(&bad), Err(FingerprintError::NotHex('z')));
    }
}
