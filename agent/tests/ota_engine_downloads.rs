//! The update engine's downloads end to end (see `common` for the simulated device), after
//! the download cases of rauc-hawkbit-updater's suite and DDI.md §4–§5: a corrupt artifact
//! fails the action before RAUC sees it; an artifact without sha256 is verified with sha1
//! (and fails when it does not match); a download cut twice is resumed with `Range` and
//! `If-Range`, reporting progress; a server that goes down in the middle of a download is
//! waited out and the download resumed; a spool that cannot be created fails the action and
//! names its path; an artifact stored outside hawkBit is fetched without the credentials. Each asserts the action state and feedback hawkBit recorded and what the
//! device was left with (slot B, spool).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, SystemTime};

use common::{DEVICE, Device};
use nexa_agent::hawkbit::download::Spool;
use nexa_agent::hawkbit::settings::AfterInstall;
use nexa_testkit::hawkbit::{
    ActionState, Artifact, Assignment, DistributionSet, DownMode, DownloadFault, Hashes, Route,
};
use nexa_testkit::wait_until;

/// Image size of the bundles: small, so each test takes a second or two.
const IMAGE: u64 = 1 << 20;

/// Deploys `artifact` (named `update.raucb`) built from the bytes of a good bundle.
fn deploy(dev: &Device, artifact: Artifact) -> u64 {
    dev.fake.deploy(
        DEVICE,
        DistributionSet::single("rootfs", "2.0", artifact),
        Assignment::forced(),
    )
}

/// Nothing reached RAUC and nothing is left behind.
fn assert_nothing_installed(dev: &Device, action: u64) {
    assert!(
        dev.rauc.slot_is_blank("B", IMAGE),
        "slot B was written; feedback: {:#?}",
        dev.fake.feedback(action)
    );
    assert!(
        !dev.details(action).iter().any(|d| d.contains("installing")),
        "{:?}",
        dev.details(action)
    );
    assert!(
        !dev.executions(action).contains(&"downloaded".to_owned()),
        "{:?}",
        dev.executions(action)
    );
    assert!(
        wait_until(Duration::from_secs(5), || dev.spool_is_empty()),
        "the spool keeps {:?}",
        std::fs::read_dir(dev.spool()).map(|d| d.count())
    );
}

/// `bytes=N-` → N.
fn range_start(value: Option<&str>) -> Option<u64> {
    value?
        .strip_prefix("bytes=")?
        .strip_suffix('-')?
        .parse()
        .ok()
}

#[test]
fn a_hash_mismatch_fails_the_action_and_rauc_never_sees_the_bundle() {
    let mut dev = Device::new();
    let bundle = dev.rauc.good_bundle(IMAGE);
    let bytes = std::fs::read(&bundle.path).unwrap();
    let action = deploy(&dev, Artifact::bytes("update.raucb", &bytes).corrupted());
    dev.start_engine("boot-1", AfterInstall::Report);
    dev.wait_state(action, ActionState::Error);
    let why = dev.failure_details(action);
    let announced = Hashes::of(&bytes).sha256;
    assert!(
        why.contains("sha256") && why.contains(&announced) && why.contains("update.raucb"),
        "the failure should name the sha256 mismatch: {why}"
    );
    assert_nothing_installed(&dev, action);
}

#[test]
fn an_artifact_without_sha256_is_verified_with_sha1_and_installed() {
    let mut dev = Device::new();
    let bundle = dev.rauc.good_bundle(IMAGE);
    let bytes = std::fs::read(&bundle.path).unwrap();
    let action = deploy(
        &dev,
        Artifact::bytes("update.raucb", &bytes).without_sha256(),
    );
    dev.start_engine("boot-1", AfterInstall::Report);
    dev.wait_state(action, ActionState::Finished);
    let downloaded: Vec<String> = dev
        .deployment_feedback(action)
        .into_iter()
        .filter(|f| f.execution == "downloaded")
        .flat_map(|f| f.details)
        .collect();
    assert!(
        downloaded.iter().any(|d| d.contains("verified (sha1)")),
        "{downloaded:?}"
    );
    assert!(dev.rauc.slot_holds("B", &bundle.image));
    assert!(wait_until(Duration::from_secs(5), || dev.spool_is_empty()));
}

