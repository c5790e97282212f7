//! Certificate renewal with a new key (rekey).
//!
//! The device renews at 2/3 of its certificate's lifetime, less a jitter fixed per certificate
//! ([`policy`]), by `POST /api/devices/{id}/renew` over mTLS with its current certificate and a
//! CSR for a key generated for the occasion. The answer is verified (device id, chain to the
//! pinned root, CN, key match, valid now) and staged next to the current pair; the caller may
//! prove it further (the MQTT session connects with it, [`probe`]); then it is promoted
//! atomically ([`stage`]). A failure anywhere before the promotion leaves the current pair in
//! use, byte for byte.
//!
//! - **Expired certificate**: it can no longer authenticate a renewal, so the agent falls
//!   back to re-enrollment with new keys (the `enroll --force` path), which the bridge accepts
//!   only inside a window an operator opened (`nexa-server device allow-reenroll`).
//! - **Revoked device**: a 403 `device_revoked` / `device_decommissioned` writes the durable
//!   marker ([`revoked`]); nothing renews or brings the tunnel up again until a successful
//!   enrollment with fresh authorization removes it.
//! - **Concurrency**: every step from reading the current certificate to the promotion runs
//!   under the certs lock ([`lock`]), shared with `enroll` and crash recovery.
//!
//! [`renew`] is the whole operation for `nexa-agent cert renew` (and tests); the daemon drives
//! the same pieces ([`Renewer::request`], [`stage::promote`]) so that its own MQTT session is
//! the one proving the new pair.

pub mod lock;
pub mod policy;
// The MQTT proof of a renewed pair; without the `mqtt` feature a stand-in that skips it.
#[cfg_attr(not(feature = "mqtt"), path = "probe_off.rs")]
pub mod probe;
pub mod revoked;
pub mod stage;
#[cfg(test)]
pub(crate) mod testpki;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use nexa_proto::{DeviceId, RenewRequest};
use time::OffsetDateTime;

use crate::atomic::{FsError, read_optional};
use crate::backoff::{Backoff, retry};
use crate::bridge::BridgeClient;
use crate::certs::CertsDir;
use crate::config::{AgentConfig, BridgeSettings};
use crate::enroll::approval::ApprovalWait;
use crate::enroll::{EnrollOptions, EnrollOutcome, enroll};
use crate::error::AgentError;
use crate::identity::{Chain, IdentityFiles, TlsSetupError, identity_from};
use crate::keys::DeviceKey;
use crate::verify::{CertFacts, inspect, verify_device_cert};
use lock::CertsLock;
use policy::{Decision, Policy, jitter_seed};
use revoked::Revoked;
use stage::{Recovery, StageError, Staged};

