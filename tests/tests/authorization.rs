//! Who may enroll: site enrollment keys, the collision gate, the limiter, field-tech users and
//! their tokens, the admin API's roles, and the audit trail — against a real `nexa-server`
//! (requests made directly, and the real `nexa-agent` where a device's behaviour matters).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use nexa_testkit::api::{self, Reply};
use nexa_testkit::{KillOnDrop, TestServer, make_csr, text, wait_until, wg_public_key};
use serde_json::{Value, json};

/// A device as the bridge sees it: its keys and the machine it runs on.
struct Device {
    id: String,
    csr_pem: String,
    wg: String,
    machine_uid: String,
    hostname: String,
}

impl Device {
    fn new(id: &str, machine_uid: &str) -> Self {
        Self {
            id: id.into(),
            csr_pem: make_csr(id).1,
            wg: wg_public_key(),
            machine_uid: machine_uid.into(),
            hostname: format!("host-{id}"),
        }
    }

    /// The same machine with new keys (re-flashed, or `enroll --force`).
    fn rekeyed(&self) -> Self {
        Self {
            csr_pem: make_csr(&self.id).1,
            wg: wg_public_key(),
            ..self.clone_ids()
        }
    }

    fn clone_ids(&self) -> Self {
        Self {
            id: self.id.clone(),
            csr_pem: self.csr_pem.clone(),
            wg: self.wg.clone(),
            machine_uid: self.machine_uid.clone(),
            hostname: self.hostname.clone(),
        }
    }

    fn body(&self, site: Option<(&str, &str)>) -> Value {
        let mut b = json!({
            "csr_pem": self.csr_pem,
            "wg_public_key": self.wg,
            "machine_uid": self.machine_uid,
            "hostname": self.hostname,
        });
        if let Some((code, key)) = site {
            b["site_code"] = json!(code);
            b["enrollment_key"] = json!(key);
        }
        b
    }

    fn enroll(
        &self,
        server: &TestServer,
        site: Option<(&str, &str)>,
        bearer: Option<&str>,
    ) -> Reply {
        api::post(
            server,
            &format!("/api/devices/{}/enroll", self.id),
            bearer,
            &self.body(site),
        )
    }
}

/// `site add CODE --json`: the minted key.
fn add_site(server: &TestServer, code: &str) -> String {
    let out: Value = serde_json::from_str(&server.cli_ok(&[
        "site",
        "add",
        code,
        "--name",
        "Test site",
        "--json",
    ]))
    .unwrap();
    assert_eq!(
        out["display"],
        format!("v1 ({})", out["fingerprint"].as_str().unwrap())
    );
    out["enrollment_key"].as_str().unwrap().to_owned()
}

fn audit(server: &TestServer, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["audit", "--json", "--limit", "1000"];
    all.extend_from_slice(args);
    server
        .cli_ok(&all)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn detail(ev: &Value) -> Value {
    serde_json::from_str(ev["detail"].as_str().unwrap()).unwrap()
}

fn actions(server: &TestServer, device: &str) -> Vec<String> {
    audit(server, &["--device", device])
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect()
}

fn cert_status(server: &TestServer, serial: &str) -> String {
    let db = server.data_dir.join("nexa.db");
    let out = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg(format!(
            "SELECT status FROM certificates WHERE serial = '{serial}'"
        ))
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        // Without the sqlite3 tool, ask the CRL instead: a revoked serial is listed there.
        _ => {
            let crl = api::get(server, "/api/crl", None);
            format!("crl {}", crl.status)
        }
    }
}

