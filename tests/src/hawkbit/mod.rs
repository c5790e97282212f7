//! A stateful fake of hawkBit for Nexa's tests: the Management API's target table the
//! bridge provisions (`mgmt.rs`), and the DDI (Direct Device Integration) API the agent's
//! update client talks to. hawkBit itself (a Java service with a database) cannot run here,
//! and mocks that match exact request bodies cannot follow an action through its life, so
//! this fake keeps hawkBit's state and applies hawkBit's rules, following the research
//! contract `DDI.md` (section numbers below refer to it).
//!
//! # DDI, as served
//!
//! Paths are `/{tenant}/controller/v1/{controllerId}/…` (tenant `DEFAULT` unless
//! [`set_tenant`](FakeHawkbit::set_tenant)); links are absolute, built from the request's
//! `Host`, with the controller id percent-encoded.
//!
//! - Authentication (§1), chosen with [`set_auth`](FakeHawkbit::set_auth): `TargetToken`
//!   (the target's `securityToken`, target must exist), `GatewayToken`, reverse-proxy
//!   certificate headers (`X-Controller-Id` + `X-Authority[-N]`, or the ≤ 0.9 names
//!   `X-Ssl-Client-Cn` + `X-Ssl-Issuer-Hash-N`; the fake serves plain HTTP and trusts
//!   these headers as hawkBit trusts its proxy), anonymous, anonymous downloads. Anything
//!   else, or another tenant: 401 without a body.
//! - Poll (§2): `config.polling.sleep` (`HH:MM:SS`, ISO-8601 from one day on), at most one
//!   of `confirmationBase` / `cancelAction` / `deploymentBase` for the open action with the
//!   highest weight, `installedBase` for the last action closed with success, `configData`
//!   while attributes are wanted (new target, after every success, after `downloaded` of a
//!   download-only action, or [`request_attributes`](FakeHawkbit::request_attributes)).
//!   Unknown controllers are registered on poll unless
//!   [`set_auto_register(false)`](FakeHawkbit::set_auto_register).
//! - configData (§3): merge / replace / remove, values strings (numbers and booleans are
//!   taken as their text, `null` removes), 400 for empty or nested data.
//! - deploymentBase (§4): `id` as a string, `download`/`update` from the action type and
//!   maintenance window, chunks with legacy part names, `encrypted` only when true,
//!   `metadata` only when present, hashes with optional `sha256`, `download-http` /
//!   `md5sum-http` links (plus `download` / `md5sum` on request), `?c=` changing with what
//!   the device is told, `actionHistory` on request, a RETRIEVED entry, 404 while the
//!   action waits for confirmation or is canceling.
//! - Artifacts (§5): 200 / 206 (one range, or `multipart/byteranges`) / 416, `If-Range`
//!   against the quoted-sha1 ETag, `If-Match` → 412, `.MD5SUM`; a download without `Range`
//!   needs an open action holding the module and adds a DOWNLOAD entry.
//! - Feedback (§6, §7, §9): hawkBit's mapping of `execution`/`finished` to status entries
//!   and action states, quotas (→ 429), 404 / 405 / 410 where hawkBit answers them; every
//!   well-formed feedback is recorded with the status it got.
//! - installedBase (§8), confirmationBase and auto-confirm (§9), artifact lists (§10).
//! - GETs of JSON carry Spring's shallow ETag and answer `If-None-Match` with 304 (§2 P6);
//!   `Accept` and `Content-Type` are checked (406 / 415; the fake speaks no CBOR).
//!
//! # For tests
//!
//! Deploy with [`deploy`](FakeHawkbit::deploy) (or [`create_distribution_set`] +
//! [`assign`]), drive the operator side with [`cancel`](FakeHawkbit::cancel) and friends,
//! read back [`action`](FakeHawkbit::action) (state, status history, feedback) and the
//! [`requests`](FakeHawkbit::requests) log. Failures: [`inject`](FakeHawkbit::inject)
//! (next N answers 429/5xx/410…), [`inject_download`](FakeHawkbit::inject_download) (cut
//! or stall a download after K bytes), [`set_download_rate`](FakeHawkbit::set_download_rate),
//! corrupt artifacts, and [`set_down`](FakeHawkbit::set_down) / [`down_for`](FakeHawkbit::down_for).
//!
//! [`create_distribution_set`]: FakeHawkbit::create_distribution_set
//! [`assign`]: FakeHawkbit::assign

mod content;
mod ddi;
mod mgmt;
mod net;
mod spec;
mod state;

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::routing::{get, post};

