//! `nexa-agent status`: what the certs directory says about this device.

use std::path::Path;
use std::time::SystemTime;

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::certs::{CertsDir, CertsError, Current, PendingNote};
use crate::config::AgentConfig;
use crate::device_id::resolve_device_id;
use crate::error::AgentError;
use crate::machine_uid::{self, UidSource};
use crate::renew::policy::Policy;
use crate::renew::revoked::{self, Revoked};
use crate::renew::{CurrentCert, recover_if_idle};
use crate::runstate::{RunState, read_live};

/// The status report (`status --json` prints it as is).
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// `enrolled`, `not_enrolled`, `invalid` or `revoked` (the bridge revoked the device;
    /// see `revoked`).
    pub state: &'static str,
    pub device_id: Option<String>,
    pub certs_dir: String,
    pub bridge: Option<String>,
    pub address: Option<String>,
    pub profile_revision: Option<u64>,
    pub certificate: Option<CertStatus>,
    /// What `enroll` sends as `machine_uid` (a hash), and the sources it was derived from.
    pub machine_uid: Option<String>,
    pub machine_uid_sources: Vec<UidSource>,
    /// Keys staged by an enrollment that has not completed.
    pub enrollment_pending: bool,
    /// The bridge holds that enrollment for an administrator's approval.
    pub approval_pending: Option<PendingNote>,
    /// A renewed pair is staged and not yet promoted (a renewal is under way).
    pub renewal_pending: bool,
    /// The revocation marker: the local profile is unusable.
    pub revoked: Option<Revoked>,
    pub reason: Option<String>,
    /// The running `nexa-agent run`, if there is one.
    pub daemon: Option<RunState>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CertStatus {
    pub serial: String,
    pub not_before: String,
    pub not_after: String,
    pub expires_in_seconds: i64,
    /// When the agent renews it (RFC 3339; 2/3 of the lifetime less a per-certificate jitter).
    pub renew_at: String,
    /// Seconds until then; zero or less: due now.
    pub renew_in_seconds: i64,
}

impl Status {
    pub fn is_enrolled(&self) -> bool {
        self.state == "enrolled"
    }
}

/// Builds the status. The device id is resolved when possible but not required.
pub fn status(cfg: &AgentConfig, sysroot: &Path) -> Result<Status, AgentError> {
    let pin = cfg.fingerprint()?;
    let id = resolve_device_id(sysroot, cfg.device_id.as_deref())
        .ok()
        .map(|(id, _)| id);
    let certs = CertsDir::new(&cfg.certs_dir);
    if let Err(e) = recover_if_idle(&certs) {
        tracing::warn!(error = %e, "cannot resolve an interrupted renewal");
    }
    let enrollment_pending = certs.staging().join("device.key").is_file();
    let approval_pending = certs.pending_note().filter(|_| enrollment_pending);
    let uid = machine_uid::derive(sysroot, cfg.machine_uid.as_ref());
    let revoked = revoked::read(&certs).map_err(CertsError::from)?;
    let now = OffsetDateTime::now_utc();
    let fmt = |t: OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
    let mut st = Status {
        state: "not_enrolled",
        device_id: id.as_ref().map(ToString::to_string),
        certs_dir: cfg.certs_dir.display().to_string(),
        bridge: cfg.bridge_url.clone(),
        address: None,
        profile_revision: None,
        certificate: None,
        machine_uid: uid.as_ref().map(|u| u.value().to_owned()),
        machine_uid_sources: uid.map(|u| u.sources().to_vec()).unwrap_or_default(),
        enrollment_pending,
        approval_pending,
        renewal_pending: certs.device_key_new().is_file(),
        revoked: None,
        reason: None,
        daemon: read_live(&cfg.state_dir),
    };
    match certs.check(id.as_ref(), pin, SystemTime::now())? {
        Current::Valid { flag, cert } => {
            st.state = "enrolled";
            let flag = *flag;
            st.device_id = Some(flag.device_id);
            st.bridge = Some(flag.bridge);
            st.address = Some(flag.address);
            st.profile_revision = Some(flag.profile_revision);
            let renew_at = CurrentCert::read(&certs)
                .map(|c| {
                    Policy::default().renewal_time(c.facts.not_before, c.facts.not_after, c.seed)
                })
                .unwrap_or(cert.not_after);
            st.certificate = Some(CertStatus {
                serial: cert.serial_hex,
                not_before: fmt(cert.not_before),
                not_after: fmt(cert.not_after),
                expires_in_seconds: (cert.not_after - now).whole_seconds(),
                renew_at: fmt(renew_at),
                renew_in_seconds: (renew_at - now).whole_seconds(),
            });
        }
        Current::Missing => {}
        Current::Invalid { reason } => {
            st.state = "invalid";
            st.reason = Some(reason);
        }
    }
    if let Some(r) = revoked {
        st.state = "revoked";
        st.reason = Some(r.describe());
        st.revoked = Some(r);
    }
    Ok(st)
}

