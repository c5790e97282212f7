//! End to end: the real `nexa-agent` binary enrolling against a real `nexa-server`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nexa_testkit::proxy::HoldingProxy;
use nexa_testkit::{TestServer, agent_command, text, wait_until};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Every file of a certs directory with its bytes (the staging area excluded).
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn flag(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("enrolled")).unwrap()).unwrap()
}

fn status_json(server: &TestServer, id: &str, dir: &Path) -> (i32, serde_json::Value) {
    let out = server
        .agent(id, dir)
        .args(["status", "--json"])
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out))),
    )
}

/// A server with `id` registered and enrolled by the agent into a fresh certs directory.
fn enrolled(id: &str) -> (TestServer, tempfile::TempDir, std::path::PathBuf) {
    let server = TestServer::start();
    server.register(&[id]);
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("certs");
    let out = server.agent(id, &certs).arg("enroll").output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    (server, tmp, certs)
}

#[test]
fn first_enrollment_writes_a_complete_verified_set() {
    let server = TestServer::start();
    server.register(&["dev-1"]);
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("certs");

    let out = server
        .agent("dev-1", &certs)
        .arg("enroll")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("201 Created"), "{stdout}");
    assert!(
        stdout.contains("verified: certificate chain ends in the pinned root"),
        "{stdout}"
    );

    for (file, want) in [
        ("device.key", 0o600),
        ("wg0.conf", 0o600),
        ("device.crt", 0o644),
        ("ca-chain.crt", 0o644),
        ("enrolled", 0o644),
    ] {
        assert_eq!(mode(&certs.join(file)), want, "{file}");
    }
    assert!(
        !certs.join(".staging").exists(),
        "staging is removed after success"
    );

    let f = flag(&certs);
    let device = server.device("dev-1");
    assert_eq!(f["device_id"], "dev-1");
    assert_eq!(f["address"], device["address"]);
    assert_eq!(f["serial"], device["cert_serial"]);
    assert_eq!(f["root_fingerprint"], server.fingerprint.as_str());
    assert_eq!(
        f["address"], "10.8.0.2/24",
        "the gateway holds .1, the first device gets .2"
    );

    let wg = std::fs::read_to_string(certs.join("wg0.conf")).unwrap();
    assert!(wg.lines().any(|l| l.starts_with("PrivateKey = ")), "{wg}");
    assert!(wg.contains("Address = 10.8.0.2/24"), "{wg}");
    let gateway_key =
        std::fs::read_to_string(server.data_dir.join("wireguard/public.key")).unwrap();
    assert!(
        wg.contains(&format!("PublicKey = {}", gateway_key.trim())),
        "{wg}"
    );
    assert_eq!(device["wg_public_key"].as_str().unwrap().len(), 44);

    let chain = std::fs::read_to_string(certs.join("ca-chain.crt")).unwrap();
    let root = std::fs::read_to_string(server.root_cert_path()).unwrap();
    assert!(
        chain.trim_end().ends_with(root.trim_end()),
        "ca-chain.crt ends with the root"
    );

    let (code, st) = status_json(&server, "dev-1", &certs);
    assert_eq!(code, 0);
    assert_eq!(st["state"], "enrolled");
    assert_eq!(st["address"], "10.8.0.2/24");
    assert!(st["certificate"]["expires_in_seconds"].as_i64().unwrap() > 29 * 86_400);
}

#[test]
fn second_run_makes_no_request() {
    let (mut server, _tmp, certs) = enrolled("dev-1");
    let before = snapshot(&certs);

    // With the bridge gone, a request could not succeed: exit 0 proves none was made.
    server.kill();
    let out = server
        .agent("dev-1", &certs)
        .arg("enroll")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("already enrolled as dev-1"),
        "{}",
        text(&out)
    );
    assert_eq!(snapshot(&certs), before, "nothing rewritten");
}

#[test]
fn force_without_a_window_is_refused_and_leaves_certs_intact() {
    let (server, _tmp, certs) = enrolled("dev-1");
    let before = snapshot(&certs);

    let out = server
        .agent("dev-1", &certs)
        .args(["enroll", "--force"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("409") && stderr.contains("device_already_enrolled"),
        "{stderr}"
    );
    assert!(
        stderr.contains("allow-reenroll dev-1"),
        "the message says how to fix it: {stderr}"
    );
    assert_eq!(
        snapshot(&certs),
        before,
        "a refused --force leaves /certs byte-identical"
    );
    let (code, st) = status_json(&server, "dev-1", &certs);
    assert_eq!(
        (code, st["state"].as_str()),
        (0, Some("enrolled")),
        "the old set still verifies"
    );
    // The old identity still works at the bridge: the same keys re-enroll idempotently.
    let _ = std::fs::remove_file(certs.join("enrolled"));
    let out = server
        .agent("dev-1", &certs)
        .arg("enroll")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("200 OK"),
        "{}",
        text(&out)
    );
}

