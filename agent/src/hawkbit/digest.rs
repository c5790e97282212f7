//! Which hash an artifact is checked against, and computing it while the bytes stream by.
//!
//! hawkBit always sends SHA-1 and MD5 and, for artifacts uploaded by a current server,
//! SHA-256. The strongest one present is used; an artifact without any is refused.

use sha1::Digest as _;
use sha2::Digest as _;

use super::model::Hashes;

/// The hash an artifact must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    Sha256([u8; 32]),
    Sha1([u8; 20]),
    Md5([u8; 16]),
}

/// Why the server's hashes cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("the artifact has no hash to check it against")]
    Missing,
    #[error("the artifact's {algorithm} hash {value:?} is not {len} hex digits")]
    Malformed {
        algorithm: &'static str,
        value: String,
        len: usize,
    },
}

impl Expected {
    /// The strongest hash in `hashes`: SHA-256, else SHA-1, else MD5.
    pub fn strongest(hashes: &Hashes) -> Result<Self, DigestError> {
        if let Some(h) = non_empty(&hashes.sha256) {
            return parse(h, "sha256").map(Self::Sha256);
        }
        if let Some(h) = non_empty(&hashes.sha1) {
            return parse(h, "sha1").map(Self::Sha1);
        }
        if let Some(h) = non_empty(&hashes.md5) {
            return parse(h, "md5").map(Self::Md5);
        }
        Err(DigestError::Missing)
    }

    pub fn algorithm(&self) -> &'static str {
        match self {
            Expected::Sha256(_) => "sha256",
            Expected::Sha1(_) => "sha1",
            Expected::Md5(_) => "md5",
        }
    }

    pub fn hex(&self) -> String {
        match self {
            Expected::Sha256(b) => hex(b),
            Expected::Sha1(b) => hex(b),
            Expected::Md5(b) => hex(b),
        }
    }

    /// A hasher of the same algorithm.
    pub fn hasher(&self) -> Hasher {
        match self {
            Expected::Sha256(_) => Hasher::Sha256(sha2::Sha256::new()),
            Expected::Sha1(_) => Hasher::Sha1(sha1::Sha1::new()),
            Expected::Md5(_) => Hasher::Md5(md5::Md5::new()),
        }
    }
}

fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn parse<const N: usize>(value: &str, algorithm: &'static str) -> Result<[u8; N], DigestError> {
    let malformed = || DigestError::Malformed {
        algorithm,
        value: value.to_owned(),
        len: N * 2,
    };
    if value.len() != N * 2 {
        return Err(malformed());
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        let pair = value.get(i * 2..i * 2 + 2).ok_or_else(malformed)?;
        *byte = u8::from_str_radix(pair, 16).map_err(|_| malformed())?;
    }
    Ok(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A running hash.
#[derive(Debug, Clone)]
pub enum Hasher {
    Sha256(sha2::Sha256),
    Sha1(sha1::Sha1),
    Md5(md5::Md5),
}

impl Hasher {
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha1(h) => h.update(data),
            Hasher::Md5(h) => h.update(data),
        }
    }

    /// The result in lower-case hex.
    pub fn finish(self) -> String {
        match self {
            Hasher::Sha256(h) => hex(&h.finalize()),
            Hasher::Sha1(h) => hex(&h.finalize()),
            Hasher::Md5(h) => hex(&h.finalize()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hashes(sha256: Option<&str>, sha1: Option<&str>, md5: Option<&str>) -> Hashes {
        Hashes {
            sha256: sha256.map(Into::into),
            sha1: sha1.map(Into::into),
            md5: md5.map(Into::into),
        }
    }

    // Digests of "abc" (FIPS 180 / RFC 1321 test vectors).
    const SHA256_ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    const SHA1_ABC: &str = "a9993e364706816aba3e25717850c26c9cd0d89d";
    const MD5_ABC: &str = "900150983cd24fb0d6963f7d28e17f72";

    #[test]
    fn the_strongest_present_hash_is_used() {
        let all = hashes(Some(SHA256_ABC), Some(SHA1_ABC), Some(MD5_ABC));
        assert_eq!(Expected::strongest(&all).unwrap().algorithm(), "sha256");
        let old = hashes(None, Some(SHA1_ABC), Some(MD5_ABC));
        assert_eq!(Expected::strongest(&old).unwrap().algorithm(), "sha1");
        let md5 = hashes(Some(" "), None, Some(MD5_ABC));
        assert_eq!(Expected::strongest(&md5).unwrap().algorithm(), "md5");
        assert_eq!(
            Expected::strongest(&hashes(None, None, None)),
            Err(DigestError::Missing)
        );
        let upper = hashes(Some(&SHA256_ABC.to_uppercase()), None, None);
        assert_eq!(Expected::strongest(&upper).unwrap().hex(), SHA256_ABC);
        let e = Expected::strongest(&hashes(Some("abc"), None, None)).unwrap_err();
        assert!(e.to_string().contains("64 hex digits"), "{e}");
        let e = Expected::strongest(&hashes(None, Some(&"zz".repeat(20)), None)).unwrap_err();
        assert!(e.to_string().contains("sha1"), "{e}");
    }

    #[test]
    fn hashers_match_the_test_vectors_in_pieces() {
        for (h, want) in [
            (hashes(Some(SHA256_ABC), None, None), SHA256_ABC),
            (hashes(None, Some(SHA1_ABC), None), SHA1_ABC),
            (hashes(None, None, Some(MD5_ABC)), MD5_ABC),
        ] {
            let exp = Expected::strongest(&h).unwrap();
            let mut hasher = exp.hasher();
            hasher.update(b"a");
            hasher.update(b"bc");
            assert_eq!(hasher.finish(), want);
            assert_eq!(exp.hex(), want);
        }
    }
}
