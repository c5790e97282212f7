//! Decommissioning a device (`DELETE /api/devices/{id}`, `nexa-server device decommission`):
//! with the built-in CA the certificate lands on the CRL that `openssl verify -crl_check`
//! honours; with the fake hawkBit the target is deleted, and a hawkBit that is down leaves the
//! step failed until a re-run completes it; with a real step-ca the serial is revoked there
//! and step-ca refuses to renew the device's certificate. Re-runs repeat nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use nexa_testkit::hawkbit::{self, DownMode, FakeHawkbit};
use nexa_testkit::stepca::StepCa;
use nexa_testkit::{TestServer, make_csr, text, wg_public_key};
use serde_json::{Value, json};

const TOKEN: &str = "admin-token-0123456789abcdef";

/// A file holding the admin token, and the environment pointing the bridge at it.
struct Secrets {
    dir: tempfile::TempDir,
}

impl Secrets {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("admin-token"), format!("{TOKEN}\n")).unwrap();
        std::fs::write(
            dir.path().join("hawkbit-password"),
            format!("{}\n", hawkbit::PASSWORD),
        )
        .unwrap();
        Self { dir }
    }

    fn token_file(&self) -> String {
        self.dir.path().join("admin-token").display().to_string()
    }

    fn hawkbit_password_file(&self) -> String {
        self.dir
            .path()
            .join("hawkbit-password")
            .display()
            .to_string()
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// `DELETE /api/devices/{id}` with `token` (if any): status, Retry-After, JSON body.
fn delete(
    http: &reqwest::Client,
    server: &TestServer,
    id: &str,
    token: Option<&str>,
) -> (u16, Option<String>, Value) {
    rt().block_on(async {
        let mut req = http.delete(format!("{}/api/devices/{id}", server.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let retry = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        (status, retry, resp.json().await.unwrap())
    })
}

/// The outcome of each step, by name.
fn outcomes(report: &Value) -> Vec<(String, String)> {
    report["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("no steps in {report}"))
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap().to_owned(),
                s["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn expect(report: &Value, want: [&str; 5]) {
    let names = [
        "mark_decommissioned",
        "wireguard_peer",
        "revoke_certificate",
        "hawkbit_target",
        "audit",
    ];
    let want: Vec<(String, String)> = names
        .iter()
        .zip(want)
        .map(|(n, o)| ((*n).to_owned(), o.to_owned()))
        .collect();
    assert_eq!(outcomes(report), want, "{report:#}");
}

fn audit(server: &TestServer, action: &str) -> Vec<Value> {
    server
        .cli_ok(&["audit", "--json", "--limit", "1000"])
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["action"] == action)
        .collect()
}

/// Enrolls `id` with the real agent into a fresh certs directory.
fn enroll_agent(server: &TestServer, id: &str, tmp: &Path) -> PathBuf {
    let certs = tmp.join(format!("certs-{id}"));
    let out = server.agent(id, &certs).arg("enroll").output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    certs
}

/// One enrollment over HTTP with fresh keys: status and body.
fn enroll_http(http: &reqwest::Client, server: &TestServer, id: &str) -> (u16, Value) {
    let (_key, csr) = make_csr(id);
    rt().block_on(async {
        let resp = http
            .post(format!("{}/api/devices/{id}/enroll", server.url))
            .json(&json!({ "csr_pem": csr, "wg_public_key": wg_public_key() }))
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    })
}

fn openssl(args: &[&str]) -> std::process::Output {
    Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl (installed by scripts/test.sh)")
}

#[test]
fn built_in_ca_decommission_puts_the_certificate_on_the_crl_and_is_idempotent() {
    let secrets = Secrets::new();
    let server = TestServer::start_with(&[], &[("NEXA_ADMIN_TOKEN_FILE", &secrets.token_file())]);
    server.register(&["dc-1"]);
    let tmp = tempfile::tempdir().unwrap();
    let certs = enroll_agent(&server, "dc-1", tmp.path());
    let serial = server.device("dc-1")["cert_serial"]
        .as_str()
        .unwrap()
        .to_owned();
    let http = server.http_client();

    // Only the admin token opens the endpoint.
    let (status, _, body) = delete(&http, &server, "dc-1", None);
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "admin_unauthorized");
    let (status, _, body) = delete(&http, &server, "dc-1", Some("admin-token-0123456789abcdeX"));
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("admin_unauthorized"))
    );
    assert_eq!(
        server.device("dc-1")["state"],
        "enrolled",
        "nothing happened"
    );
    let (status, _, body) = delete(&http, &server, "-bad-", Some(TOKEN));
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_device_id"))
    );
    let (status, _, body) = delete(&http, &server, "nobody", Some(TOKEN));
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("device_unknown"))
    );

    let (status, _, report) = delete(&http, &server, "dc-1", Some(TOKEN));
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["complete"], true);
    expect(&report, ["done", "done", "done", "skipped", "done"]);
    assert!(
        report["steps"][2]["detail"]
            .as_str()
            .unwrap()
            .contains(&serial),
        "{report}"
    );

    let device = server.device("dc-1");
    assert_eq!(device["state"], "decommissioned", "{device}");
    assert_ne!(device["decommissioned_at"], "-");
    assert!(device["address"].is_string(), "the address stays reserved");
    assert_eq!(device["certificates"]["revoked"], 1, "{device}");

    // The CRL (DER by default, PEM on request) lists the serial and openssl honours it.
    let (der, content_type, pem) = rt().block_on(async {
        let resp = http
            .get(format!("{}/api/crl", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
        let der = resp.bytes().await.unwrap().to_vec();
        let pem = http
            .get(format!("{}/api/crl?format=pem", server.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        (der, ct, pem)
    });
    assert_eq!(content_type, "application/pkix-crl");
    let crl_der = tmp.path().join("crl.der");
    std::fs::write(&crl_der, &der).unwrap();
    let out = openssl(&[
        "crl",
        "-inform",
        "DER",
        "-noout",
        "-text",
        "-in",
        crl_der.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let crl_text = String::from_utf8_lossy(&out.stdout).to_uppercase();
    assert!(crl_text.contains(&serial.to_uppercase()), "{crl_text}");
    assert!(
        crl_text.contains("ISSUING CA") && crl_text.contains("NEXT UPDATE"),
        "{crl_text}"
    );
    let crl_pem = tmp.path().join("crl.pem");
    std::fs::write(&crl_pem, &pem).unwrap();
    let root = server.root_cert_path();
    let issuing = server.issuing_cert_path();
    let leaf = certs.join("device.crt");
    let verify = |extra: &[&str]| {
        let mut args = vec![
            "verify",
            "-CAfile",
            root.to_str().unwrap(),
            "-untrusted",
            issuing.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        args.push(leaf.to_str().unwrap());
        openssl(&args)
    };
    let without_crl = verify(&[]);
    assert!(without_crl.status.success(), "{}", text(&without_crl));
    let with_crl = verify(&["-crl_check", "-CRLfile", crl_pem.to_str().unwrap()]);
    assert!(!with_crl.status.success(), "{}", text(&with_crl));
    assert!(
        text(&with_crl).contains("certificate revoked"),
        "{}",
        text(&with_crl)
    );

    // Never enrolls again, with any keys.
    let (status, body) = enroll_http(&http, &server, "dc-1");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("device_decommissioned"))
    );
    let out = server
        .agent("dc-1", &tmp.path().join("again"))
        .arg("enroll")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("decommissioned"), "{}", text(&out));

    // Re-running changes nothing and is not audited again; the CLI agrees.
    let (status, _, again) = delete(&http, &server, "dc-1", Some(TOKEN));
    assert_eq!(status, 200, "{again}");
    expect(
        &again,
        [
            "already_done",
            "already_done",
            "already_done",
            "skipped",
            "already_done",
        ],
    );
    let out = server.cli_as_server(&["device", "decommission", "dc-1"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("device dc-1 decommissioned"), "{stdout}");
    assert!(
        stdout.contains("revoke_certificate   already_done"),
        "{stdout}"
    );
    let events = audit(&server, "device.decommissioned");
    assert_eq!(events.len(), 1, "{events:?}");
    let detail: Value = serde_json::from_str(events[0]["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["steps"]["revoke_certificate"], "done", "{detail}");
    assert_eq!(detail["previous_state"], "enrolled");
    assert_eq!(events[0]["actor"], "admin:api");
    assert!(!server.log().contains(TOKEN), "the token is never logged");
}

#[test]
fn without_an_admin_token_the_endpoint_is_off_and_the_cli_still_works() {
    let server = TestServer::start();
    server.register(&["dc-off"]);
    let (status, _, body) = delete(&server.http_client(), &server, "dc-off", Some(TOKEN));
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("admin_not_configured"))
    );
    assert_eq!(server.device("dc-off")["state"], "registered");

    // The CLI needs no token; a device that never enrolled has nothing to revoke.
    let out = server.cli_as_server(&[
        "device",
        "decommission",
        "dc-off",
        "--json",
        "--reason",
        "never shipped",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    expect(&report, ["done", "done", "done", "skipped", "done"]);
    assert!(
        report["steps"][2]["detail"]
            .as_str()
            .unwrap()
            .contains("no certificate"),
        "{report}"
    );
    let detail: Value = serde_json::from_str(
        audit(&server, "device.decommissioned")[0]["detail"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(detail["reason"], "never shipped");

    let out = server.cli_as_server(&["device", "decommission", "nobody"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("nobody") && text(&out).contains("device list"),
        "{}",
        text(&out)
    );
    let out = server.cli_as_server(&["device", "decommission", "-bad-"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn the_hawkbit_target_is_deleted_and_a_failure_is_completed_by_a_rerun() {
    let fake = FakeHawkbit::start();
    let secrets = Secrets::new();
    let pw = secrets.hawkbit_password_file();
    let token_file = secrets.token_file();
    let server = TestServer::start_with(
        &[],
        &[
            ("HAWKBIT_URL", fake.url.as_str()),
            ("HAWKBIT_USER", hawkbit::USER),
            ("HAWKBIT_PASSWORD_FILE", pw.as_str()),
            ("NEXA_ADMIN_TOKEN_FILE", token_file.as_str()),
        ],
    );
    server.register(&["hb-a", "hb-b"]);
    let http = server.http_client();
    for id in ["hb-a", "hb-b"] {
        let (status, body) = enroll_http(&http, &server, id);
        assert_eq!(status, 201, "{body}");
    }
    assert_eq!(fake.targets().len(), 2);

    let (status, _, report) = delete(&http, &server, "hb-a", Some(TOKEN));
    assert_eq!(status, 200, "{report}");
    expect(&report, ["done", "done", "done", "done", "done"]);
    assert_eq!(fake.deleted_targets(), ["hb-a"]);
    assert_eq!(
        server.device("hb-a")["hawkbit_target_at"],
        "-",
        "record cleared"
    );

    // hawkBit down: the CLI retries for --retry-for, reports the step failed and exits 3.
    fake.set_down(DownMode::Close);
    let out = server.cli_as_server(&["device", "decommission", "hb-b", "--retry-for", "2s"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("decommission of hb-b incomplete: 1 step(s) failed"),
        "{stdout}"
    );
    assert!(stdout.contains("hawkbit_target       failed"), "{stdout}");
    assert!(stdout.contains("attempts)"), "retried: {stdout}");
    assert!(
        text(&out).contains("run `nexa-server device decommission hb-b` again"),
        "{}",
        text(&out)
    );
    assert_eq!(
        server.device("hb-b")["state"],
        "decommissioned",
        "the rest is done"
    );

    // The same over HTTP: 502 with Retry-After and the report.
    let (status, retry, report) = delete(&http, &server, "hb-b", Some(TOKEN));
    assert_eq!(status, 502, "{report}");
    assert_eq!(retry.as_deref(), Some("30"));
    assert_eq!(
        report["error"]["code"], "decommission_incomplete",
        "{report}"
    );
    assert!(
        report["error"]["message"]
            .as_str()
            .unwrap()
            .contains("hawkbit_target")
    );
    assert_eq!(report["complete"], false);
    expect(
        &report,
        [
            "already_done",
            "already_done",
            "already_done",
            "failed",
            "done",
        ],
    );
    let failed = &report["steps"][3];
    assert!(
        failed["error"].as_str().unwrap().contains("hawkBit"),
        "{failed}"
    );
    assert_eq!(failed["retryable"], true);
    assert_eq!(fake.targets().len(), 1, "hb-b's target is still there");
    assert_eq!(audit(&server, "device.decommission_incomplete").len(), 2);

    // Up, but refusing (a permission was taken away): 502 without Retry-After, the step not
    // retryable, and the message says a refusal needs fixing first.
    fake.set_up();
    fake.fail_next(403);
    let (status, retry, report) = delete(&http, &server, "hb-b", Some(TOKEN));
    assert_eq!(status, 502, "{report}");
    assert_eq!(retry, None, "{report}");
    assert_eq!(report["steps"][3]["retryable"], false, "{report}");
    assert!(
        report["error"]["message"]
            .as_str()
            .unwrap()
            .contains("refused a step"),
        "{report}"
    );

    // Back up: the re-run does only the hawkBit step.
    let before = fake.delete_calls();
    let (status, _, report) = delete(&http, &server, "hb-b", Some(TOKEN));
    assert_eq!(status, 200, "{report}");
    expect(
        &report,
        [
            "already_done",
            "already_done",
            "already_done",
            "done",
            "done",
        ],
    );
    assert!(fake.targets().is_empty());
    assert_eq!(fake.delete_calls(), before + 1);
    let out = server.cli_as_server(&["device", "decommission", "hb-b", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    expect(&report, ["already_done"; 5]);
    assert_eq!(
        fake.delete_calls(),
        before + 1,
        "a done step is not repeated"
    );
    assert_eq!(
        audit(&server, "device.decommissioned").len(),
        2,
        "hb-a and hb-b"
    );
}

#[test]
fn step_ca_revokes_the_serial_and_refuses_to_renew_it() {
    let ca = StepCa::start();
    let secrets = Secrets::new();
    let token_file = secrets.token_file();
    let pw = ca.password_file.display().to_string();
    let server = TestServer::start_with(
        &[],
        &[
            ("STEP_CA_URL", ca.url.as_str()),
            ("STEP_CA_FINGERPRINT", ca.root_fingerprint.as_str()),
            ("STEP_CA_PROVISIONER_NAME", ca.provisioner.as_str()),
            ("STEP_CA_PROVISIONER_PASSWORD_FILE", pw.as_str()),
            ("NEXA_ADMIN_TOKEN_FILE", token_file.as_str()),
        ],
    );
    server.register(&["sc-dc"]);
    let tmp = tempfile::tempdir().unwrap();
    let certs = enroll_agent(&server, "sc-dc", tmp.path());
    let serial = server.device("sc-dc")["cert_serial"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut chain = std::fs::read(certs.join("device.crt")).unwrap();
    chain.extend(std::fs::read(certs.join("ca-chain.crt")).unwrap());
    let key = std::fs::read(certs.join("device.key")).unwrap();
    // The device's own identity, over mTLS, as a device renews at step-ca.
    let device = ca.http_client_with_identity(&chain, &key);
    let renew = |client: &reqwest::Client| {
        rt().block_on(async {
            let resp = client
                .post(format!("{}/1.0/renew", ca.url))
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        })
    };
    let (status, body) = renew(&device);
    assert_eq!(status, 201, "the identity renews before: {body}");

    // The bridge's TLS certificate comes from step-ca: a client trusting only its root.
    let http = ca.http_client();
    let (status, _, report) = delete(&http, &server, "sc-dc", Some(TOKEN));
    assert_eq!(status, 200, "{report}");
    expect(&report, ["done", "done", "done", "skipped", "done"]);
    let detail = report["steps"][2]["detail"].as_str().unwrap();
    assert!(
        detail.contains(&serial) && detail.contains("step-ca"),
        "{report}"
    );

    let log_before = ca.log().len();
    let (status, body) = renew(&device);
    assert_eq!(status, 401, "{body}");
    let said = format!("{body}\n{}", &ca.log()[log_before..]);
    assert!(said.contains("revoked"), "step-ca says why: {said}");

    // Re-running does not call step-ca again.
    let (status, _, again) = delete(&http, &server, "sc-dc", Some(TOKEN));
    assert_eq!(status, 200, "{again}");
    expect(
        &again,
        [
            "already_done",
            "already_done",
            "already_done",
            "skipped",
            "already_done",
        ],
    );

    // step-ca owns revocation: the bridge serves no CRL of its own.
    let (status, body) = rt().block_on(async {
        let resp = http
            .get(format!("{}/api/crl", server.url))
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
    });
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("step_ca_authoritative"))
    );
}
