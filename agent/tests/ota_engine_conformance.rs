//! The update engine against the rest of rauc-hawkbit-updater's conformance list (PEERS.md
//! §4) and DDI.md, end to end (see `common` for the simulated device): a cancel during the
//! download and one before the first poll; an install held back by a closed maintenance
//! window; an installer that is not there; deployments with more than one artifact or chunk;
//! an action that is gone (410) in the middle; configData at start and on request. Each
//! asserts the action state and feedback hawkBit recorded and what the device was left with.
//! Download failures are in `ota_engine_downloads.rs`.
//! A 410 anywhere ends the action on the device at once: no more feedback, no install, the
//! status back to idle.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{DEVICE, Device};
use nexa_agent::hawkbit::settings::AfterInstall;
use nexa_agent::hawkbit::status::Phase;
use nexa_testkit::hawkbit::{
    ActionState, Artifact, Assignment, Chunk, DistributionSet, DownloadFault, Fault,
    FeedbackChannel, MaintenanceWindow, RequestRecord, Route,
};
use nexa_testkit::wait_until;

/// Image size of the bundles: small, so each install takes about a second.
const IMAGE: u64 = 1 << 20;

/// Waits until the engine is idle again after `action`, with a result starting `how`.
fn wait_idle_after(dev: &Device, action: u64, how: &str) {
    let status = dev.status.clone().unwrap();
    let want = format!("{action}: {how}");
    assert!(
        wait_until(Duration::from_secs(10), || {
            let s = status.borrow();
            s.phase == Phase::Idle
                && s.last_result
                    .as_deref()
                    .is_some_and(|r| r.starts_with(&want))
        }),
        "status: {:?}",
        status.borrow()
    );
}

/// The device requests that name action `id` (its deploymentBase, cancelAction and their
/// feedback).
fn requests_about(dev: &Device, id: u64) -> Vec<RequestRecord> {
    dev.fake
        .requests()
        .into_iter()
        .filter(|r| {
            matches!(
                r.route,
                Route::DeploymentBase
                    | Route::DeploymentFeedback
                    | Route::CancelAction
                    | Route::CancelFeedback
            ) && r.path.split('/').any(|s| s == id.to_string())
        })
        .collect()
}

// -- Cancel (rauc: test_cancel_before_poll, test_cancel_during_download) --------------------

#[test]
fn a_cancel_during_the_download_stops_it_and_installs_nothing() {
    let mut dev = Device::new();
    let bundle = dev.rauc.good_bundle(IMAGE);
    // The download stops a third of the way in and would stay stuck for longer than the test.
    dev.fake.inject_download(DownloadFault::stall_after(
        bundle.file_size() / 3,
        Duration::from_secs(60),
    ));
    let action = dev.deploy_bundle(&bundle.path, Assignment::forced());
    dev.start_engine("boot-1", AfterInstall::Report);
    let status = dev.status.clone().unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || {
            let s = status.borrow();
            s.phase == Phase::Downloading && s.progress.is_some_and(|p| p >= 30)
        }),
        "not downloading: {:?}",
        status.borrow()
    );
    let asked = Instant::now();
    dev.fake.cancel(action);
    dev.wait_state(action, ActionState::Canceled);
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "the cancel took {:?}: it waited for the stalled download",
        asked.elapsed()
    );
    let cancel: Vec<_> = dev
        .fake
        .feedback(action)
        .into_iter()
        .filter(|f| f.channel == FeedbackChannel::Cancel)
        .collect();
    assert!(
        cancel.iter().any(|f| f.execution == "closed"
            && f.finished.as_deref() == Some("success")
            && f.answered == 200),
        "{cancel:#?}"
    );
    let executions = dev.executions(action);
    assert!(
        !executions
            .iter()
            .any(|e| e == "downloaded" || e == "closed"),
        "{executions:?}"
    );
    assert!(
        dev.rauc.slot_is_blank("B", IMAGE),
        "installed after a cancel"
    );
    assert!(wait_until(Duration::from_secs(5), || dev.spool_is_empty()));
    wait_idle_after(&dev, action, "canceled");
}