/// When the certificate is renewed, for people.
fn renewal_line(c: &CertStatus, revoked: bool) -> String {
    if revoked {
        return format!("none (revoked); it would have been at {}", c.renew_at);
    }
    if c.expires_in_seconds < 0 {
        return "too late: the certificate expired; `nexa-agent cert renew` re-enrolls".into();
    }
    if c.renew_in_seconds <= 0 {
        return format!("due now (since {})", c.renew_at);
    }
    format!("at {} (in {})", c.renew_at, span(c.renew_in_seconds))
}

/// A duration in the largest unit that keeps it at two or more.
fn span(s: i64) -> String {
    if s >= 2 * 86_400 {
        format!("{} days", s / 86_400)
    } else if s >= 2 * 3600 {
        format!("{} hours", s / 3600)
    } else if s >= 120 {
        format!("{} minutes", s / 60)
    } else {
        format!("{s} seconds")
    }
}

/// Human-readable rendering.
pub fn render(st: &Status) -> String {
    let dash = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    let mut out = String::new();
    let state = match st.state {
        "enrolled" => "enrolled".to_owned(),
        "invalid" => format!(
            "invalid ({})",
            st.reason.as_deref().unwrap_or("unknown reason")
        ),
        "revoked" => format!(
            "REVOKED ({}); the tunnel stays down; re-enrolling needs an operator's authorization",
            st.reason.as_deref().unwrap_or("unknown reason")
        ),
        _ => "not enrolled".to_owned(),
    };
    out.push_str(&format!("state:        {state}\n"));
    out.push_str(&format!("device id:    {}\n", dash(&st.device_id)));
    out.push_str(&format!("certs dir:    {}\n", st.certs_dir));
    out.push_str(&format!("bridge:       {}\n", dash(&st.bridge)));
    out.push_str(&format!("address:      {}\n", dash(&st.address)));
    match &st.machine_uid {
        Some(uid) => {
            let names: Vec<&str> = st.machine_uid_sources.iter().map(|s| s.name()).collect();
            let reflash = if st.machine_uid_sources == [UidSource::MachineId] {
                "; a re-flash renews it"
            } else {
                ""
            };
            out.push_str(&format!(
                "machine uid:  {uid} (from {}{reflash})\n",
                names.join("+")
            ));
        }
        None => out.push_str("machine uid:  - (no hardware serial or /etc/machine-id)\n"),
    }
    match &st.certificate {
        Some(c) => {
            let when = if c.expires_in_seconds < 0 {
                "EXPIRED".to_owned()
            } else {
                format!("expires in {}", span(c.expires_in_seconds))
            };
            out.push_str(&format!(
                "certificate:  serial {}, not after {} ({when})\n",
                c.serial, c.not_after
            ));
            out.push_str(&format!(
                "renewal:      {}\n",
                renewal_line(c, st.revoked.is_some())
            ));
        }
        None => out.push_str("certificate:  -\n"),
    }
    match &st.daemon {
        Some(d) => {
            let part = |p: &crate::runstate::Part| match (&p.code, &p.message) {
                (Some(c), Some(m)) => format!("{} ({c}: {m})", p.state),
                (None, Some(m)) => format!("{} ({m})", p.state),
                _ => p.state.clone(),
            };
            out.push_str(&format!("daemon:       running, pid {}\n", d.pid));
            out.push_str(&format!("mqtt:         {}\n", part(&d.mqtt)));
            out.push_str(&format!("tunnel:       {}\n", part(&d.tunnel)));
            if let Some(ota) = &d.ota {
                out.push_str(&format!("updates:      {}\n", ota.line()));
            }
        }
        None => out.push_str("daemon:       not running\n"),
    }
    if st.renewal_pending {
        out.push_str("pending:      a renewed certificate is staged and not yet in use\n");
    }
    match (&st.approval_pending, st.enrollment_pending) {
        (Some(p), _) => out.push_str(&format!(
            "pending:      enrollment {} waits for an administrator's approval (since {}); \
             `nexa-agent enroll` keeps waiting with the same keys\n",
            p.pending_id, p.since
        )),
        (None, true) => out.push_str("pending:      keys are staged for an enrollment that has not completed; run `nexa-agent enroll`\n"),
        (None, false) => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;
    use crate::renew::testpki::{Pki, enrolled, key};

    fn config(certs: &std::path::Path, state: &std::path::Path, pin: &str) -> AgentConfig {
        AgentConfig::load(
            &certs.join("absent.toml"),
            false,
            Overrides {
                certs_dir: Some(certs.to_owned()),
                state_dir: Some(state.to_owned()),
                device_id: Some("dev-1".into()),
                root_fingerprint: Some(pin.into()),
                ..Overrides::default()
            },
        )
        .unwrap()
    }

    #[test]
    fn shows_the_renewal_time_and_the_revocation() {
        let tmp = tempfile::tempdir().unwrap();
        let certs_dir = tmp.path().join("certs");
        let certs = CertsDir::new(&certs_dir);
        let pki = Pki::new();
        let k = key();
        let nb = OffsetDateTime::now_utc() - time::Duration::days(1);
        let cert = pki.device("dev-1", &k, nb, nb + time::Duration::days(30));
        enrolled(&certs, &pki, "dev-1", &cert, &k);
        let cfg = config(
            &certs_dir,
            &tmp.path().join("run"),
            &pki.fingerprint.to_string(),
        );

        let st = status(&cfg, tmp.path()).unwrap();
        assert_eq!(st.state, "enrolled");
        let c = st.certificate.clone().unwrap();
        let at = OffsetDateTime::parse(&c.renew_at, &Rfc3339).unwrap();
        assert!(
            at >= nb + time::Duration::days(17) && at <= nb + time::Duration::days(20),
            "{at}"
        );
        assert!(c.renew_in_seconds > 15 * 86_400);
        let text = render(&st);
        assert!(
            text.contains("renewal:      at ") && text.contains("days)"),
            "{text}"
        );

        revoked::write(
            &certs,
            &Revoked::now("device_revoked", "stolen", Some(&c.serial)),
        )
        .unwrap();
        let st = status(&cfg, tmp.path()).unwrap();
        assert_eq!(st.state, "revoked");
        assert!(!st.is_enrolled());
        assert_eq!(st.revoked.as_ref().unwrap().code, "device_revoked");
        let text = render(&st);
        assert!(
            text.contains("REVOKED") && text.contains("stolen"),
            "{text}"
        );
        assert!(text.contains("renewal:      none (revoked)"), "{text}");
    }

    #[test]
    fn shows_the_machine_uid_source_and_a_pending_approval() {
        let tmp = tempfile::tempdir().unwrap();
        let certs_dir = tmp.path().join("certs");
        let certs = CertsDir::new(&certs_dir);
        std::fs::create_dir_all(tmp.path().join("etc")).unwrap();
        std::fs::write(
            tmp.path().join("etc/machine-id"),
            "0123456789abcdef0123456789abcdef\n",
        )
        .unwrap();
        let cfg = config(&certs_dir, &tmp.path().join("run"), &"a".repeat(64));
        let st = status(&cfg, tmp.path()).unwrap();
        assert_eq!(st.machine_uid_sources, [UidSource::MachineId]);
        assert_eq!(st.machine_uid.as_deref().map(str::len), Some(64));
        let text = render(&st);
        assert!(
            text.contains("machine uid:")
                && text.contains("(from machine_id; a re-flash renews it)"),
            "{text}"
        );
        assert!(st.approval_pending.is_none());

        certs
            .stage_keys(
                &crate::keys::DeviceKey::generate().unwrap(),
                &crate::keys::WgKeyPair::generate(),
            )
            .unwrap();
        certs
            .write_pending_note(&PendingNote {
                pending_id: "pend-7".into(),
                device_id: "dev-1".into(),
                since: "2030-01-01T00:00:00Z".into(),
                message: "waits".into(),
            })
            .unwrap();
        let st = status(&cfg, tmp.path()).unwrap();
        assert_eq!(st.approval_pending.as_ref().unwrap().pending_id, "pend-7");
        let text = render(&st);
        assert!(
            text.contains("enrollment pend-7 waits for an administrator's approval"),
            "{text}"
        );
        let json = serde_json::to_value(&st).unwrap();
        assert_eq!(json["machine_uid_sources"][0], "machine_id");
        assert_eq!(json["approval_pending"]["pending_id"], "pend-7");
    }
}
