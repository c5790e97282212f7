//! The simulated device below the service: the two slot files (the storage RAUC writes
//! images to) and the `custom` bootloader backend, a shell script keeping the A/B boot state
//! (primary slot, good/bad per slot) in files that tests can read, change, and make fail.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::PathBuf;

use super::{FACTORY_SIZE, Image, RaucSystem, SLOT_SIZE, SLOTS};

impl RaucSystem {
    /// The file backing slot `bootname` ("A" or "B").
    pub fn slot_path(&self, bootname: &str) -> PathBuf {
        check_slot(bootname);
        self.dir()
            .join("slots")
            .join(format!("rootfs-{}.img", bootname.to_ascii_lowercase()))
    }

    /// The image slot A holds from the start.
    pub fn factory_image(&self) -> Image {
        Image {
            seed: self.seed_base,
            size: FACTORY_SIZE,
        }
    }

    /// True if slot `bootname` starts with `image`.
    pub fn slot_holds(&self, bootname: &str, image: &Image) -> bool {
        let path = self.slot_path(bootname);
        let mut file = BufReader::new(File::open(&path).expect("open slot file"));
        image.is_prefix_of(&mut file).expect("read slot file")
    }

    /// True if slot `bootname`'s first `len` bytes are zero (never written).
    pub fn slot_is_blank(&self, bootname: &str, len: u64) -> bool {
        let file = File::open(self.slot_path(bootname)).expect("open slot file");
        let mut bytes = BufReader::new(file).take(len).bytes();
        bytes.all(|b| b.expect("read slot file") == 0)
    }

    fn boot_file(&self, name: &str) -> PathBuf {
        self.dir().join("boot").join(name)
    }

    fn read_boot_file(&self, name: &str) -> String {
        let path = self.boot_file(name);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read boot state {}: {e}", path.display()))
            .trim()
            .to_owned()
    }

    /// The bootloader's primary slot (boot name), as the custom backend keeps it.
    pub fn primary(&self) -> String {
        self.read_boot_file("primary")
    }

    /// The bootloader's state of slot `bootname`: "good" or "bad".
    pub fn slot_state(&self, bootname: &str) -> String {
        check_slot(bootname);
        self.read_boot_file(&format!("state.{bootname}"))
    }

    /// Sets the primary slot behind the service's back (as a bootloader tool would).
    pub fn set_primary(&self, bootname: &str) {
        check_slot(bootname);
        std::fs::write(self.boot_file("primary"), format!("{bootname}\n")).expect("write primary");
    }

    /// Sets slot `bootname`'s state ("good" or "bad") behind the service's back.
    pub fn set_slot_state(&self, bootname: &str, state: &str) {
        check_slot(bootname);
        assert!(
            state == "good" || state == "bad",
            "slot state must be good or bad, not {state:?}"
        );
        std::fs::write(
            self.boot_file(&format!("state.{bootname}")),
            format!("{state}\n"),
        )
        .expect("write slot state");
    }

    /// Every call the service made to the bootloader backend, oldest first, e.g.
    /// `"set-primary B"`.
    pub fn boot_calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.boot_file("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Makes the backend command `command` (`get-primary`, `set-primary`, `get-state` or
    /// `set-state`) fail (exit 1) from now on, or work again.
    pub fn fail_backend(&self, command: &str, fail: bool) {
        assert!(
            ["get-primary", "set-primary", "get-state", "set-state"].contains(&command),
            "unknown backend command {command:?}"
        );
        let flag = self.boot_file(&format!("fail-{command}"));
        if fail {
            std::fs::write(flag, "").expect("write backend failure flag");
        } else {
            let _ = std::fs::remove_file(flag);
        }
    }

    pub(super) fn write_backend(&self) {
        let boot = self.dir().join("boot");
        let script = format!(
            r#"#!/bin/sh
# Custom bootloader backend of the Nexa test kit: the A/B boot state lives in files here.
dir='{}'
echo "$*" >> "$dir/calls.log"
if [ -e "$dir/fail-$1" ]; then
    echo "simulated bootloader failure: $1" >&2
    exit 1
fi
case "$1" in
    get-primary) cat "$dir/primary" ;;
    set-primary) echo "$2" > "$dir/primary"; echo good > "$dir/state.$2" ;;
    get-state) cat "$dir/state.$2" ;;
    set-state) echo "$3" > "$dir/state.$2" ;;
    *) echo "unknown backend command: $*" >&2; exit 1 ;;
esac
"#,
            boot.display()
        );
        let path = boot.join("backend.sh");
        std::fs::write(&path, script).expect("write bootloader backend");
        let mut perms = std::fs::metadata(&path).expect("backend").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&path, perms).expect("make backend executable");
        self.set_primary("A");
        self.set_slot_state("A", "good");
        self.set_slot_state("B", "good");
    }

    pub(super) fn write_slots(&self) {
        for slot in SLOTS {
            let file = File::create(self.slot_path(slot)).expect("create slot file");
            file.set_len(SLOT_SIZE).expect("size slot file");
        }
        let mut a = std::fs::OpenOptions::new()
            .write(true)
            .open(self.slot_path("A"))
            .expect("open slot A");
        self.factory_image()
            .write_to(&mut a)
            .expect("write factory image");
    }
}

pub(super) fn check_slot(bootname: &str) {
    assert!(
        SLOTS.contains(&bootname),
        "unknown slot {bootname:?}; the slots are A and B"
    );
}

pub(super) fn other_slot(bootname: &str) -> &'static str {
    if bootname == "A" { "B" } else { "A" }
}
