//! How the fake server is set up to behave: the DDI authentication modes it accepts
//! ([`DdiAuth`], [`HeaderAuth`]), the download link relations it writes, and how it
//! misbehaves on request — injected answers ([`Fault`]), a server that is down
//! ([`DownMode`]) and downloads that are cut or stall ([`DownloadFault`]).

use std::time::Duration;

use super::Route;

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
