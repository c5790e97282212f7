//! The `machine_uid` sent with every enrollment: a stable fingerprint of the hardware that the
//! bridge uses to recognise a machine it has seen before (and to hold an enrollment for an
//! administrator when a second device claims the same machine).
//!
//! It must survive a re-flash of the image, so hardware sources come first, read under the
//! sysroot (`/` in production):
//!
//! 1. DMI (x86 and some ARM servers): `/sys/class/dmi/id/product_uuid`, `board_serial`,
//!    `product_serial`. Every one of the three that holds a real value is used together,
//!    because some vendors ship one UUID (or one serial) for a whole batch.
//! 2. The device-tree serial number, `/proc/device-tree/serial-number` (most ARM boards).
//! 3. `/etc/machine-id` — the last resort. It is written at first boot, so it does **not**
//!    survive a re-flash: the machine then looks new to the bridge.
//!
//! Vendor placeholders ("To Be Filled By O.E.M.", "Default string", all-zero or all-F UUIDs, a
//! repeated character, …; case-insensitive) are ignored. A maker with its own factory serial
//! (an OTP fuse, say) configures it instead: `machine_uid` in agent.toml, `NEXA_MACHINE_UID`
//! or `--machine-uid`, 1 to 128 printable ASCII characters; it replaces the derivation.
//!
//! What is sent is never a raw serial but the lower-hex SHA-256 of a versioned,
//! domain-separated text naming the sources and their values:
//!
//! ```text
//! nexa-agent machine-uid v1\n
//! dmi.product_uuid=4c4c4544-0042-3510-8052-b7c04f4b4d32\n
//! dmi.board_serial=/7xb5km2/cn1296157q0123/\n
//! ```
//!
//! Hardware values are trimmed (and NULs removed) and lower-cased; a configured value is only
//! trimmed. This text is part of the contract with the bridge's records: changing it changes
//! every device's uid, so a new rule must come with a new version line (`v2`), never an edit.

use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::device_id::{first_line, is_placeholder};

/// The first line of the hashed text; see the module documentation.
const DOMAIN: &str = "nexa-agent machine-uid v1";

/// Longest configured `machine_uid`.
pub const MAX_CONFIGURED_LEN: usize = 128;

/// Where part of the machine uid came from. The names are part of the hashed text (and what
/// `status --json` shows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UidSource {
    Configured,
    DmiProductUuid,
    DmiBoardSerial,
    DmiProductSerial,
    DeviceTreeSerial,
    MachineId,
}

impl Serialize for UidSource {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl UidSource {
    /// The stable name, in logs, `status` and the hashed text.
    pub fn name(self) -> &'static str {
        match self {
            UidSource::Configured => "configured",
            UidSource::DmiProductUuid => "dmi.product_uuid",
            UidSource::DmiBoardSerial => "dmi.board_serial",
            UidSource::DmiProductSerial => "dmi.product_serial",
            UidSource::DeviceTreeSerial => "devicetree.serial_number",
            UidSource::MachineId => "machine_id",
        }
    }

    /// The file it is read from, relative to the sysroot.
    fn path(self) -> Option<&'static str> {
        match self {
            UidSource::Configured => None,
            UidSource::DmiProductUuid => Some("sys/class/dmi/id/product_uuid"),
            UidSource::DmiBoardSerial => Some("sys/class/dmi/id/board_serial"),
            UidSource::DmiProductSerial => Some("sys/class/dmi/id/product_serial"),
            UidSource::DeviceTreeSerial => Some("proc/device-tree/serial-number"),
            UidSource::MachineId => Some("etc/machine-id"),
        }
    }
}

/// The derived uid and the sources it was made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineUid {
    value: String,
    sources: Vec<UidSource>,
}

impl MachineUid {
    /// 64 lower-case hex digits.
    pub fn value(&self) -> &str {
        &self.value
    }

    pub fn sources(&self) -> &[UidSource] {
        &self.sources
    }

    /// The source names joined by `+`, e.g. `dmi.product_uuid+dmi.board_serial`.
    pub fn source_names(&self) -> String {
        self.sources
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join("+")
    }

    /// False when only `/etc/machine-id` was available (a re-flash gives a new uid).
    pub fn survives_reflash(&self) -> bool {
        self.sources != [UidSource::MachineId]
    }
}

/// A `machine_uid` from the configuration, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfiguredUid(String);