pub use spec::{
    ActionState, ActionType, ActionView, Artifact, Assignment, AuthKind, Chunk, Content, DdiAuth,
    DistributionSet, DownMode, DownloadFault, DownloadFaultKind, DownloadLinks, Fault, Feedback,
    FeedbackChannel, Hashes, HeaderAuth, MaintenanceWindow, RequestRecord, Route, StatusEntry,
    StatusKind,
};

pub(crate) use mgmt::error;

pub const USER: &str = "nexa-bridge";
pub const PASSWORD: &str = "fake-hawkbit-password";
/// The prefix of messages the server writes into an action's history (hawkBit leaves them
/// out of `actionHistory`).
pub const SERVER_PREFIX: &str = "Update Server: ";

/// A target as the fake stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub controller_id: String,
    pub name: String,
    pub description: Option<String>,
    pub security_token: String,
}

#[derive(Debug, Default)]
struct Inner {
    targets: BTreeMap<String, Target>,
    /// Every `POST /rest/v1/targets` that passed authentication.
    create_calls: usize,
    /// Answers with no effect, served before normal handling.
    failures: VecDeque<u16>,
    /// Calls refused for bad or missing credentials.
    unauthorized: usize,
    next_token: u64,
    ddi: state::Ddi,
}

type Shared = Arc<Mutex<Inner>>;

impl Inner {
    fn token(&mut self) -> String {
        self.next_token += 1;
        format!(
            "{:032x}",
            self.next_token.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        )
    }

    /// A target the DDI side registered itself (first poll of an unknown controller).
    fn register_target(&mut self, controller_id: &str) {
        let token = self.token();
        self.targets.insert(
            controller_id.to_owned(),
            Target {
                controller_id: controller_id.to_owned(),
                name: controller_id.to_owned(),
                description: None,
                security_token: token,
            },
        );
        self.ddi.controller(controller_id);
    }
}

/// `HH:MM:SS` below a day, else ISO-8601 (`PT36H`), as hawkBit writes `sleep`.
pub fn polling_sleep(every: Duration) -> String {
    let s = every.as_secs();
    if s < 86_400 {
        return format!("{:02}:{:02}:{:02}", s / 3600, s % 3600 / 60, s % 60);
    }
    let mut out = format!("PT{}H", s / 3600);
    if s % 3600 / 60 > 0 {
        out.push_str(&format!("{}M", s % 3600 / 60));
    }
    if !s.is_multiple_of(60) {
        out.push_str(&format!("{}S", s % 60));
    }
    out
}

/// Bytes `[offset, offset + len)` of [`Content::Generated`] content with `seed`.
pub fn generated_bytes(seed: u64, offset: u64, len: usize) -> Vec<u8> {
    content::generated(seed, offset, len)
}

fn router(inner: Shared) -> Router {
    Router::new()
        .route("/rest/v1/targets", post(mgmt::create_targets))
        .route(
            "/rest/v1/targets/{id}",
            get(mgmt::get_target).delete(mgmt::delete_target),
        )
        .merge(ddi::routes())
        .layer(axum::middleware::from_fn_with_state(
            inner.clone(),
            net::observe,
        ))
        .with_state(inner)
}

/// A running fake hawkBit on a free loopback port (plain HTTP, like hawkBit behind its
/// ingress in a cluster).
#[derive(Debug)]
pub struct FakeHawkbit {
    pub url: String,
    inner: Shared,
    net: Arc<net::NetControl>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeHawkbit {
    pub fn start() -> Self {
        let inner: Shared = Arc::default();
        let net: Arc<net::NetControl> = Arc::default();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind fake hawkBit");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("fake hawkBit address");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = router(inner.clone());
        let net2 = net.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("fake hawkBit runtime");
            rt.block_on(async move {
                let listener = net::FakeListener {
                    inner: tokio::net::TcpListener::from_std(listener).expect("listener"),
                    net: net2,
                };
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await
                    .expect("fake hawkBit serve");
            });
        });
        Self {
            url: format!("http://{addr}"),
            inner,
            net,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap()
    }

    // -- Management API (targets) --------------------------------------------------------

    /// All targets, ordered by controller id.
    pub fn targets(&self) -> Vec<Target> {
        self.lock().targets.values().cloned().collect()
    }

    /// Authenticated `POST /rest/v1/targets` calls so far.
    pub fn create_calls(&self) -> usize {
        self.lock().create_calls
    }

    /// Management API calls refused with 401.
    pub fn unauthorized_calls(&self) -> usize {
        self.lock().unauthorized
    }

