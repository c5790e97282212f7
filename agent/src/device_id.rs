//! Where the device id comes from when the configuration names none.
//!
//! Order (first usable source wins):
//! 1. the factory file `/etc/nexa/device-id` — written at manufacturing; its first line must
//!    already be a valid device id (a malformed factory file is an error, not skipped);
//! 2. the DMI product serial, then the board serial (`/sys/class/dmi/id/{product,board}_serial`),
//!    skipping vendor placeholders such as "To Be Filled By O.E.M.";
//! 3. the device-tree serial number (`/proc/device-tree/serial-number`, most ARM boards);
//! 4. `/etc/machine-id`.
//!
//! Sources 2–4 are normalised with [`DeviceId::sanitize`] (lower case, other characters to `-`).

use std::path::Path;

use nexa_proto::{DeviceId, DeviceIdError};

/// Where a device id came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdSource {
    Configured,
    FactoryFile,
    DmiProductSerial,
    DmiBoardSerial,
    DeviceTreeSerial,
    MachineId,
}

impl IdSource {
    pub fn describe(self) -> &'static str {
        match self {
            IdSource::Configured => "configuration",
            IdSource::FactoryFile => "/etc/nexa/device-id",
            IdSource::DmiProductSerial => "DMI product serial",
            IdSource::DmiBoardSerial => "DMI board serial",
            IdSource::DeviceTreeSerial => "device-tree serial number",
            IdSource::MachineId => "/etc/machine-id",
        }
    }
}

/// Why no device id could be determined.
#[derive(Debug, thiserror::Error)]
pub enum ResolveIdError {
    #[error("configured device id {value:?} is invalid: {source}")]
    Configured {
        value: String,
        source: DeviceIdError,
    },
    #[error(
        "factory file {path} holds {value:?}, which is not a valid device id: {source}; fix the file or set device_id"
    )]
    FactoryFile {
        path: String,
        value: String,
        source: DeviceIdError,
    },
    #[error(
        "no device id: none configured (device_id in agent.toml, NEXA_DEVICE_ID, --device-id) and none of \
         /etc/nexa/device-id, DMI serials, the device-tree serial or /etc/machine-id gave one"
    )]
    NoSource,
}

const PLACEHOLDERS: &[&str] = &[
    "to be filled by o.e.m.",
    "default string",
    "system serial number",
    "not specified",
    "not applicable",
    "none",
    "n/a",
    "123456789",
    "0123456789",
];

/// A vendor's placeholder instead of a serial (empty, "To Be Filled By O.E.M.", one repeated
/// character such as `00000000`, …). Shared with `machine_uid`, which adds more on top; this
/// list must not grow, because a device's id would change with it.
pub(crate) fn is_placeholder(raw: &str) -> bool {
    let t = raw.trim().to_ascii_lowercase();
    t.is_empty()
        || PLACEHOLDERS.contains(&t.as_str())
        || t.chars().all(|c| c == t.chars().next().unwrap_or('0'))
}

/// [`first_line`] of a file; `None` when it is missing or unreadable.
fn read_trimmed(path: &Path) -> Option<String> {
    first_line(&std::fs::read(path).ok()?)
}

/// The first line of a file's bytes, without NULs (device-tree strings end in one) and
/// surrounding whitespace; `None` when nothing is left. Shared with `machine_uid`.
pub(crate) fn first_line(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let line = text
        .trim_matches(char::from(0))
        .lines()
        .next()?
        .trim()
        .to_owned();
    (!line.is_empty()).then_some(line)
}

