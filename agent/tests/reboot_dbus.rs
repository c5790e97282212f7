//! The reboot request over D-Bus, against stand-ins for logind and systemd served on a private
//! `dbus-daemon`: the agent calls exactly `org.freedesktop.login1.Manager.Reboot(false)` or
//! `org.freedesktop.systemd1.Manager.StartUnit("reboot.target", "replace-irreversibly")`, and
//! a refusal or a missing service is an error naming who was asked. Refused on a bus without
//! polkit, the agent leaves the request file for `nexa-reboot.path` instead; where polkit
//! runs, its refusal stands.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use std::os::unix::fs::PermissionsExt;

use nexa_agent::hawkbit::reboot::{DbusRebooter, Rebooter, RequestFile, for_settings};
use nexa_agent::hawkbit::settings::RebootVia;

/// A private bus with the permissive session policy (any name may be owned).
struct Bus {
    child: Child,
    address: String,
    _dir: tempfile::TempDir,
}

impl Bus {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--nopidfile", "--print-address=1"])
            .arg(format!(
                "--address=unix:path={}",
                dir.path().join("bus.sock").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn dbus-daemon (Debian package dbus)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        Self {
            child,
            address: line.trim().to_owned(),
            _dir: dir,
        }
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type Calls = Arc<Mutex<Vec<String>>>;

struct Logind {
    calls: Calls,
    refuse: bool,
}

#[zbus::interface(name = "org.freedesktop.login1.Manager")]
impl Logind {
    fn reboot(&self, interactive: bool) -> zbus::fdo::Result<()> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("Reboot({interactive})"));
        if self.refuse {
            return Err(zbus::fdo::Error::AccessDenied(
                "Operation not permitted while a shutdown inhibitor is held".into(),
            ));
        }
        Ok(())
    }
}

struct Systemd {
    calls: Calls,
}

#[zbus::interface(name = "org.freedesktop.systemd1.Manager")]
impl Systemd {
    fn start_unit(&self, name: &str, mode: &str) -> zbus::zvariant::OwnedObjectPath {
        self.calls
            .lock()
            .unwrap()
            .push(format!("StartUnit({name}, {mode})"));
        zbus::zvariant::OwnedObjectPath::try_from("/org/freedesktop/systemd1/job/42").unwrap()
    }
}

/// Serves the stand-ins on `bus`; the connection must be kept alive.
async fn serve(bus: &Bus, calls: &Calls, refuse: bool) -> zbus::Connection {
    zbus::connection::Builder::address(bus.address.as_str())
        .unwrap()
        .name("org.freedesktop.login1")
        .unwrap()
        .name("org.freedesktop.systemd1")
        .unwrap()
        .serve_at(
            "/org/freedesktop/login1",
            Logind {
                calls: calls.clone(),
                refuse,
            },
        )
        .unwrap()
        .serve_at(
            "/org/freedesktop/systemd1",
            Systemd {
                calls: calls.clone(),
            },
        )
        .unwrap()
        .build()
        .await
        .unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn logind_and_systemd_are_asked_exactly_as_they_expect() {
    let bus = Bus::start();
    let calls = Calls::default();
    rt().block_on(async {
        let _served = serve(&bus, &calls, false).await;
        DbusRebooter::at_address(RebootVia::Logind, &bus.address)
            .reboot()
            .await
            .unwrap();
        DbusRebooter::at_address(RebootVia::Systemd, &bus.address)
            .reboot()
            .await
            .unwrap();
    });
    assert_eq!(
        *calls.lock().unwrap(),
        [
            "Reboot(false)",
            "StartUnit(reboot.target, replace-irreversibly)"
        ]
    );
}

#[test]
fn a_refusal_or_a_missing_service_is_an_error_naming_who_was_asked() {
    let bus = Bus::start();
    let calls = Calls::default();
    rt().block_on(async {
        let e = DbusRebooter::at_address(RebootVia::Logind, &bus.address)
            .reboot()
            .await
            .unwrap_err();
        assert_eq!(e.via, "logind");
        assert!(e.to_string().contains("login1"), "{e}");

        let _served = serve(&bus, &calls, true).await;
        let e = DbusRebooter::at_address(RebootVia::Logind, &bus.address)
            .reboot()
            .await
            .unwrap_err();
        assert!(e.to_string().contains("inhibitor"), "{e}");

        let e = DbusRebooter::at_address(RebootVia::Systemd, "unix:path=/nonexistent/bus")
            .reboot()
            .await
            .unwrap_err();
        assert_eq!(e.via, "systemd");
        assert!(e.to_string().contains("no D-Bus connection"), "{e}");
    });
}

/// The request file in `dir`, if the agent left one.
fn request_in(dir: &std::path::Path) -> Option<(String, u32)> {
    let path = dir.join("reboot-request");
    let body = std::fs::read_to_string(&path).ok()?;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    Some((body, mode))
}

#[test]
fn refused_on_a_bus_without_polkit_the_request_file_is_left_for_nexa_reboot_path() {
    let bus = Bus::start();
    let calls = Calls::default();
    let data = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let _served = serve(&bus, &calls, true).await;
        for via in [RebootVia::Logind, RebootVia::Systemd] {
            let _ = std::fs::remove_file(data.path().join("reboot-request"));
            let asked = DbusRebooter::at_address(via, &bus.address)
                .with_fallback(RequestFile::in_dir(data.path()));
            let result = asked.reboot().await;
            match via {
                // logind refuses: the request file instead, and the reboot counts as asked.
                RebootVia::Logind => {
                    result.unwrap();
                    let (body, mode) = request_in(data.path()).expect("the request file");
                    assert!(body.starts_with("requested_at="), "{body}");
                    assert_eq!(mode, 0o600);
                }
                // systemd accepts: no request file.
                _ => {
                    result.unwrap();
                    assert_eq!(request_in(data.path()), None);
                }
            }
        }
    });
    assert_eq!(
        *calls.lock().unwrap(),
        [
            "Reboot(false)",
            "StartUnit(reboot.target, replace-irreversibly)"
        ]
    );
}

