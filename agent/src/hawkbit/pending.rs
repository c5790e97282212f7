//! The update waiting for its reboot: which action installed which slot, kept on disk so the
//! agent that starts after the reboot can tell hawkBit how it ended.
//!
//! Written atomically before the reboot is requested and removed once hawkBit accepted the
//! final feedback (or answered 410: it no longer wants it). A device that comes back on the
//! slot the update wrote marks it good and reports success; on the old slot it reports failure.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::atomic::{FsError, read_optional, write_atomic};

/// An installed update whose outcome is decided by the next boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingUpdate {
    /// hawkBit's action id.
    pub action: String,
    /// The bootname the update was installed to (e.g. `B`).
    pub target_slot: String,
    /// The bootname that was running when it was installed.
    pub from_slot: String,
    /// Bundle version or artifact name, for the log and the feedback.
    pub what: String,
    /// RFC 3339.
    pub installed_at: String,
    /// The kernel's boot id when it was installed: the same id later means no reboot yet.
    pub boot_id: String,
}

/// How the reboot ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootVerdict {
    /// Running the slot the update wrote.
    Updated,
    /// Back on another slot: the bootloader fell back.
    RolledBack { booted: String },
}

impl PendingUpdate {
    /// Judges the boot by the slot the system runs now.
    pub fn verdict(&self, booted: &str) -> BootVerdict {
        if booted == self.target_slot {
            BootVerdict::Updated
        } else {
            BootVerdict::RolledBack {
                booted: booted.to_owned(),
            }
        }
    }
}

/// The file holding the pending update.
#[derive(Debug, Clone)]
pub struct PendingFile {
    path: PathBuf,
}

/// Why the pending update could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PendingError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("{path} is not a pending update ({reason}); remove it if no update is in progress")]
    Corrupt { path: PathBuf, reason: String },
}

impl PendingFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn load(&self) -> Result<Option<PendingUpdate>, PendingError> {
        let Some(text) = read_optional(&self.path)? else {
            return Ok(None);
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| PendingError::Corrupt {
                path: self.path.clone(),
                reason: e.to_string(),
            })
    }

    pub fn save(&self, update: &PendingUpdate) -> Result<(), PendingError> {
        let json = serde_json::to_vec_pretty(update).map_err(|e| PendingError::Corrupt {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        write_atomic(&self.path, &json, 0o600)?;
        Ok(())
    }

    pub fn clear(&self) -> Result<(), PendingError> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(FsError::new("cannot remove", &self.path, e).into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update() -> PendingUpdate {
        PendingUpdate {
            action: "8".into(),
            target_slot: "B".into(),
            from_slot: "A".into(),
            what: "rootfs 1.0.75".into(),
            installed_at: "2026-11-22T10:00:00Z".into(),
            boot_id: "b1".into(),
        }
    }

    #[test]
    fn survives_a_round_trip_and_judges_the_boot() {
        let tmp = tempfile::tempdir().unwrap();
        let f = PendingFile::new(tmp.path().join("ota-pending.json"));
        assert_eq!(f.load().unwrap(), None);
        f.save(&update()).unwrap();
        let back = f.load().unwrap().unwrap();
        assert_eq!(back, update());
        assert_eq!(back.verdict("B"), BootVerdict::Updated);
        assert_eq!(
            back.verdict("A"),
            BootVerdict::RolledBack { booted: "A".into() }
        );
        f.clear().unwrap();
        f.clear().unwrap();
        assert_eq!(f.load().unwrap(), None);
    }

    #[test]
    fn a_corrupt_file_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let f = PendingFile::new(tmp.path().join("ota-pending.json"));
        std::fs::write(f.path(), "{not json").unwrap();
        let e = f.load().unwrap_err().to_string();
        assert!(
            e.contains("ota-pending.json") && e.contains("remove it"),
            "{e}"
        );
    }
}
