//! The RAUC test fixture against the real `rauc service` (`nexa_testkit::rauc::RaucSystem`).
//!
//! Before the agent's D-Bus client is tested against it, these tests prove the fixture
//! itself: that the real service on the private bus installs a good bundle into the other
//! slot and switches the simulated bootloader to it, that a simulated reboot comes up on the
//! new slot where marking it good works, that the bootloader falls back to the old slot, and
//! that a bundle with a foreign signature, one for another device, and a failing bootloader
//! are refused with RAUC's own error texts. They drive the service only with RAUC's CLI and
//! `busctl`, never with the agent's code, so a fixture bug cannot hide behind a client bug.
//!
//! They need root and the Debian packages `rauc`, `dbus`, `squashfs-tools` and `systemd`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use nexa_testkit::rauc::{BUS_NAME, BundleSpec, COMPATIBLE, INTERFACE, RaucSystem};
use nexa_testkit::text;
use serde_json::json;

const MIB: u64 = 1 << 20;

/// `InstallBundle(path, {})` over the bus with busctl; returns busctl's output.
fn install_bundle_call(rauc: &RaucSystem, path: &str) -> std::process::Output {
    rauc.busctl(&[
        "call",
        BUS_NAME,
        "/",
        INTERFACE,
        "InstallBundle",
        "sa{sv}",
        path,
        "0",
    ])
}

#[test]
fn a_good_bundle_is_installed_into_the_other_slot() {
    let rauc = RaucSystem::start();
    assert_eq!(rauc.property("BootSlot"), json!("A"));
    assert_eq!(rauc.property("Compatible"), json!(COMPATIBLE));
    assert_eq!(rauc.primary(), "A");
    let bundle = rauc.good_bundle(8 * MIB);
    assert!(rauc.slot_is_blank("B", 8 * MIB));

    let monitor = rauc.monitor();
    let started = Instant::now();
    let out = install_bundle_call(&rauc, bundle.path_str());
    assert!(out.status.success(), "InstallBundle: {}", text(&out));
    let completed = monitor.wait_completed(1, Duration::from_secs(30));
    let took = started.elapsed();
    assert_eq!(completed, [0], "service log:\n{}", rauc.log());
    assert_eq!(rauc.property("LastError"), json!(""));
    eprintln!("8 MiB plain install took {took:?}");

    // The call as the monitor saw it, and the service's progress.
    let calls = monitor.calls();
    assert!(
        calls.contains(&("InstallBundle".into(), json!([bundle.path_str(), {}]))),
        "{calls:?}"
    );
    let operation = monitor.property_changes("Operation");
    assert_eq!(
        operation.first(),
        Some(&json!("installing")),
        "{operation:?}"
    );
    let progress = monitor.property_changes("Progress");
    assert_eq!(
        progress.last(),
        Some(&json!([100, "Installing done.", 1])),
        "{progress:?}"
    );
    assert!(
        progress.contains(&json!([90, "Copying image to rootfs.1", 3])),
        "{progress:?}"
    );

    // Slot B holds the image; A still holds the factory image; the bootloader switched.
    assert!(rauc.slot_holds("B", &bundle.image));
    assert!(rauc.slot_holds("A", &rauc.factory_image()));
    assert!(!rauc.slot_holds("A", &bundle.image));
    assert_eq!(rauc.primary(), "B");
    assert_eq!(rauc.slot_state("B"), "good");
    let calls = rauc.boot_calls();
    let bad = calls.iter().position(|c| c == "set-state B bad");
    let primary = calls.iter().position(|c| c == "set-primary B");
    assert!(
        bad.is_some() && primary.is_some() && bad < primary,
        "backend calls: {calls:?}"
    );
    // Still running from A until the reboot.
    assert_eq!(rauc.property("BootSlot"), json!("A"));
    let primary = rauc.busctl(&["call", BUS_NAME, "/", INTERFACE, "GetPrimary"]);
    assert_eq!(
        String::from_utf8_lossy(&primary.stdout).trim(),
        "s \"rootfs.1\""
    );
}

