//! The agent's boundary to RAUC, the service that writes update bundles into the inactive
//! A/B slot and switches the bootloader to it.
//!
//! Everything above this module talks to RAUC through the [`Installer`] trait, which knows
//! nothing about D-Bus: it reports what the device is ([`SystemInfo`]), installs a bundle
//! while forwarding RAUC's progress into a `watch` channel, marks the booted slot good after
//! an update came up, and reads the primary slot and the slots' status. [`DbusRauc`]
//! (in [`dbus`]) is the real implementation, a client of `rauc service` on the system bus;
//! tests of the update flow can put any other implementation behind `Arc<dyn Installer>`.
//!
//! Failures come back as [`RaucError`], split by what the caller should do about them:
//! RAUC not reachable at all ([`RaucError::Unavailable`], retry later or fix the service),
//! busy with another operation ([`RaucError::Busy`], retry later), an install RAUC ran and
//! rejected ([`RaucError::InstallFailed`], with RAUC's own `LastError` text, e.g. a signature
//! or `compatible` mismatch: report it, retrying the same bundle will not help), any other
//! request RAUC refused ([`RaucError::Refused`]), and answers that do not fit RAUC's
//! interface ([`RaucError::Protocol`]).
//!
//! The functions at the bottom that turn D-Bus error names and RAUC's texts into a
//! [`RaucError`] are pure, so the classification is unit-tested without a bus.

pub mod dbus;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use tokio::sync::watch;

pub use dbus::{DEFAULT_CALL_TIMEOUT, DEFAULT_INSTALL_TIMEOUT, DbusRauc};

/// A boxed, sendable future, so that [`Installer`] stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What RAUC says about the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemInfo {
    /// The `compatible` string of RAUC's system configuration; a bundle must match it.
    pub compatible: String,
    /// The variant of the system configuration (often empty).
    pub variant: String,
    /// Boot name of the slot the device booted from, e.g. "A".
    pub boot_slot: String,
}

/// RAUC's progress of a running install.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstallProgress {
    /// 0..=100.
    pub percent: u8,
    /// RAUC's description of the current step, e.g. "Copying image to rootfs.1".
    pub message: String,
    /// Nesting depth of the step (1 is the install as a whole).
    pub depth: i32,
}

/// One slot as RAUC's `GetSlotStatus` describes it. Only `name` is always there; RAUC leaves
/// out what does not apply (e.g. `bootname` of a slot that is not bootable).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlotStatus {
    /// RAUC's slot name, e.g. "rootfs.1".
    pub name: String,
    /// The bootloader's name of the slot, e.g. "B".
    pub bootname: Option<String>,
    /// The slot class, e.g. "rootfs".
    pub class: Option<String>,
    /// "booted", "active" (mounted or in use) or "inactive".
    pub state: Option<String>,
    /// The bootloader's verdict: "good" or "bad".
    pub boot_status: Option<String>,
}

/// The agent's view of RAUC. Object-safe: used as `Arc<dyn Installer>`.
pub trait Installer: Send + Sync + std::fmt::Debug {
    /// The device's compatible, variant and booted slot.
    fn system_info(&self) -> BoxFuture<'_, Result<SystemInfo, RaucError>>;

    /// Installs the bundle at `bundle` (an absolute path) and resolves when RAUC reports the
    /// install finished. While it runs, RAUC's progress is sent into `progress`.
    fn install<'a>(
        &'a self,
        bundle: &'a Path,
        progress: watch::Sender<InstallProgress>,
    ) -> BoxFuture<'a, Result<(), RaucError>>;

    /// Marks the booted slot good (after an update booted fine); returns its slot name.
    fn mark_good_booted(&self) -> BoxFuture<'_, Result<String, RaucError>>;

    /// The slot the bootloader will boot next, e.g. "rootfs.1".
    fn primary(&self) -> BoxFuture<'_, Result<String, RaucError>>;

    /// Every slot RAUC knows, with its state.
    fn slots(&self) -> BoxFuture<'_, Result<Vec<SlotStatus>, RaucError>>;
}

/// How to get RAUC back, appended to every [`RaucError::Unavailable`] reason.
pub(crate) const UNAVAILABLE_HINT: &str = "is the RAUC service running (`systemctl status \
    rauc`), and does DBUS_SYSTEM_BUS_ADDRESS, if set, point at the system bus RAUC uses?";

