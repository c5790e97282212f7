//! One writer of the certificate pair at a time: an advisory `flock` on the certs directory.
//!
//! A renewal holds it from reading the current certificate until the new pair is promoted or
//! discarded; an enrollment holds it while it installs; crash recovery runs under it. The lock
//! belongs to the open directory, so the kernel releases it when the process dies (a killed
//! renewal never blocks the next one). Nothing is written to take it.

use std::fs::File;
use std::path::Path;
use std::time::Duration;

use rustix::fs::{FlockOperation, flock};

use crate::atomic::FsError;

/// How often a waiting process looks at the lock again.
const POLL: Duration = Duration::from_millis(200);

/// The held lock; released on drop.
#[derive(Debug)]
pub struct CertsLock {
    _dir: File,
}

impl CertsLock {
    /// Takes the lock if it is free; `Ok(None)` when another process (or task) holds it.
    pub fn try_acquire(dir: &Path) -> Result<Option<Self>, FsError> {
        let file = File::open(dir).map_err(|e| FsError::new("cannot open", dir, e))?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(Self { _dir: file })),
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => Ok(None),
            Err(e) => Err(FsError::new("cannot lock", dir, e.into())),
        }
    }

    /// Waits for the lock without blocking the runtime.
    pub async fn acquire(dir: &Path) -> Result<Self, FsError> {
        let mut said = false;
        loop {
            if let Some(lock) = Self::try_acquire(dir)? {
                return Ok(lock);
            }
            if !said {
                tracing::info!(dir = %dir.display(), "another nexa-agent is changing the certificates; waiting");
                said = true;
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_at_a_time_and_released_on_drop() {
        let tmp = tempfile::tempdir().unwrap();
        let first = CertsLock::try_acquire(tmp.path()).unwrap().unwrap();
        assert!(CertsLock::try_acquire(tmp.path()).unwrap().is_none());
        let waiter = tokio::spawn({
            let dir = tmp.path().to_owned();
            async move { CertsLock::acquire(&dir).await.map(|_| ()) }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiter.is_finished(), "the waiter must wait");
        drop(first);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(CertsLock::try_acquire(tmp.path()).unwrap().is_some());
        let missing = tmp.path().join("nope");
        let e = CertsLock::try_acquire(&missing).unwrap_err().to_string();
        assert!(e.contains("nope"), "{e}");
    }
}