    /// The next authenticated Management API call gets this status (and an error body)
    /// and changes nothing.
    pub fn fail_next(&self, status: u16) {
        self.lock().failures.push_back(status);
    }

    /// A target created out of band (by an operator, or by an earlier bridge), with a
    /// generated security token.
    pub fn insert_target(&self, controller_id: &str) {
        let mut g = self.lock();
        let token = g.token();
        drop(g);
        self.insert_target_with_token(controller_id, &token);
    }

    /// A target with a known security token (for `TargetToken` authentication).
    pub fn insert_target_with_token(&self, controller_id: &str, token: &str) {
        let mut g = self.lock();
        g.targets.insert(
            controller_id.to_owned(),
            Target {
                controller_id: controller_id.to_owned(),
                name: controller_id.to_owned(),
                description: None,
                security_token: token.to_owned(),
            },
        );
        g.ddi.controller(controller_id);
    }

    /// The target's `securityToken`.
    pub fn security_token(&self, controller_id: &str) -> Option<String> {
        self.lock()
            .targets
            .get(controller_id)
            .map(|t| t.security_token.clone())
    }

    // -- DDI configuration ---------------------------------------------------------------

    /// The tenant of DDI paths (default `DEFAULT`; compared case-insensitively).
    pub fn set_tenant(&self, tenant: &str) {
        self.lock().ddi.tenant = tenant.to_owned();
    }

    pub fn tenant(&self) -> String {
        self.lock().ddi.tenant.clone()
    }

    /// `{url}/{tenant}/controller/v1/{controllerId}`: the base a device is configured with.
    pub fn controller_url(&self, controller_id: &str) -> String {
        let tenant = self.tenant();
        format!(
            "{}/{}/controller/v1/{}",
            self.url,
            state::encode_segment(&tenant),
            state::encode_segment(controller_id)
        )
    }

    /// Which authentication modes DDI accepts (default: target tokens only).
    pub fn set_auth(&self, auth: DdiAuth) {
        self.lock().ddi.auth = auth;
    }

    /// Whether a poll by an unknown (but authenticated) controller registers it (default
    /// on, as hawkBit does); off: 404.
    pub fn set_auto_register(&self, on: bool) {
        self.lock().ddi.auto_register = on;
    }

    /// `config.polling.sleep` (default `00:05:00`), formatted by [`polling_sleep`].
    pub fn set_polling_sleep(&self, every: Duration) {
        self.set_polling_sleep_raw(&polling_sleep(every));
    }

    /// `config.polling.sleep` verbatim, also nonsense, to test a client's parser.
    pub fn set_polling_sleep_raw(&self, value: &str) {
        self.lock().ddi.sleep = value.to_owned();
    }

    pub fn set_download_links(&self, links: DownloadLinks) {
        self.lock().ddi.links = links;
    }

    /// hawkBit's multi-assignment mode. Off (default): a new assignment sets the target's
    /// older open actions to canceling.
    pub fn set_multi_assignment(&self, on: bool) {
        self.lock().ddi.multi_assignment = on;
    }

    /// hawkBit's quotas (defaults 1000 and 50); exceeding one answers 429.
    pub fn set_quotas(&self, max_status_entries_per_action: usize, max_messages_per_status: usize) {
        let mut g = self.lock();
        g.ddi.max_status_entries = max_status_entries_per_action;
        g.ddi.max_messages = max_messages_per_status;
    }

    // -- DDI controller state ------------------------------------------------------------

    /// The attributes the device sent with configData.
    pub fn attributes(&self, controller_id: &str) -> BTreeMap<String, String> {
        self.lock()
            .ddi
            .controllers
            .get(controller_id)
            .map(|c| c.attributes.clone())
            .unwrap_or_default()
    }

    /// Ask the device for its attributes again (the poll shows `configData`).
    pub fn request_attributes(&self, controller_id: &str) {
        self.lock().ddi.controller(controller_id).request_attributes = true;
    }

    /// Whether the poll shows `configData` now.
    pub fn attributes_requested(&self, controller_id: &str) -> bool {
        self.lock()
            .ddi
            .controllers
            .get(controller_id)
            .is_some_and(|c| c.request_attributes)
    }

    /// Successful polls of the controller's base.
    pub fn polls(&self, controller_id: &str) -> usize {
        self.lock()
            .ddi
            .controllers
            .get(controller_id)
            .map_or(0, |c| c.polls)
    }