/// Renewal failures of the agent's own making (the bridge's are `BridgeError`s).
#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    #[error("{path}: {reason}; enroll first with `nexa-agent enroll`")]
    NoCertificate { path: PathBuf, reason: String },
    #[error(
        "this device is revoked ({}); renewing and enrolling need an operator's authorization \
         (`nexa-server device allow-reenroll`, then `nexa-agent enroll --force`); marker {}",
        .revoked.describe(), .marker.display()
    )]
    Revoked { marker: PathBuf, revoked: Revoked },
    #[error(
        "the certificate in {path} expired at {not_after}; it cannot authenticate a renewal \
         (`nexa-agent cert renew` re-enrolls instead)"
    )]
    Expired {
        path: PathBuf,
        not_after: OffsetDateTime,
    },
    #[error("the current certificate cannot be presented to the bridge: {0}")]
    Identity(TlsSetupError),
    #[cfg(feature = "mqtt")]
    #[error("{0}; the current certificate stays in use")]
    Probe(#[from] probe::ProbeError),
    #[error(transparent)]
    Stage(#[from] StageError),
    #[error(transparent)]
    Fs(#[from] FsError),
}

/// The current certificate, as far as renewal is concerned.
#[derive(Debug, Clone)]
pub struct CurrentCert {
    pub path: PathBuf,
    pub facts: CertFacts,
    /// The jitter seed, from the certificate's DER.
    pub seed: u64,
}

impl CurrentCert {
    /// Reads `device.crt` (without verifying it: only its dates and identity matter here).
    pub fn read(certs: &CertsDir) -> Result<Self, RenewError> {
        let path = certs.device_cert();
        let pem = read_optional(&path)?.ok_or_else(|| RenewError::NoCertificate {
            path: path.clone(),
            reason: "no such file".into(),
        })?;
        let cert =
            inspect(&pem, &path.display().to_string()).map_err(|e| RenewError::NoCertificate {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            seed: jitter_seed(&cert.der),
            facts: cert.facts,
            path,
        })
    }

    pub fn decide(&self, policy: &Policy, now: OffsetDateTime) -> Decision {
        policy.decide(now, self.facts.not_before, self.facts.not_after, self.seed)
    }
}

/// Finishes or drops an interrupted renewal when no other process is changing `/certs`; for
/// read-mostly commands (`status`, `cert needs-renewal`, the daemon's re-reads). `Ok(None)`:
/// the directory is missing or busy.
pub fn recover_if_idle(certs: &CertsDir) -> Result<Option<Recovery>, RenewError> {
    if !certs.root().is_dir() {
        return Ok(None);
    }
    match CertsLock::try_acquire(certs.root())? {
        Some(_lock) => Ok(Some(stage::recover(certs)?)),
        None => Ok(None),
    }
}

/// Fails with [`RenewError::Revoked`] while the revocation marker is present.
pub fn ensure_not_revoked(certs: &CertsDir) -> Result<(), RenewError> {
    match revoked::read(certs)? {
        Some(revoked) => Err(RenewError::Revoked {
            marker: certs.revoked_marker(),
            revoked,
        }),
        None => Ok(()),
    }
}

/// What `cert needs-renewal` reports: recovery, the marker, then the policy.
pub fn needs_renewal(
    certs: &CertsDir,
    policy: &Policy,
    now: OffsetDateTime,
) -> Result<(CurrentCert, Decision), RenewError> {
    recover_if_idle(certs)?;
    ensure_not_revoked(certs)?;
    let current = CurrentCert::read(certs)?;
    let decision = current.decide(policy, now);
    Ok((current, decision))
}

/// Renews against one bridge for one certs directory.
#[derive(Debug, Clone)]
pub struct Renewer {
    bridge: BridgeSettings,
    certs: CertsDir,
    pub policy: Policy,
}

impl Renewer {
    /// From the agent's configuration (bridge URL and pinned root are required).
    pub fn new(cfg: &AgentConfig) -> Result<Self, AgentError> {
        Ok(Self {
            bridge: cfg.bridge()?,
            certs: CertsDir::new(&cfg.certs_dir),
            policy: Policy::default(),
        })
    }

    pub fn certs(&self) -> &CertsDir {
        &self.certs
    }

    /// One renewal request. Under the certs lock: a new key, its CSR, the mTLS call with the
    /// current certificate, verification of the answer, staging. On success the new pair is
    /// staged (not promoted); on a revocation the marker is written.
    pub async fn request(&self, _lock: &CertsLock) -> Result<Staged, AgentError> {
        ensure_not_revoked(&self.certs)?;
        let id = self.device_id()?;
        let current = CurrentCert::read(&self.certs)?;
        if let Decision::Expired { not_after } =
            current.decide(&self.policy, OffsetDateTime::now_utc())
        {
            return Err(RenewError::Expired {
                path: current.path,
                not_after,
            }
            .into());
        }
        let identity = identity_from(&IdentityFiles::current(&self.certs), Chain::IfPresent)
            .map_err(RenewError::Identity)?;
        let client = BridgeClient::with_identity(&self.bridge, identity)?;
        let key = DeviceKey::generate()?;
        let request = RenewRequest {
            csr_pem: key.csr_pem(&id)?,
        };
        tracing::info!(device = %id, serial = %current.facts.serial_hex, "renewing the device certificate with a new key");
        let response = match client.renew(&id, &request).await {
            Ok(r) => r,
            Err(e) => {
                if let crate::bridge::BridgeError::Refused { code, message, .. } = &e
                    && revoked::is_revocation(code)
                {
                    let revoked = self.mark_revoked(code, message, Some(&current.facts.serial_hex));
                    return Err(self.revoked_error(revoked).into());
                }
                return Err(e.into());
            }
        };
        if response.device_id != id.as_str() {
            return Err(AgentError::Inconsistent(format!(
                "the renewal is for device {:?}, not {id}",
                response.device_id
            )));
        }
        let facts = verify_device_cert(
            &response.certificate_pem,
            &response.ca_chain_pem,
            self.bridge.root_fingerprint,
            &id,
            &key.spki_der(),
            SystemTime::now(),
        )?;
        if !serials_match(&response.certificate.serial, &facts.serial_hex) {
            tracing::warn!(announced = %response.certificate.serial, actual = %facts.serial_hex, "the bridge announced another serial than the certificate's; using the certificate's");
        }
        let staged = stage::stage(
            &self.certs,
            &key,
            &response.certificate_pem,
            &response.ca_chain_pem,
            facts,
        )
        .map_err(RenewError::from)?;
        tracing::info!(serial = %staged.facts.serial_hex, not_after = %stage::rfc3339(staged.facts.not_after), "renewed certificate verified and staged");
        Ok(staged)
    }

    /// Records the bridge's revocation answer in the marker. The revocation holds for this
    /// process even if the marker cannot be written (that is logged).
    pub fn mark_revoked(&self, code: &str, message: &str, serial: Option<&str>) -> Revoked {
        let marker = Revoked::now(code, message, serial);
        tracing::error!(
            code,
            message,
            "the bridge says this device is revoked; the local profile is now unusable"
        );
        if let Err(e) = revoked::write(&self.certs, &marker) {
            tracing::error!(error = %e, "cannot write the revocation marker");
        }
        marker
    }

    /// The error reporting a revocation.
    pub fn revoked_error(&self, revoked: Revoked) -> RenewError {
        RenewError::Revoked {
            marker: self.certs.revoked_marker(),
            revoked,
        }
    }

    /// The enrolled device id (from the `enrolled` flag).
    fn device_id(&self) -> Result<DeviceId, RenewError> {
        let flag = self.certs.flag();
        let not_enrolled = |reason: String| RenewError::NoCertificate {
            path: flag.clone(),
            reason,
        };
        match self.certs.read_flag()? {
            Some(Ok(f)) => DeviceId::parse(&f.device_id).map_err(|e| not_enrolled(e.to_string())),
            Some(Err(reason)) => Err(not_enrolled(reason)),
            None => Err(not_enrolled("no such file".into())),
        }
    }
}

/// Serials compare as hex without leading zeros, colons or case.
fn serials_match(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        let hex: String = s
            .chars()
            .filter(|c| *c != ':')
            .map(|c| c.to_ascii_lowercase())
            .collect();
        hex.trim_start_matches('0').to_owned()
    };
    norm(a) == norm(b)
}

/// Whether a renewal error is worth retrying, and after which server-suggested delay.
pub fn retry_hint(e: &AgentError) -> Option<Option<Duration>> {
    match e {
        AgentError::Bridge(b) if b.is_retryable() => Some(b.retry_after()),
        _ => None,
    }
}

/// Whether `cert renew` proves the new pair with an MQTT connection before promoting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MqttCheck {
    /// When a broker is known (a running daemon's session is taken over for the moment of
    /// the check; the daemon reconnects and takes the promoted pair up by itself).
    Auto,
    Skip,
}