#[test]
fn a_cancel_before_the_first_poll_is_confirmed_without_downloading() {
    let mut dev = Device::new();
    let bundle = dev.rauc.good_bundle(IMAGE);
    let action = dev.deploy_bundle(&bundle.path, Assignment::forced());
    dev.fake.cancel(action);
    dev.start_engine("boot-1", AfterInstall::Report);
    dev.wait_state(action, ActionState::Canceled);
    let feedback = dev.fake.feedback(action);
    assert!(
        feedback
            .iter()
            .all(|f| f.channel == FeedbackChannel::Cancel),
        "{feedback:#?}"
    );
    assert!(
        feedback.iter().any(|f| f.execution == "closed"
            && f.finished.as_deref() == Some("success")
            && f.answered == 200),
        "{feedback:#?}"
    );
    assert!(dev.fake.requests_to(Route::DeploymentBase).is_empty());
    assert!(dev.fake.requests_to(Route::Artifact).is_empty());
    assert!(dev.rauc.slot_is_blank("B", IMAGE));
    assert!(dev.spool_is_empty());
}

// -- Maintenance window (rauc: test_install_maintenance_window) -----------------------------

#[test]
fn the_install_waits_for_the_maintenance_window_and_uses_the_download() {
    let mut dev = Device::new();
    let bundle = dev.rauc.good_bundle(IMAGE);
    let action = dev.deploy_bundle(
        &bundle.path,
        Assignment::forced().window(MaintenanceWindow::Unavailable),
    );
    dev.start_engine("boot-1", AfterInstall::Report);
    let status = dev.status.clone().unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || status.borrow().phase
            == Phase::Waiting),
        "not waiting: {:?}; feedback {:#?}",
        status.borrow(),
        dev.fake.feedback(action)
    );
    assert!(dev.executions(action).contains(&"downloaded".to_owned()));
    // It keeps asking while the window stays closed, and installs nothing meanwhile.
    let reads = dev.fake.requests_to(Route::DeploymentBase).len();
    assert!(wait_until(Duration::from_secs(10), || dev
        .fake
        .requests_to(Route::DeploymentBase)
        .len()
        >= reads + 3));
    assert_eq!(status.borrow().phase, Phase::Waiting);
    assert!(dev.rauc.slot_is_blank("B", IMAGE));
    assert!(
        !dev.details(action).iter().any(|d| d.contains("installing")),
        "{:?}",
        dev.details(action)
    );
    assert!(
        dev.spool().join("update.raucb").is_file(),
        "the verified bundle waits in the spool"
    );

    dev.fake
        .set_maintenance_window(action, Some(MaintenanceWindow::Available));
    dev.wait_state(action, ActionState::Finished);
    assert!(dev.rauc.slot_holds("B", &bundle.image));
    assert_eq!(
        dev.fake.requests_to(Route::Artifact).len(),
        1,
        "downloaded again"
    );
    let feedback = dev.deployment_feedback(action);
    let at = |pred: &dyn Fn(&nexa_testkit::hawkbit::Feedback) -> bool| {
        feedback
            .iter()
            .position(pred)
            .unwrap_or_else(|| panic!("{feedback:#?}"))
    };
    let downloaded = at(&|f| f.execution == "downloaded");
    let installing = at(&|f| f.details.iter().any(|d| d.contains("installing")));
    let closed = at(&|f| f.execution == "closed" && f.finished.as_deref() == Some("success"));
    assert!(
        downloaded < installing && installing < closed,
        "{feedback:#?}"
    );
    assert!(wait_until(Duration::from_secs(5), || dev.spool_is_empty()));
}

// -- Installer unavailable (rauc: test_install_bundle_no_dbus_iface) -------------------------

#[test]
fn an_unavailable_installer_fails_the_action_without_hanging() {
    let mut dev = Device::new();
    let bundle = dev.rauc.good_bundle(IMAGE);
    dev.rauc.stop_service();
    let action = dev.deploy_bundle(&bundle.path, Assignment::forced());
    let started = Instant::now();
    dev.start_engine("boot-1", AfterInstall::Report);
    dev.wait_state(action, ActionState::Error);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    let why = dev.failure_details(action);
    assert!(why.contains("RAUC is not available"), "{why}");
    assert!(dev.rauc.slot_is_blank("B", IMAGE));
    assert!(wait_until(Duration::from_secs(5), || dev.spool_is_empty()));
    wait_idle_after(&dev, action, "failure");
    // configData went without RAUC's facts.
    let attributes = dev.fake.attributes(DEVICE);
    assert_eq!(attributes.get("deviceId").map(String::as_str), Some(DEVICE));
    assert!(!attributes.contains_key("raucCompatible"), "{attributes:?}");
}

// -- More than one bundle (rauc: test_unsupported_multi_objects) ----------------------------