#[test]
fn zero_touch_enrollment_with_a_site_key() {
    let server = TestServer::start();
    let key = add_site(&server, "plant-1");
    let dev = Device::new("zt-1", "machine-a");

    let r = dev.enroll(&server, Some(("plant-1", &key)), None);
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["device_id"], "zt-1");
    let address = r.body["wireguard"]["address"].clone();
    let shown = server.device("zt-1");
    assert_eq!(shown["state"], "enrolled");
    assert_eq!(shown["machine_uid"], "machine-a");
    assert_eq!(shown["site"], "plant-1", "{shown}");

    // Same keys again: same address, 200.
    let again = dev.enroll(&server, Some(("plant-1", &key)), None);
    assert_eq!(again.status, 200, "{:?}", again.body);
    assert_eq!(again.body["wireguard"]["address"], address);

    let events = audit(
        &server,
        &["--device", "zt-1", "--action", "device.enrolled"],
    );
    assert_eq!(events.len(), 1);
    let d = detail(&events[0]);
    assert_eq!(d["site"], "plant-1");
    assert_eq!(d["authorized_by"], "site:plant-1 v1");
    assert_eq!(d["registered"], true);

    // The site counts its device; `site key` shows the fingerprint, never the key.
    let site: Value =
        serde_json::from_str(&server.cli_ok(&["site", "show", "plant-1", "--json"])).unwrap();
    assert_eq!(site["devices"], 1);
    let fp = server.cli_ok(&["site", "key", "plant-1"]);
    assert!(fp.trim().starts_with("v1 ("), "{fp}");
    assert!(!fp.contains(&key));

    // An unregistered id without a key is still refused.
    let stranger = Device::new("zt-2", "machine-b").enroll(&server, None, None);
    assert_eq!(
        (stranger.status, stranger.code()),
        (403, "device_not_registered")
    );
}

#[test]
fn wrong_keys_unknown_sites_and_bad_shapes_are_refused_and_store_nothing() {
    let server = TestServer::start();
    let key = add_site(&server, "plant-1");
    let other = add_site(&server, "plant-2");
    let dev = Device::new("wk-1", "machine-a");
    let forged = format!("cek_{}", "A".repeat(43));
    for (site, k, status, code) in [
        ("plant-1", forged.as_str(), 401, "enrollment_key_invalid"),
        ("plant-1", other.as_str(), 401, "enrollment_key_invalid"),
        ("nowhere", key.as_str(), 401, "enrollment_key_invalid"),
        ("plant-1", "not-a-key", 401, "enrollment_key_invalid"),
        ("bad code!", key.as_str(), 422, "invalid_field"),
    ] {
        let r = dev.enroll(&server, Some((site, k)), None);
        assert_eq!((r.status, r.code()), (status, code), "{site} {:?}", r.body);
    }
    // A key without a site code, and a site key without machine_uid.
    let mut body = dev.body(None);
    body["enrollment_key"] = json!(key);
    let r = api::post(&server, "/api/devices/wk-1/enroll", None, &body);
    assert_eq!((r.status, r.code()), (422, "invalid_field"));
    let mut body = dev.body(Some(("plant-1", &key)));
    body.as_object_mut().unwrap().remove("machine_uid");
    let r = api::post(&server, "/api/devices/wk-1/enroll", None, &body);
    assert_eq!((r.status, r.code()), (422, "invalid_field"));
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("machine_uid")
    );

    let out = server.cli(&["device", "show", "wk-1"]);
    assert!(
        !out.status.success(),
        "nothing was registered: {}",
        text(&out)
    );
}

