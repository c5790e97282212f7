//! The DDI documents the agent reads and writes, as hawkBit defines them. No I/O.
//!
//! Responses are read leniently: unknown members are ignored, optional ones may be absent
//! (`sha256`, `maintenanceWindow`, `metadata`, links). Requests are written strictly: only
//! members hawkBit knows, optional ones omitted rather than `null`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A link: `{"href": "…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Link {
    pub href: String,
}

/// `GET {base}` — what the server wants from this controller now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ControllerBase {
    #[serde(default)]
    pub config: Option<ControllerConfig>,
    #[serde(default, rename = "_links")]
    pub links: BaseLinks,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ControllerConfig {
    #[serde(default)]
    pub polling: Option<Polling>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Polling {
    #[serde(default)]
    pub sleep: Option<String>,
}

/// The links of the controller base; at most one of deployment / cancel / confirmation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct BaseLinks {
    #[serde(default, rename = "deploymentBase")]
    pub deployment_base: Option<Link>,
    #[serde(default, rename = "cancelAction")]
    pub cancel_action: Option<Link>,
    #[serde(default, rename = "confirmationBase")]
    pub confirmation_base: Option<Link>,
    #[serde(default, rename = "installedBase")]
    pub installed_base: Option<Link>,
    #[serde(default, rename = "configData")]
    pub config_data: Option<Link>,
}

impl ControllerBase {
    /// The sleep the server asked for, if it said one.
    pub fn sleep(&self) -> Option<&str> {
        self.config
            .as_ref()
            .and_then(|c| c.polling.as_ref())
            .and_then(|p| p.sleep.as_deref())
    }
}

/// `GET {deploymentBase href}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DeploymentBase {
    /// The action id (a number written as a string).
    pub id: String,
    pub deployment: Deployment,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Deployment {
    pub download: Handling,
    pub update: Handling,
    #[serde(default, rename = "maintenanceWindow")]
    pub maintenance_window: Option<MaintenanceWindow>,
    #[serde(default)]
    pub chunks: Vec<Chunk>,
}

/// How the server wants a step handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Handling {
    Skip,
    Attempt,
    Forced,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MaintenanceWindow {
    Available,
    Unavailable,
}

