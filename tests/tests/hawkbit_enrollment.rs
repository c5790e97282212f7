//! The bridge provisions the device's hawkBit target at enrollment: a real `nexa-server` with
//! the fake hawkBit's Management API, and the real agent writing what it was given. Every
//! enrollment issues a new target token (a re-enrolled device's old token stops working);
//! a hawkBit that is down or refuses makes the enrollment fail with nothing stored.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;

use std::time::Duration;

use nexa_testkit::hawkbit::{self, FakeHawkbit, Route};
use nexa_testkit::{TestServer, make_csr, text, wait_until, wg_public_key};
use serde_json::{Value, json};

struct Setup {
    server: TestServer,
    hawkbit: FakeHawkbit,
    _secrets: tempfile::TempDir,
}

/// A bridge provisioning the fake hawkBit; devices are told `ddi_url` (default: the fake).
fn setup(ddi_url: Option<&str>) -> Setup {
    let hawkbit = FakeHawkbit::start();
    let secrets = tempfile::tempdir().unwrap();
    let pw = secrets.path().join("hawkbit-password");
    std::fs::write(&pw, format!("{}\n", hawkbit::PASSWORD)).unwrap();
    let mut envs = vec![
        ("HAWKBIT_URL", hawkbit.url.as_str()),
        ("HAWKBIT_USER", hawkbit::USER),
        ("HAWKBIT_PASSWORD_FILE", pw.to_str().unwrap()),
    ];
    if let Some(url) = ddi_url {
        envs.extend([("HAWKBIT_DDI_URL", url), ("HAWKBIT_TENANT", "ACME")]);
    }
    let server = TestServer::start_with(&[], &envs);
    Setup {
        server,
        hawkbit,
        _secrets: secrets,
    }
}

