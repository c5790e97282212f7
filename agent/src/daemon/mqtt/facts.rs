//! Facts about the running system the daemon reports once: the OS release and the RAUC slot
//! it booted from.

use std::path::Path;

/// The RAUC bootname from the kernel command line (`rauc.slot=A`), if the bootloader set it.
pub(super) fn boot_slot(proc_root: &Path) -> Option<String> {
    let cmdline = std::fs::read_to_string(proc_root.join("cmdline")).ok()?;
    cmdline
        .split_ascii_whitespace()
        .find_map(|arg| arg.strip_prefix("rauc.slot="))
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// PRETTY_NAME from os-release, if there is one.
pub(super) fn os_release(sysroot: &Path) -> Option<String> {
    ["etc/os-release", "usr/lib/os-release"]
        .iter()
        .find_map(|p| std::fs::read_to_string(sysroot.join(p)).ok())
        .and_then(|text| {
            text.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_owned())
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_slot_comes_from_the_kernel_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let with = |cmdline: &str| {
            std::fs::write(dir.path().join("cmdline"), cmdline).unwrap();
            boot_slot(dir.path())
        };
        assert_eq!(
            with("console=ttyS0 rauc.slot=B root=/dev/mmcblk0p3 rw\n").as_deref(),
            Some("B")
        );
        assert_eq!(with("console=ttyS0 root=/dev/sda2\n"), None);
        assert_eq!(with("rauc.slot= quiet"), None);
        assert_eq!(boot_slot(&dir.path().join("absent")), None);
    }
}
