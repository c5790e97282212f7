//! Black-box enrollment the way the original manual runbook does it: the `openssl` CLI makes
//! the key and CSR, `curl` talks to the bridge, `openssl` checks what came back. No Rust
//! crypto touches the client side.
//!
//! The openssl and curl CLIs are required; without them this test fails (it never skips).

// Helpers outside #[test] functions panic on purpose: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use nexa_testkit::{TestServer, text};
use serde_json::{Value, json};

const ID: &str = "runbook-01";

/// Fails the test, naming the tool to install, when `tool` cannot be run.
fn require_tool(tool: &str, version_arg: &str) {
    match Command::new(tool).arg(version_arg).output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "`{tool} {version_arg}` failed; this test needs a working {tool} CLI \
             (install it, e.g. `apt-get install {tool}`; scripts/test.sh installs it):\n{}",
            text(&out)
        ),
        Err(e) => panic!(
            "cannot run `{tool}` ({e}); this test needs the {tool} CLI — install it \
             (e.g. `apt-get install {tool}`; scripts/test.sh installs it)"
        ),
    }
}

/// Runs `program args` in `dir` and returns its output; panics if it cannot be started.
fn run(dir: &Path, program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} {args:?}: {e}"))
}

/// Like [`run`], requiring success; returns stdout as text.
fn run_ok(dir: &Path, program: &str, args: &[&str]) -> String {
    let out = run(dir, program, args);
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{}",
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `openssl ecparam` P-256 key in `key` and a CSR with CN=`cn` in `csr`.
fn make_key_and_csr(dir: &Path, key: &str, csr: &str, cn: &str) -> String {
    run_ok(
        dir,
        "openssl",
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            key,
        ],
    );
    run_ok(
        dir,
        "openssl",
        &[
            "req",
            "-new",
            "-key",
            key,
            "-subj",
            &format!("/CN={cn}"),
            "-out",
            csr,
        ],
    );
    std::fs::read_to_string(dir.join(csr)).unwrap()
}

/// POSTs `body_file` with curl; returns (HTTP status, response body).
fn curl_post(dir: &Path, server: &TestServer, body_file: &str, out_file: &str) -> (u16, String) {
    let url = format!("{}/api/devices/{ID}/enroll", server.url);
    let cacert = server.root_cert_path();
    let out = run(
        dir,
        "curl",
        &[
            "-sS",
            "--cacert",
            cacert.to_str().unwrap(),
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &format!("@{body_file}"),
            "-o",
            out_file,
            "-w",
            "%{http_code}",
            &url,
        ],
    );
    assert!(out.status.success(), "curl failed:\n{}", text(&out));
    let code = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("curl -w gave no status:\n{}", text(&out)));
    let body = std::fs::read_to_string(dir.join(out_file)).unwrap_or_default();
    (code, body)
}

/// The PEM blocks of `pem`, each with whitespace removed (for comparing certificates).
fn pem_blocks(pem: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in pem.lines().map(str::trim) {
        if line.starts_with("-----BEGIN ") {
            current = Some(String::new());
        } else if line.starts_with("-----END ") {
            blocks.extend(current.take());
        } else if let Some(b) = current.as_mut() {
            b.push_str(line);
        }
    }
    blocks
}

