//! A stateful fake of hawkBit's Management API, for the parts Nexa uses. hawkBit itself (a
//! Java service with a database) cannot run here; this fake keeps a target table and answers
//! the way hawkBit's Management API does (see the research notes on the DDI and Management
//! APIs):
//!
//! - HTTP Basic authentication on every call: 401 without or with wrong credentials;
//! - `POST /rest/v1/targets`: `Content-Type: application/json` or 415; the body must be a
//!   JSON array of objects with `controllerId` and `name` (400 otherwise, also for
//!   whitespace in `controllerId`); 409 if any controller id already exists, and then nothing
//!   is created; else 201 with the created targets, a `securityToken` generated when none
//!   was given;
//! - `GET /rest/v1/targets/{id}`: 200 with the target, or 404;
//! - `DELETE /rest/v1/targets/{id}`: 204, or 404.
//!
//! Errors carry hawkBit's body shape `{"exceptionClass","errorCode","message"}`. A test can
//! queue failures (`fail_next`) to play an unavailable or refusing hawkBit.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

pub const USER: &str = "nexa-bridge";
pub const PASSWORD: &str = "fake-hawkbit-password";

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
}

type Shared = Arc<Mutex<Inner>>;

/// A running fake hawkBit on a free loopback port (plain HTTP, like hawkBit behind its
/// ingress in a cluster).
#[derive(Debug)]
pub struct FakeHawkbit {
    pub url: String,
    inner: Shared,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeHawkbit {
    pub fn start() -> Self {
        let inner: Shared = Arc::default();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind fake hawkBit");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("fake hawkBit address");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = router(inner.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("fake hawkBit runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
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
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// All targets, ordered by controller id.
    pub fn targets(&self) -> Vec<Target> {
        self.inner
            .lock()
            .unwrap()
            .targets
            .values()
            .cloned()
            .collect()
    }

    /// Authenticated `POST /rest/v1/targets` calls so far.
    pub fn create_calls(&self) -> usize {
        self.inner.lock().unwrap().create_calls
    }

    /// Calls refused with 401.
    pub fn unauthorized_calls(&self) -> usize {
        self.inner.lock().unwrap().unauthorized
    }

    /// The next authenticated call gets this status (and an error body) and changes nothing.
    pub fn fail_next(&self, status: u16) {
        self.inner.lock().unwrap().failures.push_back(status);
    }

    /// A target created out of band (by an operator, or by an earlier bridge).
    pub fn insert_target(&self, controller_id: &str) {
        let mut inner = self.inner.lock().unwrap();
        let token = inner.token();
        inner.targets.insert(
            controller_id.to_owned(),
            Target {
                controller_id: controller_id.to_owned(),
                name: controller_id.to_owned(),
                description: None,
                security_token: token,
            },
        );
    }
}

impl Drop for FakeHawkbit {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Inner {
    fn token(&mut self) -> String {
        self.next_token += 1;
        format!(
            "{:032x}",
            self.next_token.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        )
    }
}

fn router(inner: Shared) -> Router {
    Router::new()
        .route("/rest/v1/targets", post(create_targets))
        .route(
            "/rest/v1/targets/{id}",
            get(get_target).delete(delete_target),
        )
        .with_state(inner)
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({
            "exceptionClass": "org.eclipse.hawkbit.repository.exception.Fake",
            "errorCode": code,
            "message": message,
        })),
    )
        .into_response()
}

/// Basic auth, then any queued failure. `Some` is the response to send instead.
fn gate(inner: &Shared, headers: &HeaderMap) -> Option<Response> {
    let expected = format!("Basic {}", STANDARD.encode(format!("{USER}:{PASSWORD}")));
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let mut g = inner.lock().unwrap();
    if presented != Some(expected.as_str()) {
        g.unauthorized += 1;
        return Some(
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Basic realm=\"hawkBit\"")],
            )
                .into_response(),
        );
    }
    let status = g.failures.pop_front()?;
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Some(error(
        status,
        "hawkbit.server.error.fake",
        "injected failure",
    ))
}

fn target_json(t: &Target) -> Value {
    json!({
        "controllerId": t.controller_id,
        "name": t.name,
        "description": t.description,
        "securityToken": t.security_token,
        "updateStatus": "registered",
        "requestAttributes": true,
        "_links": { "self": { "href": format!("/rest/v1/targets/{}", t.controller_id) } },
    })
}

async fn create_targets(State(inner): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = gate(&inner, &headers) {
        return r;
    }
    inner.lock().unwrap().create_calls += 1;
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    if !matches!(
        json_type.as_deref(),
        Some("application/json" | "application/hal+json")
    ) {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "hawkbit.server.error.rest.body.notReadable",
            "content type not supported",
        );
    }
    let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "hawkbit.server.error.rest.body.notReadable",
            "the body must be a JSON array of targets",
        );
    };
    let mut wanted = Vec::with_capacity(items.len());
    for item in &items {
        let field = |k: &str| item.get(k).and_then(Value::as_str).map(str::to_owned);
        let (Some(controller_id), Some(name)) = (field("controllerId"), field("name")) else {
            return error(
                StatusCode::BAD_REQUEST,
                "hawkbit.server.error.repo.constraintViolation",
                "controllerId and name are required",
            );
        };
        if controller_id.is_empty() || controller_id.contains(char::is_whitespace) {
            return error(
                StatusCode::BAD_REQUEST,
                "hawkbit.server.error.repo.constraintViolation",
                "controllerId must not be empty or contain whitespace",
            );
        }
        wanted.push((
            controller_id,
            name,
            field("description"),
            field("securityToken"),
        ));
    }
    let mut g = inner.lock().unwrap();
    if let Some((id, ..)) = wanted.iter().find(|(id, ..)| g.targets.contains_key(id)) {
        return error(
            StatusCode::CONFLICT,
            "hawkbit.server.error.repo.entitiyAlreayExists",
            &format!("target {id} already exists"),
        );
    }
    let mut created = Vec::new();
    for (controller_id, name, description, token) in wanted {
        let security_token = token.unwrap_or_else(|| g.token());
        let t = Target {
            controller_id: controller_id.clone(),
            name,
            description,
            security_token,
        };
        created.push(target_json(&t));
        g.targets.insert(controller_id, t);
    }
    (StatusCode::CREATED, axum::Json(Value::Array(created))).into_response()
}

async fn get_target(
    State(inner): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = gate(&inner, &headers) {
        return r;
    }
    match inner.lock().unwrap().targets.get(&id) {
        Some(t) => axum::Json(target_json(t)).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "hawkbit.server.error.repo.entitiyNotFound",
            &format!("target {id} not found"),
        ),
    }
}

async fn delete_target(
    State(inner): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = gate(&inner, &headers) {
        return r;
    }
    match inner.lock().unwrap().targets.remove(&id) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "hawkbit.server.error.repo.entitiyNotFound",
            &format!("target {id} not found"),
        ),
    }
}
