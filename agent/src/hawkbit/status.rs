//! What the update engine is doing, for `nexa-agent status` and the ThingsBoard attributes.

use serde::{Deserialize, Serialize};

/// The engine's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Polling; no action in progress.
    #[default]
    Idle,
    Downloading,
    /// Downloaded; the maintenance window is closed or the server said not to install yet.
    Waiting,
    Installing,
    /// Installed; the reboot was requested and the outcome is decided by the next boot.
    Rebooting,
}

/// A snapshot of the engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct OtaStatus {
    pub phase: Phase,
    /// hawkBit action id of the action in progress.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Artifact being handled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,
    /// Percent of the current phase.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<u8>,
    /// The last problem talking to hawkBit or RAUC, cleared by the next success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How the last finished action ended, e.g. `8: success` or `9: failure: …`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_result: Option<String>,
    /// RFC 3339 time of the last successful poll.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_poll: Option<String>,
}

impl OtaStatus {
    /// One line for `nexa-agent status`.
    pub fn line(&self) -> String {
        let mut out = format!("{:?}", self.phase).to_lowercase();
        if let Some(a) = &self.action {
            out.push_str(&format!(", action {a}"));
        }
        if let Some(f) = &self.artifact {
            out.push_str(&format!(" ({f})"));
        }
        if let Some(p) = self.progress {
            out.push_str(&format!(" {p}%"));
        }
        if let Some(e) = &self.error {
            out.push_str(&format!("; error: {e}"));
        }
        if let Some(r) = &self.last_result {
            out.push_str(&format!("; last: {r}"));
        }
        out
    }

    /// Back to idle after an action, keeping what is worth remembering.
    pub fn finished(&self, result: String) -> Self {
        Self {
            last_result: Some(result),
            last_poll: self.last_poll.clone(),
            error: None,
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_compactly() {
        let st = OtaStatus {
            phase: Phase::Downloading,
            action: Some("8".into()),
            progress: Some(40),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&st).unwrap(),
            serde_json::json!({"phase": "downloading", "action": "8", "progress": 40})
        );
        let done = st.finished("8: success".into());
        assert_eq!(done.phase, Phase::Idle);
        assert_eq!(done.action, None);
        assert_eq!(done.last_result.as_deref(), Some("8: success"));
    }
}