/// Options of one `cert renew`.
#[derive(Debug, Clone)]
pub struct RenewOptions {
    /// Renew even when the policy says it is not yet time.
    pub force: bool,
    /// Retries of an unavailable bridge (also for the re-enrollment fallback).
    pub backoff: Backoff,
    /// `/` in production; for the re-enrollment fallback's device id.
    pub sysroot: PathBuf,
    pub mqtt: MqttCheck,
    pub mqtt_timeout: Duration,
}

/// How the new pair was proven against the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MqttProof {
    Connected { broker: String },
    Skipped { why: String },
}

/// What `cert renew` did.
#[derive(Debug)]
pub enum RenewOutcome {
    NotDue {
        serial: String,
        at: OffsetDateTime,
    },
    Renewed {
        old_serial: String,
        new: CertFacts,
        chain_replaced: bool,
        mqtt: MqttProof,
    },
    /// The certificate had expired; the device enrolled again instead.
    ReEnrolled(Box<EnrollOutcome>),
}

/// The whole renewal: lock, recovery, policy, request with retries, MQTT proof, promotion;
/// re-enrollment when the certificate has expired.
pub async fn renew(cfg: &AgentConfig, opts: &RenewOptions) -> Result<RenewOutcome, AgentError> {
    let renewer = Renewer::new(cfg)?;
    let certs = renewer.certs().clone();
    if !certs.root().is_dir() {
        return Err(RenewError::NoCertificate {
            path: certs.device_cert(),
            reason: format!("{} does not exist", certs.root().display()),
        }
        .into());
    }
    let lock = CertsLock::acquire(certs.root())
        .await
        .map_err(RenewError::from)?;
    stage::recover(&certs).map_err(RenewError::from)?;
    ensure_not_revoked(&certs)?;
    let current = CurrentCert::read(&certs)?;
    match current.decide(&renewer.policy, OffsetDateTime::now_utc()) {
        Decision::Expired { not_after } => {
            drop(lock);
            return re_enroll(&renewer, cfg, opts, not_after).await;
        }
        Decision::NotYet { at } if !opts.force => {
            return Ok(RenewOutcome::NotDue {
                serial: current.facts.serial_hex,
                at,
            });
        }
        Decision::NotYet { .. } | Decision::Due { .. } => {}
    }
    let staged = retry(opts.backoff, retry_hint, || renewer.request(&lock)).await?;
    let mqtt = probe::prove(&renewer, cfg, &staged, opts).await?;
    let chain_replaced = staged.files.chain == certs.ca_chain_new();
    stage::promote(&certs, &staged).map_err(RenewError::from)?;
    tracing::info!(old = %current.facts.serial_hex, new = %staged.facts.serial_hex, "certificate renewed");
    Ok(RenewOutcome::Renewed {
        old_serial: current.facts.serial_hex,
        new: staged.facts,
        chain_replaced,
        mqtt,
    })
}