#[test]
fn where_polkit_runs_its_refusal_stands_and_no_request_is_left() {
    let bus = Bus::start();
    let calls = Calls::default();
    let data = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let _served = serve(&bus, &calls, true).await;
        let _polkit = zbus::connection::Builder::address(bus.address.as_str())
            .unwrap()
            .name("org.freedesktop.PolicyKit1")
            .unwrap()
            .build()
            .await
            .unwrap();
        let e = DbusRebooter::at_address(RebootVia::Logind, &bus.address)
            .with_fallback(RequestFile::in_dir(data.path()))
            .reboot()
            .await
            .unwrap_err();
        assert!(e.to_string().contains("inhibitor"), "{e}");
    });
    assert_eq!(request_in(data.path()), None);
}

#[test]
fn a_missing_service_is_not_a_refusal_and_leaves_no_request() {
    let bus = Bus::start();
    let data = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let e = DbusRebooter::at_address(RebootVia::Logind, &bus.address)
            .with_fallback(RequestFile::in_dir(data.path()))
            .reboot()
            .await
            .unwrap_err();
        assert_eq!(e.via, "logind");
    });
    assert_eq!(request_in(data.path()), None);
}

#[test]
fn reboot_via_file_only_leaves_the_request_and_a_bad_directory_is_named() {
    let data = tempfile::tempdir().unwrap();
    rt().block_on(async {
        for_settings(RebootVia::File, RequestFile::in_dir(data.path()))
            .reboot()
            .await
            .unwrap();
        let missing = data.path().join("no-such-dir");
        let e = for_settings(RebootVia::File, RequestFile::in_dir(&missing))
            .reboot()
            .await
            .unwrap_err();
        assert_eq!(e.via, "nexa-reboot.path");
        assert!(e.to_string().contains("no-such-dir"), "{e}");
    });
    let (body, mode) = request_in(data.path()).expect("the request file");
    assert!(body.contains("reason=update installed"), "{body}");
    assert_eq!(mode, 0o600);
}
