//! The durable "revoked" marker, `/certs/revoked`: the bridge answered a renewal with 403
//! `device_revoked` or `device_decommissioned`, so the local profile is unusable. While it is
//! there `run` does not bring the tunnel up and does not renew, `cert renew` refuses, `wg up`
//! refuses and `status` says so. Only a successful enrollment (after an operator authorized the
//! device again: `nexa-server device allow-reenroll`, then `nexa-agent enroll --force`)
//! removes it. An unreadable marker still counts: the agent fails closed.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::atomic::{FsError, read_optional, write_atomic};
use crate::certs::{CertsDir, MODE_PUBLIC};

/// What the marker records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revoked {
    /// The bridge's error code (`device_revoked`, `device_decommissioned`).
    pub code: String,
    /// The bridge's message.
    pub message: String,
    /// RFC 3339, when the agent learned it.
    pub at: String,
    /// The certificate the agent held then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
}

impl Revoked {
    /// A marker for the bridge's answer, timestamped now.
    pub fn now(code: &str, message: &str, serial: Option<&str>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.to_owned(),
            at: OffsetDateTime::now_utc()
                .format(&Rfc3339)
                .unwrap_or_default(),
            serial: serial.map(str::to_owned),
        }
    }

    /// One line for logs, `status` and error messages.
    pub fn describe(&self) -> String {
        format!(
            "the bridge answered {} at {}: {}",
            self.code, self.at, self.message
        )
    }
}

/// Whether the bridge's refusal `code` means the device is revoked for good.
pub fn is_revocation(code: &str) -> bool {
    code == nexa_proto::ErrorCode::DeviceRevoked.as_str()
        || code == nexa_proto::ErrorCode::DeviceDecommissioned.as_str()
}

/// Writes the marker atomically.
pub fn write(certs: &CertsDir, marker: &Revoked) -> Result<(), FsError> {
    let path = certs.revoked_marker();
    let mut bytes = serde_json::to_vec_pretty(marker)
        .map_err(|e| FsError::new("cannot encode", &path, std::io::Error::other(e)))?;
    bytes.push(b'\n');
    write_atomic(&path, &bytes, MODE_PUBLIC)
}

/// The marker, if present. An unreadable one is reported as a revocation with the reason.
pub fn read(certs: &CertsDir) -> Result<Option<Revoked>, FsError> {
    let path = certs.revoked_marker();
    let unreadable = |why: String| Revoked {
        code: "unknown".into(),
        message: format!(
            "{} is unreadable ({why}); treated as revoked",
            path.display()
        ),
        at: String::new(),
        serial: None,
    };
    // Fail closed: a marker that exists but cannot be read or parsed counts as revoked.
    Ok(match read_optional(&path) {
        Ok(text) => text.map(|text| {
            serde_json::from_str::<Revoked>(&text).unwrap_or_else(|e| unreadable(e.to_string()))
        }),
        Err(e) => Some(unreadable(e.to_string())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_read_back_and_unreadable_counts_as_revoked() {
        let tmp = tempfile::tempdir().unwrap();
        let certs = CertsDir::new(tmp.path());
        assert_eq!(read(&certs).unwrap(), None);
        let m = Revoked::now("device_revoked", "revoked by ops", Some("0abc"));
        write(&certs, &m).unwrap();
        assert_eq!(read(&certs).unwrap(), Some(m.clone()));
        assert!(m.describe().contains("device_revoked") && m.describe().contains("revoked by ops"));

        std::fs::write(certs.revoked_marker(), "{not json").unwrap();
        let back = read(&certs).unwrap().unwrap();
        assert_eq!(back.code, "unknown");
        assert!(back.message.contains("revoked"), "{}", back.message);

        // A marker that cannot even be read (here: a directory) fails closed too.
        std::fs::remove_file(certs.revoked_marker()).unwrap();
        std::fs::create_dir(certs.revoked_marker()).unwrap();
        let back = read(&certs).unwrap().expect("an unreadable marker counts");
        assert_eq!(back.code, "unknown");
    }

    #[test]
    fn only_revocation_codes_count() {
        assert!(is_revocation("device_revoked"));
        assert!(is_revocation("device_decommissioned"));
        assert!(!is_revocation("client_certificate_invalid"));
        assert!(!is_revocation("signer_rejected"));
    }
}
