//! Two-phase replacement of the device key and certificate under `/certs`.
//!
//! 1. **Stage**: `device.key.new` (0600), `device.crt.new` and, only when the bridge sent a
//!    different chain, `ca-chain.crt.new` — each written atomically, key first. The current
//!    pair is untouched, so a failure here (or any later check failing) leaves it in use.
//! 2. **Verify** (the caller): chain to the pinned root, key match, CN, validity; the MQTT
//!    session connects with the staged pair.
//! 3. **Commit**: `renew.commit` (JSON: the new serial and not-after) written atomically. This
//!    is the point of no return.
//! 4. **Promote**: rename `device.key.new` → `device.key`, `device.crt.new` → `device.crt`,
//!    `ca-chain.crt.new` → `ca-chain.crt` (each skipped when already done), fsync the
//!    directory, record the new serial and not-after in `enrolled`, remove `renew.commit`.
//!
//! **Recovery** ([`recover`], run under the certs lock before anything reads the keys):
//! - `renew.commit` present → roll forward: finish every rename still to do, update the
//!   flag, remove the commit. Every step is idempotent, so a crash during recovery is
//!   recovered the same way.
//! - no commit, but `.new` files → the promotion was never decided: remove them
//!   (`ca-chain.crt.new`, `device.crt.new`, `device.key.new`), keeping the current pair —
//!   except when the current key does not match the current certificate while the staged key
//!   and certificate match each other: then the staged pair is the only consistent one and
//!   is promoted (commit written first, then as above).
//! - nothing staged → nothing to do.

use std::path::Path;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use zeroize::Zeroizing;

use crate::atomic::{FsError, read_optional, sync_dir, write_atomic};
use crate::certs::{CertsDir, MODE_PUBLIC, MODE_SECRET, remove_if_present};
use crate::identity::IdentityFiles;
use crate::keys::DeviceKey;
use crate::verify::{CertFacts, inspect};

/// Failures of staging, promotion or recovery.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("cannot encode {path}: {source}")]
    Encode {
        path: String,
        source: serde_json::Error,
    },
}

/// A staged pair awaiting verification and promotion.
#[derive(Debug, Clone)]
pub struct Staged {
    /// What the new certificate says (verified before staging).
    pub facts: CertFacts,
    /// The staged key and certificate, and the chain that goes with them.
    pub files: IdentityFiles,
}

/// The decision recorded in `renew.commit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Commit {
    version: u32,
    serial: String,
    /// RFC 3339.
    not_after: String,
}

const COMMIT_VERSION: u32 = 1;

/// What [`recover`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// Nothing was staged.
    Clean,
    /// An undecided renewal was removed; the current pair stays.
    Discarded,
    /// A promotion was finished; the pair in use now has `serial`.
    Completed { serial: String },
}

/// Writes the new pair next to the current one (key first). `chain_pem` is staged only when it
/// differs from the current chain.
pub fn stage(
    certs: &CertsDir,
    key: &DeviceKey,
    cert_pem: &str,
    chain_pem: &str,
    facts: CertFacts,
) -> Result<Staged, StageError> {
    discard(certs)?;
    write_atomic(&certs.device_key_new(), key.pem().as_bytes(), MODE_SECRET)?;
    write_atomic(&certs.device_cert_new(), cert_pem.as_bytes(), MODE_PUBLIC)?;
    let current_chain = read_optional(&certs.ca_chain())?;
    let chain = if current_chain.as_deref() == Some(chain_pem) {
        certs.ca_chain()
    } else {
        write_atomic(&certs.ca_chain_new(), chain_pem.as_bytes(), MODE_PUBLIC)?;
        certs.ca_chain_new()
    };
    Ok(Staged {
        facts,
        files: IdentityFiles {
            key: certs.device_key_new(),
            cert: certs.device_cert_new(),
            chain,
        },
    })
}