#[test]
fn a_rotated_out_key_stops_working_at_once() {
    let server = TestServer::start();
    let old = add_site(&server, "plant-1");
    // The bridge caches a site's key after a good check: enroll once with it first, so the
    // rotation below has a warm cache to invalidate (the CLI is another process).
    let first = Device::new("rk-0", "machine-0");
    assert_eq!(
        first.enroll(&server, Some(("plant-1", &old)), None).status,
        201
    );
    let rotated: Value =
        serde_json::from_str(&server.cli_ok(&["site", "rotate-key", "plant-1", "--json"])).unwrap();
    assert_eq!(rotated["version"], 2);
    let new = rotated["enrollment_key"].as_str().unwrap();
    assert_ne!(new, old);

    let dev = Device::new("rk-1", "machine-a");
    let r = dev.enroll(&server, Some(("plant-1", &old)), None);
    assert_eq!((r.status, r.code()), (401, "enrollment_key_invalid"));
    let r = dev.enroll(&server, Some(("plant-1", new)), None);
    assert_eq!(r.status, 201, "{:?}", r.body);
    let ev = audit(&server, &["--action", "site.key_rotated"]);
    assert_eq!(ev.len(), 1);
    assert_eq!(
        detail(&ev[0])["previous"]
            .as_str()
            .unwrap()
            .split(' ')
            .next(),
        Some("v1")
    );

    // The same through the admin API (the serving process itself), cache warm with v2.
    add_user(&server, "root", "admin", "root-password-01");
    let admin = login(&server, "root", "root-password-01").body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let third = Device::new("rk-2", "machine-b");
    let r = api::post(
        &server,
        "/api/v1/sites/plant-1/enrollment-key/rotate",
        Some(&admin),
        &json!({}),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    let newest = r.body["enrollment_key"].as_str().unwrap();
    let r = third.enroll(&server, Some(("plant-1", new)), None);
    assert_eq!((r.status, r.code()), (401, "enrollment_key_invalid"));
    let r = third.enroll(&server, Some(("plant-1", newest)), None);
    assert_eq!(r.status, 201, "{:?}", r.body);
}

#[test]
fn repeated_bad_keys_lock_the_address_out_until_the_window_ends() {
    let server = TestServer::start_with(
        &[],
        &[
            ("NEXA_ENROLL_MAX_FAILURES", "3"),
            ("NEXA_ENROLL_LOCKOUT", "3s"),
        ],
    );
    let key = add_site(&server, "plant-1");
    add_site(&server, "plant-2");
    let dev = Device::new("lo-1", "machine-a");
    let forged = format!("cek_{}", "B".repeat(43));
    for _ in 0..3 {
        let r = dev.enroll(&server, Some(("plant-1", &forged)), None);
        assert_eq!(r.code(), "enrollment_key_invalid");
    }
    // Locked out: even the right key gets 429 with Retry-After.
    let r = dev.enroll(&server, Some(("plant-1", &key)), None);
    assert_eq!((r.status, r.code()), (429, "rate_limited"), "{:?}", r.body);
    let wait = r.retry_after.expect("Retry-After");
    assert!((1..=3).contains(&wait), "{wait}");
    // Another site from the same address is not affected.
    let r = dev.enroll(&server, Some(("plant-2", &forged)), None);
    assert_eq!(r.code(), "enrollment_key_invalid");
    assert!(
        server
            .log()
            .contains("[ENROLL] repeated bad enrollment keys")
    );

    std::thread::sleep(Duration::from_secs(wait + 1));
    let r = dev.enroll(&server, Some(("plant-1", &key)), None);
    assert_eq!(r.status, 201, "recovered after the window: {:?}", r.body);
}

#[test]
fn one_machine_is_one_device() {
    let server = TestServer::start();
    let key = add_site(&server, "plant-1");
    assert_eq!(
        Device::new("mu-1", "machine-a")
            .enroll(&server, Some(("plant-1", &key)), None)
            .status,
        201
    );
    let r = Device::new("mu-2", "machine-a").enroll(&server, Some(("plant-1", &key)), None);
    assert_eq!(
        (r.status, r.code()),
        (409, "machine_uid_in_use"),
        "{:?}",
        r.body
    );
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("mu-1")
    );
    // Another machine claiming an enrolled id gets nothing either.
    let r = Device::new("mu-1", "machine-z").enroll(&server, Some(("plant-1", &key)), None);
    assert_eq!((r.status, r.code()), (409, "device_already_enrolled"));
}

