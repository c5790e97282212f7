//! Argon2id password hashes (PHC strings) for people's passwords.

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

use super::secret::{RandomError, random_bytes};

/// OWASP's first recommendation for Argon2id: 19 MiB, 2 passes, 1 lane.
const MEMORY_KIB: u32 = 19 * 1024;
const PASSES: u32 = 2;
const LANES: u32 = 1;

/// Shortest password accepted.
pub const MIN_LEN: usize = 12;
/// Longest password accepted (bytes); Argon2 itself has no practical limit.
pub const MAX_LEN: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error(transparent)]
    Random(#[from] RandomError),
    #[error("hashing the password failed: {0}")]
    Hash(String),
    #[error("the password must be at least {MIN_LEN} characters")]
    TooShort,
    #[error("the password must be at most {MAX_LEN} bytes")]
    TooLong,
}

fn argon2() -> Result<Argon2<'static>, PasswordError> {
    let params = Params::new(MEMORY_KIB, PASSES, LANES, None)
        .map_err(|e| PasswordError::Hash(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Checks a new password against the policy.
pub fn check_policy(password: &str) -> Result<(), PasswordError> {
    if password.chars().count() < MIN_LEN {
        return Err(PasswordError::TooShort);
    }
    if password.len() > MAX_LEN {
        return Err(PasswordError::TooLong);
    }
    Ok(())
}

/// The PHC string of `password` with a fresh 16-byte salt. CPU-heavy: call it off the
/// async executor.
pub fn hash(password: &str) -> Result<String, PasswordError> {
    let salt = random_bytes::<16>()?;
    let hash = argon2()?
        .hash_password_with_salt(password.as_bytes(), salt.as_ref())
        .map_err(|e| PasswordError::Hash(e.to_string()))?;
    Ok(hash.to_string())
}

/// Whether `password` matches `phc`. A malformed stored hash matches nothing. CPU-heavy.
pub fn verify(password: &str, phc: &str) -> bool {
    match argon2() {
        Ok(a) => a.verify_password(password.as_bytes(), phc).is_ok(),
        Err(_) => false,
    }
}

/// A hash no password matches, verified for unknown users so that a login takes as long
/// whether or not the name exists.
pub fn dummy_hash() -> &'static str {
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$2xUvXAfeM7Qz1bDIGGsN+2mfbH1ZtmMkFMPMWBJE0Lw"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_only_their_password() {
        let phc = hash("correct horse battery").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify("correct horse battery", &phc));
        assert!(!verify("correct horse batterY", &phc));
        assert!(!verify("correct horse battery", "not a phc string"));
        assert_ne!(phc, hash("correct horse battery").unwrap(), "salted");
        assert!(!verify("anything at all", dummy_hash()));
    }

    #[test]
    fn the_policy_names_the_limit() {
        assert!(check_policy("short").is_err());
        assert!(check_policy("twelve chars").is_ok());
        assert!(check_policy(&"x".repeat(2000)).is_err());
    }
}
