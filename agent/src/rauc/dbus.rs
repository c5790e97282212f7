//! [`DbusRauc`]: the [`Installer`] that asks the real `rauc service` over D-Bus (zbus, on the
//! tokio runtime).
//!
//! RAUC owns `de.pengutronix.rauc` on the system bus and serves the interface
//! `de.pengutronix.rauc.Installer` on object `/`. Points this client is careful about:
//!
//! - The connection is made on first use and kept; a broken connection is dropped so the
//!   next call reconnects. Constructing a `DbusRauc` never fails, so the agent can start
//!   before RAUC (or the bus) is up; calls then answer [`RaucError::Unavailable`].
//! - An install is started with `InstallBundle` and finished by RAUC's `Completed(result)`
//!   signal. The streams for `Completed`, property changes and the bus's `NameOwnerChanged`
//!   are set up *before* the call, since a failing install completes within milliseconds.
//!   The `Operation` property is never used as the end of an install: RAUC 1.8 sets it to
//!   "idle" when it rejects a second, concurrent install while the first is still running.
//! - Signals are ordered against the `InstallBundle` reply by their receive position on the
//!   connection, so a `Completed` or `Progress` of somebody else's operation that arrived
//!   before our install was accepted is ignored.
//! - After `Completed(1)`, `LastError` is read with an explicit `Properties.Get` (RAUC only
//!   announces it when its value changed); property values are never cached.
//! - If RAUC leaves the bus while our install runs (it crashed or was stopped), the install
//!   ends with [`RaucError::Unavailable`] instead of waiting for a signal that will not come;
//!   the wait is also bounded by an overall timeout.

use std::collections::HashMap;
use std::future::poll_fn;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::{Mutex, watch};
use zbus::export::futures_core::Stream;
use zbus::fdo::{DBusProxy, PropertiesProxy};
use zbus::proxy::CacheProperties;
use zbus::zvariant::{OwnedValue, Value};
use zbus::{Connection, DBusError as _};

use super::{
    BoxFuture, InstallProgress, Installer, RaucError, SlotStatus, SystemInfo, UNAVAILABLE_HINT,
    bundle_source, classify_method_error, install_outcome, progress_from,
};

/// RAUC's well-known bus name.
pub const BUS_NAME: &str = "de.pengutronix.rauc";
/// The interface RAUC serves on object `/`.
pub const INTERFACE: &str = "de.pengutronix.rauc.Installer";
/// How long an install may take before the agent stops waiting for it. Writing a large image
/// to slow flash can take many minutes; this only catches a service that hangs.
pub const DEFAULT_INSTALL_TIMEOUT: Duration = Duration::from_secs(2 * 60 * 60);
/// How long any single method call (and connecting to the bus) may take.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(60);

#[zbus::proxy(
    interface = "de.pengutronix.rauc.Installer",
    default_service = "de.pengutronix.rauc",
    default_path = "/"
)]
trait RaucInstaller {
    /// `Mark(state, slot_identifier) -> (slot_name, message)`.
    fn mark(&self, state: &str, slot_identifier: &str) -> zbus::Result<(String, String)>;

    /// `GetSlotStatus() -> a(sa{sv})`.
    fn get_slot_status(&self) -> zbus::Result<Vec<(String, HashMap<String, OwnedValue>)>>;

    /// `GetPrimary() -> s`.
    fn get_primary(&self) -> zbus::Result<String>;

    /// `Completed(i result)`: 0 success, otherwise failure.
    #[zbus(signal)]
    fn completed(&self, result: i32) -> zbus::Result<()>;

    #[zbus(property)]
    fn last_error(&self) -> zbus::Result<String>;

    #[zbus(property)]
    fn compatible(&self) -> zbus::Result<String>;

    #[zbus(property)]
    fn variant(&self) -> zbus::Result<String>;

    #[zbus(property)]
    fn boot_slot(&self) -> zbus::Result<String>;
}

/// Which bus RAUC is on.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Bus {
    /// The system bus: `DBUS_SYSTEM_BUS_ADDRESS`, else the well-known socket.
    System,
    /// An explicit D-Bus address, e.g. `unix:path=/run/test/bus.sock`.
    Address(String),
}

impl std::fmt::Display for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bus::System => f.write_str("the D-Bus system bus"),
            Bus::Address(a) => write!(f, "the D-Bus bus at {a}"),
        }
    }
}

/// The [`Installer`] backed by `rauc service` on D-Bus. See the module documentation.
#[derive(Debug)]
pub struct DbusRauc {
    bus: Bus,
    install_timeout: Duration,
    call_timeout: Duration,
    connection: Mutex<Option<Connection>>,
}