#[test]
fn a_site_move_keeps_the_device_and_is_audited() {
    let server = TestServer::start();
    let a = add_site(&server, "plant-a");
    let b = add_site(&server, "plant-b");
    let dev = Device::new("mv-1", "machine-a");
    let first = dev.enroll(&server, Some(("plant-a", &a)), None);
    assert_eq!(first.status, 201);
    let moved = dev.enroll(&server, Some(("plant-b", &b)), None);
    assert_eq!(moved.status, 200, "{:?}", moved.body);
    assert_eq!(
        moved.body["wireguard"]["address"],
        first.body["wireguard"]["address"]
    );
    let ev = audit(
        &server,
        &["--device", "mv-1", "--action", "device.site_moved"],
    );
    assert_eq!(ev.len(), 1);
    let d = detail(&ev[0]);
    assert_eq!(
        (d["site"].as_str(), d["moved_from"].as_str()),
        (Some("plant-b"), Some("plant-a"))
    );
    let sites: Value = serde_json::from_str(&server.cli_ok(&["site", "list", "--json"])).unwrap();
    let count = |code: &str| {
        sites
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["site_code"] == code)
            .unwrap()["devices"]
            .clone()
    };
    assert_eq!((count("plant-a"), count("plant-b")), (json!(0), json!(1)));
    // A site with a device cannot be removed; an empty one can.
    let out = server.cli(&["site", "remove", "plant-b"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    server.cli_ok(&["site", "remove", "plant-a"]);
}

#[test]
fn same_machine_offline_past_the_window_comes_back_with_new_keys() {
    let server = TestServer::start_with(&[], &[("NEXA_COLLISION_WINDOW", "1s")]);
    let key = add_site(&server, "plant-1");
    let dev = Device::new("rf-1", "machine-a");
    let first = dev.enroll(&server, Some(("plant-1", &key)), None);
    let old_serial = first.body["certificate"]["serial"]
        .as_str()
        .unwrap()
        .to_owned();
    std::thread::sleep(Duration::from_millis(2100));
    let reflashed = dev.rekeyed();
    let r = reflashed.enroll(&server, Some(("plant-1", &key)), None);
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.body["wireguard"]["address"],
        first.body["wireguard"]["address"]
    );
    assert_eq!(cert_status(&server, &old_serial), "revoked");
    let ev = audit(
        &server,
        &["--device", "rf-1", "--action", "device.reenrolled"],
    );
    assert_eq!(detail(&ev[0])["authorized_by"], "site:plant-1 v1");
}

#[test]
fn a_collision_is_held_and_a_rejection_is_final() {
    let server = TestServer::start_with(&[], &[("NEXA_PENDING_POLL", "2s")]);
    let key = add_site(&server, "plant-1");
    let dev = Device::new("co-1", "machine-a");
    assert_eq!(
        dev.enroll(&server, Some(("plant-1", &key)), None).status,
        201
    );
    let clone = Device {
        hostname: "impostor".into(),
        ..dev.rekeyed()
    };
    let held = clone.enroll(&server, Some(("plant-1", &key)), None);
    assert_eq!(held.status, 202, "{:?}", held.body);
    assert_eq!(held.retry_after, Some(2));
    assert_eq!(held.body["status"], "pending");
    assert!(held.body.get("certificate_pem").is_none());
    let pending_id = held.body["pending_id"].as_str().unwrap().to_owned();
    // Polling again is the same pending enrollment, audited once.
    let again = clone.enroll(&server, Some(("plant-1", &key)), None);
    assert_eq!(again.body["pending_id"], pending_id.as_str());
    let ev = audit(&server, &["--action", "enrollment.pending"]);
    assert_eq!(ev.len(), 1);
    assert!(
        detail(&ev[0])["reason"]
            .as_str()
            .unwrap()
            .contains("impostor")
    );
    assert!(
        server.log().contains("[ENROLL] collision"),
        "{}",
        server.log()
    );
    let listed = server.cli_ok(&["enrollment", "list"]);
    assert!(
        listed.contains(&pending_id) && listed.contains("impostor"),
        "{listed}"
    );

    server.cli_ok(&["enrollment", "reject", &pending_id]);
    let r = clone.enroll(&server, Some(("plant-1", &key)), None);
    assert_eq!((r.status, r.code()), (403, "enrollment_rejected"));
    // The original device is untouched and a second decision is refused.
    assert_eq!(
        dev.enroll(&server, Some(("plant-1", &key)), None).status,
        200
    );
    let out = server.cli(&["enrollment", "approve", &pending_id]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("already rejected"));
}

