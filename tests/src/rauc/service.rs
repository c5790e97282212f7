//! The processes' lifecycle: the private `dbus-daemon` and its strict policy, the service's
//! `system.conf`, starting and stopping `rauc service`, the simulated reboot, and cleaning up
//! what a killed service leaves in the kernel (bundle mounts, loop devices), also on drop.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::boot::{check_slot, other_slot};
use super::{BUS_NAME, COMPATIBLE, RaucSystem};
use crate::wait_until;

impl RaucSystem {
    /// Simulates a reboot: kills the service and starts it again on the slot the simulated
    /// bootloader picks: the primary slot if its state is good, else the other slot if that
    /// one is good. Returns the booted slot.
    pub fn reboot(&mut self) -> String {
        let primary = self.primary();
        let other = other_slot(&primary);
        let slot = if self.slot_state(&primary) == "good" {
            primary
        } else if self.slot_state(other) == "good" {
            other.to_owned()
        } else {
            panic!("simulated bootloader: neither slot is good, nothing to boot");
        };
        self.reboot_into(&slot);
        slot
    }

    /// Simulates a reboot into slot `bootname`, whatever the boot state says (the boot state
    /// is left as it is): e.g. a bootloader falling back to the old slot.
    pub fn reboot_into(&mut self, bootname: &str) {
        check_slot(bootname);
        self.stop_service();
        self.booted = bootname.to_owned();
        self.spawn_service();
    }

