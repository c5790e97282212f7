//! Asking the system to reboot after an update. The agent never calls `reboot(2)`: the init
//! system stops services in order (the agent itself gets SIGTERM and disconnects cleanly) and
//! file systems are synced. logind (`org.freedesktop.login1.Manager.Reboot`) or systemd
//! (`StartUnit("reboot.target", "replace-irreversibly")`) is asked over the system bus.
//!
//! Both decide through polkit, and an image without polkit lets only root reboot. There the
//! agent leaves a request instead: the file `<data_dir>/reboot-request`, written atomically,
//! which `nexa-reboot.path` watches; its `nexa-reboot.service` removes the file and, having
//! removed it, has systemd reboot (`SuccessAction=reboot`). That happens when the bus refuses
//! the agent (access denied, authorization required) and the bus has no polkit, or at once
//! with `reboot_via = "file"`. Where polkit runs, its refusal stands (a shutdown inhibitor,
//! a missing rule) and is reported: the request file would bypass it. A request left over
//! from before a reboot is removed at boot (`nexa-agent.tmpfiles.conf`), so it can never
//! reboot the device twice.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use super::settings::RebootVia;
use crate::atomic::write_atomic;

/// The request file's name in the hawkBit data directory (`nexa-reboot.path` names it too).
pub const REQUEST_FILE_NAME: &str = "reboot-request";

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why the reboot request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot ask {via} to reboot: {reason}")]
pub struct RebootError {
    pub via: &'static str,
    pub reason: String,
}

/// Who reboots the device.
pub trait Rebooter: Send + Sync + std::fmt::Debug {
    /// Requests the reboot; returns once the request was accepted (the reboot follows).
    fn reboot(&self) -> BoxFuture<'_, Result<(), RebootError>>;
}

/// The rebooter `reboot_via` asks for: the bus (falling back to the request file when the
/// bus refuses the agent), or the request file alone.
pub fn for_settings(via: RebootVia, request: RequestFile) -> Arc<dyn Rebooter> {
    match via {
        RebootVia::File => Arc::new(request),
        RebootVia::Logind | RebootVia::Systemd => {
            Arc::new(DbusRebooter::new(via).with_fallback(request))
        }
    }
}

/// The reboot request left for `nexa-reboot.path`.
#[derive(Debug, Clone)]
pub struct RequestFile {
    path: PathBuf,
}

impl RequestFile {
    /// `REQUEST_FILE_NAME` in `data_dir`.
    pub fn in_dir(data_dir: &Path) -> Self {
        Self {
            path: data_dir.join(REQUEST_FILE_NAME),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&self) -> Result<(), RebootError> {
        let at = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let body = format!("requested_at={at}\nreason=update installed\n");
        write_atomic(&self.path, body.as_bytes(), 0o600).map_err(|e| RebootError {
            via: "nexa-reboot.path",
            reason: e.to_string(),
        })?;
        tracing::info!(path = %self.path.display(), "reboot requested through nexa-reboot.path");
        Ok(())
    }
}

impl Rebooter for RequestFile {
    fn reboot(&self) -> BoxFuture<'_, Result<(), RebootError>> {
        Box::pin(async move { self.write() })
    }
}

/// The reboot through logind or systemd on the D-Bus system bus
/// (`DBUS_SYSTEM_BUS_ADDRESS` is honoured).
#[derive(Debug, Clone)]
pub struct DbusRebooter {
    via: RebootVia,
    /// `None`: the system bus.
    address: Option<String>,
    /// Used when the bus refuses the agent.
    fallback: Option<RequestFile>,
}

impl DbusRebooter {
    pub fn new(via: RebootVia) -> Self {
        Self {
            via,
            address: None,
            fallback: None,
        }
    }

    /// logind or systemd on the bus at `address` (e.g. `unix:path=/run/test/bus.sock`).
    pub fn at_address(via: RebootVia, address: &str) -> Self {
        Self {
            via,
            address: Some(address.to_owned()),
            fallback: None,
        }
    }