impl DbusRauc {
    /// RAUC on the system bus (zbus honours `DBUS_SYSTEM_BUS_ADDRESS`). Does not connect yet.
    pub fn system() -> Self {
        Self::new(Bus::System)
    }

    /// RAUC on the bus at `address` (a D-Bus address such as `unix:path=/run/bus.sock`). Does
    /// not connect yet; a malformed address is reported by the first call.
    pub fn at_address(address: &str) -> Self {
        Self::new(Bus::Address(address.to_owned()))
    }

    fn new(bus: Bus) -> Self {
        Self {
            bus,
            install_timeout: DEFAULT_INSTALL_TIMEOUT,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            connection: Mutex::new(None),
        }
    }

    /// Sets how long an install may run before it is reported as stuck
    /// ([`DEFAULT_INSTALL_TIMEOUT`] otherwise).
    pub fn with_install_timeout(mut self, timeout: Duration) -> Self {
        self.install_timeout = timeout;
        self
    }

    /// Sets how long a method call or connecting may take ([`DEFAULT_CALL_TIMEOUT`]
    /// otherwise).
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// The kept connection, or a new one.
    async fn connection(&self) -> Result<Connection, RaucError> {
        let mut slot = self.connection.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let builder = match &self.bus {
            Bus::System => zbus::connection::Builder::system(),
            Bus::Address(a) => zbus::connection::Builder::address(a.as_str()),
        }
        .map_err(|e| self.connect_error(&e))?;
        let conn = tokio::time::timeout(
            self.call_timeout,
            builder.method_timeout(self.call_timeout).build(),
        )
        .await
        .map_err(|_| RaucError::Unavailable {
            reason: format!(
                "connecting to {} took longer than {:?}; {UNAVAILABLE_HINT}",
                self.bus, self.call_timeout
            ),
        })?
        .map_err(|e| self.connect_error(&e))?;
        tracing::debug!(bus = %self.bus, "connected to the D-Bus bus for RAUC");
        *slot = Some(conn.clone());
        Ok(conn)
    }

    fn connect_error(&self, e: &zbus::Error) -> RaucError {
        RaucError::Unavailable {
            reason: format!("cannot connect to {}: {e}; {UNAVAILABLE_HINT}", self.bus),
        }
    }

    /// Classifies `e` from `call`; a failure of the connection itself also drops the kept
    /// connection, so the next call connects afresh.
    async fn fail(&self, call: &str, e: zbus::Error) -> RaucError {
        let broken = matches!(
            e,
            zbus::Error::InputOutput(_) | zbus::Error::Connection(..) | zbus::Error::Handshake(_)
        );
        let error = map_zbus_error(call, &self.bus, e);
        if broken && self.connection.lock().await.take().is_some() {
            tracing::debug!(bus = %self.bus, "dropped the D-Bus connection after: {error}");
        }
        error
    }

