//! step-ca's encrypted provisioner key: a compact JWE (`PBES2-HS256+A128KW`, `A256GCM`)
//! holding the private JWK, decrypted once at start with the provisioner password.
//!
//! The steps are RFC 7518's: the key-encryption key is PBKDF2-HMAC-SHA256 of the password
//! over `alg || 0x00 || p2s` with `p2c` iterations (16 bytes), it unwraps (RFC 3394) the
//! 32-byte content key, which opens the AES-256-GCM ciphertext with the protected header
//! (as sent, base64url) as additional data.

use std::num::NonZeroU32;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::aead;
use serde::Deserialize;
use zeroize::Zeroizing;

const ALG: &str = "PBES2-HS256+A128KW";
const ENC: &str = "A256GCM";
/// step-ca writes 100,000 iterations. More than this bound would let a forged key file
/// stall the start for minutes; fewer than the lower bound is not a password hash.
const MIN_P2C: u32 = 1_000;
const MAX_P2C: u32 = 10_000_000;

/// Why the provisioner key cannot be had.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JweError {
    #[error("the encrypted provisioner key is not a compact JWE: {0}")]
    Malformed(String),
    #[error("the encrypted provisioner key uses {alg}/{enc}; only {ALG}/{ENC} is supported")]
    Unsupported { alg: String, enc: String },
    #[error(
        "the encrypted provisioner key asks for {0} PBKDF2 iterations ({MIN_P2C}..={MAX_P2C} accepted)"
    )]
    Iterations(u32),
    #[error("the provisioner password is wrong (the key does not unwrap with it)")]
    WrongPassword,
    #[error("the decrypted provisioner key is corrupt (authentication failed)")]
    Corrupt,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    enc: String,
    p2c: u32,
    p2s: String,
}

/// Decrypts `compact` with `password`: the plaintext (the private JWK's JSON).
pub fn decrypt(compact: &str, password: &[u8]) -> Result<Zeroizing<Vec<u8>>, JweError> {
    let parts: Vec<&str> = compact.trim().split('.').collect();
    let [header_b64, wrapped, iv, ciphertext, tag] = parts[..] else {
        return Err(JweError::Malformed(format!(
            "{} parts instead of 5",
            parts.len()
        )));
    };
    let decode = |what: &str, s: &str| {
        B64.decode(s)
            .map_err(|e| JweError::Malformed(format!("{what}: {e}")))
    };
    let header: Header = serde_json::from_slice(&decode("header", header_b64)?)
        .map_err(|e| JweError::Malformed(format!("header: {e}")))?;
    if header.alg != ALG || header.enc != ENC {
        return Err(JweError::Unsupported {
            alg: header.alg,
            enc: header.enc,
        });
    }
    let iterations = NonZeroU32::new(header.p2c)
        .filter(|n| (MIN_P2C..=MAX_P2C).contains(&n.get()))
        .ok_or(JweError::Iterations(header.p2c))?;
    let mut salt = ALG.as_bytes().to_vec();
    salt.push(0);
    salt.extend(decode("p2s", &header.p2s)?);

    let mut kek = Zeroizing::new([0u8; 16]);
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        &salt,
        password,
        kek.as_mut(),
    );
    let cek = Zeroizing::new(
        aes_kw::KekAes128::from(*kek)
            .unwrap_vec(&decode("encrypted key", wrapped)?)
            .map_err(|_| JweError::WrongPassword)?,
    );
    let key = aead::UnboundKey::new(&aead::AES_256_GCM, &cek)
        .map_err(|_| JweError::Malformed(format!("content key of {} bytes", cek.len())))?;
    let nonce = aead::Nonce::try_assume_unique_for_key(&decode("iv", iv)?)
        .map_err(|_| JweError::Malformed("the IV is not 12 bytes".into()))?;
    let mut in_out = Zeroizing::new(decode("ciphertext", ciphertext)?);
    in_out.extend(decode("tag", tag)?);
    let plain_len = aead::LessSafeKey::new(key)
        .open_in_place(nonce, aead::Aad::from(header_b64.as_bytes()), &mut in_out)
        .map_err(|_| JweError::Corrupt)?
        .len();
    in_out.truncate(plain_len);
    Ok(in_out)
}

/// Encrypts `plain` the way step-ca does (tests only: the bridge never writes a key).
#[cfg(test)]
pub fn encrypt(plain: &[u8], password: &[u8], p2c: u32) -> String {
    use ring::rand::{SecureRandom, SystemRandom};
    let rng = SystemRandom::new();
    let mut p2s = [0u8; 16];
    let mut cek = [0u8; 32];
    let mut iv = [0u8; 12];
    rng.fill(&mut p2s).unwrap();
    rng.fill(&mut cek).unwrap();
    rng.fill(&mut iv).unwrap();
    let header = serde_json::json!({
        "alg": ALG, "cty": "jwk+json", "enc": ENC, "p2c": p2c, "p2s": B64.encode(p2s),
    });
    let header_b64 = B64.encode(header.to_string());
    let mut salt = ALG.as_bytes().to_vec();
    salt.push(0);
    salt.extend(p2s);
    let mut kek = [0u8; 16];
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        NonZeroU32::new(p2c).unwrap(),
        &salt,
        password,
        &mut kek,
    );
    let wrapped = aes_kw::KekAes128::from(kek).wrap_vec(&cek).unwrap();
    let key = aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_256_GCM, &cek).unwrap());
    let mut in_out = plain.to_vec();
    let tag = key
        .seal_in_place_separate_tag(
            aead::Nonce::assume_unique_for_key(iv),
            aead::Aad::from(header_b64.as_bytes()),
            &mut in_out,
        )
        .unwrap();
    format!(
        "{header_b64}.{}.{}.{}.{}",
        B64.encode(wrapped),
        B64.encode(iv),
        B64.encode(&in_out),
        B64.encode(tag.as_ref())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_wrong_password() {
        let jwe = encrypt(br#"{"kty":"EC"}"#, b"s3cret", 1_000);
        assert_eq!(&decrypt(&jwe, b"s3cret").unwrap()[..], br#"{"kty":"EC"}"#);
        assert_eq!(decrypt(&jwe, b"wrong"), Err(JweError::WrongPassword));
    }

    #[test]
    fn tampering_and_foreign_formats_are_named() {
        let jwe = encrypt(b"{}", b"pw", 1_000);
        let mut parts: Vec<String> = jwe.split('.').map(str::to_owned).collect();
        // A flipped ciphertext byte fails authentication, after a correct unwrap.
        let mut ct = B64.decode(&parts[3]).unwrap();
        ct[0] ^= 1;
        parts[3] = B64.encode(ct);
        assert_eq!(decrypt(&parts.join("."), b"pw"), Err(JweError::Corrupt));
        assert!(matches!(
            decrypt("a.b.c", b"pw"),
            Err(JweError::Malformed(m)) if m.contains("3 parts")
        ));
        let other = format!(
            "{}.x.x.x.x",
            B64.encode(r#"{"alg":"RSA-OAEP","enc":"A256GCM","p2c":1,"p2s":""}"#)
        );
        assert!(matches!(
            decrypt(&other, b"pw"),
            Err(JweError::Unsupported { .. })
        ));
        let slow = format!(
            "{}.x.x.x.x",
            B64.encode(format!(
                r#"{{"alg":"{ALG}","enc":"{ENC}","p2c":4000000000,"p2s":""}}"#
            ))
        );
        assert_eq!(
            decrypt(&slow, b"pw"),
            Err(JweError::Iterations(4_000_000_000))
        );
    }
}