    /// Kills the service (the bus stays up, so clients see RAUC missing) and cleans up what
    /// a reboot would: the bundle mount and loop device of an interrupted install.
    pub fn stop_service(&mut self) {
        if let Some(mut child) = self.service.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.clean_kernel_leftovers();
            let released = wait_until(Duration::from_secs(10), || !self.name_has_owner());
            assert!(
                released,
                "the bus still lists an owner of {BUS_NAME} after the service was killed"
            );
        }
    }

    /// Starts the service again on the same booted slot after [`stop_service`](Self::stop_service).
    pub fn start_service(&mut self) {
        if self.service.is_none() {
            self.spawn_service();
        }
    }

    /// True while the service process runs.
    pub fn is_service_running(&mut self) -> bool {
        self.service
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// The service's log (stdout and stderr) across all its starts so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("service.log")).unwrap_or_default()
    }

    pub(super) fn write_system_conf(&self) {
        let d = self.dir();
        let conf = format!(
            "[system]\ncompatible={COMPATIBLE}\nbootloader=custom\nmountprefix={}\n\
             data-directory={}\n\n[handlers]\nbootloader-custom-backend={}\n\n\
             [keyring]\npath={}\n\n\
             [slot.rootfs.0]\ndevice={}\ntype=raw\nbootname=A\n\n\
             [slot.rootfs.1]\ndevice={}\ntype=raw\nbootname=B\n",
            d.join("mnt").display(),
            d.join("data").display(),
            d.join("boot/backend.sh").display(),
            self.trusted.ca_cert.display(),
            self.slot_path("A").display(),
            self.slot_path("B").display(),
        );
        std::fs::write(self.system_conf(), conf).expect("write system.conf");
    }

    pub(super) fn start_bus(&mut self) {
        let socket = self.dir().join("bus.sock");
        // sun_path holds 108 bytes including the terminating NUL.
        assert!(
            socket.as_os_str().len() < 100,
            "bus socket path {} is too long for a Unix socket; use a shorter TMPDIR",
            socket.display()
        );
        let conf = format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus"/>
    <allow send_destination="{BUS_NAME}"/>
  </policy>
  <policy user="root">
    <allow own="{BUS_NAME}"/>
  </policy>
</busconfig>
"#,
            socket.display()
        );
        let conf_path = self.dir().join("bus.conf");
        std::fs::write(&conf_path, conf).expect("write bus config");
        let log = File::create(self.dir().join("bus.log")).expect("bus log");
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", conf_path.display()))
            .args(["--nofork", "--nopidfile", "--print-address=1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn dbus-daemon (Debian package dbus)");
        // The address is printed once the bus listens.
        let mut line = String::new();
        let _ =
            BufReader::new(child.stdout.take().expect("dbus-daemon stdout")).read_line(&mut line);
        self.bus = Some(child);
        assert!(
            line.starts_with("unix:"),
            "dbus-daemon did not start; its log:\n{}",
            std::fs::read_to_string(self.dir().join("bus.log")).unwrap_or_default()
        );
        self.bus_address = line.trim().to_owned();
    }

    pub(super) fn spawn_service(&mut self) {
        let log_path = self.dir().join("service.log");
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("service log");
        writeln!(
            log,
            "--- nexa test kit: starting rauc service, booted slot {}",
            self.booted
        )
        .expect("write service log");
        let mut cmd = Command::new("rauc");
        self.bus_env(&mut cmd)
            .arg(format!("--conf={}", self.system_conf().display()))
            .arg("service")
            .arg(format!("--override-boot-slot={}", self.booted))
            // Relative bundle paths must not happen to work.
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("service log"))
            .stderr(log);
        let child = cmd
            .spawn()
            .expect("spawn rauc service (Debian package rauc)");
        self.service = Some(child);
        let up = wait_until(Duration::from_secs(10), || {
            !self.is_service_running() || self.name_has_owner()
        });
        assert!(
            up && self.is_service_running(),
            "rauc service did not take its bus name {BUS_NAME}; its log:\n{}",
            self.log()
        );
    }

    fn name_has_owner(&self) -> bool {
        let out = self.busctl(&[
            "call",
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "NameHasOwner",
            "s",
            BUS_NAME,
        ]);
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "b true"
    }

    /// What a killed service can leave in the kernel: mounts below the mount prefix, and
    /// loop devices backed by a bundle of this fixture or one the service read (e.g. from an
    /// agent's download directory), as "mount /path" and "loop /dev/loopN" lines. Empty
    /// after [`stop_service`](Self::stop_service) and [`reboot`](Self::reboot).
    pub fn kernel_leftovers(&self) -> Vec<String> {
        let mut found: Vec<String> = self
            .leftover_mounts()
            .into_iter()
            .map(|m| format!("mount {m}"))
            .collect();
        found.extend(
            self.leftover_loops()
                .into_iter()
                .map(|l| format!("loop {l}")),
        );
        found
    }

    fn leftover_mounts(&self) -> Vec<String> {
        let prefix = self.dir().join("mnt");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<String> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| Path::new(p).starts_with(&prefix))
            .map(str::to_owned)
            .collect();
        // Innermost first.
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        points
    }

    fn leftover_loops(&self) -> Vec<String> {
        let log = self.log();
        let read: Vec<&str> = log
            .lines()
            .filter_map(|l| l.split_once("Reading bundle: ").map(|(_, p)| p.trim()))
            .collect();
        let Ok(devices) = std::fs::read_dir("/sys/block") else {
            return Vec::new();
        };
        let mut loops: Vec<String> = devices
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                let backing =
                    std::fs::read_to_string(entry.path().join("loop/backing_file")).ok()?;
                let backing = backing.trim();
                let backing = backing.strip_suffix(" (deleted)").unwrap_or(backing);
                (Path::new(backing).starts_with(self.dir()) || read.contains(&backing))
                    .then(|| format!("/dev/{name}"))
            })
            .collect();
        loops.sort();
        loops
    }

    /// Unmounts what an interrupted install left mounted and detaches its loop devices, as a
    /// reboot would. (RAUC 1.8 leaks the loop device if killed between setting it up and
    /// mounting the bundle.)
    fn clean_kernel_leftovers(&self) {
        for point in self.leftover_mounts() {
            quiet(Command::new("umount").args(["--lazy", &point]));
        }
        for device in self.leftover_loops() {
            // On a device still busy, this sets auto-clear: it goes once released.
            quiet(Command::new("losetup").args(["--detach", &device]));
        }
    }
}

/// Runs `cmd` ignoring its output and outcome (best-effort cleanup).
fn quiet(cmd: &mut Command) {
    let _ = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl Drop for RaucSystem {
    fn drop(&mut self) {
        if let Some(mut child) = self.service.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.clean_kernel_leftovers();
        if let Some(mut child) = self.bus.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