/// Deploys `set`, expects the action refused with `message` before anything is downloaded.
fn refused(set: DistributionSet, message: &str) {
    let mut dev = Device::new();
    let action = dev.fake.deploy(DEVICE, set, Assignment::forced());
    dev.start_engine("boot-1", AfterInstall::Report);
    dev.wait_state(action, ActionState::Error);
    let why = dev.failure_details(action);
    assert!(
        why.contains(message) && why.contains("exactly one RAUC bundle"),
        "{why}"
    );
    assert!(dev.fake.requests_to(Route::Artifact).is_empty());
    assert!(!dev.executions(action).contains(&"downloaded".to_owned()));
    assert!(dev.rauc.slot_is_blank("B", IMAGE));
    assert!(dev.spool_is_empty());
}

#[test]
fn a_deployment_with_two_artifacts_is_refused() {
    let chunk = Chunk::new("os", "rootfs", "2.0")
        .artifact(Artifact::bytes("update.raucb", b"first bundle"))
        .artifact(Artifact::bytes("extra.raucb", b"second bundle"));
    refused(
        DistributionSet::new("rootfs", "2.0").chunk(chunk),
        "1 chunk(s) with 2 artifact(s)",
    );
}

#[test]
fn a_deployment_with_two_chunks_is_refused() {
    let set = DistributionSet::new("rootfs", "2.0")
        .chunk(Chunk::new("os", "rootfs", "2.0").artifact(Artifact::bytes("update.raucb", b"os")))
        .chunk(
            Chunk::new("application", "app", "1.0").artifact(Artifact::bytes("app.raucb", b"app")),
        );
    refused(set, "2 chunk(s) with 2 artifact(s)");
}

// -- configData (rauc: test_identify; DDI.md P4) --------------------------------------------

#[test]
fn config_data_is_sent_at_start_and_again_when_the_server_asks() {
    let mut dev = Device::new();
    dev.start_engine("boot-1", AfterInstall::Report);
    let sent = || {
        dev.fake
            .requests_to(Route::ConfigData)
            .iter()
            .filter(|r| r.status == 200)
            .count()
    };
    assert!(wait_until(Duration::from_secs(10), || sent() == 1));
    let attributes = dev.fake.attributes(DEVICE);
    for (key, want) in [
        ("deviceId", Some(DEVICE)),
        ("raucCompatible", Some("nexa-test-device")),
        ("raucBootSlot", Some("A")),
    ] {
        assert_eq!(
            attributes.get(key).map(String::as_str),
            want,
            "{attributes:?}"
        );
    }
    assert!(attributes.contains_key("raucVariant"), "{attributes:?}");
    assert!(!dev.fake.attributes_requested(DEVICE));

    // The next poll shows no configData link: nothing is sent.
    assert!(wait_until(Duration::from_secs(20), || dev
        .fake
        .polls(DEVICE)
        >= 2));
    assert!(
        !wait_until(Duration::from_millis(500), || sent() > 1),
        "configData sent unasked"
    );

    dev.fake.request_attributes(DEVICE);
    assert!(
        wait_until(Duration::from_secs(20), || sent() == 2),
        "configData not sent again; polls: {}",
        dev.fake.polls(DEVICE)
    );
    assert!(!dev.fake.attributes_requested(DEVICE));
    assert_eq!(dev.fake.attributes(DEVICE), attributes);
}

// -- 410 Gone (DDI.md B4) ------------------------------------------------------------------

/// An action the operator cancels and force-quits while its download stalls: the device is
/// never shown the cancel, and its next feedback is answered 410. Returns the device (engine
/// with `active_poll`) and the action once a feedback was refused with 410.
fn gone_during_the_download(active_poll: Duration, stall_at: f64) -> (Device, u64) {
    let mut dev = Device::new();
    dev.active_poll = active_poll;
    let bundle = dev.rauc.good_bundle(IMAGE);
    let at = (bundle.file_size() as f64 * stall_at) as u64;
    dev.fake
        .inject_download(DownloadFault::stall_after(at, Duration::from_millis(1500)));
    let action = dev.deploy_bundle(&bundle.path, Assignment::forced());
    dev.start_engine("boot-1", AfterInstall::Report);
    assert!(wait_until(Duration::from_secs(30), || !dev
        .fake
        .requests_to(Route::Artifact)
        .is_empty()));
    dev.fake.cancel_and_force_quit(action);
    assert!(
        wait_until(Duration::from_secs(30), || dev
            .fake
            .feedback(action)
            .iter()
            .any(|f| f.answered == 410)),
        "{:#?}",
        dev.fake.feedback(action)
    );
    (dev, action)
}

