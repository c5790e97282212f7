//! Clients of the running service on the private bus: the `rauc` CLI, `busctl` calls,
//! reading the installer's properties, and a [`Monitor`] of RAUC's bus traffic.

use std::process::{Command, Output, Stdio};

use serde_json::Value;

use super::{BUS_NAME, INTERFACE, Monitor, RaucSystem};

impl RaucSystem {
    /// A `rauc` CLI command talking to this service (`install`, `status`, `status mark-good`
    /// ... are D-Bus clients of it); add arguments and run it.
    pub fn rauc_command(&self) -> Command {
        let mut cmd = Command::new("rauc");
        self.bus_env(&mut cmd).stdin(Stdio::null());
        cmd
    }

    /// Runs `rauc ARGS` against this service.
    pub fn rauc(&self, args: &[&str]) -> Output {
        self.rauc_command()
            .args(args)
            .output()
            .expect("run rauc (Debian package rauc)")
    }

    /// Runs `busctl --address=BUS ARGS`.
    pub fn busctl(&self, args: &[&str]) -> Output {
        Command::new("busctl")
            .arg(format!("--address={}", self.bus_address))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run busctl (Debian package systemd)")
    }

    /// Reads the installer's property `name` with busctl and returns it as JSON, e.g.
    /// `"B"` for `BootSlot` or `[40, "Verifying signature done.", 3]` for `Progress`.
    pub fn property(&self, name: &str) -> Value {
        let out = self.busctl(&[
            "--json=short",
            "get-property",
            BUS_NAME,
            "/",
            INTERFACE,
            name,
        ]);
        assert!(
            out.status.success(),
            "reading RAUC property {name} failed: {}\nservice log:\n{}",
            crate::text(&out),
            self.log()
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("busctl JSON");
        v["data"].clone()
    }

    /// Watches RAUC's traffic on the bus (see [`Monitor`]); returns once it is listening.
    pub fn monitor(&self) -> Monitor {
        Monitor::start(&self.bus_address)
    }
}