    pub fn last_poll(&self, controller_id: &str) -> Option<SystemTime> {
        self.lock()
            .ddi
            .controllers
            .get(controller_id)
            .and_then(|c| c.last_poll)
    }

    /// The action installedBase points at: the last one closed with success.
    pub fn installed_action(&self, controller_id: &str) -> Option<u64> {
        self.lock()
            .ddi
            .controllers
            .get(controller_id)
            .and_then(|c| c.installed)
    }

    pub fn auto_confirm_active(&self, controller_id: &str) -> bool {
        self.lock()
            .ddi
            .controllers
            .get(controller_id)
            .is_some_and(|c| c.auto_confirm.is_some())
    }

    // -- Deployments and actions ---------------------------------------------------------

    /// Stores a distribution set with its software modules and artifacts; returns its id.
    /// Artifact hashes are computed here (outside the fake's lock) unless given.
    pub fn create_distribution_set(&self, set: DistributionSet) -> u64 {
        let prepared: Vec<Vec<(content::Blob, Hashes)>> = set
            .chunks
            .iter()
            .map(|c| {
                c.artifacts
                    .iter()
                    .map(|a| {
                        let blob = content::Blob::from(&a.content);
                        let hashes = a.hashes.clone().unwrap_or_else(|| blob.hashes());
                        (blob, hashes)
                    })
                    .collect()
            })
            .collect();
        let created = SystemTime::now();
        let mut g = self.lock();
        let ddi = &mut g.ddi;
        let mut modules = Vec::new();
        for (chunk, blobs) in set.chunks.iter().zip(prepared) {
            ddi.next_module += 1;
            let module = ddi.next_module;
            let mut artifacts = Vec::new();
            for (a, (blob, hashes)) in chunk.artifacts.iter().zip(blobs) {
                assert!(
                    chunk
                        .artifacts
                        .iter()
                        .filter(|b| b.filename == a.filename)
                        .nth(1)
                        .is_none(),
                    "fake hawkBit: two artifacts named {:?} in one chunk",
                    a.filename
                );
                artifacts.push(Arc::new(content::StoredArtifact {
                    filename: a.filename.clone(),
                    module,
                    blob,
                    hashes,
                    omit_sha256: a.omit_sha256,
                    corrupt: a.corrupt.into(),
                    external: a.external,
                    created,
                }));
            }
            ddi.modules.insert(
                module,
                state::Module {
                    part: chunk.part.clone(),
                    name: chunk.name.clone(),
                    version: chunk.version.clone(),
                    encrypted: chunk.encrypted,
                    metadata: chunk.metadata.clone(),
                    artifacts,
                },
            );
            modules.push(module);
        }
        ddi.next_set += 1;
        let id = ddi.next_set;
        ddi.sets.insert(
            id,
            state::SetRecord {
                name: set.name,
                version: set.version,
                modules,
            },
        );
        id
    }

    /// The software module ids of a distribution set, in chunk order.
    pub fn modules(&self, set: u64) -> Vec<u64> {
        self.lock()
            .ddi
            .sets
            .get(&set)
            .map(|s| s.modules.clone())
            .unwrap_or_default()
    }

    /// Assigns a stored set to a known target; returns the new action's id.
    pub fn assign(&self, controller_id: &str, set: u64, how: Assignment) -> u64 {
        let mut g = self.lock();
        assert!(
            g.targets.contains_key(controller_id),
            "fake hawkBit: unknown target {controller_id:?} (insert it first)"
        );
        g.ddi.assign(controller_id, set, how)
    }

    /// [`create_distribution_set`](Self::create_distribution_set) + [`assign`](Self::assign).
    pub fn deploy(&self, controller_id: &str, set: DistributionSet, how: Assignment) -> u64 {
        let set = self.create_distribution_set(set);
        self.assign(controller_id, set, how)
    }

    /// Operator cancel: the open action goes to canceling (the poll then shows
    /// `cancelAction`). Panics if the action is closed or already canceling.
    pub fn cancel(&self, action: u64) {
        if let Err(e) = self.lock().ddi.cancel(action) {
            panic!("fake hawkBit: cannot cancel: {e}");
        }
    }

    /// Operator force-quit of a canceling action: canceled without the device's word.
    pub fn force_quit(&self, action: u64) {
        if let Err(e) = self.lock().ddi.force_quit(action) {
            panic!("fake hawkBit: cannot force-quit: {e}");
        }
    }

    /// Changes the action type (e.g. soft → forced; the deploymentBase link's `c` changes).
    pub fn set_action_type(&self, action: u64, action_type: ActionType) {
        self.with_action(action, |a| a.action_type = action_type);
    }

