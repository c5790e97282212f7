//! The real RAUC update service for tests, on a private D-Bus.
//!
//! The agent installs updates by asking RAUC over D-Bus. To test that against the real thing
//! rather than a dummy, [`RaucSystem`] builds a small simulated device in a temporary
//! directory:
//!
//! - a private `dbus-daemon` of type "system" whose policy is as strict as a device's system
//!   bus (nobody may own names or call methods, except: root may own RAUC's name
//!   `de.pengutronix.rauc`, and everyone may call it). Point a client at it with
//!   `DBUS_SYSTEM_BUS_ADDRESS` ([`RaucSystem::bus_env`]);
//! - a RAUC `system.conf` with two raw A/B rootfs slots that are plain files, and the
//!   `custom` bootloader backend: a shell script keeping the boot state (primary slot, and
//!   good/bad per slot) in files, so tests can read and change it ([`RaucSystem::primary`],
//!   [`RaucSystem::slot_state`], ...). Like barebox or U-Boot, activating a slot also resets
//!   it to good. Each backend call is logged, and a call can be made to fail;
//! - `rauc service`, started in `/` (so a client must send absolute bundle paths) with the
//!   booted slot given on the command line, as `rauc.slot=` would be on a device;
//! - a development PKI (a CA in the keyring and a signer), plus a second, foreign CA, and
//!   [`RaucSystem::bundle`] to build signed plain bundles of any size. Image contents come
//!   from a seeded generator and are streamed to disk, so a 256 MiB bundle never sits in
//!   memory, and [`RaucSystem::slot_holds`] can check a slot without keeping the image.
//!
//! [`RaucSystem::reboot`] simulates a reboot: the service is killed (as by a power cut; what
//! an interrupted install left in the kernel, a mounted bundle or a loop device, is cleaned
//! up) and started again on the slot the simulated bootloader picks, which is the primary
//! slot unless it is marked bad. [`RaucSystem::reboot_into`] boots a given slot instead, to
//! play a bootloader falling back to the old slot.
//!
//! Only plain bundles: verity and crypt bundles need device-mapper, which the test machines'
//! kernel may lack. The service needs root (it mounts bundles through loop devices and takes
//! file leases), and so does this fixture. Needs the Debian packages `rauc`, `dbus`,
//! `squashfs-tools` and `systemd` (for `busctl`).

mod boot;
mod client;
mod image;
mod monitor;
mod pki;
mod service;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::AtomicU64;

pub use image::{Bundle, BundleSpec, Image};
pub use monitor::Monitor;
use pki::{Pki, make_pki};

/// RAUC's well-known bus name.
pub const BUS_NAME: &str = "de.pengutronix.rauc";
/// The interface of RAUC's object `/`.
pub const INTERFACE: &str = "de.pengutronix.rauc.Installer";
/// The `compatible` string of the simulated device.
pub const COMPATIBLE: &str = "nexa-test-device";
/// The two slots' boot names, which are also what the backend and `BootSlot` report.
pub const SLOTS: [&str; 2] = ["A", "B"];
/// Each slot file's initial (sparse) size; a larger image simply grows the file.
pub const SLOT_SIZE: u64 = 64 << 20;

/// Size of the factory image written to slot A at the start.
const FACTORY_SIZE: u64 = 1 << 20;

/// A simulated A/B device running the real `rauc service` on a private bus; everything is
/// killed on drop. See the module documentation.
#[derive(Debug)]
pub struct RaucSystem {
    dir: tempfile::TempDir,
    bus_address: String,
    bus: Option<Child>,
    service: Option<Child>,
    booted: String,
    trusted: Pki,
    foreign: Pki,
    bundles: AtomicU64,
    seed_base: u64,
}

impl RaucSystem {
    /// Sets up the device (slot A booted and primary, both slots good, A holding
    /// [`factory_image`](Self::factory_image), B blank), starts the bus and the service, and
    /// returns once the service owns its bus name.
    pub fn start() -> Self {
        assert!(
            is_root(),
            "the RAUC service needs root (it mounts bundles through loop devices and takes \
             file leases); run these tests as root"
        );
        for tool in ["rauc", "dbus-daemon", "busctl", "mksquashfs"] {
            assert!(
                in_path(tool),
                "`{tool}` not found in PATH; install the Debian packages rauc, dbus, systemd \
                 and squashfs-tools"
            );
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        for sub in ["boot", "slots", "mnt", "data", "pki", "bundles"] {
            std::fs::create_dir(root.join(sub)).expect("create fixture directory");
        }
        let trusted = make_pki(&root.join("pki"), "trusted");
        let foreign = make_pki(&root.join("pki"), "foreign");
        let mut system = Self {
            bus_address: String::new(),
            bus: None,
            service: None,
            booted: "A".into(),
            trusted,
            foreign,
            bundles: AtomicU64::new(0),
            seed_base: rand::random(),
            dir,
        };
        system.write_backend();
        system.write_slots();
        system.write_system_conf();
        system.start_bus();
        system.spawn_service();
        system
    }

    /// The temporary directory holding everything.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The private bus's address, e.g. for `DBUS_SYSTEM_BUS_ADDRESS`.
    pub fn bus_address(&self) -> &str {
        &self.bus_address
    }

    /// Points `cmd` at the private bus as its system bus.
    pub fn bus_env<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        cmd.env("DBUS_SYSTEM_BUS_ADDRESS", &self.bus_address)
            .env_remove("DBUS_STARTER_BUS_TYPE")
            .env_remove("DBUS_STARTER_ADDRESS")
    }

    /// The service's `system.conf`.
    pub fn system_conf(&self) -> PathBuf {
        self.dir().join("system.conf")
    }

    /// The keyring the service verifies bundles with (the trusted CA certificate).
    pub fn keyring(&self) -> &Path {
        &self.trusted.ca_cert
    }

    /// The slot the service was last started on (`BootSlot`): "A" or "B".
    pub fn booted(&self) -> &str {
        &self.booted
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0")
}

fn in_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}