impl Setup {
    /// One enrollment over HTTP with fresh keys; status, Retry-After and body.
    fn enroll_http(&self, id: &str) -> (u16, Option<String>, Value) {
        let (_key, csr) = make_csr(id);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let resp = self
                .server
                .http_client()
                .post(format!("{}/api/devices/{id}/enroll", self.server.url))
                .json(&json!({ "csr_pem": csr, "wg_public_key": wg_public_key() }))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let retry = resp
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, retry, resp.json().await.unwrap())
        })
    }

    fn audit(&self, action: &str) -> Vec<Value> {
        let out = self.server.cli_ok(&["audit", "--json", "--limit", "1000"]);
        out.lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|e| e["action"] == action)
            .collect()
    }
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_agent_receives_a_target_token_and_a_reenrollment_replaces_it() {
    let s = setup(Some("https://ddi.example.net/updates"));
    s.server.register(&["dev-hb-1"]);
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("certs");

    let out = s
        .server
        .agent("dev-hb-1", &certs)
        .arg("enroll")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let token_file = certs.join("hawkbit.token");
    let token = std::fs::read_to_string(&token_file).unwrap();
    let token = token.trim();
    assert_eq!(mode(&token_file), 0o600);
    assert_eq!(token.len(), 64, "32 random bytes in hex");
    assert_eq!(
        s.hawkbit.security_token("dev-hb-1").as_deref(),
        Some(token),
        "the target was created with the token the device holds"
    );
    let flag: Value =
        serde_json::from_str(&std::fs::read_to_string(certs.join("enrolled")).unwrap()).unwrap();
    assert_eq!(
        flag["hawkbit"],
        json!({ "url": "https://ddi.example.net/updates/", "tenant": "ACME",
                "controller_id": "dev-hb-1" }),
        "{flag}"
    );
    let flag_text = std::fs::read_to_string(certs.join("enrolled")).unwrap();
    assert!(!flag_text.contains(token), "the flag never holds the token");
    assert!(
        !text(&out).contains(token) && !s.server.log().contains(token),
        "no token in a log"
    );
    let enrolled = s.audit("device.enrolled");
    assert_eq!(enrolled.len(), 1);
    let detail: Value = serde_json::from_str(enrolled[0]["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["hawkbit_target"], "created", "{detail}");
    assert_ne!(s.server.device("dev-hb-1")["hawkbit_target_at"], "-");

    // The field tech's re-enrollment: new keys, a new token, the old one is dead.
    s.server.cli_ok(&["device", "allow-reenroll", "dev-hb-1"]);
    let out = s
        .server
        .agent("dev-hb-1", &certs)
        .args(["enroll", "--force"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let renewed = std::fs::read_to_string(&token_file).unwrap();
    let renewed = renewed.trim();
    assert_ne!(renewed, token, "a re-enrollment issues a new token");
    assert_eq!(
        s.hawkbit.security_token("dev-hb-1").as_deref(),
        Some(renewed)
    );
    assert_eq!(s.hawkbit.targets().len(), 1, "still one target");
    assert_eq!(
        s.hawkbit.update_calls(),
        1,
        "the existing target's token was replaced"
    );
    let reenrolled = s.audit("device.reenrolled");
    let detail: Value = serde_json::from_str(reenrolled[0]["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["hawkbit_target"], "already_existed", "{detail}");
}

#[test]
fn an_unavailable_or_refusing_hawkbit_fails_the_enrollment_and_stores_nothing() {
    let s = setup(Some("https://ddi.example.net/updates"));
    s.server.register(&["dev-hb-2"]);

    s.hawkbit.fail_next(503);
    let (status, retry, body) = s.enroll_http("dev-hb-2");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (502, Some("hawkbit_unavailable")),
        "{body}"
    );
    assert_eq!(retry.as_deref(), Some("30"));
    assert_eq!(s.server.device("dev-hb-2")["state"], "registered");

    s.hawkbit.fail_next(403);
    let (status, _, body) = s.enroll_http("dev-hb-2");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (502, Some("hawkbit_refused")),
        "{body}"
    );
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        !message.contains(&s.hawkbit.url) && message.contains("bridge log"),
        "the device is not told the Management API's address: {message}"
    );
    assert!(
        s.server.log().contains("UPDATE_TARGET"),
        "the operator is told what to fix"
    );
    assert_eq!(s.server.device("dev-hb-2")["state"], "registered");
    assert!(
        s.audit("device.enrolled").is_empty(),
        "nothing was committed"
    );
    assert!(s.hawkbit.targets().is_empty());

    // hawkBit is back: the device's retry succeeds.
    let (status, _, body) = s.enroll_http("dev-hb-2");
    assert_eq!(status, 201, "{body}");
    let token = body["hawkbit"]["target_token"].as_str().unwrap();
    assert_eq!(s.hawkbit.security_token("dev-hb-2").as_deref(), Some(token));
    assert_eq!(body["hawkbit"]["tenant"], "ACME");
    assert_eq!(body["hawkbit"]["controller_id"], "dev-hb-2");
}

struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_running_agent_takes_up_the_token_of_a_reenrollment() {
    let s = setup(None);
    s.server.register(&["dev-hb-3"]);
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("certs");
    let log_path = tmp.path().join("agent.log");
    let mut cmd = s.server.agent("dev-hb-3", &certs);
    // No broker is needed for updates: MQTT keeps retrying a closed port meanwhile.
    cmd.env("NEXA_MQTT_URL", "mqtts://127.0.0.1:1")
        .env("NEXA_DATA_DIR", tmp.path().join("data"))
        .env("NEXA_AFTER_INSTALL", "report")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap());
    let daemon = Daemon(cmd.arg("run").spawn().unwrap());
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let accepted_poll_since = |since: std::time::SystemTime| {
        s.hawkbit
            .requests_to(Route::Poll)
            .iter()
            .any(|r| r.status == 200 && r.at >= since)
    };
    let start = std::time::SystemTime::now();
    assert!(
        wait_until(Duration::from_secs(30), || accepted_poll_since(start)),
        "the agent polls with the enrollment's token\n{}",
        log()
    );
    // configData follows the first poll.
    assert!(
        wait_until(Duration::from_secs(10), || s
            .hawkbit
            .attributes("dev-hb-3")
            .get("deviceId")
            .is_some_and(|id| id == "dev-hb-3")),
        "configData with the device id\n{}",
        log()
    );

    s.server.cli_ok(&["device", "allow-reenroll", "dev-hb-3"]);
    let out = s
        .server
        .agent("dev-hb-3", &certs)
        .args(["enroll", "--force"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let rotated = std::time::SystemTime::now();
    // SIGHUP: take up the new enrollment now rather than at the next 30 s check.
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &daemon.0.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    assert!(
        wait_until(Duration::from_secs(30), || accepted_poll_since(rotated)),
        "after the re-enrollment the agent polls with the new token\n{}",
        log()
    );
    let refused_after = s
        .hawkbit
        .requests_to(Route::Poll)
        .iter()
        .filter(|r| r.at >= rotated && r.status == 401)
        .count();
    assert!(
        refused_after <= 1,
        "at most the poll in flight used the old token: {refused_after}"
    );
    assert!(log().contains("restarting the update engine"), "{}", log());
    drop(daemon);
}