/// A user added on the CLI, with the password on standard input.
fn add_user(server: &TestServer, name: &str, role: &str, password: &str) {
    let mut child = std::process::Command::new(nexa_testkit::server_bin())
        .arg("--data-dir")
        .arg(&server.data_dir)
        .args(["user", "add", name, "--role", role, "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

fn login(server: &TestServer, name: &str, password: &str) -> Reply {
    api::post(
        server,
        "/api/v1/auth/login",
        None,
        &json!({ "username": name, "password": password }),
    )
}

#[test]
fn tokens_expire_refresh_once_and_a_replay_ends_the_login() {
    let server = TestServer::start_with(&[], &[("NEXA_ACCESS_TOKEN_LIFETIME", "2s")]);
    add_user(&server, "alice", "admin", "alice-password-1");
    let bad = login(&server, "alice", "wrong-password-1");
    assert_eq!((bad.status, bad.code()), (401, "invalid_credentials"));
    let nobody = login(&server, "nobody", "wrong-password-1");
    assert_eq!((nobody.status, nobody.code()), (401, "invalid_credentials"));

    let t = login(&server, "alice", "alice-password-1");
    assert_eq!(t.status, 200, "{:?}", t.body);
    assert_eq!(
        (t.body["role"].as_str(), t.body["expires_in"].as_u64()),
        (Some("admin"), Some(2))
    );
    let access = t.body["access_token"].as_str().unwrap().to_owned();
    let refresh = t.body["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(
        api::get(&server, "/api/v1/sites", Some(&access)).status,
        200
    );

    std::thread::sleep(Duration::from_millis(2200));
    let expired = api::get(&server, "/api/v1/sites", Some(&access));
    assert_eq!((expired.status, expired.code()), (401, "token_expired"));

    let renewed = api::post(
        &server,
        "/api/v1/auth/refresh",
        None,
        &json!({ "refresh_token": refresh }),
    );
    assert_eq!(renewed.status, 200, "{:?}", renewed.body);
    let access2 = renewed.body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        api::get(&server, "/api/v1/sites", Some(&access2)).status,
        200
    );

    // The spent refresh token again: refused, and the whole login is revoked.
    let replay = api::post(
        &server,
        "/api/v1/auth/refresh",
        None,
        &json!({ "refresh_token": refresh }),
    );
    assert_eq!((replay.status, replay.code()), (401, "token_invalid"));
    let after = api::get(&server, "/api/v1/sites", Some(&access2));
    assert_eq!((after.status, after.code()), (401, "token_invalid"));
    assert_eq!(
        audit(&server, &["--action", "auth.refresh_replayed"]).len(),
        1
    );
    assert_eq!(audit(&server, &["--action", "auth.login_failed"]).len(), 2);
}

#[test]
fn the_admin_api_needs_the_admin_role() {
    let server = TestServer::start();
    add_user(&server, "tech", "technician", "tech-password-01");
    add_user(&server, "root", "admin", "root-password-01");
    let tech = login(&server, "tech", "tech-password-01").body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let admin = login(&server, "root", "root-password-01").body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let paths = [
        (reqwest::Method::GET, "/api/v1/sites"),
        (
            reqwest::Method::POST,
            "/api/v1/sites/x/enrollment-key/rotate",
        ),
        (reqwest::Method::GET, "/api/v1/sites/x/enrollment-key"),
        (reqwest::Method::GET, "/api/v1/enrollments/pending"),
        (
            reqwest::Method::POST,
            "/api/v1/enrollments/0011223344556677/approve",
        ),
        (reqwest::Method::GET, "/api/v1/devices"),
        (reqwest::Method::DELETE, "/api/v1/devices/some-device"),
        (reqwest::Method::GET, "/api/v1/audit"),
    ];
    for (m, p) in &paths {
        let none = api::call(&server, m.clone(), p, None, None);
        // No static admin token is configured: a call without any token is told how to log in.
        assert_eq!(
            (none.status, none.code()),
            (503, "admin_not_configured"),
            "{m} {p}"
        );
        let t = api::call(&server, m.clone(), p, Some(&tech), None);
        assert_eq!((t.status, t.code()), (403, "forbidden"), "{m} {p}");
        let bogus = api::call(
            &server,
            m.clone(),
            p,
            Some(&format!("nxa_{}", "Q".repeat(43))),
            None,
        );
        assert_eq!(
            (bogus.status, bogus.code()),
            (401, "token_invalid"),
            "{m} {p}"
        );
    }
    // The admin creates a site over HTTP, sees the key once, then only its fingerprint.
    let created = api::post(
        &server,
        "/api/v1/sites",
        Some(&admin),
        &json!({ "site_code": "hq", "name": "HQ" }),
    );
    assert_eq!(created.status, 201, "{:?}", created.body);
    let key = created.body["enrollment_key"].as_str().unwrap();
    assert!(key.starts_with("cek_"));
    let info = api::get(&server, "/api/v1/sites/hq/enrollment-key", Some(&admin));
    assert_eq!(info.status, 200);
    assert_eq!(info.body["version"], 1);
    assert!(!info.body.to_string().contains(key));
    let dup = api::post(
        &server,
        "/api/v1/sites",
        Some(&admin),
        &json!({ "site_code": "hq" }),
    );
    assert_eq!((dup.status, dup.code()), (409, "site_exists"));
    let missing = api::get(&server, "/api/v1/sites/nope", Some(&admin));
    assert_eq!((missing.status, missing.code()), (404, "site_unknown"));
    let rotated = api::post(
        &server,
        "/api/v1/sites/hq/enrollment-key/rotate",
        Some(&admin),
        &json!({}),
    );
    assert_eq!(rotated.body["version"], 2);
    let log = api::get(&server, "/api/v1/audit?action=site.&limit=10", Some(&admin));
    let acts: Vec<&str> = log
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(acts, ["site.created", "site.key_rotated"]);
    assert!(
        log.body
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["actor"] == "admin:root")
    );
    let bad_filter = api::get(&server, "/api/v1/audit?colour=red", Some(&admin));
    assert_eq!(
        (bad_filter.status, bad_filter.code()),
        (422, "invalid_field")
    );
}

/// An agent command for `id` with a site key and a fixed machine_uid.
fn site_agent(
    server: &TestServer,
    id: &str,
    certs: &std::path::Path,
    site: &str,
    key: &str,
    machine: &str,
) -> std::process::Command {
    let mut cmd = server.agent(id, certs);
    cmd.env("NEXA_SITE_CODE", site)
        .env("NEXA_ENROLLMENT_KEY", key)
        .env("NEXA_MACHINE_UID", machine);
    cmd
}

#[test]
fn the_agent_waits_while_held_and_completes_once_approved() {
    let server = TestServer::start_with(&[], &[("NEXA_PENDING_POLL", "1s")]);
    let key = add_site(&server, "plant-1");
    let tmp = tempfile::tempdir().unwrap();
    let first = tmp.path().join("first");
    let out = site_agent(&server, "ag-1", &first, "plant-1", &key, "machine-a")
        .arg("enroll")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let old_serial = server.device("ag-1")["cert_serial"]
        .as_str()
        .unwrap()
        .to_owned();

    // The same machine again from an empty certs directory: new keys, held.
    let second = tmp.path().join("second");
    let mut waiting = KillOnDrop(
        site_agent(&server, "ag-1", &second, "plant-1", &key, "machine-a")
            .env("NEXA_APPROVAL_TIMEOUT", "2m")
            .arg("enroll")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut pending_id = String::new();
    assert!(wait_until(Duration::from_secs(20), || {
        let rows: Value =
            serde_json::from_str(&server.cli_ok(&["enrollment", "list", "--json"])).unwrap();
        match rows.as_array().and_then(|r| r.first()) {
            Some(p) => {
                pending_id = p["id"].as_str().unwrap().to_owned();
                true
            }
            None => false,
        }
    }));
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        waiting.try_wait().unwrap().is_none(),
        "the agent keeps waiting instead of failing"
    );
    server.cli_ok(&["enrollment", "approve", &pending_id]);
    assert!(wait_until(Duration::from_secs(30), || waiting
        .try_wait()
        .unwrap()
        .is_some()));
    let status = waiting.wait().unwrap();
    assert!(
        status.success(),
        "the agent completed on its own: {status:?}"
    );
    let now = server.device("ag-1");
    assert_ne!(now["cert_serial"].as_str().unwrap(), old_serial);
    assert_eq!(cert_status(&server, &old_serial), "revoked");
    assert!(second.join("enrolled").is_file());
    let acts = actions(&server, "ag-1");
    assert_eq!(
        acts,
        [
            "device.enrolled",
            "enrollment.pending",
            "enrollment.approved",
            "device.reenrolled"
        ]
    );
}

#[test]
fn a_technician_reenrolls_a_device_and_a_disabled_one_cannot() {
    let server = TestServer::start();
    server.register(&["te-1"]);
    add_user(&server, "bob", "technician", "bob-password-001");
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("certs");
    let out = server.agent("te-1", &certs).arg("enroll").output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let before = server.device("te-1");

    // Without authority new keys are refused (409), the working set stays.
    let out = server
        .agent("te-1", &certs)
        .args(["enroll", "--force"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        text(&out).contains("device_already_enrolled"),
        "{}",
        text(&out)
    );

    let with_password = |pw: &str| {
        let mut child = server
            .agent("te-1", &certs)
            .args(["enroll", "--force", "--user", "bob", "--password-fd", "0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{pw}").unwrap();
        child.wait_with_output().unwrap()
    };
    let wrong = with_password("not-bobs-password");
    assert_eq!(wrong.status.code(), Some(3), "{}", text(&wrong));
    assert!(
        text(&wrong).contains("invalid_credentials"),
        "{}",
        text(&wrong)
    );

    let out = with_password("bob-password-001");
    assert!(out.status.success(), "{}", text(&out));
    let after = server.device("te-1");
    assert_eq!(after["address"], before["address"], "same address");
    assert_ne!(after["cert_serial"], before["cert_serial"]);
    assert_eq!(
        cert_status(&server, before["cert_serial"].as_str().unwrap()),
        "revoked"
    );
    let ev = audit(
        &server,
        &["--device", "te-1", "--action", "device.reenrolled"],
    );
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0]["actor"], "technician:bob");
    assert_eq!(detail(&ev[0])["previous_certificate"], "revoked");

    server.cli_ok(&["user", "disable", "bob"]);
    let out = with_password("bob-password-001");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("user_disabled"), "{}", text(&out));
}