#[test]
fn a_corrupt_artifact_without_sha256_fails_on_its_sha1() {
    let mut dev = Device::new();
    let bundle = dev.rauc.good_bundle(IMAGE);
    let bytes = std::fs::read(&bundle.path).unwrap();
    let artifact = Artifact::bytes("update.raucb", &bytes)
        .without_sha256()
        .corrupted();
    let action = deploy(&dev, artifact);
    dev.start_engine("boot-1", AfterInstall::Report);
    dev.wait_state(action, ActionState::Error);
    let why = dev.failure_details(action);
    assert!(
        why.contains("sha1") && why.contains(&Hashes::of(&bytes).sha1),
        "the failure should name the sha1 mismatch: {why}"
    );
    assert_nothing_installed(&dev, action);
}

#[test]
fn a_download_cut_twice_is_resumed_with_ranges_reporting_progress() {
    let mut dev = Device::new();
    dev.active_poll = Duration::from_millis(50);
    let bundle = dev.rauc.good_bundle(IMAGE);
    let bytes = std::fs::read(&bundle.path).unwrap();
    let size = bytes.len() as u64;
    // About half a second for the bundle, so progress reports fall in between.
    dev.fake.set_download_rate(Some(2 << 20));
    dev.fake
        .inject_download(DownloadFault::drop_after(size / 4).times(2));
    let action = dev.deploy_bundle(&bundle.path, Assignment::forced());
    dev.start_engine("boot-1", AfterInstall::Report);
    dev.wait_state(action, ActionState::Finished);

    let downloads = dev.fake.requests_to(Route::Artifact);
    let statuses: Vec<u16> = downloads.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 206, 206], "{downloads:#?}");
    assert_eq!(downloads[0].header("range"), None);
    let etag = format!("\"{}\"", Hashes::of(&bytes).sha1);
    let mut resumed_at = 0;
    for r in &downloads[1..] {
        let from = range_start(r.header("range")).expect("a Range: bytes=N- request");
        assert!(
            from > resumed_at && from < size,
            "resumed at {from} after {resumed_at} (size {size})"
        );
        assert_eq!(r.header("if-range"), Some(etag.as_str()), "{r:#?}");
        resumed_at = from;
    }

    let progress: Vec<i64> = dev
        .deployment_feedback(action)
        .into_iter()
        .filter(|f| f.execution == "proceeding")
        .filter_map(|f| f.progress)
        .map(|(cnt, of)| {
            assert_eq!(of, Some(100));
            cnt
        })
        .collect();
    assert!(
        !progress.is_empty(),
        "no progress reported: {:#?}",
        dev.deployment_feedback(action)
    );
    assert!(
        progress.windows(2).all(|w| w[0] < w[1]) && progress.iter().all(|p| (1..100).contains(p)),
        "{progress:?}"
    );
    let executions = dev.executions(action);
    assert_eq!(
        executions.iter().filter(|e| *e == "downloaded").count(),
        1,
        "{executions:?}"
    );
    assert!(dev.rauc.slot_holds("B", &bundle.image));
    assert!(wait_until(Duration::from_secs(5), || dev.spool_is_empty()));
}

#[test]
fn a_server_down_during_the_download_is_waited_out_and_the_download_resumed() {
    let mut dev = Device::new();
    let bundle = dev.rauc.good_bundle(IMAGE);
    let size = bundle.file_size();
    // The download stops half way, long enough for the server to go down meanwhile.
    dev.fake.inject_download(DownloadFault::stall_after(
        size / 2,
        Duration::from_secs(30),
    ));
    let action = dev.deploy_bundle(&bundle.path, Assignment::forced());
    dev.start_engine_with("boot-1", AfterInstall::Report, |p| {
        // Resume attempts (at most 200 ms apart) that outlast the outage.
        p.timing.download.attempts = 100;
    });
    let status = dev.status.clone().unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || status
            .borrow()
            .progress
            .is_some_and(|p| p >= 45)),
        "the download never got half way: {:?}",
        status.borrow()
    );
    let outage = Duration::from_millis(1500);
    let went_down = SystemTime::now();
    dev.fake.down_for(outage, DownMode::Close);
    dev.wait_state(action, ActionState::Finished);

    let downloads = dev.fake.requests_to(Route::Artifact);
    let statuses: Vec<u16> = downloads.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 206], "{downloads:#?}");
    let resume = &downloads[1];
    let from = range_start(resume.header("range")).expect("a Range: bytes=N- request");
    assert!(
        from >= size / 2 && from < size,
        "resumed at {from} of {size}"
    );
    assert!(
        resume.at.duration_since(went_down).unwrap_or_default() >= outage,
        "resumed before the server was back"
    );
    assert!(
        !dev.deployment_feedback(action)
            .iter()
            .any(|f| f.finished.as_deref() == Some("failure")),
        "{:#?}",
        dev.deployment_feedback(action)
    );
    assert!(dev.rauc.slot_holds("B", &bundle.image));
    assert!(wait_until(Duration::from_secs(5), || dev.spool_is_empty()));
}

