//! What an enrollment writes under `/certs` is a working MQTT identity: a real mosquitto with
//! `require_certificate` and `use_identity_as_username`, trusting only the bridge's root,
//! accepts the device's key with its full chain as the device id, and refuses the leaf alone
//! and certificates from another CA.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use nexa_testkit::mosquitto::{Broker, ClientFiles};
use nexa_testkit::{TestServer, text};

fn enrolled_device(server: &TestServer, id: &str, dir: &Path) -> std::path::PathBuf {
    server.register(&[id]);
    let certs = dir.join(id);
    let out = server.agent(id, &certs).arg("enroll").output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    certs
}

/// device.crt followed by ca-chain.crt: what the agent presents in the TLS handshake.
fn full_chain(certs: &Path, dir: &Path) -> ClientFiles {
    let chain = dir.join("chain.pem");
    let mut pem = std::fs::read_to_string(certs.join("device.crt")).unwrap();
    pem.push_str(&std::fs::read_to_string(certs.join("ca-chain.crt")).unwrap());
    std::fs::write(&chain, pem).unwrap();
    ClientFiles {
        chain,
        key: certs.join("device.key"),
    }
}

#[test]
fn the_enrolled_identity_is_accepted_by_a_real_broker_as_the_device_id() {
    let server = TestServer::start();
    let broker = Broker::start(&server);
    let tmp = tempfile::tempdir().unwrap();
    let certs = enrolled_device(&server, "dev-mqtt-1", tmp.path());
    let root = server.root_cert_path();

    let sub = broker.subscribe(&root, "v1/devices/me/telemetry", 1, 20);
    let payload = r#"{"ts":1700000000000,"values":{"uptime":42}}"#;
    let out = broker.publish(
        &root,
        &full_chain(&certs, tmp.path()),
        "dev-mqtt-1",
        "v1/devices/me/telemetry",
        payload,
    );
    assert!(out.status.success(), "{}\n{}", text(&out), broker.log());
    let got = sub.wait_with_output().unwrap();
    let line = String::from_utf8_lossy(&got.stdout);
    assert_eq!(line.trim(), format!("v1/devices/me/telemetry {payload}"));
    assert!(
        broker.log().contains("u'dev-mqtt-1'"),
        "the certificate's CN is the MQTT username:\n{}",
        broker.log()
    );
}

#[test]
fn the_leaf_alone_and_a_foreign_ca_are_refused() {
    let server = TestServer::start();
    let broker = Broker::start(&server);
    let tmp = tempfile::tempdir().unwrap();
    let certs = enrolled_device(&server, "dev-mqtt-2", tmp.path());
    let root = server.root_cert_path();

    // Without the issuing CA the broker cannot build the chain to the root it trusts.
    let leaf_only = ClientFiles {
        chain: certs.join("device.crt"),
        key: certs.join("device.key"),
    };
    let out = broker.publish(
        &root,
        &leaf_only,
        "dev-mqtt-2",
        "v1/devices/me/telemetry",
        "{}",
    );
    assert!(
        !out.status.success(),
        "leaf-only must be refused: {}",
        text(&out)
    );

    // Same device id, certificate from another bridge's CA.
    let other = TestServer::start();
    let other_dir = tmp.path().join("other");
    let foreign = enrolled_device(&other, "dev-mqtt-2", &other_dir);
    let out = broker.publish(
        &root,
        &full_chain(&foreign, &other_dir),
        "dev-mqtt-2",
        "v1/devices/me/telemetry",
        "{}",
    );
    assert!(
        !out.status.success(),
        "foreign CA must be refused: {}",
        text(&out)
    );
    assert!(
        broker.log().contains("certificate verify failed"),
        "{}",
        broker.log()
    );
}
