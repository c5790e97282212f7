//! The bridge signing through a real step-ca (`STEP_CA_*`): the device's certificate and the
//! bridge's own TLS certificate chain to step-ca's root, which is what devices pin; a wrong
//! password or fingerprint stops the start with a clear error; step-ca down means 503 with
//! Retry-After, and enrollment works again once it is back; a step-ca refusal is 422 with
//! step-ca's answer; the bridge replaces its short-lived step-ca TLS certificate in place.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};

use nexa_testkit::stepca::StepCa;
use nexa_testkit::{TestServer, make_csr, server_bin, text, wg_public_key};

fn envs(ca: &StepCa) -> Vec<(&'static str, String)> {
    vec![
        ("STEP_CA_URL", ca.url.clone()),
        ("STEP_CA_FINGERPRINT", ca.root_fingerprint.clone()),
        ("STEP_CA_PROVISIONER_NAME", ca.provisioner.clone()),
        (
            "STEP_CA_PROVISIONER_PASSWORD_FILE",
            ca.password_file.display().to_string(),
        ),
    ]
}

fn start_server(ca: &StepCa) -> TestServer {
    let envs = envs(ca);
    let refs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    TestServer::start_with(&[], &refs)
}

fn openssl_verify(root: &std::path::Path, chain: &std::path::Path, leaf: &std::path::Path) {
    let out = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(root)
        .arg("-untrusted")
        .arg(chain)
        .arg(leaf)
        .output()
        .expect("openssl (installed by scripts/test.sh)");
    assert!(out.status.success(), "openssl verify: {}", text(&out));
}

#[test]
fn enrollment_through_step_ca_chains_to_its_root() {
    let ca = StepCa::start();
    let server = start_server(&ca);
    assert_eq!(
        server.fingerprint, ca.root_fingerprint,
        "devices pin step-ca's root"
    );
    server.register(&["sc-dev-1"]);
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("certs");
    // The agent pins step-ca's root: the bridge's TLS certificate comes from step-ca too.
    let out = server
        .agent("sc-dev-1", &certs)
        .arg("enroll")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));

    let leaf = certs.join("device.crt");
    let chain = certs.join("ca-chain.crt");
    openssl_verify(&ca.root_cert, &chain, &leaf);
    let subject = Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-issuer", "-in"])
        .arg(&leaf)
        .output()
        .unwrap();
    let subject = String::from_utf8_lossy(&subject.stdout).into_owned();
    assert!(subject.contains("CN = sc-dev-1"), "{subject}");
    assert!(
        subject.contains("Intermediate CA"),
        "issued by step-ca: {subject}"
    );
    let chain_text = std::fs::read_to_string(&chain).unwrap();
    let intermediate = std::fs::read_to_string(&ca.intermediate_cert).unwrap();
    assert!(
        chain_text.contains(intermediate.trim()),
        "the chain holds step-ca's intermediate"
    );

    // The store keeps step-ca's serial.
    let serial = server.device("sc-dev-1")["cert_serial"]
        .as_str()
        .unwrap()
        .to_owned();
    let leaf_serial = Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(&leaf)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&leaf_serial.stdout)
            .trim()
            .trim_start_matches("serial=")
            .trim_start_matches('0')
            .to_lowercase(),
        serial.trim_start_matches('0'),
    );
}