/// Commits and promotes a staged pair; afterwards the current pair is the new one.
pub fn promote(certs: &CertsDir, staged: &Staged) -> Result<(), StageError> {
    let commit = Commit {
        version: COMMIT_VERSION,
        serial: staged.facts.serial_hex.clone(),
        not_after: staged.facts.not_after.format(&Rfc3339).unwrap_or_default(),
    };
    write_commit(certs, &commit)?;
    roll_forward(certs, &commit)
}

/// Removes staged files (chain, certificate, key: the reverse of staging). True if there were
/// any.
pub fn discard(certs: &CertsDir) -> Result<bool, StageError> {
    let mut any = false;
    for path in [
        certs.ca_chain_new(),
        certs.device_cert_new(),
        certs.device_key_new(),
    ] {
        if path.exists() {
            any = true;
            remove_if_present(&path, certs.root())?;
        }
    }
    Ok(any)
}

/// Brings an interrupted renewal to a consistent pair (see the module documentation).
pub fn recover(certs: &CertsDir) -> Result<Recovery, StageError> {
    if let Some(text) = read_optional(&certs.renew_commit())? {
        match serde_json::from_str::<Commit>(&text) {
            Ok(commit) => {
                tracing::warn!(serial = %commit.serial, "finishing an interrupted certificate promotion");
                roll_forward(certs, &commit)?;
                return Ok(Recovery::Completed {
                    serial: commit.serial,
                });
            }
            Err(e) => {
                tracing::warn!(path = %certs.renew_commit().display(), error = %e, "unreadable renewal commit removed");
                remove_if_present(&certs.renew_commit(), certs.root())?;
            }
        }
    }
    let staged = [
        certs.device_key_new(),
        certs.device_cert_new(),
        certs.ca_chain_new(),
    ];
    if !staged.iter().any(|p| p.exists()) {
        return Ok(Recovery::Clean);
    }
    // Only a current pair that is really broken (a file missing, unparsable, or a key that
    // is not the certificate's) is replaced; one that merely could not be read now is kept.
    if pair_state(&certs.device_key(), &certs.device_cert()) == PairState::Broken
        && pair_state(&certs.device_key_new(), &certs.device_cert_new()) == PairState::Matches
        && let Some(facts) = facts_at(&certs.device_cert_new())
    {
        tracing::warn!(serial = %facts.serial_hex, "the current key and certificate do not match; promoting the consistent staged pair");
        let staged = Staged {
            facts,
            files: IdentityFiles::current(certs),
        };
        promote(certs, &staged)?;
        return Ok(Recovery::Completed {
            serial: staged.facts.serial_hex,
        });
    }
    tracing::info!("removing an unfinished certificate renewal; the current pair stays in use");
    discard(certs)?;
    Ok(Recovery::Discarded)
}

fn write_commit(certs: &CertsDir, commit: &Commit) -> Result<(), StageError> {
    let path = certs.renew_commit();
    let mut bytes = serde_json::to_vec_pretty(commit).map_err(|source| StageError::Encode {
        path: path.display().to_string(),
        source,
    })?;
    bytes.push(b'\n');
    Ok(write_atomic(&path, &bytes, MODE_PUBLIC)?)
}

/// Finishes a committed promotion; idempotent.
fn roll_forward(certs: &CertsDir, commit: &Commit) -> Result<(), StageError> {
    for (from, to) in [
        (certs.device_key_new(), certs.device_key()),
        (certs.device_cert_new(), certs.device_cert()),
        (certs.ca_chain_new(), certs.ca_chain()),
    ] {
        rename_if_present(&from, &to)?;
    }
    sync_dir(certs.root())?;
    record_in_flag(certs, commit)?;
    remove_if_present(&certs.renew_commit(), certs.root())?;
    Ok(())
}

fn rename_if_present(from: &Path, to: &Path) -> Result<(), FsError> {
    match std::fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(FsError::new("cannot rename into", to, e)),
    }
}

