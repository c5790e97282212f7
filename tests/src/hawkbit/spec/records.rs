//! What a test reads back: the state of an action and the entries of its status history,
//! the feedback the device posted with the answer it got, [`ActionView`] snapshots, and the
//! request log ([`RequestRecord`], classified by [`Route`] and the [`AuthKind`] of its
//! credentials).

use std::time::SystemTime;

use serde_json::Value;

use super::{ActionType, MaintenanceWindow};

/// The life of an action as the fake tracks it (hawkBit's action status, reduced to what
/// changes DDI answers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionState {
    WaitingForConfirmation,
    Running,
    /// Cancel requested; the poll shows `cancelAction` until the device answers.
    Canceling,
    Canceled,
    /// Closed with success.
    Finished,
    /// Closed with failure.
    Error,
    /// A download-only action closed by `downloaded`.
    Downloaded,
}

impl ActionState {
    /// Still open: shown by the poll, accepts deployment feedback.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            Self::WaitingForConfirmation | Self::Running | Self::Canceling
        )
    }

    /// hawkBit's name (as in `actionHistory.status`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WaitingForConfirmation => "WAIT_FOR_CONFIRMATION",
            Self::Running => "RUNNING",
            Self::Canceling => "CANCELING",
            Self::Canceled => "CANCELED",
            Self::Finished => "FINISHED",
            Self::Error => "ERROR",
            Self::Downloaded => "DOWNLOADED",
        }
    }
}

/// The type of an entry in an action's status history (hawkBit's `Action.Status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusKind {
    Running,
    Retrieved,
    Download,
    Downloaded,
    Warning,
    Canceling,
    Canceled,
    CancelRejected,
    Finished,
    Error,
    WaitForConfirmation,
}

impl StatusKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "RUNNING",
            Self::Retrieved => "RETRIEVED",
            Self::Download => "DOWNLOAD",
            Self::Downloaded => "DOWNLOADED",
            Self::Warning => "WARNING",
            Self::Canceling => "CANCELING",
            Self::Canceled => "CANCELED",
            Self::CancelRejected => "CANCEL_REJECTED",
            Self::Finished => "FINISHED",
            Self::Error => "ERROR",
            Self::WaitForConfirmation => "WAIT_FOR_CONFIRMATION",
        }
    }

    /// FINISHED and ERROR are final; everything else counts against the per-action quota.
    pub fn is_intermediate(self) -> bool {
        !matches!(self, Self::Finished | Self::Error)
    }
}

/// One entry of an action's status history: added by the server (assignment, retrieval,
/// download, cancel request: messages prefixed with
/// [`SERVER_PREFIX`](crate::hawkbit::SERVER_PREFIX)) or by accepted device feedback (its
/// `details`, then `Device reported status code: N`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusEntry {
    pub kind: StatusKind,
    pub messages: Vec<String>,
    pub code: Option<i64>,
    /// Device time (`timestamp` of the feedback) if given, else server time; epoch ms.
    pub occurred_at: i64,
}

/// Which feedback resource the device posted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedbackChannel {
    /// `deploymentBase/{id}/feedback`.
    Deployment,
    /// `cancelAction/{id}/feedback`.
    Cancel,
    /// `confirmationBase/{id}/feedback` (then `execution` holds `confirmed`/`denied`).
    Confirmation,
}

/// A well-formed feedback the device posted for an existing action of its own, with the
/// status the fake answered (200 accepted; 404, 405, 410, 429 refused).
#[derive(Debug, Clone, PartialEq)]
pub struct Feedback {
    pub channel: FeedbackChannel,
    /// The JSON body as posted.
    pub body: Value,
    pub execution: String,
    pub finished: Option<String>,
    /// `(cnt, of)`.
    pub progress: Option<(i64, Option<i64>)>,
    pub code: Option<i64>,
    pub details: Vec<String>,
    pub timestamp: Option<i64>,
    pub answered: u16,
}

/// A snapshot of an action.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionView {
    pub id: u64,
    pub controller_id: String,
    pub distribution_set: u64,
    pub action_type: ActionType,
    pub maintenance_window: Option<MaintenanceWindow>,
    pub state: ActionState,
    pub statuses: Vec<StatusEntry>,
    pub feedback: Vec<Feedback>,
}

impl ActionView {
    pub fn is_active(&self) -> bool {
        self.state.is_active()
    }

    /// Only the feedback the fake accepted (answered 200).
    pub fn accepted_feedback(&self) -> Vec<&Feedback> {
        self.feedback.iter().filter(|f| f.answered == 200).collect()
    }
}

/// A class of request, for the request log and for aiming injected failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// `GET {base}`.
    Poll,
    /// `PUT {base}/configData`.
    ConfigData,
    /// `GET {base}/deploymentBase/{id}`.
    DeploymentBase,
    /// `POST {base}/deploymentBase/{id}/feedback`.
    DeploymentFeedback,
    /// `GET {base}/cancelAction/{id}`.
    CancelAction,
    /// `POST {base}/cancelAction/{id}/feedback`.
    CancelFeedback,
    /// `GET {base}/installedBase/{id}`.
    InstalledBase,
    /// `PUT {base}/installedBase`.
    AssignedVersion,
    /// `GET {base}/confirmationBase`, `POST …/activateAutoConfirm`, `…/deactivateAutoConfirm`.
    AutoConfirm,
    /// `GET {base}/confirmationBase/{id}`.
    ConfirmationBase,
    /// `POST {base}/confirmationBase/{id}/feedback`.
    ConfirmationFeedback,
    /// `GET {base}/softwaremodules/{id}/artifacts`.
    ArtifactList,
    /// `GET {base}/softwaremodules/{id}/artifacts/{file}`.
    Artifact,
    /// `GET {base}/softwaremodules/{id}/artifacts/{file}.MD5SUM`.
    Md5Sum,
    /// `GET /external/{module}/{file}`.
    ExternalArtifact,
    /// `/rest/v1/…`.
    Management,
    Other,
}

impl Route {
    /// Artifact bytes (DDI or external).
    pub fn is_download(self) -> bool {
        matches!(self, Self::Artifact | Self::ExternalArtifact)
    }
}

/// The credentials a request presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKind {
    None,
    TargetToken,
    GatewayToken,
    /// Reverse-proxy certificate headers, no `Authorization`.
    Header,
    Basic,
    Other,
}

/// One request the fake answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    /// Path as sent (percent-encoded), without the query.
    pub path: String,
    pub query: Option<String>,
    pub route: Route,
    pub tenant: Option<String>,
    /// Decoded `{controllerId}` of a DDI path.
    pub controller_id: Option<String>,
    pub status: u16,
    pub auth: AuthKind,
    /// Request headers, names lowercase, in order.
    pub headers: Vec<(String, String)>,
    pub at: SystemTime,
}

impl RequestRecord {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}