/// Why a RAUC request did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RaucError {
    /// RAUC cannot be reached: no bus, the service is not running, it left the bus, or it did
    /// not answer in time.
    #[error("RAUC is not available: {reason}")]
    Unavailable { reason: String },
    /// RAUC is busy with another operation (usually an install); try again later.
    #[error(
        "RAUC is busy with another operation (an install is probably running); try again when \
         it has finished"
    )]
    Busy,
    /// RAUC ran the install and it failed; `last_error` is RAUC's `LastError` text.
    #[error("RAUC could not install the bundle: {last_error}")]
    InstallFailed { last_error: String },
    /// RAUC (or the agent, before asking RAUC) refused the request.
    #[error("RAUC refused the request: {message}")]
    Refused { message: String },
    /// RAUC's answer does not fit its D-Bus interface as the agent knows it.
    #[error("unexpected answer from RAUC: {0}")]
    Protocol(String),
}

/// The bundle path as RAUC must get it: absolute (RAUC resolves relative paths against its
/// own working directory, not the agent's) and UTF-8 (D-Bus strings are).
pub(crate) fn bundle_source(bundle: &Path) -> Result<&str, RaucError> {
    if !bundle.is_absolute() {
        return Err(RaucError::Refused {
            message: format!(
                "bundle path {} is relative; RAUC would resolve it against its own working \
                 directory, so the agent only sends absolute paths",
                bundle.display()
            ),
        });
    }
    bundle.to_str().ok_or_else(|| RaucError::Refused {
        message: format!(
            "bundle path {} is not valid UTF-8 and cannot be sent over D-Bus",
            bundle.display()
        ),
    })
}

/// RAUC's `Progress` property `(percentage, message, depth)` as an [`InstallProgress`].
pub(crate) fn progress_from(percent: i32, message: String, depth: i32) -> InstallProgress {
    InstallProgress {
        percent: u8::try_from(percent.clamp(0, 100)).unwrap_or(100),
        message,
        depth,
    }
}

/// The outcome of an install from its `Completed(result)` signal; `last_error` is read only
/// when the result says the install failed.
pub(crate) fn install_outcome(result: i32, last_error: Option<String>) -> Result<(), RaucError> {
    if result == 0 {
        return Ok(());
    }
    let text = last_error.unwrap_or_default();
    let last_error = if text.trim().is_empty() {
        format!("RAUC reported failure (Completed result {result}) without an error text")
    } else {
        text
    };
    Err(RaucError::InstallFailed { last_error })
}

