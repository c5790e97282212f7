//! The fake's transport tricks and bookkeeping, below the handlers:
//!
//! - a listener whose connections can be closed or frozen on demand ("server down" in two
//!   flavours, see [`DownMode`]);
//! - a middleware that answers injected failures ahead of normal handling and logs every
//!   answered request with its route, controller id, status and the kind of credentials.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::SystemTime;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use super::Shared;
use super::spec::{AuthKind, DownMode, RequestRecord, Route};
use super::state::decode_segment;

#[derive(Debug, Default)]
struct NetState {
    down: Option<DownMode>,
    /// Bumped whenever the fake goes down with `Close`: connections from before are dead.
    epoch: u64,
    next_conn: u64,
    /// The task of every live connection, woken when the mode changes.
    wakers: HashMap<u64, Waker>,
}

/// Shared switch between "up", "closing connections" and "hanging".
#[derive(Debug, Default)]
pub(crate) struct NetControl {
    state: Mutex<NetState>,
}

impl NetControl {
    pub(crate) fn set(&self, down: Option<DownMode>) {
        let wakers: Vec<Waker> = {
            let mut s = self.state.lock().unwrap();
            if down == Some(DownMode::Close) {
                s.epoch += 1;
            }
            s.down = down;
            s.wakers.drain().map(|(_, w)| w).collect()
        };
        for w in wakers {
            w.wake();
        }
    }

    pub(crate) fn mode(&self) -> Option<DownMode> {
        self.state.lock().unwrap().down
    }
}

/// A listener handing out [`Conn`]s; while down with `Close` it closes new connections at
/// once.
pub(crate) struct FakeListener {
    pub inner: TcpListener,
    pub net: Arc<NetControl>,
}