impl ConfiguredUid {
    /// Trims `raw` and checks it: 1 to 128 printable ASCII characters (space included), no
    /// control characters. The error says what is wrong, for the configuration's message.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let v = raw.trim();
        if v.is_empty() {
            return Err("it is empty".into());
        }
        if v.len() > MAX_CONFIGURED_LEN {
            return Err(format!(
                "it is {} bytes long; at most {MAX_CONFIGURED_LEN} are allowed",
                v.len()
            ));
        }
        if let Some((i, c)) = v
            .chars()
            .enumerate()
            .find(|(_, c)| !(c.is_ascii_graphic() || *c == ' '))
        {
            return Err(format!(
                "character {} ({c:?}) is not printable ASCII",
                i + 1
            ));
        }
        Ok(Self(v.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Placeholders some firmware writes into DMI instead of a serial or UUID, on top of the ones
/// [`is_placeholder`] knows (compared lower-cased and trimmed).
const MORE_PLACEHOLDERS: &[&str] = &[
    "to be filled by oem",
    "filled by o.e.m.",
    "o.e.m.",
    "oem",
    "default",
    "none specified",
    "not available",
    "not present",
    "unknown",
    "invalid",
    "empty",
    "serial number",
    "chassis serial number",
    "base board serial number",
    "system product name",
    "1234567890",
    "12345678",
    // systemd writes this into /etc/machine-id until the first boot completes.
    "uninitialized",
    // UUIDs known to be shipped on whole product lines (AMI and others' firmware defaults).
    "03000200-0400-0500-0006-000700080009",
    "00020003-0004-0005-0006-000700080009",
];

/// True when `raw` is no usable hardware value.
fn is_junk(raw: &str) -> bool {
    if is_placeholder(raw) {
        return true;
    }
    let t = raw.trim().to_ascii_lowercase();
    if MORE_PLACEHOLDERS.contains(&t.as_str()) {
        return true;
    }
    // A UUID of zeros or Fs (dashes make `is_placeholder`'s repeated-character rule miss it).
    let digits: Vec<char> = t.chars().filter(|c| *c != '-').collect();
    t.contains('-') && (digits.iter().all(|c| *c == '0') || digits.iter().all(|c| *c == 'f'))
}

/// Reads one source; a present but unreadable file is logged (running without root changes
/// which sources are seen, and so the uid).
fn read_source(sysroot: &Path, source: UidSource) -> Option<String> {
    let path = sysroot.join(source.path()?);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let value = first_line(&bytes)?;
            if is_junk(&value) {
                tracing::debug!(source = source.name(), "placeholder value ignored");
                return None;
            }
            Some(value.to_ascii_lowercase())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read a machine uid source; it is left out (run as root for a stable uid)");
            None
        }
    }
}

/// The lower-hex SHA-256 of the versioned text of `parts`.
fn hash(parts: &[(UidSource, String)]) -> String {
    let mut h = Sha256::new();
    h.update(DOMAIN.as_bytes());
    h.update(b"\n");
    for (source, value) in parts {
        h.update(source.name().as_bytes());
        h.update(b"=");
        h.update(value.as_bytes());
        h.update(b"\n");
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Derives the machine uid (see the module documentation for the order); `None` when no
/// source holds a usable value.
pub fn derive(sysroot: &Path, configured: Option<&ConfiguredUid>) -> Option<MachineUid> {
    let tiers: [&[UidSource]; 3] = [
        &[
            UidSource::DmiProductUuid,
            UidSource::DmiBoardSerial,
            UidSource::DmiProductSerial,
        ],
        &[UidSource::DeviceTreeSerial],
        &[UidSource::MachineId],
    ];
    let parts: Vec<(UidSource, String)> = match configured {
        Some(c) => vec![(UidSource::Configured, c.as_str().to_owned())],
        None => tiers.iter().find_map(|tier| {
            let found: Vec<(UidSource, String)> = tier
                .iter()
                .filter_map(|s| read_source(sysroot, *s).map(|v| (*s, v)))
                .collect();
            (!found.is_empty()).then_some(found)
        })?,
    };
    Some(MachineUid {
        value: hash(&parts),
        sources: parts.iter().map(|(s, _)| *s).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: (&str, &str) = (
        "sys/class/dmi/id/product_uuid",
        "4C4C4544-0042-3510-8052-B7C04F4B4D32\n",
    );
    const BOARD: (&str, &str) = (
        "sys/class/dmi/id/board_serial",
        "/7XB5KM2/CN1296157Q0123/\n",
    );
    const PRODUCT: (&str, &str) = ("sys/class/dmi/id/product_serial", "7XB5KM2\n");
    const DT: (&str, &str) = ("proc/device-tree/serial-number", "10000000abcdef01\0");
    const MID: (&str, &str) = ("etc/machine-id", "0123456789abcdef0123456789abcdef\n");

    fn root_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        for (rel, content) in files {
            let p = tmp.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        tmp
    }

    fn uid(files: &[(&str, &str)]) -> Option<MachineUid> {
        let root = root_with(files);
        derive(root.path(), None)
    }

    fn sources(files: &[(&str, &str)]) -> Vec<UidSource> {
        uid(files).map(|u| u.sources().to_vec()).unwrap_or_default()
    }

    #[test]
    fn the_value_is_pinned_across_agent_versions() {
        // sha256("nexa-agent machine-uid v1\ndmi.product_uuid=4c4c4544-0042-3510-8052-b7c04f4b4d32\ndmi.board_serial=/7xb5km2/cn1296157q0123/\n")
        let u = uid(&[UUID, BOARD, DT, MID]).unwrap();
        assert_eq!(
            u.value(),
            "ff3d53d0860d9bd3ccfa273d49176d11856f400bec7b3e02dae6a13fecf3bb4b"
        );
        assert_eq!(u.source_names(), "dmi.product_uuid+dmi.board_serial");
        assert!(u.survives_reflash());
        // The same machine read again, with other case and padding: the same uid.
        let again = uid(&[
            (UUID.0, "  4c4c4544-0042-3510-8052-b7c04f4b4d32 \n"),
            (BOARD.0, "/7xb5km2/cn1296157q0123/"),
        ])
        .unwrap();
        assert_eq!(again.value(), u.value());
    }

    #[test]
    fn each_source_alone_gives_a_distinct_hex_uid() {
        let mut seen = std::collections::BTreeSet::new();
        for (file, source) in [
            (UUID, UidSource::DmiProductUuid),
            (BOARD, UidSource::DmiBoardSerial),
            (PRODUCT, UidSource::DmiProductSerial),
            (DT, UidSource::DeviceTreeSerial),
            (MID, UidSource::MachineId),
        ] {
            let u = uid(&[file]).unwrap();
            assert_eq!(u.sources(), [source], "{file:?}");
            assert_eq!(u.value().len(), 64);
            assert!(
                u.value()
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            );
            assert!(!u.value().contains("7xb5km2") && !u.value().contains("abcdef01"));
            assert!(seen.insert(u.value().to_owned()), "{file:?} repeats a uid");
        }
        assert!(!uid(&[MID]).unwrap().survives_reflash());
        assert_eq!(uid(&[]), None);
    }

    #[test]
    fn dmi_values_are_combined_and_beat_later_sources() {
        use UidSource::*;
        assert_eq!(
            sources(&[UUID, BOARD, PRODUCT, DT, MID]),
            [DmiProductUuid, DmiBoardSerial, DmiProductSerial]
        );
        assert_eq!(
            sources(&[UUID, PRODUCT, MID]),
            [DmiProductUuid, DmiProductSerial]
        );
        assert_eq!(sources(&[BOARD, DT, MID]), [DmiBoardSerial]);
        // A batch-wide UUID is told apart by the board serial.
        let a = uid(&[UUID, (BOARD.0, "BOARD-A")]).unwrap();
        let b = uid(&[UUID, (BOARD.0, "BOARD-B")]).unwrap();
        assert_ne!(a.value(), b.value());
        assert_ne!(a.value(), uid(&[UUID]).unwrap().value());
    }

    #[test]
    fn the_fallback_order_is_dmi_devicetree_machine_id() {
        use UidSource::*;
        assert_eq!(sources(&[DT, MID]), [DeviceTreeSerial]);
        assert_eq!(sources(&[MID]), [MachineId]);
    }

    #[test]
    fn placeholders_are_ignored_whatever_their_case() {
        use UidSource::*;
        let junk = [
            "",
            "   \n",
            "To Be Filled By O.E.M.",
            "to be filled by o.e.m.",
            "Default string",
            "DEFAULT STRING",
            "Not Specified",
            "None",
            "System Serial Number",
            "0123456789",
            "00000000",
            "Chassis Serial Number",
            "O.E.M.",
        ];
        for j in junk {
            assert_eq!(
                sources(&[(BOARD.0, j), (PRODUCT.0, j), MID]),
                [MachineId],
                "{j:?}"
            );
        }
        for u in [
            "00000000-0000-0000-0000-000000000000",
            "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF",
            "ffffffff-ffff-ffff-ffff-ffffffffffff",
            "03000200-0400-0500-0006-000700080009",
        ] {
            assert_eq!(sources(&[(UUID.0, u), DT]), [DeviceTreeSerial], "{u}");
        }
        assert_eq!(sources(&[(MID.0, "uninitialized\n")]), Vec::new());
        assert_eq!(sources(&[(DT.0, "0000000000000000\0"), MID]), [MachineId]);
    }

    #[test]
    fn a_configured_uid_replaces_the_derivation_and_is_checked() {
        let root = root_with(&[UUID, BOARD, MID]);
        let c = ConfiguredUid::parse("  OTP-0042-A1 ").unwrap();
        assert_eq!(c.as_str(), "OTP-0042-A1");
        let u = derive(root.path(), Some(&c)).unwrap();
        assert_eq!(u.sources(), [UidSource::Configured]);
        assert_ne!(u.value(), uid(&[UUID, BOARD, MID]).unwrap().value());
        assert!(!u.value().contains("OTP"), "hashed, not sent raw");
        assert!(u.survives_reflash());

        assert!(ConfiguredUid::parse("with space inside").is_ok());
        assert!(ConfiguredUid::parse(&"x".repeat(128)).is_ok());
        let e = ConfiguredUid::parse(&"x".repeat(129)).unwrap_err();
        assert!(e.contains("129") && e.contains("128"), "{e}");
        assert!(ConfiguredUid::parse("   ").unwrap_err().contains("empty"));
        let e = ConfiguredUid::parse("ab\u{7}c").unwrap_err();
        assert!(e.contains("character 3"), "{e}");
        assert!(ConfiguredUid::parse("tab\tinside").is_err());
        assert!(ConfiguredUid::parse("séria").is_err());
    }
}
