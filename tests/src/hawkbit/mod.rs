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
//!
//! This file holds the wiring and the lifecycle: the shared state behind the routers, the
//! router itself and [`FakeHawkbit`]'s start and shutdown. The methods a test calls are
//! grouped by concern in `api_targets.rs` (targets and what the fake knows about each
//! controller), `api_config.rs` (the DDI server's settings), `api_deploy.rs` (distribution
//! sets, assignments and actions) and `api_failures.rs` (injected failures, a server that
//! goes down, and the request log).

mod api_config;
mod api_deploy;
mod api_failures;
mod api_targets;
mod content;
mod ddi;
mod mgmt;
mod net;
mod spec;
mod state;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    update_calls: usize,
    /// Every `DELETE /rest/v1/targets/{id}` that passed authentication.
    delete_calls: usize,
    /// Controller ids whose target was deleted through the Management API, in order.
    deleted: Vec<String>,
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
            get(mgmt::get_target)
                .put(mgmt::update_target)
                .delete(mgmt::delete_target),
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