impl axum::serve::Listener for FakeListener {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        loop {
            let Ok((stream, addr)) = self.inner.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                continue;
            };
            let (id, epoch) = {
                let mut s = self.net.state.lock().unwrap();
                if s.down == Some(DownMode::Close) {
                    drop(stream);
                    continue;
                }
                s.next_conn += 1;
                (s.next_conn, s.epoch)
            };
            return (
                Conn {
                    stream,
                    net: self.net.clone(),
                    id,
                    epoch,
                },
                addr,
            );
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// A TCP connection that obeys the [`NetControl`] switch.
pub(crate) struct Conn {
    stream: TcpStream,
    net: Arc<NetControl>,
    id: u64,
    epoch: u64,
}

impl Conn {
    /// `Some` when the switch decides instead of the socket.
    fn gate(&self, cx: &Context<'_>) -> Option<Poll<io::Result<()>>> {
        let mut s = self.net.state.lock().unwrap();
        if s.epoch != self.epoch || s.down == Some(DownMode::Close) {
            s.wakers.remove(&self.id);
            return Some(Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "fake hawkBit is down",
            ))));
        }
        s.wakers.insert(self.id, cx.waker().clone());
        (s.down == Some(DownMode::Hang)).then_some(Poll::Pending)
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Ok(mut s) = self.net.state.lock() {
            s.wakers.remove(&self.id);
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(p) = self.gate(cx) {
            return p;
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(p) = self.gate(cx) {
            return p.map(|r| r.map(|()| 0));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(p) = self.gate(cx) {
            return p;
        }
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// What a path addresses: route, tenant and decoded controller id.
pub(crate) fn classify(method: &str, path: &str) -> (Route, Option<String>, Option<String>) {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segs.as_slice() {
        ["rest", ..] => return (Route::Management, None, None),
        ["external", _, _] => return (Route::ExternalArtifact, None, None),
        _ => {}
    }
    let [tenant, "controller", "v1", cid, rest @ ..] = segs.as_slice() else {
        return (Route::Other, None, None);
    };
    let route = match (method, rest) {
        (_, []) => Route::Poll,
        (_, ["configData"]) => Route::ConfigData,
        (_, ["deploymentBase", _]) => Route::DeploymentBase,
        (_, ["deploymentBase", _, "feedback"]) => Route::DeploymentFeedback,
        (_, ["cancelAction", _]) => Route::CancelAction,
        (_, ["cancelAction", _, "feedback"]) => Route::CancelFeedback,
        (_, ["installedBase"]) => Route::AssignedVersion,
        (_, ["installedBase", _]) => Route::InstalledBase,
        (_, ["confirmationBase"])
        | (
            _,
            [
                "confirmationBase",
                "activateAutoConfirm" | "deactivateAutoConfirm",
            ],
        ) => Route::AutoConfirm,
        (_, ["confirmationBase", _]) => Route::ConfirmationBase,
        (_, ["confirmationBase", _, "feedback"]) => Route::ConfirmationFeedback,
        (_, ["softwaremodules", _, "artifacts"]) => Route::ArtifactList,
        (_, ["softwaremodules", _, "artifacts", f]) if f.ends_with(".MD5SUM") => Route::Md5Sum,
        (_, ["softwaremodules", _, "artifacts", _]) => Route::Artifact,
        _ => Route::Other,
    };
    (
        route,
        Some(decode_segment(tenant)),
        Some(decode_segment(cid)),
    )
}

/// The kind of credentials in `headers`.
pub(crate) fn auth_kind(headers: &axum::http::HeaderMap) -> AuthKind {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let scheme = v.split(' ').next().unwrap_or("");
        return if scheme.eq_ignore_ascii_case("TargetToken") {
            AuthKind::TargetToken
        } else if scheme.eq_ignore_ascii_case("GatewayToken") {
            AuthKind::GatewayToken
        } else if scheme.eq_ignore_ascii_case("Basic") {
            AuthKind::Basic
        } else {
            AuthKind::Other
        };
    }
    let proxy = [
        "x-controller-id",
        "x-ssl-client-cn",
        "x-authority",
        "x-authority-0",
        "x-authority-1",
    ];
    if proxy.iter().any(|h| headers.contains_key(*h)) {
        AuthKind::Header
    } else {
        AuthKind::None
    }
}

/// Injected failures first, then the handlers; every answer is logged.
pub(crate) async fn observe(State(inner): State<Shared>, req: Request, next: Next) -> Response {
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let (route, tenant, controller_id) = classify(&method, &path);
    let auth = auth_kind(req.headers());
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let fault = if matches!(route, Route::Management) {
        None
    } else {
        inner.lock().unwrap().ddi.take_fault(route)
    };
    let response = match fault {
        Some(f) => {
            let status =
                StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut r = status.into_response();
            if let Some(ra) = f.retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
                r.headers_mut().insert(header::RETRY_AFTER, ra);
            }
            r
        }
        None => next.run(req).await,
    };
    inner.lock().unwrap().ddi.log.push(RequestRecord {
        method,
        path,
        query,
        route,
        tenant,
        controller_id,
        status: response.status().as_u16(),
        auth,
        headers,
        at: SystemTime::now(),
    });
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let c = |m, p| classify(m, p).0;
        assert_eq!(c("GET", "/DEFAULT/controller/v1/dev-1"), Route::Poll);
        assert_eq!(
            c("GET", "/DEFAULT/controller/v1/dev-1/deploymentBase/3"),
            Route::DeploymentBase
        );
        assert_eq!(
            c(
                "GET",
                "/T/controller/v1/d/softwaremodules/2/artifacts/a.bin.MD5SUM"
            ),
            Route::Md5Sum
        );
        assert_eq!(
            c(
                "POST",
                "/T/controller/v1/d/confirmationBase/activateAutoConfirm"
            ),
            Route::AutoConfirm
        );
        assert_eq!(c("POST", "/rest/v1/targets"), Route::Management);
        let (_, t, id) = classify("GET", "/acme/controller/v1/dev%2F1");
        assert_eq!((t.as_deref(), id.as_deref()), (Some("acme"), Some("dev/1")));
    }
}
