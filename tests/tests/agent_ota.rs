//! `nexa-agent run` with hawkBit provisioned by the bridge: the real agent binary enrolls at a
//! real bridge (which creates the device's target in the fake hawkBit and hands the device its
//! target token), holds its MQTT session with a real mosquitto, polls hawkBit with nothing
//! configured on the device but the data directory, and installs the assigned bundle through
//! the real RAUC service on a private bus. `status` shows the update engine's state.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::time::Duration;

use nexa_testkit::hawkbit::{
    self, ActionState, Artifact, Assignment, DistributionSet, FakeHawkbit,
};
use nexa_testkit::mosquitto::Broker;
use nexa_testkit::rauc::RaucSystem;
use nexa_testkit::{KillOnDrop, TestServer, wait_until};

const DEVICE: &str = "dev-ota-run";

#[test]
fn run_installs_an_assigned_bundle_and_status_shows_it() {
    let fake = FakeHawkbit::start();
    fake.set_polling_sleep(Duration::from_secs(10));
    let tmp = tempfile::tempdir().unwrap();
    let password = tmp.path().join("hawkbit-password");
    std::fs::write(&password, hawkbit::PASSWORD).unwrap();
    let server = TestServer::start_with(
        &[],
        &[
            ("HAWKBIT_URL", &fake.url),
            ("HAWKBIT_USER", hawkbit::USER),
            ("HAWKBIT_PASSWORD_FILE", password.to_str().unwrap()),
        ],
    );
    let broker = Broker::start(&server);
    server.register(&[DEVICE]);
    let certs = tmp.path().join("certs");
    let out = server.agent(DEVICE, &certs).arg("enroll").output().unwrap();
    assert!(out.status.success(), "{}", nexa_testkit::text(&out));
    assert!(
        fake.security_token(DEVICE).is_some(),
        "the bridge created the target"
    );

    let rauc = RaucSystem::start();
    let bundle = rauc.good_bundle(1 << 20);
    let action = fake.deploy(
        DEVICE,
        DistributionSet::single(
            "rootfs",
            "3.1",
            Artifact::bytes("rootfs.raucb", &std::fs::read(&bundle.path).unwrap()),
        ),
        Assignment::forced(),
    );

    let log_path = tmp.path().join("agent.log");
    let mut cmd = server.agent(DEVICE, &certs);
    cmd.env(
        "NEXA_MQTT_URL",
        format!("mqtts://127.0.0.1:{}", broker.port),
    )
    .env("NEXA_DATA_DIR", tmp.path().join("data"))
    .env("NEXA_AFTER_INSTALL", "report");
    rauc.bus_env(&mut cmd);
    let agent = KillOnDrop(
        cmd.arg("run")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap(),
    );
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    let done = wait_until(Duration::from_secs(60), || {
        fake.action(action).state == ActionState::Finished
    });
    assert!(
        done,
        "action is {:?}; feedback {:#?}\n--- agent\n{}",
        fake.action(action).state,
        fake.feedback(action),
        log()
    );
    assert!(
        rauc.slot_holds("B", &bundle.image),
        "slot B holds the bundle's image"
    );
    let attrs = fake.attributes(DEVICE);
    assert_eq!(attrs.get("deviceId").map(String::as_str), Some(DEVICE));
    assert_eq!(attrs.get("raucBootSlot").map(String::as_str), Some("A"));
    assert!(attrs.contains_key("wgAddress"), "{attrs:?}");

    let out = server
        .agent(DEVICE, &certs)
        .args(["status", "--json"])
        .output()
        .unwrap();
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ota = &st["daemon"]["ota"];
    assert_eq!(ota["phase"], "idle", "{st}");
    assert_eq!(ota["last_result"], format!("{action}: success"), "{st}");
    let text = server.agent(DEVICE, &certs).arg("status").output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("updates:") && text.contains("success"),
        "{text}"
    );
    assert!(
        std::fs::read_dir(tmp.path().join("data/spool")).map_or(true, |mut d| d.next().is_none()),
        "spool emptied"
    );
    drop(agent);
}