#[test]
fn a_gone_action_gets_no_more_feedback_and_the_next_action_runs() {
    // Cancel checks and progress reports only every 5 s: the first feedback after the
    // force-quit is `downloaded`.
    let (dev, first) = gone_during_the_download(Duration::from_secs(5), 0.0);
    let gone = dev.fake.feedback(first);
    assert_eq!(
        gone.last().map(|f| (f.execution.as_str(), f.answered)),
        Some(("downloaded", 410)),
        "{gone:#?}"
    );
    assert!(wait_until(Duration::from_secs(5), || dev.spool_is_empty()));
    assert!(
        dev.rauc.slot_is_blank("B", IMAGE),
        "a gone action installed"
    );
    let gone_at = dev
        .fake
        .requests_to(Route::DeploymentFeedback)
        .into_iter()
        .find(|r| r.status == 410)
        .expect("the 410 is logged")
        .at;

    // The engine goes on polling: a new action is handled normally.
    let bundle = dev.rauc.good_bundle(IMAGE);
    let second = dev.deploy_bundle(&bundle.path, Assignment::forced());
    dev.wait_state(second, ActionState::Finished);
    assert!(dev.rauc.slot_holds("B", &bundle.image));
    assert_eq!(
        dev.fake.feedback(first),
        gone,
        "feedback for the gone action after its 410"
    );
    let later: Vec<_> = requests_about(&dev, first)
        .into_iter()
        .filter(|r| r.at > gone_at)
        .collect();
    assert!(later.is_empty(), "{later:#?}");
    assert_eq!(dev.fake.action(first).state, ActionState::Canceled);
}

/// A 410 on a download progress report stops the download: nothing more is reported for the
/// action (DDI.md B4: 410 is terminal for the action).
#[test]
fn a_410_on_a_progress_report_ends_the_action_on_the_device() {
    // The first cancel check (200 ms in) finds the download stalled at 60 % and reports it.
    let (dev, action) = gone_during_the_download(Duration::from_millis(200), 0.6);
    let feedback = dev.fake.feedback(action);
    let gone = feedback.iter().position(|f| f.answered == 410).unwrap();
    assert!(
        feedback[gone].progress.is_some(),
        "the scenario expects the 410 on a progress report: {feedback:#?}"
    );
    // Past the stall: a device that stopped sends nothing more.
    let more = wait_until(Duration::from_secs(4), || {
        dev.fake.feedback(action).len() > gone + 1
    });
    assert!(
        !more,
        "feedback after the 410: {:#?}",
        &dev.fake.feedback(action)[gone..]
    );
}

/// After a 410 ends an action, `nexa-agent status` no longer shows it as in progress.
#[test]
fn a_gone_action_leaves_the_status_idle() {
    let (dev, action) = gone_during_the_download(Duration::from_secs(5), 0.0);
    assert!(wait_until(Duration::from_secs(5), || dev.spool_is_empty()));
    let status = dev.status.clone().unwrap();
    assert!(
        wait_until(Duration::from_secs(3), || status.borrow().phase
            == Phase::Idle),
        "action {action} is gone, the status says {:?}",
        status.borrow()
    );
}

/// When hawkBit answers the "installing" report with 410 (the action was closed after the
/// device last read it) RAUC is never called.
#[test]
fn a_410_on_the_installing_report_stops_the_install() {
    let mut dev = Device::new();
    let bundle = dev.rauc.good_bundle(IMAGE);
    let action = dev.deploy_bundle(
        &bundle.path,
        Assignment::forced().window(MaintenanceWindow::Unavailable),
    );
    dev.start_engine("boot-1", AfterInstall::Report);
    let status = dev.status.clone().unwrap();
    assert!(wait_until(Duration::from_secs(30), || status
        .borrow()
        .phase
        == Phase::Waiting));
    // From now on hawkBit refuses every report for the action, as it does once the action
    // was closed; the window opens, so the next report is "installing".
    dev.fake
        .inject(Fault::gone().on(Route::DeploymentFeedback).times(1000));
    dev.fake
        .set_maintenance_window(action, Some(MaintenanceWindow::Available));
    assert!(wait_until(Duration::from_secs(30), || dev
        .fake
        .requests_to(Route::DeploymentFeedback)
        .iter()
        .any(|r| r.status == 410)));
    let installed = wait_until(Duration::from_secs(5), || {
        !dev.rauc.slot_is_blank("B", IMAGE)
    });
    assert!(!installed, "RAUC installed the bundle of a gone action");
}
