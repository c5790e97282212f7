//! The test-facing vocabulary of the fake's DDI side: what a test deploys (distribution
//! sets, chunks, artifacts, assignments), how it configures authentication and failures,
//! and what it reads back (actions, status history, device feedback, the request log).

use std::time::{Duration, SystemTime};

use serde_json::Value;

/// A distribution set: what hawkBit assigns to a target. Each chunk is a software module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistributionSet {
    pub name: String,
    pub version: String,
    pub chunks: Vec<Chunk>,
}

impl DistributionSet {
    pub fn new(name: &str, version: &str) -> Self {
        Self {
            name: name.to_owned(),
            version: version.to_owned(),
            chunks: Vec::new(),
        }
    }

    /// The common case: one `os` chunk named like the set, holding one artifact.
    pub fn single(name: &str, version: &str, artifact: Artifact) -> Self {
        Self::new(name, version).chunk(Chunk::new("os", name, version).artifact(artifact))
    }

    pub fn chunk(mut self, chunk: Chunk) -> Self {
        self.chunks.push(chunk);
        self
    }
}

/// A software module as DDI shows it (`part` is the module type key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Module type key; `application` and `runtime` are shown as hawkBit's legacy `bApp`
    /// and `jvm`.
    pub part: String,
    pub name: String,
    pub version: String,
    /// Shown as `"encrypted": true` (the member is omitted when false).
    pub encrypted: bool,
    /// Target-visible metadata, in order; `metadata` is omitted when empty.
    pub metadata: Vec<(String, String)>,
    pub artifacts: Vec<Artifact>,
}

impl Chunk {
    pub fn new(part: &str, name: &str, version: &str) -> Self {
        Self {
            part: part.to_owned(),
            name: name.to_owned(),
            version: version.to_owned(),
            encrypted: false,
            metadata: Vec::new(),
            artifacts: Vec::new(),
        }
    }

    pub fn artifact(mut self, artifact: Artifact) -> Self {
        self.artifacts.push(artifact);
        self
    }

    pub fn metadata(mut self, key: &str, value: &str) -> Self {
        self.metadata.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn encrypted(mut self) -> Self {
        self.encrypted = true;
        self
    }
}

/// Where an artifact's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Bytes(Vec<u8>),
    /// `size` pseudo-random bytes computed from their offset and `seed`, streamed on demand:
    /// large artifacts (even > 4 GiB) without holding them in memory. Use
    /// [`generated_bytes`](super::generated_bytes) to get the expected bytes in a test.
    Generated {
        size: u64,
        seed: u64,
    },
}

/// sha1, md5 and sha256 in lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hashes {
    pub sha1: String,
    pub md5: String,
    pub sha256: String,
}

impl Hashes {
    /// The hashes of `data`.
    pub fn of(data: &[u8]) -> Self {
        super::content::Blob::Bytes(axum::body::Bytes::copy_from_slice(data)).hashes()
    }
}

/// An artifact of a chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// Used verbatim, also when it is hostile (`../x`): the device must sanitise it.
    pub filename: String,
    pub content: Content,
    /// Advertise these instead of the content's real hashes (skips hashing large generated
    /// content, or lies on purpose).
    pub hashes: Option<Hashes>,
    /// Leave `sha256` out of `hashes` (artifacts uploaded to old hawkBit servers).
    pub omit_sha256: bool,
    /// Serve the content with one byte flipped (the advertised hashes stay those of the
    /// intact content). Also switchable later with [`FakeHawkbit::set_corrupted`](super::FakeHawkbit::set_corrupted).
    pub corrupt: bool,
    /// Link the download to the fake's "external storage" (`/external/…`, like a CDN or a
    /// presigned object-store URL): no DDI auth needed, and a request that carries an
    /// `Authorization` header is refused with 401.
    pub external: bool,
}

impl Artifact {
    pub fn bytes(filename: &str, data: &[u8]) -> Self {
        Self::with_content(filename, Content::Bytes(data.to_vec()))
    }

