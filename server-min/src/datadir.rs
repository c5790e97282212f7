//! Layout of the server's data directory and the only code that writes into it.
//!
//! ```text
//! DIR/                    0700
//!   ca/root.crt           root CA certificate (its SHA-256 is what devices pin)
//!   ca/root.key           0600 root CA key; production moves it offline after init
//!   ca/issuing.crt        issuing Sub-CA certificate
//!   ca/issuing.key        0600 issuing Sub-CA key
//!   tls/server.crt        bridge TLS chain (leaf, issuing, root), re-issued when SANs change
//!   tls/server.key        0600
//!   wireguard/private.key 0600 gateway WireGuard private key (base64)
//!   wireguard/public.key  gateway WireGuard public key (base64)
//!   auth/pepper.key       0600 key of the stored enrollment-key and token hashes
//!   nexa.db               SQLite database (embedded default)
//! ```
//!
//! Every file is written to a temporary file in the same directory (created 0600), fsynced,
//! given its final mode, renamed into place, and the directory fsynced.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// I/O failures, always naming the path.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }
    pub fn root_cert(&self) -> PathBuf {
        self.root.join("ca/root.crt")
    }
    pub fn root_key(&self) -> PathBuf {
        self.root.join("ca/root.key")
    }
    pub fn issuing_cert(&self) -> PathBuf {
        self.root.join("ca/issuing.crt")
    }
    pub fn issuing_key(&self) -> PathBuf {
        self.root.join("ca/issuing.key")
    }
    pub fn tls_cert(&self) -> PathBuf {
        self.root.join("tls/server.crt")
    }
    pub fn tls_key(&self) -> PathBuf {
        self.root.join("tls/server.key")
    }
    pub fn wg_private_key(&self) -> PathBuf {
        self.root.join("wireguard/private.key")
    }
    pub fn wg_public_key(&self) -> PathBuf {
        self.root.join("wireguard/public.key")
    }
    pub fn pepper(&self) -> PathBuf {
        self.root.join("auth/pepper.key")
    }
    /// Replaced after every change to sites or their keys (see `auth::site_cache`).
    pub fn sites_stamp(&self) -> PathBuf {
        self.root.join("auth/sites.stamp")
    }
    pub fn database(&self) -> PathBuf {
        self.root.join("nexa.db")
    }

    /// Creates the directory tree with mode 0700.
    pub fn create_layout(&self) -> Result<(), DataDirError> {
        for sub in ["", "ca", "tls", "wireguard"] {
            let path = self.root.join(sub);
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&path)
                .map_err(|source| DataDirError::CreateDir { path, source })?;
        }
        Ok(())
    }

    pub fn read_string(&self, path: &Path) -> Result<String, DataDirError> {
        fs::read_to_string(path).map_err(|source| DataDirError::Read {
            path: path.to_owned(),
            source,
        })
    }

    /// Writes a private key or other secret, mode 0600.
    pub fn write_secret(&self, path: &Path, bytes: &[u8]) -> Result<(), DataDirError> {
        write_atomic(path, bytes, 0o600)
    }

    /// Writes a certificate or other public file, mode 0644.
    pub fn write_public(&self, path: &Path, bytes: &[u8]) -> Result<(), DataDirError> {
        write_atomic(path, bytes, 0o644)
    }
}

fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), DataDirError> {
    let err = |source| DataDirError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(err)?;
    tmp.write_all(bytes).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))
        .map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err)?;
    Ok(())
}