#[test]
fn secrets_never_reach_a_log_or_the_audit_trail() {
    let server = TestServer::start_with(&[], &[("NEXA_LOG", "debug")]);
    let key = add_site(&server, "plant-1");
    let password = "very-secret-password-42";
    add_user(&server, "carol", "admin", password);
    let t = login(&server, "carol", password);
    let access = t.body["access_token"].as_str().unwrap().to_owned();
    let refresh = t.body["refresh_token"].as_str().unwrap().to_owned();
    login(&server, "carol", "wrong-password-4242");
    let forged = format!("cek_{}", "C".repeat(43));
    let dev = Device::new("se-1", "machine-a");
    dev.enroll(&server, Some(("plant-1", &forged)), None);
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("certs");
    let out = site_agent(&server, "se-1", &certs, "plant-1", &key, "machine-a")
        .env("NEXA_LOG", "debug")
        .arg("enroll")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    api::get(&server, "/api/v1/audit", Some(&access));

    let agent_out = text(&out);
    let log = server.log();
    let trail = server.cli_ok(&["audit", "--json", "--limit", "10000"]);
    assert!(log.contains("plant-1"), "the log is the one written: {log}");
    for secret in [
        key.as_str(),
        forged.as_str(),
        password,
        "wrong-password-4242",
        &access,
        &refresh,
    ] {
        assert!(!log.contains(secret), "server log holds a secret");
        assert!(!trail.contains(secret), "audit trail holds a secret");
        assert!(!agent_out.contains(secret), "agent output holds a secret");
    }
}
