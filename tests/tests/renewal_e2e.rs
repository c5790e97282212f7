//! Renewal end to end under a short certificate lifetime: `nexa-agent run` on a real bridge
//! (built-in CA, 90 s certificates) and a real mosquitto renews its certificate by itself,
//! for a new key, over mTLS; its MQTT session comes back with the new certificate; the old
//! key is gone from the device.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nexa_testkit::mosquitto::Broker;
use nexa_testkit::{KillOnDrop, TestServer, text, wait_until};

fn flag(certs: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(certs.join("enrolled")).unwrap()).unwrap()
}

/// Every file under `dir` (the certs directory has no subdirectories but the staging one).
fn all_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(all_bytes(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path.display().to_string(), bytes));
        }
    }
    out
}

/// A bridge with 90 s certificates, its broker, and `nexa-agent run` for `id` logging to
/// `dir/agent.log` with its certs in `dir/certs`.
fn setup(id: &str, dir: &Path) -> (TestServer, Broker, KillOnDrop) {
    let server = TestServer::start_with(&["--cert-lifetime", "90s"], &[]);
    let broker = Broker::start(&server);
    server.register(&[id]);
    let agent = KillOnDrop(
        server
            .agent(id, &dir.join("certs"))
            .env(
                "NEXA_MQTT_URL",
                format!("mqtts://127.0.0.1:{}", broker.port),
            )
            .arg("run")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("agent.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    (server, broker, agent)
}

#[test]
fn the_agent_renews_by_itself_reconnects_with_the_new_certificate_and_drops_the_old_key() {
    let id = "dev-renew-1";
    let tmp = tempfile::tempdir().unwrap();
    let (server, broker, agent) = setup(id, tmp.path());
    let certs = tmp.path().join("certs");
    let log_path = tmp.path().join("agent.log");
    let agent_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let sessions = || broker.log().matches(&format!("u'{id}'")).count();
    assert!(
        wait_until(Duration::from_secs(30), || sessions() == 1),
        "{}\n--- broker\n{}",
        agent_log(),
        broker.log()
    );
    let first = flag(&certs)["serial"].as_str().unwrap().to_owned();
    let old_key = std::fs::read(certs.join("device.key")).unwrap();
    let status = server
        .agent(id, &certs)
        .args(["status", "--json"])
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(
        status["certificate"]["renew_at"].is_string(),
        "status shows when it renews: {status}"
    );

    // 90 s certificates (backdated 9 s): due between about 40 and 57 s after issue.
    let renewed = wait_until(Duration::from_secs(150), || {
        flag(&certs)["serial"].as_str() != Some(first.as_str())
    });
    assert!(
        renewed,
        "no renewal\n{}\n--- server\n{}",
        agent_log(),
        server.log()
    );
    let second = flag(&certs)["serial"].as_str().unwrap().to_owned();
    assert_eq!(server.device(id)["cert_serial"], second.as_str());
    assert_eq!(server.device(id)["state"], "enrolled");

    // The MQTT session came back with the new certificate: a new session at the broker, and
    // the agent stays connected.
    assert!(
        wait_until(Duration::from_secs(30), || sessions() >= 2),
        "no new session after the renewal\n{}\n--- broker\n{}",
        agent_log(),
        broker.log()
    );
    let out = server
        .agent(id, &certs)
        .args(["status", "--json"])
        .output()
        .unwrap();
    let status: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("status: {}", text(&out)));
    assert_eq!(status["certificate"]["serial"], second.as_str(), "{status}");

    // The old key is gone: a new key in device.key, nothing staged, no copy anywhere.
    let new_key = std::fs::read(certs.join("device.key")).unwrap();
    assert_ne!(new_key, old_key, "rekeyed");
    for (path, bytes) in all_bytes(&certs) {
        assert!(
            !bytes
                .windows(old_key.len())
                .any(|w| w == old_key.as_slice()),
            "the old key is still in {path}"
        );
        assert!(
            !path.ends_with(".new") && !path.ends_with("renew.commit"),
            "left behind: {path}"
        );
    }
    let audit = server.cli_ok(&["audit", "--device", id, "--json"]);
    assert!(audit.contains("device.renewed"), "{audit}");
    drop(agent);
}

#[test]
fn a_decommissioned_device_learns_it_at_renewal_and_marks_its_profile_unusable() {
    let id = "dev-renew-2";
    let tmp = tempfile::tempdir().unwrap();
    let (server, _broker, mut agent) = setup(id, tmp.path());
    let certs = tmp.path().join("certs");
    let log_path = tmp.path().join("agent.log");
    let agent_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(30), || certs.join("enrolled").is_file()),
        "{}",
        agent_log()
    );
    let out = server.cli(&["device", "decommission", id]);
    assert!(out.status.success(), "{}", text(&out));

    // At its next renewal the bridge answers 403 device_decommissioned.
    let status = || {
        let out = server
            .agent(id, &certs)
            .args(["status", "--json"])
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap_or_default()
    };
    assert!(
        wait_until(Duration::from_secs(150), || status()["state"] == "revoked"),
        "the agent did not mark itself revoked: {}\n{}",
        status(),
        agent_log()
    );
    assert!(certs.join("revoked").is_file());
    // The daemon keeps running (it reports its state) but no longer renews or brings the
    // tunnel up; a later `wg up` is refused.
    assert!(agent.0.try_wait().unwrap().is_none(), "{}", agent_log());
    let out = server
        .agent(id, &certs)
        .args(["wg", "up"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let renewals = server.cli_ok(&["audit", "--device", id, "--json"]);
    assert!(!renewals.contains("device.renewed"), "{renewals}");
}
