//! The certs directory: what lives there, how it is checked, and the order it is written in.
//!
//! ```text
//! /certs/device.key     0600  EC P-256 private key (PKCS#8 PEM)
//! /certs/device.crt     0644  device certificate, CN = device id
//! /certs/ca-chain.crt   0644  issuing CA, then root
//! /certs/wg0.conf       0600  complete wg-quick file, with the local PrivateKey
//! /certs/hawkbit.token  0600  hawkBit target token, when the bridge provisions hawkBit
//! /certs/enrolled       0644  idempotency flag (JSON), written last
//! /certs/.staging/      0700  keys generated for an enrollment not yet completed, and
//!                             `pending.json` while the bridge holds it for an administrator
//! /certs/device.key.new 0600  renewal: the new key, until promoted (`renew::stage`)
//! /certs/device.crt.new 0644  renewal: the new certificate, until promoted
//! /certs/ca-chain.crt.new 0644 renewal: the new chain, only when it differs
//! /certs/renew.commit   0644  renewal: the promotion is decided (JSON); roll forward
//! /certs/revoked        0644  the bridge revoked this device (JSON); the profile is unusable
//! ```
//!
//! Invariants: keys are generated and written to `.staging` before the bridge is called, so a
//! retry after a crash sends the same public keys (and the bridge answers idempotently); a
//! working set is overwritten only after the bridge accepted and the new material verified;
//! `enrolled` is written last and `.staging` removed after it.

use std::path::PathBuf;
use std::time::SystemTime;

use nexa_proto::{DeviceId, Fingerprint};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::atomic::{FsError, ensure_dir, read_optional, sync_dir, write_atomic};
use crate::keys::{DeviceKey, KeyError, WgKeyPair};
use crate::verify::{CertFacts, verify_device_cert};

pub const MODE_SECRET: u32 = 0o600;
pub const MODE_PUBLIC: u32 = 0o644;

/// The idempotency flag, `/certs/enrolled`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolledFlag {
    pub version: u32,
    pub device_id: String,
    /// RFC 3339.
    pub enrolled_at: String,
    pub bridge: String,
    pub root_fingerprint: String,
    pub serial: String,
    /// RFC 3339.
    pub not_after: String,
    pub address: String,
    pub profile_revision: u64,
    /// The MQTT broker the bridge announced, `mqtts://host:port` (configuration overrides it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt_url: Option<String>,
    /// The hawkBit server the bridge announced (configuration overrides it key by key); the
    /// token is in `hawkbit.token`, not here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hawkbit: Option<crate::hawkbit::config::Announced>,
}

pub const FLAG_VERSION: u32 = 1;

/// What the certs directory holds for a device.
#[derive(Debug, Clone)]
pub enum Current {
    /// Complete and verified.
    Valid {
        flag: Box<EnrolledFlag>,
        cert: CertFacts,
    },
    /// Never enrolled (no flag).
    Missing,
    /// A flag exists but the set does not hold up; the reason says why.
    Invalid { reason: String },
}

/// Failures reading or writing the certs directory.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("cannot encode the enrolled flag: {0}")]
    Encode(#[from] serde_json::Error),
}

/// The certs directory.
#[derive(Debug, Clone)]
pub struct CertsDir {
    root: PathBuf,
}