/// Records the promoted certificate's serial and not-after in the enrolled flag (everything
/// else in it stays). A missing or unreadable flag is left for `enroll` to deal with.
fn record_in_flag(certs: &CertsDir, commit: &Commit) -> Result<(), StageError> {
    let Ok(Some(Ok(mut flag))) = certs.read_flag() else {
        tracing::warn!(path = %certs.flag().display(), "no readable enrolled flag to record the renewed certificate in");
        return Ok(());
    };
    if flag.serial == commit.serial && flag.not_after == commit.not_after {
        return Ok(());
    }
    flag.serial = commit.serial.clone();
    flag.not_after = commit.not_after.clone();
    let path = certs.flag();
    let mut bytes = serde_json::to_vec_pretty(&flag).map_err(|source| StageError::Encode {
        path: path.display().to_string(),
        source,
    })?;
    bytes.push(b'\n');
    Ok(write_atomic(&path, &bytes, MODE_PUBLIC)?)
}

/// What a key file and a certificate file hold together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PairState {
    /// The key is the certificate's.
    Matches,
    /// A file is missing or unparsable, or the key is not the certificate's.
    Broken,
    /// A file could not be read (an I/O error): nothing is known.
    Unknown,
}

fn pair_state(key: &Path, cert: &Path) -> PairState {
    let (key_pem, cert_pem) = match (read_optional(key), read_optional(cert)) {
        (Ok(Some(k)), Ok(Some(c))) => (k, c),
        (Err(_), _) | (_, Err(_)) => return PairState::Unknown,
        _ => return PairState::Broken,
    };
    let Ok(key) = DeviceKey::from_pem(Zeroizing::new(key_pem), &key.display().to_string()) else {
        return PairState::Broken;
    };
    if inspect(&cert_pem, &cert.display().to_string()).is_ok_and(|c| c.spki == key.spki_der()) {
        PairState::Matches
    } else {
        PairState::Broken
    }
}

fn facts_at(cert: &Path) -> Option<CertFacts> {
    let pem = read_optional(cert).ok()??;
    inspect(&pem, &cert.display().to_string())
        .ok()
        .map(|c| c.facts)
}