/// Resolves the device id. `root` is `/` in production and a fake root in tests.
pub fn resolve_device_id(
    root: &Path,
    configured: Option<&str>,
) -> Result<(DeviceId, IdSource), ResolveIdError> {
    if let Some(value) = configured {
        let id = DeviceId::parse(value.trim()).map_err(|source| ResolveIdError::Configured {
            value: value.to_owned(),
            source,
        })?;
        return Ok((id, IdSource::Configured));
    }
    let factory = root.join("etc/nexa/device-id");
    if let Some(value) = read_trimmed(&factory) {
        let id = DeviceId::parse(&value).map_err(|source| ResolveIdError::FactoryFile {
            path: factory.display().to_string(),
            value: value.clone(),
            source,
        })?;
        return Ok((id, IdSource::FactoryFile));
    }
    let sanitized = [
        (
            "sys/class/dmi/id/product_serial",
            IdSource::DmiProductSerial,
        ),
        ("sys/class/dmi/id/board_serial", IdSource::DmiBoardSerial),
        ("proc/device-tree/serial-number", IdSource::DeviceTreeSerial),
        ("etc/machine-id", IdSource::MachineId),
    ];
    for (rel, source) in sanitized {
        if let Some(raw) = read_trimmed(&root.join(rel)) {
            if is_placeholder(&raw) {
                continue;
            }
            if let Some(id) = DeviceId::sanitize(&raw) {
                return Ok((id, source));
            }
        }
    }
    Err(ResolveIdError::NoSource)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        for (rel, content) in files {
            let p = tmp.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        tmp
    }

    fn resolve(
        files: &[(&str, &str)],
        configured: Option<&str>,
    ) -> Result<(String, IdSource), String> {
        let root = root_with(files);
        resolve_device_id(root.path(), configured)
            .map(|(id, s)| (id.to_string(), s))
            .map_err(|e| e.to_string())
    }

    const MID: (&str, &str) = ("etc/machine-id", "0123456789abcdef0123456789abcdef\n");
    const DMI: (&str, &str) = ("sys/class/dmi/id/product_serial", "PF2ABC12\n");
    const BOARD: (&str, &str) = ("sys/class/dmi/id/board_serial", "BRD/7 7\n");
    const DT: (&str, &str) = ("proc/device-tree/serial-number", "10000000abcdef\0");
    const FACTORY: (&str, &str) = ("etc/nexa/device-id", "gw-0042\n");

    #[test]
    fn order_is_configured_factory_dmi_devicetree_machineid() {
        let all = [MID, DMI, BOARD, DT, FACTORY];
        assert_eq!(
            resolve(&all, Some("cfg-1")).unwrap(),
            ("cfg-1".into(), IdSource::Configured)
        );
        assert_eq!(
            resolve(&all, None).unwrap(),
            ("gw-0042".into(), IdSource::FactoryFile)
        );
        assert_eq!(
            resolve(&[MID, DMI, BOARD, DT], None).unwrap(),
            ("pf2abc12".into(), IdSource::DmiProductSerial)
        );
        assert_eq!(
            resolve(&[MID, BOARD, DT], None).unwrap(),
            ("brd-7-7".into(), IdSource::DmiBoardSerial)
        );
        assert_eq!(
            resolve(&[MID, DT], None).unwrap(),
            ("10000000abcdef".into(), IdSource::DeviceTreeSerial)
        );
        assert_eq!(
            resolve(&[MID], None).unwrap(),
            (
                "0123456789abcdef0123456789abcdef".into(),
                IdSource::MachineId
            )
        );
    }

    #[test]
    fn placeholders_are_skipped() {
        let oem = (
            "sys/class/dmi/id/product_serial",
            "To Be Filled By O.E.M.\n",
        );
        let zeros = ("sys/class/dmi/id/board_serial", "00000000\n");
        assert_eq!(
            resolve(&[oem, zeros, MID], None).unwrap().1,
            IdSource::MachineId
        );
    }

    #[test]
    fn errors_name_the_source() {
        let err = resolve(&[("etc/nexa/device-id", "../evil\n"), MID], None).unwrap_err();
        assert!(
            err.contains("etc/nexa/device-id") && err.contains("../evil"),
            "{err}"
        );
        let err = resolve(&[MID], Some("bad id")).unwrap_err();
        assert!(err.contains("bad id"), "{err}");
        assert!(resolve(&[], None).unwrap_err().contains("no device id"));
    }
}