#[test]
fn a_stalled_download_is_dropped_after_the_stall_timeout_and_resumed() {
    let mut dev = Device::new();
    dev.stall_timeout = Duration::from_secs(2);
    let bundle = dev.rauc.good_bundle(IMAGE);
    let size = bundle.file_size();
    // Half way the server stops sending, without closing the connection, for longer than
    // the test: only the stall timeout gets the device out of it.
    dev.fake.inject_download(DownloadFault::stall_after(
        size / 2,
        Duration::from_secs(120),
    ));
    let action = dev.deploy_bundle(&bundle.path, Assignment::forced());
    let started = std::time::Instant::now();
    dev.start_engine("boot-1", AfterInstall::Report);
    dev.wait_state(action, ActionState::Finished);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}: the stall was waited out, not timed out",
        started.elapsed()
    );

    let downloads = dev.fake.requests_to(Route::Artifact);
    let statuses: Vec<u16> = downloads.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 206], "{downloads:#?}");
    let from = range_start(downloads[1].header("range")).expect("a Range: bytes=N- request");
    assert!(
        from >= size / 2 && from < size,
        "resumed at {from} of {size}"
    );
    assert!(dev.rauc.slot_holds("B", &bundle.image));
    assert!(wait_until(Duration::from_secs(5), || dev.spool_is_empty()));
}

#[test]
fn a_spool_that_cannot_be_created_fails_the_action_naming_its_path() {
    let mut dev = Device::new();
    let bundle = dev.rauc.good_bundle(IMAGE);
    let action = dev.deploy_bundle(&bundle.path, Assignment::forced());
    let file = dev.tmp.path().join("not-a-directory");
    std::fs::write(&file, b"the spool's parent is a file").unwrap();
    let spool = file.join("spool");
    let spool2 = spool.clone();
    dev.start_engine_with("boot-1", AfterInstall::Report, move |p| {
        p.spool = Spool::new(spool2);
    });
    dev.wait_state(action, ActionState::Error);
    let why = dev.failure_details(action);
    assert!(
        why.contains(&spool.display().to_string()),
        "the failure should name the spool {}: {why}",
        spool.display()
    );
    assert!(
        dev.fake.requests_to(Route::Artifact).is_empty(),
        "downloaded with nowhere to put it"
    );
    assert!(dev.rauc.slot_is_blank("B", IMAGE));
    assert!(!dev.executions(action).contains(&"downloaded".to_owned()));
    assert_eq!(
        std::fs::read(&file).unwrap(),
        b"the spool's parent is a file"
    );
}

/// An artifact served from storage outside hawkBit's controller API (hawkBit's artifact URL
/// handler pointing at an object store) is fetched without the device's credentials: the
/// store refuses foreign `Authorization` headers, and the token must not leak there anyway.
#[test]
fn an_artifact_outside_hawkbit_is_fetched_without_credentials() {
    let mut dev = Device::new();
    let bundle = dev.rauc.good_bundle(IMAGE);
    let bytes = std::fs::read(&bundle.path).unwrap();
    let action = deploy(&dev, Artifact::bytes("update.raucb", &bytes).external());
    dev.start_engine("boot-1", AfterInstall::Report);
    dev.wait_state(action, ActionState::Finished);
    assert!(dev.rauc.slot_holds("B", &bundle.image));
    assert!(dev.fake.requests_to(Route::Artifact).is_empty());
    let downloads = dev.fake.requests_to(Route::ExternalArtifact);
    assert!(!downloads.is_empty());
    for r in &downloads {
        assert!(
            r.header("authorization").is_none(),
            "credentials sent to {}",
            r.path
        );
    }
    let polls = dev.fake.requests_to(Route::Poll);
    assert!(
        polls.iter().all(|r| r.header("authorization").is_some()),
        "hawkBit itself still gets them"
    );
}