    async fn proxy(&self, conn: &Connection) -> Result<RaucInstallerProxy<'static>, RaucError> {
        match RaucInstallerProxy::builder(conn)
            .cache_properties(CacheProperties::No)
            .build()
            .await
        {
            Ok(p) => Ok(p),
            Err(e) => Err(self.fail("creating the RAUC proxy", e).await),
        }
    }

    /// Runs `f` on a fresh proxy; errors are classified as from method `call`.
    async fn call<T, F, Fut>(&self, call: &str, f: F) -> Result<T, RaucError>
    where
        F: FnOnce(RaucInstallerProxy<'static>) -> Fut,
        Fut: std::future::Future<Output = zbus::Result<T>>,
    {
        let conn = self.connection().await?;
        let proxy = self.proxy(&conn).await?;
        match f(proxy).await {
            Ok(v) => Ok(v),
            Err(e) => Err(self.fail(call, e).await),
        }
    }

    async fn read_system_info(&self) -> Result<SystemInfo, RaucError> {
        let conn = self.connection().await?;
        let proxy = self.proxy(&conn).await?;
        let compatible = match proxy.compatible().await {
            Ok(v) => v,
            Err(e) => return Err(self.fail("reading property Compatible", e).await),
        };
        let variant = match proxy.variant().await {
            Ok(v) => v,
            Err(e) => return Err(self.fail("reading property Variant", e).await),
        };
        let boot_slot = match proxy.boot_slot().await {
            Ok(v) => v,
            Err(e) => return Err(self.fail("reading property BootSlot", e).await),
        };
        Ok(SystemInfo {
            compatible,
            variant,
            boot_slot,
        })
    }

    async fn run_install(
        &self,
        bundle: &Path,
        progress: watch::Sender<InstallProgress>,
    ) -> Result<(), RaucError> {
        let source = bundle_source(bundle)?;
        let conn = self.connection().await?;
        let proxy = self.proxy(&conn).await?;
        match self.install_on(&conn, &proxy, source, &progress).await {
            Ok(()) => {
                tracing::info!(bundle = source, "RAUC installed the bundle");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(bundle = source, "install through RAUC failed: {e}");
                Err(e)
            }
        }
    }

    async fn install_on(
        &self,
        conn: &Connection,
        proxy: &RaucInstallerProxy<'static>,
        source: &str,
        progress: &watch::Sender<InstallProgress>,
    ) -> Result<(), RaucError> {
        // Listen first: a failing install completes within milliseconds of the call.
        let subscribing = "subscribing to RAUC's signals";
        let mut completed = match proxy.receive_completed().await {
            Ok(s) => s,
            Err(e) => return Err(self.fail(subscribing, e).await),
        };
        let properties = match PropertiesProxy::builder(conn)
            .destination(BUS_NAME)
            .and_then(|b| b.path("/"))
        {
            Ok(b) => b.cache_properties(CacheProperties::No).build().await,
            Err(e) => Err(e),
        };
        let changes = match properties {
            Ok(p) => {
                p.receive_properties_changed_with_args(&[(0, INTERFACE)])
                    .await
            }
            Err(e) => Err(e),
        };
        let mut changes = match changes {
            Ok(s) => s,
            Err(e) => return Err(self.fail(subscribing, e).await),
        };
        let owner = match DBusProxy::builder(conn)
            .cache_properties(CacheProperties::No)
            .build()
            .await
        {
            Ok(p) => {
                p.receive_name_owner_changed_with_args(&[(0, BUS_NAME)])
                    .await
            }
            Err(e) => Err(e),
        };
        let mut owner = match owner {
            Ok(s) => s,
            Err(e) => return Err(self.fail(subscribing, e).await),
        };

        tracing::info!(bundle = source, "asking RAUC to install the bundle");
        let args: HashMap<&str, Value<'_>> = HashMap::new();
        let reply = match proxy
            .inner()
            .call_method("InstallBundle", &(source, args))
            .await
        {
            Ok(reply) => reply,
            Err(e) => return Err(self.fail("InstallBundle", e).await),
        };
        let accepted = reply.recv_position();

        let deadline = tokio::time::sleep(self.install_timeout);
        tokio::pin!(deadline);
        loop {
            // Biased: a progress change that arrived before `Completed` is forwarded first,
            // so the last progress (100 %) is not lost.
            tokio::select! {
                biased;
                Some(change) = next(&mut changes) => {
                    if change.message().recv_position() < accepted {
                        continue;
                    }
                    match progress_of(&change) {
                        Ok(Some(p)) => {
                            tracing::debug!(percent = p.percent, depth = p.depth, "RAUC: {}", p.message);
                            progress.send_replace(p);
                        }
                        Ok(None) => {}
                        Err(e) => tracing::debug!("ignoring a RAUC property change: {e}"),
                    }
                }
                signal = next(&mut completed) => {
                    let Some(signal) = signal else {
                        return Err(self.lost_connection().await);
                    };
                    if signal.message().recv_position() < accepted {
                        continue;
                    }
                    let result = match signal.args() {
                        Ok(args) => args.result,
                        Err(e) => return Err(RaucError::Protocol(format!(
                            "Completed signal without an int32 result: {e}"
                        ))),
                    };
                    tracing::debug!(result, "RAUC: Completed");
                    let last_error = if result == 0 {
                        None
                    } else {
                        match proxy.last_error().await {
                            Ok(text) => Some(text),
                            Err(e) => return Err(self.fail("reading property LastError", e).await),
                        }
                    };
                    return install_outcome(result, last_error);
                }
                changed = next(&mut owner) => {
                    let Some(changed) = changed else {
                        return Err(self.lost_connection().await);
                    };
                    if changed.message().recv_position() < accepted {
                        continue;
                    }
                    return Err(RaucError::Unavailable {
                        reason: format!(
                            "RAUC left {} while installing {source} (it crashed or was \
                             stopped); the install's outcome is unknown, check `rauc status`; \
                             {UNAVAILABLE_HINT}",
                            self.bus
                        ),
                    });
                }
                () = &mut deadline => {
                    return Err(RaucError::Unavailable {
                        reason: format!(
                            "RAUC did not report the end of installing {source} within {:?}; \
                             it may be hung (check `rauc status` and the rauc.service log)",
                            self.install_timeout
                        ),
                    });
                }
            }
        }
    }

    /// The bus connection closed under a running install.
    async fn lost_connection(&self) -> RaucError {
        let dropped = self.connection.lock().await.take();
        drop(dropped);
        RaucError::Unavailable {
            reason: format!(
                "the connection to {} closed while waiting for RAUC; {UNAVAILABLE_HINT}",
                self.bus
            ),
        }
    }
}