    /// See [`Content::Generated`]. The hashes are computed when the set is created (a few
    /// seconds per 100 MiB in a debug build); pass [`with_hashes`](Self::with_hashes) to
    /// skip that for huge sizes.
    pub fn generated(filename: &str, size: u64, seed: u64) -> Self {
        Self::with_content(filename, Content::Generated { size, seed })
    }

    fn with_content(filename: &str, content: Content) -> Self {
        Self {
            filename: filename.to_owned(),
            content,
            hashes: None,
            omit_sha256: false,
            corrupt: false,
            external: false,
        }
    }

    pub fn with_hashes(mut self, hashes: Hashes) -> Self {
        self.hashes = Some(hashes);
        self
    }

    pub fn without_sha256(mut self) -> Self {
        self.omit_sha256 = true;
        self
    }

    pub fn corrupted(mut self) -> Self {
        self.corrupt = true;
        self
    }

    pub fn external(mut self) -> Self {
        self.external = true;
        self
    }
}

/// hawkBit's action types; they decide `download`/`update` in deploymentBase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionType {
    /// `download: forced`, `update: forced`.
    Forced,
    /// `download: attempt`, `update: attempt`.
    Soft,
    /// `download: forced`, `update: skip`; `downloaded` feedback closes the action.
    DownloadOnly,
    /// Soft until `at`, forced from then on.
    TimeForced { at: SystemTime },
}

/// Whether the action's maintenance window is open now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaintenanceWindow {
    Available,
    Unavailable,
}

impl MaintenanceWindow {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Available => "available",
            Self::Unavailable => "unavailable",
        }
    }
}

/// How a distribution set is assigned to a target (what creates an action).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assignment {
    pub action_type: ActionType,
    /// `Some` = the action has a maintenance schedule; `maintenanceWindow` is then shown.
    pub maintenance_window: Option<MaintenanceWindow>,
    /// Starts waiting for confirmation (confirmationBase) unless the target has
    /// auto-confirm active.
    pub confirmation_required: bool,
    /// hawkBit's action weight; the poll shows the active action with the highest weight
    /// (absent = 1000), then the oldest.
    pub weight: Option<i32>,
}

impl Default for Assignment {
    fn default() -> Self {
        Self::forced()
    }
}

impl Assignment {
    pub fn of(action_type: ActionType) -> Self {
        Self {
            action_type,
            maintenance_window: None,
            confirmation_required: false,
            weight: None,
        }
    }

    pub fn forced() -> Self {
        Self::of(ActionType::Forced)
    }

    pub fn soft() -> Self {
        Self::of(ActionType::Soft)
    }

    pub fn download_only() -> Self {
        Self::of(ActionType::DownloadOnly)
    }

    pub fn window(mut self, window: MaintenanceWindow) -> Self {
        self.maintenance_window = Some(window);
        self
    }

    pub fn confirmation_required(mut self) -> Self {
        self.confirmation_required = true;
        self
    }

    pub fn weight(mut self, weight: i32) -> Self {
        self.weight = Some(weight);
        self
    }
}

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
/// download, cancel request: messages prefixed with [`SERVER_PREFIX`](super::SERVER_PREFIX))
/// or by accepted device feedback (its `details`, then `Device reported status code: N`).
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

/// Which DDI authentication modes the fake accepts (hawkBit's tenant configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DdiAuth {
    /// `Authorization: TargetToken <securityToken of the target in the path>`.
    pub target_token: bool,
    /// `Authorization: GatewayToken <key>`: acts for any controller of the tenant.
    pub gateway_token: Option<String>,
    /// Client certificate checked by a reverse proxy that forwards its verdict in headers.
    pub header: Option<HeaderAuth>,
    /// Everything without credentials (hawkBit's anonymous DDI).
    pub anonymous: bool,
    /// Artifact downloads (and `.MD5SUM`) without credentials.
    pub anonymous_download: bool,
}