fn normalize_fingerprint(s: &str) -> String {
    s.chars()
        .filter(char::is_ascii_hexdigit)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

#[test]
fn enrollment_by_the_runbook_with_openssl_and_curl() {
    require_tool("openssl", "version");
    require_tool("curl", "--version");

    let server = TestServer::start();
    server.register(&[ID]);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let root_crt = server.root_cert_path();
    let issuing_crt = server.issuing_cert_path();

    // Device side: key, CSR, WireGuard public key, request body.
    let csr = make_key_and_csr(dir, "device.key", "device.csr", ID);
    let wg_out = run(dir, "sh", &["-c", "head -c32 /dev/urandom | base64"]);
    assert!(wg_out.status.success(), "{}", text(&wg_out));
    let wg_key = String::from_utf8_lossy(&wg_out.stdout).trim().to_owned();
    assert_eq!(wg_key.len(), 44, "32 bytes in base64: {wg_key:?}");
    let req = json!({ "csr_pem": csr, "wg_public_key": wg_key });
    std::fs::write(dir.join("req.json"), serde_json::to_vec(&req).unwrap()).unwrap();

    // First enrollment: 201.
    let (status, body) = curl_post(dir, &server, "req.json", "resp.json");
    assert_eq!(
        status,
        201,
        "first enrollment: {body}\n--- server log\n{}",
        server.log()
    );
    let resp: Value = serde_json::from_str(&body).unwrap();
    let cert_pem = resp["certificate_pem"].as_str().expect("certificate_pem");
    let chain_pem = resp["ca_chain_pem"].as_str().expect("ca_chain_pem");
    std::fs::write(dir.join("device.crt"), cert_pem).unwrap();
    std::fs::write(dir.join("chain.pem"), chain_pem).unwrap();

    // The certificate chains to the root through the issuing CA.
    let verify = run_ok(
        dir,
        "openssl",
        &[
            "verify",
            "-CAfile",
            root_crt.to_str().unwrap(),
            "-untrusted",
            issuing_crt.to_str().unwrap(),
            "device.crt",
        ],
    );
    assert_eq!(verify.trim(), "device.crt: OK");

    // Subject CN is the id; EKU is client authentication.
    let info = run_ok(
        dir,
        "openssl",
        &[
            "x509",
            "-in",
            "device.crt",
            "-noout",
            "-subject",
            "-ext",
            "extendedKeyUsage",
        ],
    );
    let subject = info
        .lines()
        .find_map(|l| l.strip_prefix("subject="))
        .unwrap_or_else(|| panic!("no subject in {info}"));
    let cns: Vec<&str> = subject
        .split(',')
        .filter_map(|p| p.trim().strip_prefix("CN = "))
        .collect();
    assert_eq!(cns, [ID], "subject {subject:?}");
    let eku: Vec<&str> = info
        .lines()
        .skip_while(|l| !l.contains("X509v3 Extended Key Usage"))
        .nth(1)
        .unwrap_or_else(|| panic!("no extendedKeyUsage in {info}"))
        .split(',')
        .map(str::trim)
        .collect();
    assert_eq!(eku, ["TLS Web Client Authentication"], "{info}");

    // The certificate certifies the device's own key.
    let cert_pub = run_ok(
        dir,
        "openssl",
        &["x509", "-in", "device.crt", "-noout", "-pubkey"],
    );
    let key_pub = run_ok(dir, "openssl", &["ec", "-in", "device.key", "-pubout"]);
    assert_eq!(
        cert_pub.trim(),
        key_pub.trim(),
        "certificate key differs from the device key"
    );

    // The chain: issuing CA then root; the root is the data directory's root.
    let chain = pem_blocks(chain_pem);
    assert_eq!(
        chain.len(),
        2,
        "ca_chain_pem holds {} certificates:\n{chain_pem}",
        chain.len()
    );
    let root = pem_blocks(&std::fs::read_to_string(&root_crt).unwrap());
    let issuing = pem_blocks(&std::fs::read_to_string(&issuing_crt).unwrap());
    assert_eq!(
        chain.last(),
        root.first(),
        "last certificate of the chain is not ca/root.crt"
    );
    assert_eq!(
        chain.first(),
        issuing.first(),
        "first certificate of the chain is not ca/issuing.crt"
    );

    // The fingerprint devices pin is the root's SHA-256.
    let fp = run_ok(
        dir,
        "openssl",
        &[
            "x509",
            "-in",
            root_crt.to_str().unwrap(),
            "-noout",
            "-fingerprint",
            "-sha256",
        ],
    );
    let fp = fp
        .trim()
        .split_once('=')
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("fingerprint output {fp:?}"));
    assert_eq!(
        normalize_fingerprint(fp),
        normalize_fingerprint(&server.fingerprint)
    );
    assert_eq!(normalize_fingerprint(fp).len(), 64);

    // The WireGuard profile: no private key, the allocated address.
    let address = resp["wireguard"]["address"]
        .as_str()
        .expect("wireguard.address")
        .to_owned();
    let config = resp["wireguard_config"].as_str().expect("wireguard_config");
    assert!(
        !config.lines().any(|l| l
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("privatekey")),
        "wireguard_config carries a PrivateKey line:\n{config}"
    );
    assert!(
        config.lines().any(|l| l
            .split_once('=')
            .is_some_and(|(k, v)| k.trim() == "Address" && v.trim() == address)),
        "wireguard_config has no `Address = {address}` line:\n{config}"
    );

    // Same body again: 200, same address.
    let (status, body) = curl_post(dir, &server, "req.json", "resp2.json");
    assert_eq!(status, 200, "repeated enrollment: {body}");
    let again: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(again["wireguard"]["address"], address.as_str());

    // A new key for the same id: refused.
    let csr2 = make_key_and_csr(dir, "new.key", "new.csr", ID);
    let req2 = json!({ "csr_pem": csr2, "wg_public_key": wg_key });
    std::fs::write(dir.join("req2.json"), serde_json::to_vec(&req2).unwrap()).unwrap();
    let (status, body) = curl_post(dir, &server, "req2.json", "resp3.json");
    assert_eq!(status, 409, "new key for an enrolled device: {body}");
    let err: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(err["error"]["code"], "device_already_enrolled", "{body}");
    assert!(
        err["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}