#[test]
fn a_reboot_boots_the_new_slot_and_the_next_update_goes_back_to_a() {
    let mut rauc = RaucSystem::start();
    let first = rauc.bundle(&BundleSpec::new(2 * MIB).version("2.0"));
    let out = rauc.rauc(&["install", first.path_str()]);
    assert!(out.status.success(), "rauc install: {}", text(&out));

    let started = Instant::now();
    assert_eq!(rauc.reboot(), "B");
    eprintln!("simulated reboot took {:?}", started.elapsed());
    assert_eq!(rauc.booted(), "B");
    assert_eq!(rauc.property("BootSlot"), json!("B"));

    // The new slot confirms itself, as the agent will after a successful update.
    let out = rauc.rauc(&["status", "mark-good"]);
    assert!(
        out.status.success(),
        "rauc status mark-good: {}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("marked slot rootfs.1 as good"),
        "{}",
        text(&out)
    );
    assert_eq!(
        rauc.boot_calls().last().map(String::as_str),
        Some("set-state B good")
    );
    // The same over D-Bus: Mark("good", "booted") -> (slot name, message).
    let out = rauc.busctl(&[
        "call", BUS_NAME, "/", INTERFACE, "Mark", "ss", "good", "booted",
    ]);
    assert!(out.status.success(), "Mark: {}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("ss \"rootfs.1\""),
        "{}",
        text(&out)
    );

    // The next update targets A, and after it the device boots A again.
    let second = rauc.bundle(&BundleSpec::new(2 * MIB).version("3.0"));
    let out = rauc.rauc(&["install", second.path_str()]);
    assert!(out.status.success(), "rauc install: {}", text(&out));
    assert!(rauc.slot_holds("A", &second.image));
    assert!(rauc.slot_holds("B", &first.image));
    assert_eq!(rauc.primary(), "A");
    assert_eq!(rauc.reboot(), "A");
    assert_eq!(rauc.property("BootSlot"), json!("A"));
}

#[test]
fn a_slot_marked_bad_falls_back_and_a_rollback_can_be_forced() {
    let mut rauc = RaucSystem::start();
    let bundle = rauc.good_bundle(MIB);
    let out = rauc.rauc(&["install", bundle.path_str()]);
    assert!(out.status.success(), "rauc install: {}", text(&out));
    assert_eq!(rauc.reboot(), "B");

    // The update is judged broken on B: marked bad, the bootloader falls back to A.
    let out = rauc.rauc(&["status", "mark-bad"]);
    assert!(out.status.success(), "rauc status mark-bad: {}", text(&out));
    assert_eq!(rauc.slot_state("B"), "bad");
    assert_eq!(rauc.primary(), "B");
    assert_eq!(rauc.reboot(), "A");
    assert_eq!(rauc.property("BootSlot"), json!("A"));

    // A bootloader fallback that RAUC did not ask for: primary is B, yet A comes up.
    let again = rauc.good_bundle(MIB);
    let out = rauc.rauc(&["install", again.path_str()]);
    assert!(out.status.success(), "rauc install: {}", text(&out));
    assert_eq!(rauc.primary(), "B");
    rauc.reboot_into("A");
    assert_eq!(rauc.property("BootSlot"), json!("A"));
    let primary = rauc.busctl(&["call", BUS_NAME, "/", INTERFACE, "GetPrimary"]);
    assert_eq!(
        String::from_utf8_lossy(&primary.stdout).trim(),
        "s \"rootfs.1\""
    );

    // Without the service, RAUC is simply missing from the bus; it comes back on A.
    rauc.stop_service();
    let out = install_bundle_call(&rauc, again.path_str());
    assert!(!out.status.success(), "{}", text(&out));
    rauc.start_service();
    assert_eq!(rauc.property("BootSlot"), json!("A"));
}