impl CertsDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    pub fn device_key(&self) -> PathBuf {
        self.root.join("device.key")
    }
    pub fn device_cert(&self) -> PathBuf {
        self.root.join("device.crt")
    }
    pub fn ca_chain(&self) -> PathBuf {
        self.root.join("ca-chain.crt")
    }
    pub fn wg_conf(&self) -> PathBuf {
        self.root.join("wg0.conf")
    }
    pub fn flag(&self) -> PathBuf {
        self.root.join("enrolled")
    }
    /// The hawkBit target token issued at enrollment.
    pub fn hawkbit_token(&self) -> PathBuf {
        self.root.join("hawkbit.token")
    }
    pub fn staging(&self) -> PathBuf {
        self.root.join(".staging")
    }
    /// The directory itself.
    pub fn root(&self) -> &std::path::Path {
        &self.root
    }
    /// A renewal's new key, before promotion.
    pub fn device_key_new(&self) -> PathBuf {
        self.root.join("device.key.new")
    }
    /// A renewal's new certificate, before promotion.
    pub fn device_cert_new(&self) -> PathBuf {
        self.root.join("device.crt.new")
    }
    /// A renewal's new CA chain (only when it differs from the current one).
    pub fn ca_chain_new(&self) -> PathBuf {
        self.root.join("ca-chain.crt.new")
    }
    /// Present while a decided renewal is being promoted.
    pub fn renew_commit(&self) -> PathBuf {
        self.root.join("renew.commit")
    }
    /// The durable "revoked by the bridge" marker.
    pub fn revoked_marker(&self) -> PathBuf {
        self.root.join("revoked")
    }
    fn staged_device_key(&self) -> PathBuf {
        self.staging().join("device.key")
    }
    fn staged_wg_key(&self) -> PathBuf {
        self.staging().join("wg.key")
    }

    pub fn read_flag(&self) -> Result<Option<Result<EnrolledFlag, String>>, FsError> {
        Ok(read_optional(&self.flag())?.map(|text| {
            serde_json::from_str::<EnrolledFlag>(&text)
                .map_err(|e| format!("{} is unreadable: {e}", self.flag().display()))
        }))
    }

    /// Checks the working set for device `id`. `pin` defaults to the flag's own record.
    pub fn check(
        &self,
        id: Option<&DeviceId>,
        pin: Option<Fingerprint>,
        now: SystemTime,
    ) -> Result<Current, CertsError> {
        let flag = match self.read_flag()? {
            None => return Ok(Current::Missing),
            Some(Err(reason)) => return Ok(Current::Invalid { reason }),
            Some(Ok(flag)) => flag,
        };
        let invalid = |reason: String| Ok(Current::Invalid { reason });
        let flag_id = match DeviceId::parse(&flag.device_id) {
            Ok(fid) => fid,
            Err(e) => return invalid(format!("the enrolled flag names an invalid device id: {e}")),
        };
        if let Some(id) = id
            && *id != flag_id
        {
            return invalid(format!(
                "{} belongs to device {flag_id}, but this device is {id}",
                self.root.display()
            ));
        }
        let pin = match pin
            .map(Ok)
            .unwrap_or_else(|| Fingerprint::parse(&flag.root_fingerprint))
        {
            Ok(p) => p,
            Err(e) => return invalid(format!("the enrolled flag has a bad root fingerprint: {e}")),
        };
        let (Some(key_pem), Some(cert_pem), Some(chain_pem), Some(_)) = (
            read_optional(&self.device_key())?,
            read_optional(&self.device_cert())?,
            read_optional(&self.ca_chain())?,
            read_optional(&self.wg_conf())?,
        ) else {
            return invalid(
                "one of device.key, device.crt, ca-chain.crt, wg0.conf is missing".into(),
            );
        };
        let key = match DeviceKey::from_pem(
            Zeroizing::new(key_pem),
            &self.device_key().display().to_string(),
        ) {
            Ok(k) => k,
            Err(e) => return invalid(e.to_string()),
        };
        match verify_device_cert(&cert_pem, &chain_pem, pin, &flag_id, &key.spki_der(), now) {
            Ok(cert) if cert.serial_hex == flag.serial => Ok(Current::Valid {
                flag: Box::new(flag),
                cert,
            }),
            Ok(cert) => invalid(format!(
                "device.crt has serial {} but the flag records {}",
                cert.serial_hex, flag.serial
            )),
            Err(e) => invalid(format!("device.crt: {e}")),
        }
    }

    /// Keys staged by an earlier, unfinished enrollment.
    pub fn staged_keys(&self) -> Result<Option<(DeviceKey, WgKeyPair)>, CertsError> {
        let (Some(dk), Some(wk)) = (
            read_optional(&self.staged_device_key())?,
            read_optional(&self.staged_wg_key())?,
        ) else {
            return Ok(None);
        };
        let dk = DeviceKey::from_pem(
            Zeroizing::new(dk),
            &self.staged_device_key().display().to_string(),
        )?;
        let wk = WgKeyPair::from_private_b64(
            &Zeroizing::new(wk),
            &self.staged_wg_key().display().to_string(),
        )?;
        Ok(Some((dk, wk)))
    }

    /// The working set's keys, if both are present and parse.
    pub fn current_keys(&self) -> Result<Option<(DeviceKey, WgKeyPair)>, CertsError> {
        let (Some(dk), Some(conf)) = (
            read_optional(&self.device_key())?,
            read_optional(&self.wg_conf())?,
        ) else {
            return Ok(None);
        };
        let conf = Zeroizing::new(conf);
        let Some(private) = wg_private_key_of(&conf) else {
            return Ok(None);
        };
        let Ok(dk) = DeviceKey::from_pem(Zeroizing::new(dk), "device.key") else {
            return Ok(None);
        };
        let Ok(wk) = WgKeyPair::from_private_b64(private, "wg0.conf") else {
            return Ok(None);
        };
        Ok(Some((dk, wk)))
    }

    /// Where the enrollment held for an administrator is noted (inside `.staging`, so it goes
    /// with the staged keys).
    pub fn pending_note_path(&self) -> PathBuf {
        self.staging().join("pending.json")
    }

    /// The note of an enrollment waiting for an administrator, if there is a readable one.
    pub fn pending_note(&self) -> Option<PendingNote> {
        let text = std::fs::read_to_string(self.pending_note_path()).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Notes that the enrollment of the staged keys waits for an administrator (for `status`).
    pub fn write_pending_note(&self, note: &PendingNote) -> Result<(), CertsError> {
        ensure_dir(&self.staging(), 0o700)?;
        let mut bytes = serde_json::to_vec_pretty(note)?;
        bytes.push(b'\n');
        write_atomic(&self.pending_note_path(), &bytes, MODE_PUBLIC)?;
        Ok(())
    }

    /// Persists keys for an enrollment about to be attempted.
    pub fn stage_keys(&self, dk: &DeviceKey, wk: &WgKeyPair) -> Result<(), CertsError> {
        ensure_dir(&self.root, 0o755)?;
        ensure_dir(&self.staging(), 0o700)?;
        write_atomic(&self.staged_device_key(), dk.pem().as_bytes(), MODE_SECRET)?;
        write_atomic(
            &self.staged_wg_key(),
            format!("{}\n", wk.private_b64()).as_bytes(),
            MODE_SECRET,
        )?;
        Ok(())
    }

    /// Writes the working set, flag last, then drops the staging area.
    pub fn install(&self, set: &WorkingSet<'_>) -> Result<Vec<PathBuf>, CertsError> {
        ensure_dir(&self.root, 0o755)?;
        let mut flag_bytes = serde_json::to_vec_pretty(set.flag)?;
        flag_bytes.push(b'\n');
        let files: [(PathBuf, &[u8], u32); 5] = [
            (
                self.device_key(),
                set.device_key_pem.as_bytes(),
                MODE_SECRET,
            ),
            (self.wg_conf(), set.wg_conf.as_bytes(), MODE_SECRET),
            (self.device_cert(), set.cert_pem.as_bytes(), MODE_PUBLIC),
            (self.ca_chain(), set.chain_pem.as_bytes(), MODE_PUBLIC),
            (self.flag(), &flag_bytes, MODE_PUBLIC),
        ];
        let mut written = Vec::with_capacity(files.len() + 1);
        let (body, flag) = files.split_at(files.len() - 1);
        for (path, bytes, mode) in body {
            write_atomic(path, bytes, *mode)?;
            written.push(path.clone());
        }
        // The bridge has just accepted this device again (an operator authorized it), so an
        // earlier revocation marker no longer applies.
        remove_if_present(&self.revoked_marker(), &self.root)?;
        // Before the flag: a set whose flag is written never pairs with a stale token.
        match set.hawkbit_token {
            Some(token) => {
                let line = Zeroizing::new(format!("{token}\n"));
                write_atomic(&self.hawkbit_token(), line.as_bytes(), MODE_SECRET)?;
                written.push(self.hawkbit_token());
            }
            None => remove_if_present(&self.hawkbit_token(), &self.root)?,
        }
        for (path, bytes, mode) in flag {
            write_atomic(path, bytes, *mode)?;
            written.push(path.clone());
        }
        self.clear_staging()?;
        Ok(written)
    }

    /// Removes `.staging` (after a completed enrollment).
    pub fn clear_staging(&self) -> Result<(), CertsError> {
        match std::fs::remove_dir_all(self.staging()) {
            Ok(()) => Ok(sync_dir(&self.root)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(FsError::new("cannot remove", &self.staging(), e).into()),
        }
    }
}

/// An enrollment the bridge answered 202: it waits for an administrator's approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingNote {
    pub pending_id: String,
    pub device_id: String,
    /// RFC 3339: when this agent first heard it was pending.
    pub since: String,
    /// The bridge's explanation.
    pub message: String,
}