    /// Opens or closes the maintenance window (`None`: no schedule).
    pub fn set_maintenance_window(&self, action: u64, window: Option<MaintenanceWindow>) {
        self.with_action(action, |a| a.window = window);
    }

    fn with_action<T>(&self, action: u64, f: impl FnOnce(&mut state::Action) -> T) -> T {
        let mut g = self.lock();
        let a = g
            .ddi
            .actions
            .get_mut(&action)
            .unwrap_or_else(|| panic!("fake hawkBit: no action {action}"));
        f(a)
    }

    /// A snapshot of the action. Panics if there is none.
    pub fn action(&self, action: u64) -> ActionView {
        self.with_action(action, |a| a.view())
    }

    /// The target's actions, oldest first.
    pub fn actions(&self, controller_id: &str) -> Vec<ActionView> {
        self.lock()
            .ddi
            .actions
            .values()
            .filter(|a| a.controller_id == controller_id)
            .map(state::Action::view)
            .collect()
    }

    /// Every well-formed feedback posted for the action, with the status it got.
    pub fn feedback(&self, action: u64) -> Vec<Feedback> {
        self.action(action).feedback
    }

    /// The action's status history, oldest first.
    pub fn statuses(&self, action: u64) -> Vec<StatusEntry> {
        self.action(action).statuses
    }

    /// Serves every artifact named `filename` with (or again without) a flipped byte.
    pub fn set_corrupted(&self, filename: &str, on: bool) {
        let g = self.lock();
        for a in g
            .ddi
            .modules
            .values()
            .flat_map(|m| &m.artifacts)
            .filter(|a| a.filename == filename)
        {
            a.corrupt.store(on, Ordering::Relaxed);
        }
    }

    // -- Failures ------------------------------------------------------------------------

    /// Answers the next `fault.times` matching device requests with `fault.status`.
    /// Faults are consulted in the order they were injected.
    pub fn inject(&self, fault: Fault) {
        self.lock().ddi.faults.push(fault);
    }

    /// Makes the next `fault.times` matching artifact responses drop or stall.
    pub fn inject_download(&self, fault: DownloadFault) {
        self.lock().ddi.download_faults.push(fault);
    }

    /// Throttles every artifact response started from now on (`None`: full speed).
    pub fn set_download_rate(&self, bytes_per_second: Option<u64>) {
        self.lock().ddi.download_rate = bytes_per_second;
    }

    /// Forgets injected request and download faults.
    pub fn clear_faults(&self) {
        let mut g = self.lock();
        g.ddi.faults.clear();
        g.ddi.download_faults.clear();
    }

    /// The server goes down until [`set_up`](Self::set_up). Requests that never got an
    /// answer are not in the request log.
    pub fn set_down(&self, mode: DownMode) {
        self.net.set(Some(mode));
    }

    pub fn set_up(&self) {
        self.net.set(None);
    }

    /// Down now, up again after `period` (without blocking the test).
    pub fn down_for(&self, period: Duration, mode: DownMode) {
        self.net.set(Some(mode));
        let net = self.net.clone();
        std::thread::spawn(move || {
            std::thread::sleep(period);
            net.set(None);
        });
    }

    pub fn down_mode(&self) -> Option<DownMode> {
        self.net.mode()
    }

    // -- Request log ---------------------------------------------------------------------

    /// Every answered request, oldest first (Management API included).
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.lock().ddi.log.clone()
    }

    /// The answered requests of one route.
    pub fn requests_to(&self, route: Route) -> Vec<RequestRecord> {
        self.lock()
            .ddi
            .log
            .iter()
            .filter(|r| r.route == route)
            .cloned()
            .collect()
    }

    pub fn clear_requests(&self) {
        self.lock().ddi.log.clear();
    }

    /// DDI requests refused with 401.
    pub fn ddi_unauthorized_calls(&self) -> usize {
        self.lock().ddi.unauthorized
    }
}

impl Drop for FakeHawkbit {
    fn drop(&mut self) {
        // Close every connection (also hung ones) so the graceful shutdown cannot wait.
        self.net.set(Some(DownMode::Close));
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleep_formats() {
        assert_eq!(polling_sleep(Duration::from_secs(30)), "00:00:30");
        assert_eq!(polling_sleep(Duration::from_secs(86_399)), "23:59:59");
        assert_eq!(polling_sleep(Duration::from_secs(36 * 3600)), "PT36H");
        assert_eq!(polling_sleep(Duration::from_secs(90_061)), "PT25H1M1S");
    }
}