#[test]
fn a_bundle_signed_by_a_foreign_ca_is_refused() {
    let rauc = RaucSystem::start();
    let bundle = rauc.foreign_bundle(MIB);
    let monitor = rauc.monitor();
    let out = install_bundle_call(&rauc, bundle.path_str());
    // Accepted as a call; the failure comes asynchronously.
    assert!(out.status.success(), "InstallBundle: {}", text(&out));
    assert_eq!(monitor.wait_completed(1, Duration::from_secs(30)), [1]);
    let error = rauc.property("LastError");
    assert_eq!(
        error,
        json!(
            "signature verification failed: Verify error: unable to get local issuer certificate"
        ),
        "service log:\n{}",
        rauc.log()
    );
    assert_eq!(monitor.property_changes("LastError").last(), Some(&error));

    // The CLI reports the same; nothing was written or switched.
    let out = rauc.rauc(&["install", bundle.path_str()]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("signature verification failed"),
        "{}",
        text(&out)
    );
    assert!(rauc.slot_is_blank("B", MIB));
    assert_eq!(rauc.primary(), "A");
    assert!(!rauc.boot_calls().iter().any(|c| c.starts_with("set-")));
}

#[test]
fn a_bundle_for_another_device_is_refused() {
    let rauc = RaucSystem::start();
    let bundle = rauc.incompatible_bundle(MIB);
    let monitor = rauc.monitor();
    let out = install_bundle_call(&rauc, bundle.path_str());
    assert!(out.status.success(), "InstallBundle: {}", text(&out));
    assert_eq!(monitor.wait_completed(1, Duration::from_secs(30)), [1]);
    assert_eq!(
        rauc.property("LastError"),
        json!(format!(
            "Installation error: Compatible mismatch: Expected '{COMPATIBLE}' but bundle \
             manifest has 'other-device'"
        ))
    );
    assert!(rauc.slot_is_blank("B", MIB));
    assert_eq!(rauc.primary(), "A");
}

#[test]
fn a_failing_bootloader_fails_the_install() {
    let rauc = RaucSystem::start();
    let bundle = rauc.good_bundle(MIB);
    rauc.fail_backend("set-primary", true);
    let out = rauc.rauc(&["install", bundle.path_str()]);
    assert!(!out.status.success(), "{}", text(&out));
    let error = rauc.property("LastError");
    let error = error.as_str().unwrap_or_default();
    assert!(
        error.starts_with("Installation error: Failed marking slot rootfs.1 bootable"),
        "{error}"
    );
    // The image was written, but B stays bad and A primary.
    assert!(rauc.slot_holds("B", &bundle.image));
    assert_eq!(rauc.slot_state("B"), "bad");
    assert_eq!(rauc.primary(), "A");

    rauc.fail_backend("set-primary", false);
    let out = rauc.rauc(&["install", bundle.path_str()]);
    assert!(out.status.success(), "rauc install: {}", text(&out));
    assert_eq!(rauc.primary(), "B");
}

#[test]
fn a_reboot_during_an_install_comes_back_on_the_old_slot() {
    let mut rauc = RaucSystem::start();
    let bundle = rauc.good_bundle(32 * MIB);
    let monitor = rauc.monitor();
    let out = install_bundle_call(&rauc, bundle.path_str());
    assert!(out.status.success(), "InstallBundle: {}", text(&out));
    assert!(
        nexa_testkit::wait_until(Duration::from_secs(10), || {
            monitor
                .property_changes("Operation")
                .contains(&json!("installing"))
        }),
        "no install started; service log:\n{}",
        rauc.log()
    );
    // Power cut somewhere during the install: whatever step it reached, the bootloader still
    // boots A (B is either untouched or marked bad), and the kernel is clean again.
    assert_eq!(rauc.reboot(), "A");
    assert!(monitor.completed().is_empty(), "{:?}", monitor.completed());
    assert_eq!(rauc.kernel_leftovers(), Vec::<String>::new());
    assert_eq!(rauc.property("BootSlot"), json!("A"));
    assert_eq!(rauc.primary(), "A");

    let out = rauc.rauc(&["install", bundle.path_str()]);
    assert!(out.status.success(), "rauc install: {}", text(&out));
    assert!(rauc.slot_holds("B", &bundle.image));
    assert_eq!(rauc.primary(), "B");
}