#[test]
fn force_after_allow_reenroll_keeps_id_and_address_with_new_keys() {
    let server = TestServer::start();
    server.register(&["dev-0", "dev-1"]);
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("certs");
    assert!(
        server
            .agent("dev-0", &tmp.path().join("other"))
            .arg("enroll")
            .status()
            .unwrap()
            .success()
    );
    assert!(
        server
            .agent("dev-1", &certs)
            .arg("enroll")
            .status()
            .unwrap()
            .success()
    );
    let before = snapshot(&certs);
    let old = flag(&certs);

    server.cli_ok(&["device", "allow-reenroll", "dev-1", "--for", "10m"]);
    let out = server
        .agent("dev-1", &certs)
        .args(["enroll", "--force"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("200 OK"),
        "{}",
        text(&out)
    );
    let new = flag(&certs);
    assert_eq!(new["device_id"], "dev-1");
    assert_eq!(new["address"], old["address"], "same address");
    assert_ne!(new["serial"], old["serial"], "new certificate");
    assert_eq!(new["profile_revision"], 2);
    let after = snapshot(&certs);
    assert_ne!(after["device.key"], before["device.key"], "new EC key");
    assert_ne!(after["wg0.conf"], before["wg0.conf"], "new WireGuard key");

    let device = server.device("dev-1");
    assert_eq!(device["certificates"]["superseded"], 1, "{device}");
    assert_eq!(device["certificates"]["active"], 1, "{device}");
    assert_eq!(
        device["reenroll_window_until"], "-",
        "the window is consumed"
    );
    let audit = server.cli_ok(&["audit", "--device", "dev-1"]);
    assert!(
        audit.contains("device.reenroll_allowed") && audit.contains("device.reenrolled"),
        "{audit}"
    );

    // The window was one-time: another --force is refused again.
    let out = server
        .agent("dev-1", &certs)
        .args(["enroll", "--force"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
}

#[test]
fn wrong_fingerprint_is_refused_showing_both() {
    let server = TestServer::start();
    server.register(&["dev-1"]);
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("certs");
    let wrong = "ab".repeat(32);
    let out = agent_command(&server.url, &wrong, "dev-1", &certs)
        .arg("enroll")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&wrong) && stderr.contains(&server.fingerprint),
        "both fingerprints: {stderr}"
    );
    assert!(!certs.join("enrolled").exists());
    assert_eq!(
        server.device("dev-1")["state"],
        "registered",
        "the bridge never saw a request"
    );
}

#[test]
fn unknown_device_is_refused_with_403() {
    let server = TestServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let out = server
        .agent("stranger", &tmp.path().join("certs"))
        .arg("enroll")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("403") && stderr.contains("device_not_registered"),
        "{stderr}"
    );
}

#[test]
fn agent_killed_after_the_bridge_answered_recovers_with_the_same_address() {
    let server = TestServer::start();
    server.register(&["dev-1"]);
    let proxy = HoldingProxy::start(format!("127.0.0.1:{}", server.port).parse().unwrap());
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("certs");

    // The proxy forwards the request but withholds the response: the bridge enrolls the
    // device while the agent is still waiting, and then the agent is killed.
    let mut agent = agent_command(
        &format!("https://{}", proxy.addr),
        &server.fingerprint,
        "dev-1",
        &certs,
    )
    .arg("enroll")
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || server.device("dev-1")["state"]
            == "enrolled"),
        "the bridge never enrolled the device"
    );
    assert_eq!(proxy.held_connections(), 1);
    agent.kill().unwrap();
    agent.wait().unwrap();
    assert!(
        certs.join(".staging/device.key").exists(),
        "keys were persisted before the call"
    );
    assert!(
        !certs.join("enrolled").exists(),
        "killed before the flag was written"
    );
    let address = server.device("dev-1")["address"].clone();

    let out = server
        .agent("dev-1", &certs)
        .arg("enroll")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("200 OK") && stdout.contains("reused from an unfinished enrollment"),
        "{stdout}"
    );
    assert_eq!(flag(&certs)["address"], address);
    assert!(!certs.join(".staging").exists());
}

