//! The update engine when the server or the timing is unkind (see `common` for the simulated
//! device): a cancel during the RAUC install is rejected and the install completes; hawkBit's
//! 429 is waited out as its `Retry-After` asks; a server that is down for a while is polled
//! again until it answers; a download-only action ends at `downloaded` without installing; a
//! soft (`attempt`) action is installed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::Device;
use nexa_agent::hawkbit::settings::AfterInstall;
use nexa_agent::hawkbit::status::Phase;
use nexa_testkit::hawkbit::{ActionState, Assignment, DownMode, Fault, FeedbackChannel, Route};
use nexa_testkit::wait_until;

#[test]
fn a_cancel_during_the_install_is_rejected_and_the_install_completes() {
    let mut dev = Device::new();
    dev.active_poll = Duration::from_millis(50);
    let bundle = dev.rauc.good_bundle(192 << 20);
    let action = dev.deploy_bundle(&bundle.path, Assignment::forced());
    dev.start_engine("boot-1", AfterInstall::Report);
    let status = dev.status.clone().unwrap();
    assert!(
        wait_until(Duration::from_secs(60), || status.borrow().phase
            == Phase::Installing),
        "never installing: {:?}",
        status.borrow()
    );
    dev.fake.cancel(action);
    dev.wait_state(action, ActionState::Finished);
    let rejected = dev
        .fake
        .feedback(action)
        .into_iter()
        .filter(|f| f.channel == FeedbackChannel::Cancel)
        .any(|f| f.execution == "rejected");
    assert!(rejected, "{:#?}", dev.fake.feedback(action));
    assert!(dev.rauc.slot_holds("B", &bundle.image));
}

#[test]
fn rate_limits_and_an_unreachable_server_are_waited_out() {
    let mut dev = Device::new();
    let bundle = dev.rauc.good_bundle(1 << 20);
    let action = dev.deploy_bundle(&bundle.path, Assignment::forced());
    dev.fake
        .inject(Fault::too_many_requests(2).times(1).on(Route::Poll));
    dev.fake.down_for(Duration::from_secs(3), DownMode::Close);
    let started = Instant::now();
    dev.start_engine("boot-1", AfterInstall::Report);
    dev.wait_state(action, ActionState::Finished);
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "finished while the server was down"
    );
    let polls = dev.fake.requests_to(Route::Poll);
    let limited = polls
        .iter()
        .position(|r| r.status == 429)
        .expect("the 429 was served");
    let next = polls.get(limited + 1).expect("a poll after the 429");
    let waited = next
        .at
        .duration_since(polls[limited].at)
        .unwrap_or_default();
    assert!(
        waited >= Duration::from_millis(1900),
        "polled again after {waited:?}, Retry-After said 2 s"
    );
}

#[test]
fn download_only_ends_at_downloaded_and_soft_actions_install() {
    let mut dev = Device::new();
    let bundle = dev.rauc.good_bundle(1 << 20);
    let only = dev.deploy_bundle(&bundle.path, Assignment::download_only());
    dev.start_engine("boot-1", AfterInstall::Report);
    dev.wait_state(only, ActionState::Downloaded);
    assert!(
        dev.rauc.slot_is_blank("B", 1 << 20),
        "download-only installs nothing"
    );
    assert!(wait_until(Duration::from_secs(5), || dev.spool_is_empty()));

    let soft = dev.deploy_bundle(&bundle.path, Assignment::soft());
    dev.wait_state(soft, ActionState::Finished);
    assert!(dev.rauc.slot_holds("B", &bundle.image));
}
