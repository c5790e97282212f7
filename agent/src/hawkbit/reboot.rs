//! Asking the system to reboot after an update. The agent never calls `reboot(2)`: the init
//! system stops services in order (the agent itself gets SIGTERM and disconnects cleanly) and
//! file systems are synced. logind (`org.freedesktop.login1.Manager.Reboot`) or systemd
//! (`StartUnit("reboot.target", "replace-irreversibly")`) is asked over the system bus.

use std::future::Future;
use std::pin::Pin;

use super::settings::RebootVia;

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

/// The reboot through logind or systemd on the D-Bus system bus
/// (`DBUS_SYSTEM_BUS_ADDRESS` is honoured).
#[derive(Debug, Clone)]
pub struct DbusRebooter {
    via: RebootVia,
    /// `None`: the system bus.
    address: Option<String>,
}

impl DbusRebooter {
    pub fn new(via: RebootVia) -> Self {
        Self { via, address: None }
    }

    /// logind or systemd on the bus at `address` (e.g. `unix:path=/run/test/bus.sock`).
    pub fn at_address(via: RebootVia, address: &str) -> Self {
        Self {
            via,
            address: Some(address.to_owned()),
        }
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
        }
    }

    async fn request(&self) -> Result<(), RebootError> {
        let fail = |reason: String| RebootError {
            via: self.label(),
            reason,
        };
        let conn = self
            .connect()
            .await
            .map_err(|e| fail(format!("no D-Bus connection: {e}")))?;
        match self.via {
            RebootVia::Logind => {
                conn.call_method(
                    Some("org.freedesktop.login1"),
                    "/org/freedesktop/login1",
                    Some("org.freedesktop.login1.Manager"),
                    "Reboot",
                    &(false,),
                )
                .await
                .map_err(|e| fail(e.to_string()))?;
            }
            RebootVia::Systemd => {
                conn.call_method(
                    Some("org.freedesktop.systemd1"),
                    "/org/freedesktop/systemd1",
                    Some("org.freedesktop.systemd1.Manager"),
                    "StartUnit",
                    &("reboot.target", "replace-irreversibly"),
                )
                .await
                .map_err(|e| fail(e.to_string()))?;
            }
        }
        Ok(())
    }
}

impl Rebooter for DbusRebooter {
    fn reboot(&self) -> BoxFuture<'_, Result<(), RebootError>> {
        Box::pin(self.request())
    }
}
