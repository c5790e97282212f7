//! `POST /api/devices/{id}/renew` against a running bridge, with the device's certificate as
//! TLS client identity (as the agent does): a new certificate for a new key; refusals without
//! a certificate, with another device's, with a superseded one, for a decommissioned or a
//! revoked device; a renewal answer that was lost can be asked for again; and the same
//! through a real step-ca.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use nexa_testkit::stepca::StepCa;
use nexa_testkit::{TestServer, make_csr, text};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// An HTTPS client trusting `root_pem_file`, presenting `cert_pem` (leaf + chain) and `key_pem`.
fn client(root_pem_file: &Path, identity: Option<(&str, &str)>) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(root_pem_file).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let tls = match identity {
        Some((cert_pem, key_pem)) => {
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                    .collect::<Result<_, _>>()
                    .unwrap();
            let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .no_proxy()
        .build()
        .unwrap()
}

/// The identity the agent holds after enrolling: (leaf + chain PEM, key PEM).
fn identity(certs: &Path) -> (String, String) {
    let leaf = std::fs::read_to_string(certs.join("device.crt")).unwrap();
    let chain = std::fs::read_to_string(certs.join("ca-chain.crt")).unwrap();
    let key = std::fs::read_to_string(certs.join("device.key")).unwrap();
    (format!("{leaf}{chain}"), key)
}

fn enroll(server: &TestServer, id: &str, certs: &Path) {
    server.register(&[id]);
    let out = server.agent(id, certs).arg("enroll").output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

async fn renew(
    http: &reqwest::Client,
    server: &TestServer,
    id: &str,
) -> (u16, serde_json::Value, rcgen::KeyPair) {
    let (key, csr) = make_csr(id);
    let resp = http
        .post(format!("{}/api/devices/{id}/renew", server.url))
        .json(&serde_json::json!({ "csr_pem": csr }))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap(), key)
}

fn verify(root: &Path, chain_pem: &str, leaf_pem: &str) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("chain.pem"), chain_pem).unwrap();
    std::fs::write(dir.path().join("leaf.pem"), leaf_pem).unwrap();
    let out = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(root)
        .arg("-untrusted")
        .arg(dir.path().join("chain.pem"))
        .arg(dir.path().join("leaf.pem"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_renews_with_its_certificate_and_gets_one_for_its_new_key() {
    let server = TestServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("certs");
    enroll(&server, "rn-1", &certs);
    let first_serial = server.device("rn-1")["cert_serial"]
        .as_str()
        .unwrap()
        .to_owned();
    let (cert, key) = identity(&certs);
    let http = client(&server.root_cert_path(), Some((&cert, &key)));

    let (status, body, new_key) = renew(&http, &server, "rn-1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["device_id"], "rn-1");
    let serial = body["certificate"]["serial"].as_str().unwrap().to_owned();
    assert_ne!(serial, first_serial);
    let leaf = body["certificate_pem"].as_str().unwrap();
    verify(
        &server.root_cert_path(),
        body["ca_chain_pem"].as_str().unwrap(),
        leaf,
    );
    let leaf_file = tmp.path().join("renewed.crt");
    std::fs::write(&leaf_file, leaf).unwrap();
    let pubkey = Command::new("openssl")
        .args(["x509", "-noout", "-pubkey", "-in"])
        .arg(&leaf_file)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&pubkey.stdout).trim(),
        new_key.public_key_pem().trim(),
        "the certificate is for the CSR's new key"
    );
    assert_eq!(server.device("rn-1")["cert_serial"], serial.as_str());
    let audit = server.cli_ok(&["audit", "--device", "rn-1", "--json"]);
    assert!(audit.contains("device.renewed"), "{audit}");

    // The answer was lost: the device asks again with the certificate it still holds.
    let (status, again, again_key) = renew(&http, &server, "rn-1").await;
    assert_eq!(status, 200, "{again}");
    // It installs that one and later renews with it.
    let installed = format!(
        "{}{}",
        again["certificate_pem"].as_str().unwrap(),
        again["ca_chain_pem"].as_str().unwrap()
    );
    let with_installed = client(
        &server.root_cert_path(),
        Some((&installed, &again_key.serialize_pem())),
    );
    let (status, latest, _) = renew(&with_installed, &server, "rn-1").await;
    assert_eq!(status, 200, "{latest}");
    // From then on the first certificate is no longer usable.
    let (status, body, _) = renew(&http, &server, "rn-1").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("client_certificate_invalid")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not rn-1's current certificate"),
        "{body}"
    );
    assert_eq!(
        server.device("rn-1")["cert_serial"],
        latest["certificate"]["serial"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_name_their_reason() {
    let server = TestServer::start();
    let tmp = tempfile::tempdir().unwrap();
    enroll(&server, "rn-a", &tmp.path().join("a"));
    enroll(&server, "rn-b", &tmp.path().join("b"));

    let anonymous = client(&server.root_cert_path(), None);
    let (status, body, _) = renew(&anonymous, &server, "rn-a").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("client_certificate_required")),
        "{body}"
    );

    let (cert, key) = identity(&tmp.path().join("b"));
    let as_b = client(&server.root_cert_path(), Some((&cert, &key)));
    let (status, body, _) = renew(&as_b, &server, "rn-a").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("client_certificate_invalid")),
        "{body}"
    );
    assert!(
        body["error"]["message"].as_str().unwrap().contains("rn-b"),
        "{body}"
    );

    // A certificate from another CA with the right name.
    let other = TestServer::start();
    let elsewhere = tempfile::tempdir().unwrap();
    enroll(&other, "rn-a", elsewhere.path());
    let (cert, key) = identity(elsewhere.path());
    let forged = client(&server.root_cert_path(), Some((&cert, &key)));
    let (status, body, _) = renew(&forged, &server, "rn-a").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("client_certificate_invalid")),
        "{body}"
    );

    let (cert, key) = identity(&tmp.path().join("a"));
    let as_a = client(&server.root_cert_path(), Some((&cert, &key)));
    server.cli_ok(&["device", "decommission", "rn-a"]);
    let (status, body, _) = renew(&as_a, &server, "rn-a").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("device_decommissioned")),
        "{body}"
    );

    server.cli_ok(&["device", "revoke", "rn-b"]);
    let (status, body, _) = renew(&as_b, &server, "rn-b").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("device_revoked")),
        "{body}"
    );
    assert_eq!(server.device("rn-b")["state"], "revoked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_through_step_ca_chains_to_its_root() {
    let ca = StepCa::start();
    let password = ca.password_file.display().to_string();
    let server = TestServer::start_with(
        &[],
        &[
            ("STEP_CA_URL", ca.url.as_str()),
            ("STEP_CA_FINGERPRINT", ca.root_fingerprint.as_str()),
            ("STEP_CA_PROVISIONER_NAME", ca.provisioner.as_str()),
            ("STEP_CA_PROVISIONER_PASSWORD_FILE", password.as_str()),
        ],
    );
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("certs");
    enroll(&server, "rn-sc", &certs);
    let (cert, key) = identity(&certs);
    let http = client(&ca.root_cert, Some((&cert, &key)));
    let (status, body, _) = renew(&http, &server, "rn-sc").await;
    assert_eq!(status, 200, "{body}");
    verify(
        &ca.root_cert,
        body["ca_chain_pem"].as_str().unwrap(),
        body["certificate_pem"].as_str().unwrap(),
    );
    assert_eq!(
        server.device("rn-sc")["cert_serial"],
        body["certificate"]["serial"]
    );
}
