//! The step-ca test harness against the real step-ca (built from Debian's sources by
//! `scripts/stepca.sh`), over HTTPS with its root as the only trust anchor: it is healthy,
//! serves the root the harness fingerprinted and the password-protected JWK provisioner,
//! refuses connections once stopped, and comes back on the same port with the same PKI.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpStream;
use std::time::Duration;

use nexa_testkit::stepca::{PROVISIONER, StepCa, StepCaOptions};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use sha2::{Digest, Sha256};

fn sha256_hex(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn get_json(client: &reqwest::Client, url: &str) -> serde_json::Value {
    let resp = client.get(url).send().await.unwrap();
    // step-ca 0.19 answers GET /roots with 201.
    assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
    resp.json().await.unwrap()
}

/// The fingerprints of the certificates `GET /roots` returns.
async fn served_roots(ca: &StepCa, client: &reqwest::Client) -> Vec<String> {
    let roots = get_json(client, &format!("{}/roots", ca.url)).await;
    roots["crts"]
        .as_array()
        .expect("crts array")
        .iter()
        .map(|pem| {
            let der = CertificateDer::from_pem_slice(pem.as_str().unwrap().as_bytes()).unwrap();
            sha256_hex(&der)
        })
        .collect()
}

#[tokio::test]
async fn health_roots_and_provisioner_over_pinned_https() {
    let ca = StepCa::start();
    assert_eq!(ca.provisioner, PROVISIONER);
    assert!(ca.url.starts_with("https://127.0.0.1:"), "{}", ca.url);
    for file in [
        &ca.root_cert,
        &ca.intermediate_cert,
        &ca.password_file,
        &ca.ca_json,
    ] {
        assert!(file.is_file(), "{} missing", file.display());
    }
    let root_der = CertificateDer::from_pem_file(&ca.root_cert).unwrap();
    assert_eq!(sha256_hex(&root_der), ca.root_fingerprint);
    assert!(
        ca.log()
            .contains(&format!("X.509 Root Fingerprint: {}", ca.root_fingerprint)),
        "step-ca prints another fingerprint; its log:\n{}",
        ca.log()
    );

    let client = ca.http_client();
    for path in ["/health", "/1.0/health"] {
        let resp = client
            .get(format!("{}{path}", ca.url))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "GET {path}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["status"], "ok", "GET {path}");
    }

    assert_eq!(
        served_roots(&ca, &client).await,
        [ca.root_fingerprint.as_str()]
    );

    let list = get_json(&client, &format!("{}/provisioners", ca.url)).await;
    let provisioners = list["provisioners"].as_array().expect("provisioners array");
    assert_eq!(provisioners.len(), 1, "{list}");
    let p = &provisioners[0];
    assert_eq!(p["name"], PROVISIONER);
    assert_eq!(p["type"], "JWK");
    assert_eq!(p["key"]["kid"], ca.provisioner_kid().as_str());
    assert_eq!(p["key"]["crv"], "P-256");
    assert!(p["key"].get("d").is_none(), "public key only: {p}");
    let jwe = p["encryptedKey"].as_str().expect("encryptedKey");
    assert_eq!(jwe, ca.encrypted_key());
    assert_eq!(jwe.split('.').count(), 5, "a compact JWE: {jwe}");

    // The pinning is real: a client trusting another CA's root refuses this one.
    let other = StepCa::start();
    assert_ne!(other.root_fingerprint, ca.root_fingerprint);
    let err = other
        .http_client()
        .get(format!("{}/health", ca.url))
        .send()
        .await
        .expect_err("a foreign root must not verify");
    assert!(err.is_connect(), "{err:?}");
}

#[tokio::test]
async fn stop_refuses_connections_and_restart_keeps_port_and_pki() {
    let mut ca = StepCa::start();
    let client = ca.http_client();
    let (url, port, kid) = (ca.url.clone(), ca.port, ca.provisioner_kid());
    assert!(ca.is_running());

    ca.stop();
    assert!(!ca.is_running());
    assert!(!ca.is_healthy());
    let refused = TcpStream::connect(("127.0.0.1", port)).expect_err("nothing listens");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    let err = client
        .get(format!("{url}/health"))
        .send()
        .await
        .expect_err("step-ca is stopped");
    assert!(err.is_connect(), "{err:?}");

    ca.restart();
    assert!(ca.is_running());
    assert_eq!((ca.url.as_str(), ca.port), (url.as_str(), port));
    // The same client (same pinned root) reaches it again.
    let resp = client.get(format!("{url}/health")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        served_roots(&ca, &client).await,
        [ca.root_fingerprint.as_str()]
    );
    let list = get_json(&client, &format!("{url}/provisioners")).await;
    assert_eq!(list["provisioners"][0]["key"]["kid"], kid.as_str());
    assert_eq!(ca.log().matches("Serving HTTPS on").count(), 2);

    // A crash (SIGKILL) and a restart from stopped work too.
    ca.kill();
    assert!(!ca.is_running());
    ca.restart();
    assert!(ca.is_healthy());
}

#[tokio::test]
async fn options_are_written_into_ca_json_and_accepted() {
    let ca = StepCa::start_with(StepCaOptions {
        default_tls_cert_duration: Some(Duration::from_secs(90)),
        disable_issued_at_check: true,
        no_db: true,
        ..StepCaOptions::default()
    });
    let cfg = ca.config();
    let claims = &cfg["authority"]["claims"];
    assert_eq!(claims["defaultTLSCertDuration"], "90s", "{cfg:#}");
    // Below step-ca's 5-minute minimum, so the minimum follows it.
    assert_eq!(claims["minTLSCertDuration"], "90s", "{cfg:#}");
    assert!(claims.get("maxTLSCertDuration").is_none(), "{cfg:#}");
    assert_eq!(cfg["authority"]["disableIssuedAtCheck"], true);
    assert!(cfg.get("db").is_none(), "no database: {cfg:#}");
    assert!(ca.is_healthy(), "step-ca accepts the claims");
    let resp = ca
        .http_client()
        .get(format!("{}/health", ca.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}