/// A software module of the deployment.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Chunk {
    #[serde(default)]
    pub part: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub artifacts: Vec<Artifact>,
    #[serde(default)]
    pub metadata: Vec<Metadata>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Metadata {
    pub key: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Artifact {
    pub filename: String,
    #[serde(default)]
    pub hashes: Hashes,
    /// Bytes; 64-bit (bundles may exceed 4 GiB).
    pub size: u64,
    #[serde(default, rename = "_links")]
    pub links: ArtifactLinks,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Hashes {
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub sha1: Option<String>,
    #[serde(default)]
    pub md5: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ArtifactLinks {
    #[serde(default)]
    pub download: Option<Link>,
    #[serde(default, rename = "download-http")]
    pub download_http: Option<Link>,
}

impl Artifact {
    /// The download URL: `download` (https) preferred over `download-http`.
    pub fn download_href(&self) -> Option<&str> {
        self.links
            .download
            .as_ref()
            .or(self.links.download_http.as_ref())
            .map(|l| l.href.as_str())
    }
}

/// `GET {cancelAction href}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CancelAction {
    pub id: String,
    #[serde(rename = "cancelAction")]
    pub cancel_action: CancelStop,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CancelStop {
    #[serde(rename = "stopId")]
    pub stop_id: String,
}

/// `PUT configData`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigData {
    /// Values are strings; hawkBit refuses anything else.
    pub data: BTreeMap<String, String>,
    pub mode: &'static str,
}

/// What the device says it is doing with an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Execution {
    Closed,
    Proceeding,
    Canceled,
    Scheduled,
    Rejected,
    Resumed,
    Downloaded,
    Download,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Finished {
    Success,
    Failure,
    None,
}

/// hawkBit keeps at most this many detail lines per feedback.
pub const MAX_DETAILS: usize = 50;

/// `POST …/feedback`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Feedback {
    /// Device time of the event, ms since the epoch.
    pub timestamp: u64,
    pub status: FeedbackStatus,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeedbackStatus {
    pub execution: Execution,
    pub result: FeedbackResult,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeedbackResult {
    pub finished: Finished,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Progress {
    pub cnt: u32,
    pub of: u32,
}

impl Feedback {
    pub fn new(timestamp: u64, execution: Execution, finished: Finished) -> Self {
        Self {
            timestamp,
            status: FeedbackStatus {
                execution,
                result: FeedbackResult {
                    finished,
                    progress: None,
                },
                code: None,
                details: Vec::new(),
            },
        }
    }

    /// Adds a detail line (beyond [`MAX_DETAILS`] lines are dropped, hawkBit would refuse).
    pub fn detail(mut self, line: impl Into<String>) -> Self {
        if self.status.details.len() < MAX_DETAILS {
            self.status.details.push(line.into());
        }
        self
    }

    pub fn progress(mut self, cnt: u32, of: u32) -> Self {
        self.status.result.progress = Some(Progress { cnt, of });
        self
    }

    pub fn code(mut self, code: i32) -> Self {
        self.status.code = Some(code);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_a_controller_base_with_unknown_members() {
        let base: ControllerBase = serde_json::from_value(json!({
            "config": {"polling": {"sleep": "12:00:00"}},
            "_links": {
                "deploymentBase": {"href": "http://h/T/controller/v1/c/deploymentBase/5?c=-2127183556"},
                "configData": {"href": "http://h/T/controller/v1/c/configData"},
                "somethingNew": {"href": "x"}
            },
            "extra": 1
        }))
        .unwrap();
        assert_eq!(base.sleep(), Some("12:00:00"));
        assert!(
            base.links
                .deployment_base
                .unwrap()
                .href
                .ends_with("?c=-2127183556")
        );
        assert!(base.links.config_data.is_some() && base.links.cancel_action.is_none());
        let empty: ControllerBase = serde_json::from_value(json!({})).unwrap();
        assert_eq!(empty, ControllerBase::default());
    }

    #[test]
    fn reads_a_deployment_with_64_bit_sizes_and_missing_sha256() {
        let d: DeploymentBase = serde_json::from_value(json!({
            "id": "8",
            "deployment": {
                "download": "forced", "update": "attempt", "maintenanceWindow": "unavailable",
                "chunks": [{
                    "part": "os", "version": "1.0.75", "name": "rootfs", "encrypted": true,
                    "artifacts": [{
                        "filename": "rootfs.raucb",
                        "hashes": {"sha1": "986a", "md5": "d044"},
                        "size": 5_000_000_000_u64,
                        "_links": {
                            "download-http": {"href": "http://h/a"},
                            "md5sum-http": {"href": "http://h/a.MD5SUM"}
                        }
                    }],
                    "metadata": [{"key": "install-hint", "value": "reboot"}]
                }]
            },
            "actionHistory": {"status": "RUNNING", "messages": []}
        }))
        .unwrap();
        assert_eq!(d.id, "8");
        assert_eq!(d.deployment.download, Handling::Forced);
        assert_eq!(d.deployment.update, Handling::Attempt);
        assert_eq!(
            d.deployment.maintenance_window,
            Some(MaintenanceWindow::Unavailable)
        );
        let a = &d.deployment.chunks[0].artifacts[0];
        assert_eq!(a.size, 5_000_000_000);
        assert_eq!(a.hashes.sha256, None);
        assert_eq!(a.download_href(), Some("http://h/a"));
    }

    #[test]
    fn feedback_is_written_as_hawkbit_expects() {
        let f = Feedback::new(1_627_997_501_890, Execution::Proceeding, Finished::None)
            .progress(2, 5)
            .detail("Downloading rootfs.raucb");
        assert_eq!(
            serde_json::to_value(&f).unwrap(),
            json!({
                "timestamp": 1_627_997_501_890_u64,
                "status": {
                    "execution": "proceeding",
                    "result": {"finished": "none", "progress": {"cnt": 2, "of": 5}},
                    "details": ["Downloading rootfs.raucb"]
                }
            })
        );
        let closed = Feedback::new(1, Execution::Closed, Finished::Failure).code(7);
        let v = serde_json::to_value(&closed).unwrap();
        assert_eq!(v["status"]["code"], 7);
        assert!(v["status"].get("details").is_none());
        assert!(v["status"]["result"].get("progress").is_none());
        let mut many = Feedback::new(1, Execution::Closed, Finished::Failure);
        for i in 0..80 {
            many = many.detail(i.to_string());
        }
        assert_eq!(many.status.details.len(), MAX_DETAILS);
    }
}