impl Installer for DbusRauc {
    fn system_info(&self) -> BoxFuture<'_, Result<SystemInfo, RaucError>> {
        Box::pin(self.read_system_info())
    }

    fn install<'a>(
        &'a self,
        bundle: &'a Path,
        progress: watch::Sender<InstallProgress>,
    ) -> BoxFuture<'a, Result<(), RaucError>> {
        Box::pin(self.run_install(bundle, progress))
    }

    fn mark_good_booted(&self) -> BoxFuture<'_, Result<String, RaucError>> {
        Box::pin(async move {
            let (slot, message) = self
                .call("Mark(good, booted)", |p| async move {
                    p.mark("good", "booted").await
                })
                .await?;
            tracing::info!(slot, "RAUC: {message}");
            Ok(slot)
        })
    }

    fn primary(&self) -> BoxFuture<'_, Result<String, RaucError>> {
        Box::pin(self.call("GetPrimary", |p| async move { p.get_primary().await }))
    }

    fn slots(&self) -> BoxFuture<'_, Result<Vec<SlotStatus>, RaucError>> {
        Box::pin(async move {
            let raw = self
                .call(
                    "GetSlotStatus",
                    |p| async move { p.get_slot_status().await },
                )
                .await?;
            Ok(raw
                .into_iter()
                .map(|(name, fields)| slot_status(name, &fields))
                .collect())
        })
    }
}

/// The next item of a zbus stream.
async fn next<S: Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx)).await
}

/// The `Progress` value in a `PropertiesChanged` of RAUC's interface, if it has one.
fn progress_of(change: &zbus::fdo::PropertiesChanged) -> zbus::Result<Option<InstallProgress>> {
    let args = change.args()?;
    let Some(value) = args.changed_properties().get("Progress") else {
        return Ok(None);
    };
    let (percent, message, depth) = <(i32, String, i32)>::try_from(value.try_clone()?)?;
    Ok(Some(progress_from(percent, message, depth)))
}

/// One entry of `GetSlotStatus`: the slot's name and its `a{sv}` of details. RAUC 1.8 names
/// the keys `bootname`, `class`, `state` and `boot-status`; missing or non-string ones are
/// `None`.
fn slot_status(name: String, fields: &HashMap<String, OwnedValue>) -> SlotStatus {
    let text = |key: &str| {
        fields
            .get(key)
            .and_then(|v| <&str>::try_from(&**v).ok())
            .map(str::to_owned)
    };
    SlotStatus {
        bootname: text("bootname"),
        class: text("class"),
        state: text("state"),
        boot_status: text("boot-status"),
        name,
    }
}

/// Classifies a zbus error from `call` on `bus`.
fn map_zbus_error(call: &str, bus: &Bus, e: zbus::Error) -> RaucError {
    match e {
        zbus::Error::MethodError(name, message, _) => {
            classify_method_error(call, name.as_str(), message.as_deref().unwrap_or(""))
        }
        zbus::Error::FDO(fdo) => match *fdo {
            zbus::fdo::Error::ZBus(inner) => map_zbus_error(call, bus, inner),
            other => classify_method_error(
                call,
                other.name().as_str(),
                other.description().unwrap_or(""),
            ),
        },
        zbus::Error::InputOutput(io) if io.kind() == std::io::ErrorKind::TimedOut => {
            RaucError::Unavailable {
                reason: format!("{call}: RAUC did not answer in time on {bus}; {UNAVAILABLE_HINT}"),
            }
        }
        e @ (zbus::Error::InputOutput(_)
        | zbus::Error::Connection(..)
        | zbus::Error::Address(_)
        | zbus::Error::Handshake(_)) => RaucError::Unavailable {
            reason: format!("{call}: D-Bus connection to {bus} failed: {e}; {UNAVAILABLE_HINT}"),
        },
        other => RaucError::Protocol(format!("{call}: {other}")),
    }
}

#[cfg(test)]
mod tests;