/// `nexa-server serve` with step-ca settings, expected to fail at start: its stderr.
fn failed_start(ca: &StepCa, change: impl FnOnce(&mut Vec<(&'static str, String)>)) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let mut envs = envs(ca);
    change(&mut envs);
    let mut cmd = Command::new(server_bin());
    cmd.arg("--data-dir")
        .arg(tmp.path().join("data"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("NEXA_GATEWAY", "external")
        .stdin(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "the server started: {}", text(&out));
    text(&out)
}

#[test]
fn a_wrong_password_or_fingerprint_stops_the_start_with_a_clear_error() {
    let ca = StepCa::start();
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong-password");
    std::fs::write(&wrong, "not-the-password\n").unwrap();
    let err = failed_start(&ca, |envs| {
        envs.retain(|(k, _)| *k != "STEP_CA_PROVISIONER_PASSWORD_FILE");
        envs.push((
            "STEP_CA_PROVISIONER_PASSWORD_FILE",
            wrong.display().to_string(),
        ));
    });
    assert!(
        err.contains("password is wrong") && err.contains("STEP_CA_PROVISIONER_PASSWORD"),
        "{err}"
    );

    let other = "00".repeat(32);
    let err = failed_start(&ca, |envs| {
        envs.retain(|(k, _)| *k != "STEP_CA_FINGERPRINT");
        envs.push(("STEP_CA_FINGERPRINT", other.clone()));
    });
    // step-ca has no root under that fingerprint: nothing is trusted, and the setting is named.
    assert!(
        err.contains(&other) && err.contains("STEP_CA_FINGERPRINT"),
        "{err}"
    );

    let err = failed_start(&ca, |envs| {
        envs.retain(|(k, _)| *k != "STEP_CA_PROVISIONER_NAME");
        envs.push(("STEP_CA_PROVISIONER_NAME", "nobody".into()));
    });
    assert!(
        err.contains("no JWK provisioner named \"nobody\"") && err.contains("iot-bridge"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_ca_down_gives_503_with_retry_after_then_enrollment_succeeds() {
    let mut ca = StepCa::start();
    let server = start_server(&ca);
    server.register(&["sc-dev-2"]);
    let (_key, csr) = make_csr("sc-dev-2");
    let body = serde_json::json!({ "csr_pem": csr, "wg_public_key": wg_public_key() });
    let url = format!("{}/api/devices/sc-dev-2/enroll", server.url);
    // The bridge's TLS certificate comes from step-ca: a client trusting only its root.
    let http = ca.http_client();

    ca.stop();
    let started = std::time::Instant::now();
    let resp = http.post(&url).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "no hang"
    );
    let retry_after: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1, "{retry_after}");
    let err: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "signer_unavailable", "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("step-ca"),
        "{err}"
    );
    assert!(
        server.device("sc-dev-2")["cert_serial"].is_null(),
        "nothing stored"
    );

    ca.restart();
    let resp = http.post(&url).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_ca_refusal_is_a_clear_error_naming_its_reason_and_nothing_is_stored() {
    let mut ca = StepCa::start();
    let server = start_server(&ca);
    server.register(&["sc-dev-3"]);
    // step-ca no longer knows the bridge's provisioner: it refuses the bridge's tokens (401).
    ca.edit_config(|config| {
        config["authority"]["provisioners"][0]["name"] = "someone-else".into();
    });
    ca.restart();
    let (_key, csr) = make_csr("sc-dev-3");
    let body = serde_json::json!({ "csr_pem": csr, "wg_public_key": wg_public_key() });
    let resp = ca
        .http_client()
        .post(format!("{}/api/devices/sc-dev-3/enroll", server.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let err: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "signer_rejected", "{err}");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("step-ca answered 401")
            && message.contains("lacked necessary authorization")
            && message.contains("refused the bridge's token"),
        "step-ca's answer is passed on (its 401 bodies are generic): {message}"
    );
    assert!(server.device("sc-dev-3")["cert_serial"].is_null());
    assert!(
        server.log().contains("step-ca answered 401"),
        "the operator's log says it too"
    );
}

/// The serial of the certificate `server` presents in a TLS handshake (openssl s_client).
fn served_serial(server: &TestServer) -> String {
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{}", server.port),
        ])
        .stdin(Stdio::null())
        .output()
        .expect("openssl s_client");
    let pem = String::from_utf8_lossy(&out.stdout);
    let start = pem
        .find("-----BEGIN CERTIFICATE-----")
        .expect("a served certificate");
    let end = pem.find("-----END CERTIFICATE-----").expect("PEM end") + 25;
    let mut x509 = Command::new("openssl")
        .args(["x509", "-noout", "-serial"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(x509.stdin.as_mut().unwrap(), pem[start..end].as_bytes()).unwrap();
    let out = x509.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn the_bridge_replaces_its_short_lived_step_ca_tls_certificate_without_a_restart() {
    // 40 s certificates (step-ca backdates 1 min): the bridge replaces its own at two thirds
    // of 1 min 40 s, about 7 s after issue, and then about every 67 s.
    let ca = StepCa::start_with(nexa_testkit::stepca::StepCaOptions {
        default_tls_cert_duration: Some(std::time::Duration::from_secs(40)),
        min_tls_cert_duration: Some(std::time::Duration::from_secs(10)),
        ..Default::default()
    });
    let server = start_server(&ca);
    let first = served_serial(&server);
    assert!(first.starts_with("serial="), "{first}");
    assert!(
        nexa_testkit::wait_until(std::time::Duration::from_secs(60), || {
            served_serial(&server) != first
        }),
        "the served certificate was not replaced\n{}",
        server.log()
    );
    assert!(
        server
            .log()
            .contains("bridge TLS certificate renewed by step-ca")
    );
    // Still the same process, and devices pinning step-ca's root still enroll.
    server.register(&["sc-dev-4"]);
    let tmp = tempfile::tempdir().unwrap();
    let out = server
        .agent("sc-dev-4", &tmp.path().join("certs"))
        .arg("enroll")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}