impl Default for DdiAuth {
    /// Target tokens only, hawkBit's usual setup.
    fn default() -> Self {
        Self {
            target_token: true,
            gateway_token: None,
            header: None,
            anonymous: false,
            anonymous_download: false,
        }
    }
}

/// Reverse-proxy certificate authentication. The fake serves plain HTTP and trusts these
/// headers as hawkBit behind an mTLS-terminating proxy does: the controller id header must
/// equal the `{controllerId}` of the path, and one authority value must match one of
/// `authorities` (case-insensitively).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderAuth {
    /// Trusted issuer hashes (or the shared string the proxy sends).
    pub authorities: Vec<String>,
    /// hawkBit ≤ 0.9 header names: `X-Ssl-Client-Cn` and `X-Ssl-Issuer-Hash-1`, `-2`, …
    /// instead of `X-Controller-Id` and `X-Authority` / `X-Authority-0`, `-1`, ….
    pub legacy_names: bool,
}

impl HeaderAuth {
    pub fn new(authorities: &[&str]) -> Self {
        Self {
            authorities: authorities.iter().map(|a| (*a).to_owned()).collect(),
            legacy_names: false,
        }
    }
}

/// Which download link relations an artifact carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DownloadLinks {
    /// `download-http` and `md5sum-http` only: stock hawkBit.
    #[default]
    HttpOnly,
    /// Also `download` and `md5sum` (hawkBit with an https protocol configured). The fake
    /// has no TLS, so these carry the same plain-http URL.
    Both,
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

/// An answer injected ahead of normal handling (before authentication, like a DoS filter
/// or a proxy in front of hawkBit), for the next `times` matching device requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub status: u16,
    pub retry_after: Option<String>,
    pub times: usize,
    /// `None`: any DDI or external-download request (never the Management API).
    pub route: Option<Route>,
}

impl Fault {
    /// `status` with an empty body, once.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            retry_after: None,
            times: 1,
            route: None,
        }
    }

    /// 429 with `Retry-After: secs`.
    pub fn too_many_requests(retry_after_secs: u64) -> Self {
        Self::status(429).retry_after(&retry_after_secs.to_string())
    }

    pub fn gone() -> Self {
        Self::status(410)
    }

    pub fn times(mut self, times: usize) -> Self {
        self.times = times;
        self
    }

    pub fn on(mut self, route: Route) -> Self {
        self.route = Some(route);
        self
    }

    pub fn retry_after(mut self, value: &str) -> Self {
        self.retry_after = Some(value.to_owned());
        self
    }
}

/// How the fake plays "server down".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownMode {
    /// Open connections are closed, new ones are accepted and closed at once.
    Close,
    /// Connections stay open but nothing is read or answered (a hung server or a black
    /// hole); when the fake comes back up, requests still waiting are answered.
    Hang,
}

/// What goes wrong with a download response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownloadFaultKind {
    /// The connection is closed after `after_bytes` body bytes (short of Content-Length).
    Drop,
    /// Nothing is sent for this long after `after_bytes` body bytes, then the rest.
    Stall(Duration),
}

/// Misbehaviour of the next `times` artifact responses (206 and 200, DDI and external;
/// not HEAD), optionally only for one file name. `after_bytes` counts body bytes of that
/// response; a response shorter than that completes normally (and still uses up one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadFault {
    pub after_bytes: u64,
    pub kind: DownloadFaultKind,
    pub times: usize,
    pub filename: Option<String>,
}

impl DownloadFault {
    pub fn drop_after(after_bytes: u64) -> Self {
        Self {
            after_bytes,
            kind: DownloadFaultKind::Drop,
            times: 1,
            filename: None,
        }
    }

    pub fn stall_after(after_bytes: u64, pause: Duration) -> Self {
        Self {
            after_bytes,
            kind: DownloadFaultKind::Stall(pause),
            times: 1,
            filename: None,
        }
    }

    pub fn times(mut self, times: usize) -> Self {
        self.times = times;
        self
    }

    pub fn only(mut self, filename: &str) -> Self {
        self.filename = Some(filename.to_owned());
        self
    }
}
