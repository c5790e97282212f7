//! Random secrets from the OS CSPRNG, and the data directory's pepper (the key of every
//! keyed hash the bridge stores).

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::TryRngCore;
use rand::rngs::OsRng;
use zeroize::Zeroizing;

use crate::datadir::{DataDir, DataDirError};

/// The OS random source failed; nothing secret can be made.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct RandomError(String);

/// `N` bytes from the OS CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<Zeroizing<[u8; N]>, RandomError> {
    let mut buf = Zeroizing::new([0u8; N]);
    OsRng
        .try_fill_bytes(buf.as_mut())
        .map_err(|e| RandomError(e.to_string()))?;
    Ok(buf)
}

/// A 256-bit secret as `prefix` + 43 base64url characters (no padding).
pub fn random_token(prefix: &str) -> Result<Zeroizing<String>, RandomError> {
    let bytes = random_bytes::<32>()?;
    Ok(Zeroizing::new(format!(
        "{prefix}{}",
        URL_SAFE_NO_PAD.encode(bytes.as_ref())
    )))
}

/// Whether `s` is `prefix` followed by exactly the 43 base64url characters of 32 bytes.
pub fn is_token_shaped(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix).is_some_and(|rest| {
        rest.len() == 43
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && URL_SAFE_NO_PAD
                .decode(rest)
                .is_ok_and(|raw| raw.len() == 32)
    })
}

/// A random hex id of `N` bytes (not a secret: row ids).
pub fn random_id<const N: usize>() -> Result<String, RandomError> {
    Ok(hex::encode(random_bytes::<N>()?.as_ref()))
}

/// The 32-byte pepper in `DIR/auth/pepper.key` (0600): the HMAC key of stored enrollment-key
/// and token hashes, so a copy of the database alone verifies nothing.
#[derive(Clone)]
pub struct Pepper(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for Pepper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pepper([redacted])")
    }
}

impl Pepper {
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Reads the pepper, creating it first if the data directory has none. Creation never
    /// replaces a file another process created meanwhile (the loser reads the winner's), so
    /// `serve` and a CLI command starting together agree on one pepper.
    pub fn load_or_create(dir: &DataDir) -> Result<Self, PepperError> {
        let path = dir.pepper();
        if !path.exists() {
            create_exclusive(&path)?;
        }
        let raw = Zeroizing::new(fs::read(&path).map_err(|source| DataDirError::Read {
            path: path.clone(),
            source,
        })?);
        let text = std::str::from_utf8(&raw).unwrap_or("").trim();
        let mut out = Zeroizing::new([0u8; 32]);
        match hex::decode_to_slice(text, out.as_mut()) {
            Ok(()) => Ok(Self(out)),
            Err(_) => Err(PepperError::Corrupt(path.display().to_string())),
        }
    }

    /// A pepper for tests.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }
}

/// Why the pepper could not be had.
#[derive(Debug, thiserror::Error)]
pub enum PepperError {
    #[error(transparent)]
    Io(#[from] DataDirError),
    #[error(transparent)]
    Random(#[from] RandomError),
    #[error(
        "{0} is not 64 hex characters; restore it from backup (every site enrollment key, \
         access and refresh token depends on it), or delete it and mint new site keys"
    )]
    Corrupt(String),
}

fn create_exclusive(path: &Path) -> Result<(), PepperError> {
    let err = |source| DataDirError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::DirBuilder::new()
        .recursive(true)
        .create(dir)
        .map_err(|source| DataDirError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(err)?;
    let bytes = random_bytes::<32>()?;
    let text = Zeroizing::new(format!("{}\n", hex::encode(bytes.as_ref())));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(err)?;
    tmp.write_all(text.as_bytes()).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    match tmp.persist_noclobber(path) {
        Ok(_) => {}
        // Another process created it first: theirs is the pepper.
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(err(e.error).into()),
    }
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_the_documented_shape() {
        let t = random_token("cek_").unwrap();
        assert!(is_token_shaped(&t, "cek_"), "{}", t.as_str());
        assert!(!is_token_shaped(&t, "nxa_"));
        assert!(!is_token_shaped("cek_short", "cek_"));
        assert!(!is_token_shaped(&format!("{}=", t.as_str()), "cek_"));
        assert!(!is_token_shaped(&t.replace('_', "/"), "cek_"));
        assert_ne!(t.as_str(), random_token("cek_").unwrap().as_str());
    }

    #[test]
    fn the_pepper_is_created_once_and_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path());
        let a = Pepper::load_or_create(&dir).unwrap();
        let b = Pepper::load_or_create(&dir).unwrap();
        assert_eq!(a.bytes(), b.bytes());
        let mode = fs::metadata(dir.pepper()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        fs::write(dir.pepper(), "nonsense").unwrap();
        let e = Pepper::load_or_create(&dir).unwrap_err().to_string();
        assert!(e.contains("pepper.key") && e.contains("64 hex"), "{e}");
    }
}
