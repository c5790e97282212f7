//! The update engine end to end against the real RAUC service and the fake hawkBit (see
//! `common`): success reported only after the new slot booted and was marked good, rollback,
//! a bundle RAUC refuses, report mode, and a cancel while waiting for the maintenance window.
//! Each scenario asserts the feedback hawkBit recorded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{DEVICE, Device};
use nexa_agent::hawkbit::settings::{AfterInstall, RebootVia};
use nexa_testkit::hawkbit::{ActionState, Assignment, MaintenanceWindow};
use nexa_testkit::wait_until;

#[test]
fn success_is_reported_only_after_the_new_slot_booted_and_was_marked_good() {
    let mut dev = Device::new();
    let bundle = dev.rauc.good_bundle(4 << 20);
    let action = dev.deploy_bundle(&bundle.path, Assignment::forced());
    dev.start_engine("boot-1", AfterInstall::Reboot(RebootVia::Logind));

    assert!(
        wait_until(Duration::from_secs(30), || dev
            .reboots
            .0
            .load(Ordering::SeqCst)
            == 1),
        "no reboot requested; feedback: {:#?}",
        dev.fake.feedback(action)
    );
    assert!(dev.pending().exists());
    assert_eq!(
        dev.fake.action(action).state,
        ActionState::Running,
        "not closed before the boot"
    );
    let executions: Vec<String> = dev
        .fake
        .feedback(action)
        .into_iter()
        .map(|f| f.execution)
        .collect();
    assert!(
        executions.contains(&"downloaded".to_owned()),
        "{executions:?}"
    );
    assert!(!executions.contains(&"closed".to_owned()), "{executions:?}");
    assert!(dev.spool_is_empty());
    assert_eq!(
        dev.fake
            .attributes(DEVICE)
            .get("raucCompatible")
            .map(String::as_str),
        Some("nexa-test-device")
    );

    // Reboot: the bootloader picks the new slot.
    dev.stop_engine();
    assert_eq!(dev.rauc.reboot(), "B");
    dev.start_engine("boot-2", AfterInstall::Reboot(RebootVia::Logind));
    dev.wait_state(action, ActionState::Finished);
    assert_eq!(dev.rauc.slot_state("B"), "good");
    assert!(!dev.pending().exists());
    assert!(
        dev.details(action)
            .iter()
            .any(|d| d.contains("marked it good")),
        "{:?}",
        dev.details(action)
    );
    assert_eq!(dev.reboots.0.load(Ordering::SeqCst), 1);
}

#[test]
fn coming_back_on_the_old_slot_is_a_failure() {
    let mut dev = Device::new();
    let bundle = dev.rauc.good_bundle(2 << 20);
    let action = dev.deploy_bundle(&bundle.path, Assignment::forced());
    dev.start_engine("boot-1", AfterInstall::Reboot(RebootVia::Logind));
    assert!(wait_until(Duration::from_secs(30), || dev
        .reboots
        .0
        .load(Ordering::SeqCst)
        == 1));
    dev.stop_engine();
    dev.rauc.reboot_into("A");
    dev.start_engine("boot-2", AfterInstall::Reboot(RebootVia::Logind));
    dev.wait_state(action, ActionState::Error);
    assert!(
        dev.details(action)
            .iter()
            .any(|d| d.contains("came back on slot A")),
        "{:?}",
        dev.details(action)
    );
    assert!(!dev.pending().exists());
}

#[test]
fn a_bundle_rauc_refuses_fails_the_action_with_raucs_reason() {
    let mut dev = Device::new();
    let bundle = dev.rauc.foreign_bundle(1 << 20);
    let action = dev.deploy_bundle(&bundle.path, Assignment::forced());
    dev.start_engine("boot-1", AfterInstall::Reboot(RebootVia::Logind));
    dev.wait_state(action, ActionState::Error);
    assert!(
        dev.details(action)
            .iter()
            .any(|d| d.contains("signature verification failed")),
        "{:?}",
        dev.details(action)
    );
    assert_eq!(dev.reboots.0.load(Ordering::SeqCst), 0);
    // The spool is emptied right after the final report.
    assert!(wait_until(Duration::from_secs(5), || dev.spool_is_empty()));
}

#[test]
fn report_mode_closes_at_once_and_a_waiting_action_can_be_canceled() {
    let mut dev = Device::new();
    let bundle = dev.rauc.good_bundle(1 << 20);
    let first = dev.deploy_bundle(&bundle.path, Assignment::forced());
    dev.start_engine("boot-1", AfterInstall::Report);
    dev.wait_state(first, ActionState::Finished);
    assert_eq!(dev.reboots.0.load(Ordering::SeqCst), 0);

    // A closed maintenance window: downloaded, then waiting; a cancel is accepted.
    let second = dev.deploy_bundle(
        &bundle.path,
        Assignment::forced().window(MaintenanceWindow::Unavailable),
    );
    assert!(
        wait_until(Duration::from_secs(30), || dev
            .fake
            .feedback(second)
            .iter()
            .any(|f| f.execution == "downloaded")),
        "{:#?}",
        dev.fake.feedback(second)
    );
    dev.fake.cancel(second);
    dev.wait_state(second, ActionState::Canceled);
    assert!(wait_until(Duration::from_secs(5), || dev.spool_is_empty()));
}