    /// Leaves `request` when logind or systemd refuse the agent (no polkit, or no rule).
    pub fn with_fallback(mut self, request: RequestFile) -> Self {
        self.fallback = Some(request);
        self
    }

    async fn connect(&self) -> zbus::Result<zbus::Connection> {
        match &self.address {
            None => zbus::Connection::system().await,
            Some(a) => {
                zbus::connection::Builder::address(a.as_str())?
                    .build()
                    .await
            }
        }
    }

    fn label(&self) -> &'static str {
        match self.via {
            RebootVia::Logind => "logind",
            RebootVia::Systemd => "systemd",
            RebootVia::File => "nexa-reboot.path",
        }
    }

    /// The bus request, then the request file if the bus refused and there is one.
    async fn request(&self) -> Result<(), RebootError> {
        match (self.call().await, &self.fallback) {
            (Ok(()), _) => Ok(()),
            (Err(Refusal::Denied(e)), Some(file)) => {
                if self.has_polkit().await {
                    return Err(e);
                }
                tracing::warn!(error = %e, "the bus refused the reboot and there is no polkit to ask; leaving the request for nexa-reboot.path");
                file.write()
            }
            (Err(Refusal::Denied(e) | Refusal::Other(e)), _) => Err(e),
        }
    }

    /// Whether polkit runs on the bus, or can be started by it. Unknown (no answer) counts as
    /// yes: the refusal is then reported rather than bypassed.
    async fn has_polkit(&self) -> bool {
        let Ok(conn) = self.connect().await else {
            return true;
        };
        let Ok(bus) = zbus::fdo::DBusProxy::new(&conn).await else {
            return true;
        };
        let name = match zbus::names::BusName::try_from(POLKIT) {
            Ok(n) => n,
            Err(_) => return true,
        };
        if bus.name_has_owner(name).await.unwrap_or(true) {
            return true;
        }
        match bus.list_activatable_names().await {
            Ok(names) => names.iter().any(|n| n.as_str() == POLKIT),
            Err(_) => true,
        }
    }

    async fn call(&self) -> Result<(), Refusal> {
        let fail = |reason: String| RebootError {
            via: self.label(),
            reason,
        };
        let refused = |e: zbus::Error| {
            let denied = matches!(&e, zbus::Error::MethodError(name, _, _) if DENIED.contains(&name.as_str()));
            let e = fail(e.to_string());
            if denied {
                Refusal::Denied(e)
            } else {
                Refusal::Other(e)
            }
        };
        // reboot_via = file never reaches the bus (`for_settings` builds a `RequestFile`).
        if self.via == RebootVia::File {
            return Err(Refusal::Other(fail(
                "reboot_via = file makes no D-Bus request".into(),
            )));
        }
        let conn = self
            .connect()
            .await
            .map_err(|e| Refusal::Other(fail(format!("no D-Bus connection: {e}"))))?;
        let reply = if self.via == RebootVia::Logind {
            conn.call_method(
                Some("org.freedesktop.login1"),
                "/org/freedesktop/login1",
                Some("org.freedesktop.login1.Manager"),
                "Reboot",
                &(false,),
            )
            .await
        } else {
            conn.call_method(
                Some("org.freedesktop.systemd1"),
                "/org/freedesktop/systemd1",
                Some("org.freedesktop.systemd1.Manager"),
                "StartUnit",
                &("reboot.target", "replace-irreversibly"),
            )
            .await
        };
        reply.map_err(refused)?;
        Ok(())
    }
}

/// D-Bus errors that mean "not allowed" rather than "not there" or "failed": the bus policy
/// or polkit said no.
const DENIED: [&str; 3] = [
    "org.freedesktop.DBus.Error.AccessDenied",
    "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired",
    "org.freedesktop.DBus.Error.AuthFailed",
];

/// polkit's bus name.
const POLKIT: &str = "org.freedesktop.PolicyKit1";

/// How a bus request failed.
enum Refusal {
    Denied(RebootError),
    Other(RebootError),
}

impl Rebooter for DbusRebooter {
    fn reboot(&self) -> BoxFuture<'_, Result<(), RebootError>> {
        Box::pin(self.request())
    }
}