/// The not-after recorded for a certificate, RFC 3339.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::renew::testpki::{Pki, enrolled, key, key_at};
    use std::os::unix::fs::PermissionsExt;
    use time::Duration;

    const ID: &str = "dev-1";

    /// An enrolled directory and a verified new pair, not yet staged.
    struct Fixture {
        _tmp: tempfile::TempDir,
        certs: CertsDir,
        pki: Pki,
        old_cert: String,
        old_key: DeviceKey,
        new_cert: String,
        new_key: DeviceKey,
        new_facts: CertFacts,
    }

    fn fixture() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let certs = CertsDir::new(tmp.path());
        let pki = Pki::new();
        let old_key = key();
        let old_cert = pki.device_for(ID, &old_key, Duration::days(30));
        enrolled(&certs, &pki, ID, &old_cert, &old_key);
        let new_key = key();
        let new_cert = pki.device_for(ID, &new_key, Duration::days(60));
        let new_facts = inspect(&new_cert, "new").unwrap().facts;
        Fixture {
            _tmp: tmp,
            certs,
            pki,
            old_cert,
            old_key,
            new_cert,
            new_key,
            new_facts,
        }
    }

    impl Fixture {
        fn stage(&self, chain: &str) -> Staged {
            stage(
                &self.certs,
                &self.new_key,
                &self.new_cert,
                chain,
                self.new_facts.clone(),
            )
            .unwrap()
        }

        fn assert_current(&self, cert: &str, key: &DeviceKey) {
            assert_eq!(
                std::fs::read_to_string(self.certs.device_cert()).unwrap(),
                cert
            );
            assert_eq!(key_at(&self.certs.device_key()).spki_der(), key.spki_der());
        }

        fn assert_old(&self) {
            self.assert_current(&self.old_cert, &self.old_key);
            let flag = self.certs.read_flag().unwrap().unwrap().unwrap();
            assert_ne!(flag.serial, self.new_facts.serial_hex);
        }

        fn assert_new(&self) {
            self.assert_current(&self.new_cert, &self.new_key);
            let flag = self.certs.read_flag().unwrap().unwrap().unwrap();
            assert_eq!(flag.serial, self.new_facts.serial_hex);
            assert_eq!(flag.not_after, rfc3339(self.new_facts.not_after));
            let check = self
                .certs
                .check(
                    Some(&nexa_proto::DeviceId::parse(ID).unwrap()),
                    Some(self.pki.fingerprint),
                    std::time::SystemTime::now(),
                )
                .unwrap();
            assert!(
                matches!(check, crate::certs::Current::Valid { .. }),
                "{check:?}"
            );
        }

        fn assert_nothing_staged(&self) {
            for p in [
                self.certs.device_key_new(),
                self.certs.device_cert_new(),
                self.certs.ca_chain_new(),
                self.certs.renew_commit(),
            ] {
                assert!(!p.exists(), "{} left behind", p.display());
            }
        }
    }

    #[test]
    fn staging_writes_the_key_secret_and_the_chain_only_when_it_changed() {
        let f = fixture();
        let staged = f.stage(&f.pki.chain_pem);
        assert_eq!(
            staged.files.chain,
            f.certs.ca_chain(),
            "same chain: not staged"
        );
        assert!(!f.certs.ca_chain_new().exists());
        let mode = std::fs::metadata(f.certs.device_key_new())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, MODE_SECRET);
        f.assert_old();

        let other = Pki::new();
        let staged = f.stage(&other.chain_pem);
        assert_eq!(staged.files.chain, f.certs.ca_chain_new());
        assert_eq!(
            std::fs::read_to_string(f.certs.ca_chain_new()).unwrap(),
            other.chain_pem
        );
        // Staging again with the old chain drops the stale new one.
        f.stage(&f.pki.chain_pem);
        assert!(!f.certs.ca_chain_new().exists());
    }

    #[test]
    fn promotion_replaces_the_pair_and_the_flag_and_leaves_nothing_staged() {
        let f = fixture();
        let before = f.certs.read_flag().unwrap().unwrap().unwrap();
        let staged = f.stage(&f.pki.chain_pem);
        promote(&f.certs, &staged).unwrap();
        f.assert_new();
        f.assert_nothing_staged();
        let after = f.certs.read_flag().unwrap().unwrap().unwrap();
        assert_eq!(after.address, before.address, "the rest of the flag stays");
        assert_eq!(after.enrolled_at, before.enrolled_at);
        let mode = std::fs::metadata(f.certs.device_key())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, MODE_SECRET);
        assert_eq!(recover(&f.certs).unwrap(), Recovery::Clean);
    }

    #[test]
    fn crash_while_staging_keeps_the_old_pair() {
        // Only the key was written.
        let f = fixture();
        f.stage(&f.pki.chain_pem);
        std::fs::remove_file(f.certs.device_cert_new()).unwrap();
        assert_eq!(recover(&f.certs).unwrap(), Recovery::Discarded);
        f.assert_old();
        f.assert_nothing_staged();

        // Key, certificate and chain written, nothing decided.
        let f = fixture();
        f.stage(&Pki::new().chain_pem);
        assert_eq!(recover(&f.certs).unwrap(), Recovery::Discarded);
        f.assert_old();
        f.assert_nothing_staged();
        assert_eq!(
            std::fs::read_to_string(f.certs.ca_chain()).unwrap(),
            f.pki.chain_pem
        );
    }

    #[test]
    fn crash_while_discarding_keeps_the_old_pair() {
        let f = fixture();
        f.stage(&Pki::new().chain_pem);
        // discard removed the chain, then died.
        std::fs::remove_file(f.certs.ca_chain_new()).unwrap();
        assert_eq!(recover(&f.certs).unwrap(), Recovery::Discarded);
        f.assert_old();
        f.assert_nothing_staged();
    }

    #[test]
    fn crash_after_the_commit_rolls_forward_from_every_point() {
        // (renames done before the crash)
        for done in 0..=3 {
            let f = fixture();
            let staged = f.stage(&f.pki.chain_pem);
            let commit = Commit {
                version: COMMIT_VERSION,
                serial: staged.facts.serial_hex.clone(),
                not_after: rfc3339(staged.facts.not_after),
            };
            write_commit(&f.certs, &commit).unwrap();
            let renames = [
                (f.certs.device_key_new(), f.certs.device_key()),
                (f.certs.device_cert_new(), f.certs.device_cert()),
            ];
            for (from, to) in renames.iter().take(done) {
                std::fs::rename(from, to).unwrap();
            }
            if done == 3 {
                // Renames done and the flag written; only the commit was left.
                record_in_flag(&f.certs, &commit).unwrap();
            }
            assert_eq!(
                recover(&f.certs).unwrap(),
                Recovery::Completed {
                    serial: f.new_facts.serial_hex.clone()
                },
                "after {done} steps"
            );
            f.assert_new();
            f.assert_nothing_staged();
            assert_eq!(recover(&f.certs).unwrap(), Recovery::Clean);
        }
    }

    #[test]
    fn crash_after_the_commit_with_a_new_chain_promotes_the_chain_too() {
        let f = fixture();
        let other = Pki::new();
        // A certificate from the other CA, as if the bridge's issuing CA had changed.
        let new_cert = other.device_for(ID, &f.new_key, Duration::days(60));
        let facts = inspect(&new_cert, "new").unwrap().facts;
        let staged = stage(&f.certs, &f.new_key, &new_cert, &other.chain_pem, facts).unwrap();
        let commit = Commit {
            version: COMMIT_VERSION,
            serial: staged.facts.serial_hex.clone(),
            not_after: rfc3339(staged.facts.not_after),
        };
        write_commit(&f.certs, &commit).unwrap();
        std::fs::rename(f.certs.device_key_new(), f.certs.device_key()).unwrap();
        std::fs::rename(f.certs.device_cert_new(), f.certs.device_cert()).unwrap();
        recover(&f.certs).unwrap();
        assert_eq!(
            std::fs::read_to_string(f.certs.ca_chain()).unwrap(),
            other.chain_pem
        );
        f.assert_nothing_staged();
        let flag = f.certs.read_flag().unwrap().unwrap().unwrap();
        assert_eq!(flag.serial, staged.facts.serial_hex);
    }

    #[test]
    fn a_broken_current_pair_with_a_consistent_staged_pair_is_promoted() {
        let f = fixture();
        f.stage(&f.pki.chain_pem);
        // The current key was replaced by something else (not by us: there is no commit).
        std::fs::write(f.certs.device_key(), key().pem()).unwrap();
        assert_eq!(
            recover(&f.certs).unwrap(),
            Recovery::Completed {
                serial: f.new_facts.serial_hex.clone()
            }
        );
        f.assert_new();
        f.assert_nothing_staged();
    }

    #[test]
    fn a_broken_current_pair_with_an_inconsistent_staged_pair_discards_it() {
        let f = fixture();
        f.stage(&f.pki.chain_pem);
        std::fs::write(f.certs.device_key_new(), key().pem()).unwrap();
        std::fs::write(f.certs.device_key(), key().pem()).unwrap();
        assert_eq!(recover(&f.certs).unwrap(), Recovery::Discarded);
        f.assert_nothing_staged();
        assert_eq!(
            std::fs::read_to_string(f.certs.device_cert()).unwrap(),
            f.old_cert
        );
    }

    #[test]
    fn an_unreadable_commit_is_dropped_and_the_undecided_pair_discarded() {
        let f = fixture();
        f.stage(&f.pki.chain_pem);
        std::fs::write(f.certs.renew_commit(), "{torn").unwrap();
        assert_eq!(recover(&f.certs).unwrap(), Recovery::Discarded);
        f.assert_old();
        f.assert_nothing_staged();
    }
}