/// Classifies a D-Bus error reply to the call `call` (e.g. "InstallBundle"), given the
/// error's name and message.
pub(crate) fn classify_method_error(call: &str, name: &str, message: &str) -> RaucError {
    // RAUC 1.8 answers "Already processing a different method" (InstallBundle) or "already
    // processing a different method" (the other methods) while an operation runs.
    if message.to_ascii_lowercase().contains("already processing") {
        return RaucError::Busy;
    }
    let detail = if message.is_empty() {
        name.to_owned()
    } else {
        format!("{message} ({name})")
    };
    match name.strip_prefix("org.freedesktop.DBus.Error.") {
        Some(
            "ServiceUnknown" | "NameHasNoOwner" | "NoReply" | "NoServer" | "Disconnected"
            | "TimedOut" | "Timeout" | "NoNetwork" | "LimitsExceeded",
        ) => RaucError::Unavailable {
            reason: format!("{call}: {detail}; {UNAVAILABLE_HINT}"),
        },
        Some(spawn) if spawn.starts_with("Spawn.") => RaucError::Unavailable {
            reason: format!("{call}: the bus could not start RAUC: {detail}; {UNAVAILABLE_HINT}"),
        },
        Some("AccessDenied" | "AuthFailed") => RaucError::Unavailable {
            reason: format!(
                "{call}: the bus does not let the agent talk to RAUC: {detail}; install the \
                 agent's D-Bus policy (/usr/share/dbus-1/system.d/nexa-agent.conf, allowing \
                 the user the agent runs as, nexa by default) beside RAUC's \
                 (de.pengutronix.rauc.conf), then reload the bus"
            ),
        },
        Some(
            "UnknownMethod" | "UnknownInterface" | "UnknownObject" | "UnknownProperty"
            | "InvalidArgs" | "InvalidSignature",
        ) => RaucError::Protocol(format!(
            "{call}: {detail}; the agent expects RAUC's de.pengutronix.rauc.Installer \
             interface of RAUC 1.8 or later"
        )),
        _ => RaucError::Refused {
            message: format!("{call}: {detail}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIO_FAILED: &str = "org.gtk.GDBus.UnmappedGError.Quark._g_2dio_2derror_2dquark.Code30";

    #[test]
    fn already_processing_is_busy_in_both_spellings() {
        for message in [
            "Already processing a different method",
            "already processing a different method",
        ] {
            assert_eq!(
                classify_method_error("InstallBundle", GIO_FAILED, message),
                RaucError::Busy
            );
        }
    }

    #[test]
    fn a_missing_service_is_unavailable_with_a_hint() {
        let e = classify_method_error(
            "GetPrimary",
            "org.freedesktop.DBus.Error.ServiceUnknown",
            "The name de.pengutronix.rauc was not provided by any .service files",
        );
        let RaucError::Unavailable { reason } = &e else {
            panic!("{e:?}")
        };
        assert!(reason.contains("GetPrimary"), "{reason}");
        assert!(
            reason.contains("not provided by any .service files"),
            "{reason}"
        );
        assert!(reason.contains("systemctl status rauc"), "{reason}");
        assert!(e.to_string().starts_with("RAUC is not available: "), "{e}");
        for name in [
            "org.freedesktop.DBus.Error.NameHasNoOwner",
            "org.freedesktop.DBus.Error.NoReply",
            "org.freedesktop.DBus.Error.Spawn.ChildExited",
        ] {
            assert!(
                matches!(
                    classify_method_error("Mark", name, ""),
                    RaucError::Unavailable { .. }
                ),
                "{name}"
            );
        }
    }

    #[test]
    fn access_denied_names_the_policy() {
        let e = classify_method_error(
            "InstallBundle",
            "org.freedesktop.DBus.Error.AccessDenied",
            "Rejected send message",
        );
        let RaucError::Unavailable { reason } = e else {
            panic!("{e:?}")
        };
        assert!(reason.contains("de.pengutronix.rauc.conf"), "{reason}");
    }

    #[test]
    fn an_unknown_method_is_a_protocol_error() {
        let e = classify_method_error(
            "InstallBundle",
            "org.freedesktop.DBus.Error.UnknownMethod",
            "No such method 'InstallBundle'",
        );
        assert!(
            matches!(&e, RaucError::Protocol(m) if m.contains("RAUC 1.8")),
            "{e:?}"
        );
    }

    #[test]
    fn other_rauc_errors_are_refusals_with_rauc_text() {
        let e = classify_method_error("InstallBundle", GIO_FAILED, "Unsupported key: foo");
        assert_eq!(
            e,
            RaucError::Refused {
                message: format!("InstallBundle: Unsupported key: foo ({GIO_FAILED})")
            }
        );
        let e = classify_method_error(
            "GetPrimary",
            GIO_FAILED,
            "Failed getting primary slot: backend failed",
        );
        assert!(e.to_string().contains("Failed getting primary slot"), "{e}");
    }

    #[test]
    fn completion_results() {
        assert_eq!(install_outcome(0, None), Ok(()));
        // A success never looks at LastError.
        assert_eq!(install_outcome(0, Some("stale".into())), Ok(()));
        assert_eq!(
            install_outcome(
                1,
                Some("signature verification failed: Verify error: self-signed".into())
            ),
            Err(RaucError::InstallFailed {
                last_error: "signature verification failed: Verify error: self-signed".into()
            })
        );
        let Err(RaucError::InstallFailed { last_error }) = install_outcome(1, Some(" ".into()))
        else {
            panic!("a failure must stay a failure")
        };
        assert!(last_error.contains("without an error text"), "{last_error}");
        assert!(install_outcome(2, None).is_err());
    }

    #[test]
    fn progress_is_clamped() {
        assert_eq!(
            progress_from(40, "Verifying signature done.".into(), 3),
            InstallProgress {
                percent: 40,
                message: "Verifying signature done.".into(),
                depth: 3
            }
        );
        assert_eq!(progress_from(-5, String::new(), 1).percent, 0);
        assert_eq!(progress_from(250, String::new(), 1).percent, 100);
    }

    #[test]
    fn only_absolute_utf8_paths_are_sent() {
        assert_eq!(
            bundle_source(Path::new("/var/lib/nexa/update.raucb")),
            Ok("/var/lib/nexa/update.raucb")
        );
        let e = bundle_source(Path::new("update.raucb")).unwrap_err();
        assert!(
            matches!(&e, RaucError::Refused { message } if message.contains("relative")),
            "{e:?}"
        );
        use std::os::unix::ffi::OsStrExt;
        let odd = Path::new(std::ffi::OsStr::from_bytes(b"/tmp/\xff.raucb"));
        assert!(matches!(bundle_source(odd), Err(RaucError::Refused { .. })));
    }

    #[test]
    fn the_trait_is_object_safe() {
        fn takes(_: Option<std::sync::Arc<dyn Installer>>) {}
        takes(None);
    }
}
