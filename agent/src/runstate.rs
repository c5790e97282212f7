//! The running daemon's view of itself, in `<state_dir>/agent-state.json` (default
//! `/run/nexa`), so `nexa-agent status` can say whether the MQTT session is up or why not
//! (e.g. the broker rejected the certificate) and whether the tunnel is degraded. Written
//! atomically on every change; removed when the daemon stops; ignored when its pid is gone.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::atomic::{ensure_dir, write_atomic};

pub const FILE_NAME: &str = "agent-state.json";

/// One subsystem's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// e.g. `connected`, `connecting`, `refused`; `up`, `degraded`, `disabled`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Part {
    pub fn new(state: &str, code: Option<&str>, message: Option<&str>) -> Self {
        Self {
            state: state.to_owned(),
            code: code.map(str::to_owned),
            message: message.map(str::to_owned),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunState {
    pub pid: u32,
    /// RFC 3339.
    pub updated_at: String,
    pub mqtt: Part,
    pub tunnel: Part,
    /// The update engine; absent when hawkBit is not configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ota: Option<crate::hawkbit::status::OtaStatus>,
}

/// Where the daemon writes its state; a directory it cannot write is reported once and then
/// left alone (the daemon runs on without it).
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    warned: bool,
}

impl StateFile {
    pub fn new(dir: &Path) -> Self {
        Self {
            path: dir.join(FILE_NAME),
            warned: false,
        }
    }

    pub fn write(&mut self, st: &RunState) {
        let result = (|| {
            if let Some(dir) = self.path.parent() {
                ensure_dir(dir, 0o755)?;
            }
            let json = serde_json::to_vec_pretty(st).unwrap_or_default();
            write_atomic(&self.path, &json, 0o644)
        })();
        match result {
            Ok(()) => self.warned = false,
            Err(e) if !self.warned => {
                self.warned = true;
                tracing::warn!(error = %e, "cannot write the daemon state; `nexa-agent status` will not show it");
            }
            Err(_) => {}
        }
    }

    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The state of a daemon that is still running, if any.
pub fn read_live(dir: &Path) -> Option<RunState> {
    let text = std::fs::read_to_string(dir.join(FILE_NAME)).ok()?;
    let st: RunState = serde_json::from_str(&text).ok()?;
    Path::new(&format!("/proc/{}", st.pid))
        .exists()
        .then_some(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_state_is_read_back_only_while_its_process_lives() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        let mut file = StateFile::new(&dir);
        let mut st = RunState {
            pid: std::process::id(),
            updated_at: "2026-01-01T00:00:00Z".into(),
            mqtt: Part::new("refused", Some("certificate_rejected"), Some("why")),
            tunnel: Part::new("disabled", None, None),
            ota: Some(crate::hawkbit::status::OtaStatus {
                phase: crate::hawkbit::status::Phase::Downloading,
                progress: Some(40),
                ..Default::default()
            }),
        };
        file.write(&st);
        assert_eq!(read_live(&dir), Some(st.clone()));
        st.pid = u32::MAX; // no such process
        file.write(&st);
        assert_eq!(read_live(&dir), None);
        file.remove();
        assert_eq!(read_live(&dir), None);
    }
}