/// The re-enrollment fallback for an expired certificate (the lock must not be held).
async fn re_enroll(
    renewer: &Renewer,
    cfg: &AgentConfig,
    opts: &RenewOptions,
    not_after: OffsetDateTime,
) -> Result<RenewOutcome, AgentError> {
    tracing::warn!(not_after = %stage::rfc3339(not_after), "the certificate has expired and cannot authenticate a renewal; re-enrolling with new keys (the bridge must allow it: `nexa-server device allow-reenroll`)");
    let outcome = enroll(
        cfg,
        // An enrollment held for an administrator is waited out for as long as the bridge
        // is retried; then `enroll` carries on with the same keys.
        &EnrollOptions::new(
            true,
            opts.backoff,
            opts.sysroot.clone(),
            ApprovalWait::with_timeout(opts.backoff.give_up_after),
        ),
    )
    .await;
    match outcome {
        Ok(o) => Ok(RenewOutcome::ReEnrolled(Box::new(o))),
        Err(AgentError::Bridge(crate::bridge::BridgeError::Refused { code, message, .. }))
            if revoked::is_revocation(&code) =>
        {
            let revoked = renewer.mark_revoked(&code, &message, None);
            Err(renewer.revoked_error(revoked).into())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use testpki::{Pki, enrolled, key};
    use time::Duration as TimeDuration;

    fn certs_with(
        lifetime_from_now: (TimeDuration, TimeDuration),
    ) -> (tempfile::TempDir, CertsDir) {
        let tmp = tempfile::tempdir().unwrap();
        let certs = CertsDir::new(tmp.path());
        let pki = Pki::new();
        let k = key();
        let now = OffsetDateTime::now_utc();
        let cert = pki.device(
            "dev-1",
            &k,
            now + lifetime_from_now.0,
            now + lifetime_from_now.1,
        );
        enrolled(&certs, &pki, "dev-1", &cert, &k);
        (tmp, certs)
    }

    #[test]
    fn needs_renewal_follows_the_policy() {
        let p = Policy::default();
        let now = OffsetDateTime::now_utc();
        // Issued a minute ago for a year: not yet.
        let (_t, certs) = certs_with((TimeDuration::minutes(-1), TimeDuration::days(365)));
        let (_, d) = needs_renewal(&certs, &p, now).unwrap();
        assert!(matches!(d, Decision::NotYet { .. }), "{d:?}");
        // 90 % through its life: due.
        let (_t, certs) = certs_with((TimeDuration::days(-90), TimeDuration::days(10)));
        let (_, d) = needs_renewal(&certs, &p, now).unwrap();
        assert!(matches!(d, Decision::Due { .. }), "{d:?}");
        // Past its end: expired.
        let (_t, certs) = certs_with((TimeDuration::days(-30), TimeDuration::days(-1)));
        let (_, d) = needs_renewal(&certs, &p, now).unwrap();
        assert!(matches!(d, Decision::Expired { .. }), "{d:?}");
    }

    #[test]
    fn needs_renewal_names_the_file_and_refuses_when_revoked() {
        let p = Policy::default();
        let now = OffsetDateTime::now_utc();
        let tmp = tempfile::tempdir().unwrap();
        let certs = CertsDir::new(tmp.path());
        let e = needs_renewal(&certs, &p, now).unwrap_err().to_string();
        assert!(e.contains("device.crt") && e.contains("enroll"), "{e}");
        std::fs::write(certs.device_cert(), "junk").unwrap();
        let e = needs_renewal(&certs, &p, now).unwrap_err().to_string();
        assert!(e.contains("device.crt"), "{e}");

        let (_t, certs) = certs_with((TimeDuration::days(-90), TimeDuration::days(10)));
        revoked::write(&certs, &Revoked::now("device_revoked", "gone", None)).unwrap();
        let e = needs_renewal(&certs, &p, now).unwrap_err().to_string();
        assert!(e.contains("revoked") && e.contains("allow-reenroll"), "{e}");
    }

    #[test]
    fn needs_renewal_recovers_an_interrupted_renewal_first() {
        let (_t, certs) = certs_with((TimeDuration::days(-1), TimeDuration::days(30)));
        std::fs::write(certs.device_key_new(), key().pem()).unwrap();
        needs_renewal(&certs, &Policy::default(), OffsetDateTime::now_utc()).unwrap();
        assert!(!certs.device_key_new().exists());
    }

    #[test]
    fn serials_compare_as_numbers_in_hex() {
        assert!(serials_match("00:AB:cd", "abcd"));
        assert!(serials_match("0abcd", "ABCD"));
        assert!(!serials_match("abce", "abcd"));
    }

    #[test]
    fn only_an_unavailable_bridge_is_retried() {
        let busy = AgentError::Bridge(crate::bridge::BridgeError::Unavailable {
            status: reqwest::StatusCode::SERVICE_UNAVAILABLE,
            message: "signer down".into(),
            retry_after: Some(Duration::from_secs(7)),
        });
        assert_eq!(retry_hint(&busy), Some(Some(Duration::from_secs(7))));
        let no = AgentError::Bridge(crate::bridge::BridgeError::Refused {
            status: reqwest::StatusCode::UNPROCESSABLE_ENTITY,
            code: "signer_rejected".into(),
            message: "no".into(),
        });
        assert_eq!(retry_hint(&no), None);
    }
}