/// Everything written on a successful enrollment.
#[derive(Debug)]
pub struct WorkingSet<'a> {
    pub device_key_pem: &'a str,
    pub cert_pem: &'a str,
    pub chain_pem: &'a str,
    pub wg_conf: &'a str,
    /// The hawkBit target token; `None` removes a previous enrollment's.
    pub hawkbit_token: Option<&'a str>,
    pub flag: &'a EnrolledFlag,
}

/// Removes `path` (and syncs `dir`) unless it is already absent.
pub fn remove_if_present(path: &std::path::Path, dir: &std::path::Path) -> Result<(), FsError> {
    match std::fs::remove_file(path) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(FsError::new("cannot remove", path, e)),
    }
}

/// The `PrivateKey =` value of a wg-quick file.
pub fn wg_private_key_of(conf: &str) -> Option<&str> {
    conf.lines().find_map(|line| {
        let (k, v) = line.split_once('=')?;
        (k.trim() == "PrivateKey").then(|| v.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn flag() -> EnrolledFlag {
        EnrolledFlag {
            version: FLAG_VERSION,
            device_id: "dev-1".into(),
            enrolled_at: "2026-01-01T00:00:00Z".into(),
            bridge: "https://bridge/".into(),
            root_fingerprint: "sha256:00".into(),
            serial: "01".into(),
            not_after: "2027-01-01T00:00:00Z".into(),
            address: "10.8.0.2/24".into(),
            profile_revision: 1,
            mqtt_url: None,
            hawkbit: None,
        }
    }

    fn install(certs: &CertsDir, token: Option<&str>) -> Vec<PathBuf> {
        certs
            .install(&WorkingSet {
                device_key_pem: "key",
                cert_pem: "cert",
                chain_pem: "chain",
                wg_conf: "conf",
                hawkbit_token: token,
                flag: &flag(),
            })
            .unwrap()
    }

    #[test]
    fn the_token_is_secret_written_before_the_flag_and_dropped_when_not_issued() {
        let dir = tempfile::tempdir().unwrap();
        let certs = CertsDir::new(dir.path());
        let written = install(&certs, Some("0123abcd"));
        assert_eq!(written.last(), Some(&certs.flag()), "the flag is last");
        assert!(written.contains(&certs.hawkbit_token()));
        assert_eq!(
            std::fs::read_to_string(certs.hawkbit_token()).unwrap(),
            "0123abcd\n"
        );
        let mode = std::fs::metadata(certs.hawkbit_token())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, MODE_SECRET);

        // An enrollment without hawkBit leaves no stale token behind, and an accepted
        // enrollment lifts an earlier revocation.
        std::fs::write(certs.revoked_marker(), "{}").unwrap();
        let written = install(&certs, None);
        assert!(!certs.revoked_marker().exists());
        assert!(!certs.hawkbit_token().exists());
        assert!(!written.contains(&certs.hawkbit_token()));
        install(&certs, None);
    }
}