#[test]
fn fifty_concurrent_enrollments_get_fifty_distinct_addresses() {
    let server = TestServer::start();
    let ids: Vec<String> = (0..50).map(|i| format!("fleet-{i:02}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    server.register(&refs);
    let tmp = tempfile::tempdir().unwrap();
    let children: Vec<_> = ids
        .iter()
        .map(|id| {
            server
                .agent(id, &tmp.path().join(id))
                .arg("enroll")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
    }
    let addresses: HashSet<String> = ids
        .iter()
        .map(|id| {
            flag(&tmp.path().join(id))["address"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(addresses.len(), 50, "{addresses:?}");
    assert!(
        !addresses.contains("10.8.0.1/24"),
        "the gateway's address is never handed out"
    );
    let list: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["device", "list", "--json"])).unwrap();
    let stored: HashSet<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["address"].as_str().unwrap())
        .collect();
    assert_eq!(stored.len(), 50);
}

#[test]
fn unreachable_bridge_is_retried_until_it_comes_back() {
    let mut server = TestServer::start();
    server.register(&["dev-1"]);
    server.kill();
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("certs");
    let agent = server
        .agent("dev-1", &certs)
        .arg("enroll")
        .env("NEXA_ENROLL_RETRY_FOR", "60s")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    server.restart();
    let out = agent.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("retrying"),
        "{}",
        text(&out)
    );
    assert_eq!(flag(&certs)["address"], "10.8.0.2/24");
}

#[test]
fn unreachable_bridge_without_retries_exits_5() {
    let mut server = TestServer::start();
    server.register(&["dev-1"]);
    server.kill();
    let tmp = tempfile::tempdir().unwrap();
    let out = server
        .agent("dev-1", &tmp.path().join("certs"))
        .arg("enroll")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot reach the bridge"),
        "{}",
        text(&out)
    );
}

#[test]
fn status_of_a_fresh_device_says_not_enrolled() {
    let server = TestServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let (code, st) = status_json(&server, "dev-1", &tmp.path().join("certs"));
    assert_eq!(code, 1);
    assert_eq!(st["state"], "not_enrolled");
    let out = server
        .agent("dev-1", &tmp.path().join("certs"))
        .arg("status")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("state:        not enrolled"),
        "{}",
        text(&out)
    );
}

#[test]
fn bad_configuration_names_the_value_and_exits_2() {
    let server = TestServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let out = agent_command(
        &server.url,
        "not-a-fingerprint",
        "dev-1",
        &tmp.path().join("c"),
    )
    .arg("enroll")
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("\"not-a-fingerprint\""),
        "{}",
        text(&out)
    );
    let out = server
        .agent("bad id", &tmp.path().join("c"))
        .arg("enroll")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("\"bad id\""),
        "{}",
        text(&out)
    );
    let out = agent_command(
        "http://127.0.0.1:1",
        &server.fingerprint,
        "dev-1",
        &tmp.path().join("c"),
    )
    .arg("enroll")
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn interrupted_force_is_completed_by_the_next_plain_run() {
    let (server, _tmp, certs) = enrolled("dev-1");
    let old = flag(&certs);
    server.cli_ok(&["device", "allow-reenroll", "dev-1"]);

    let proxy = HoldingProxy::start(format!("127.0.0.1:{}", server.port).parse().unwrap());
    let mut agent = agent_command(
        &format!("https://{}", proxy.addr),
        &server.fingerprint,
        "dev-1",
        &certs,
    )
    .args(["enroll", "--force"])
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    assert!(wait_until(Duration::from_secs(20), || server
        .device("dev-1")["profile_revision"]
        == 2));
    agent.kill().unwrap();
    agent.wait().unwrap();
    assert_eq!(flag(&certs), old, "the old set is still in place");

    // The bridge now knows only the new keys; a plain run must finish the job, not stop at
    // "already enrolled" with keys the gateway no longer accepts.
    let out = server
        .agent("dev-1", &certs)
        .arg("enroll")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let new = flag(&certs);
    assert_eq!(new["profile_revision"], 2);
    assert_eq!(new["address"], old["address"]);
    assert_eq!(new["serial"], server.device("dev-1")["cert_serial"]);
    assert!(!certs.join(".staging").exists());
}
