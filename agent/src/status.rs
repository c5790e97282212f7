//! `nexa-agent status`: what the certs directory says about this device.

use std::path::Path;
use std::time::SystemTime;

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::certs::{CertsDir, Current};
use crate::config::AgentConfig;
use crate::device_id::resolve_device_id;
use crate::error::AgentError;
use crate::runstate::{RunState, read_live};

/// The status report (`status --json` prints it as is).
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// `enrolled`, `not_enrolled` or `invalid`.
    pub state: &'static str,
    pub device_id: Option<String>,
    pub certs_dir: String,
    pub bridge: Option<String>,
    pub address: Option<String>,
    pub profile_revision: Option<u64>,
    pub certificate: Option<CertStatus>,
    /// Keys staged by an enrollment that has not completed.
    pub enrollment_pending: bool,
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
    let enrollment_pending = certs.staging().join("device.key").is_file();
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
        enrollment_pending,
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
            st.certificate = Some(CertStatus {
                serial: cert.serial_hex,
                not_before: fmt(cert.not_before),
                not_after: fmt(cert.not_after),
                expires_in_seconds: (cert.not_after - now).whole_seconds(),
            });
        }
        Current::Missing => {}
        Current::Invalid { reason } => {
            st.state = "invalid";
            st.reason = Some(reason);
        }
    }
    Ok(st)
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
        _ => "not enrolled".to_owned(),
    };
    out.push_str(&format!("state:        {state}\n"));
    out.push_str(&format!("device id:    {}\n", dash(&st.device_id)));
    out.push_str(&format!("certs dir:    {}\n", st.certs_dir));
    out.push_str(&format!("bridge:       {}\n", dash(&st.bridge)));
    out.push_str(&format!("address:      {}\n", dash(&st.address)));
    match &st.certificate {
        Some(c) => {
            let days = c.expires_in_seconds / 86_400;
            let when = if c.expires_in_seconds < 0 {
                "EXPIRED".to_owned()
            } else {
                format!("expires in {days} days")
            };
            out.push_str(&format!(
                "certificate:  serial {}, not after {} ({when})\n",
                c.serial, c.not_after
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
    if st.enrollment_pending {
        out.push_str("pending:      keys are staged for an enrollment that has not completed; run `nexa-agent enroll`\n");
    }
    out
}
