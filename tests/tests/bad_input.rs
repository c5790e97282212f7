//! Table-driven bad-input suite against a real `nexa-server` over HTTPS.
//!
//! Every row is one request the bridge must refuse with a specific status and error code,
//! answered as `{"error":{"code","message"}}` with a non-empty message. Afterwards the server
//! must still be running and serving, and none of the refused requests may have left a trace
//! in the audit trail or in any device.
//!
//! Requests go through `TestServer::http_client()` (reqwest). A few paths (`%2e%2e`, literal
//! `..`) would be normalised away by the client's URL parser before they ever left the test,
//! so those rows are sent verbatim over a raw TLS connection instead.

// Helpers outside #[test] functions panic on purpose: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use nexa_testkit::{TestServer, make_csr, wg_public_key};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use reqwest::Method;
use serde_json::{Value, json};

/// Registered device the CSR / JSON / key rows target, so only the broken part is wrong.
const DEV: &str = "bad-1";
/// Registered device for the positional-array row, isolated in case it is (wrongly) enrolled.
const ARR_DEV: &str = "arr-1";
/// Never registered.
const GHOST: &str = "ghost-1";
/// Default request body limit of `nexa-server serve`.
const BODY_LIMIT: usize = 64 * 1024;

const JSON: Option<&str> = Some("application/json");

/// One bad request and the answer it must get.
#[derive(Debug)]
struct Case {
    name: String,
    method: Method,
    path: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
}

fn case(
    name: impl Into<String>,
    method: Method,
    path: impl Into<String>,
    content_type: Option<&'static str>,
    body: impl Into<Vec<u8>>,
    status: u16,
    code: &'static str,
) -> Case {
    Case {
        name: name.into(),
        method,
        path: path.into(),
        content_type,
        body: body.into(),
        status,
        code,
    }
}

fn enroll_path(id: &str) -> String {
    format!("/api/devices/{id}/enroll")
}

fn body(csr_pem: &str, wg_key: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({ "csr_pem": csr_pem, "wg_public_key": wg_key })).unwrap()
}

/// A PEM block with 64-character lines.
fn pem_wrap(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The DER inside a single PEM block.
fn pem_der(pem: &str) -> Vec<u8> {
    let b64: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    STANDARD.decode(b64.trim()).unwrap()
}

/// A PEM CSR with the given subject, signed by a fresh key of `alg`.
fn csr_with(alg: &'static rcgen::SignatureAlgorithm, dn: DistinguishedName) -> String {
    let key = KeyPair::generate_for(alg).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = dn;
    params.serialize_request(&key).unwrap().pem().unwrap()
}

fn cn(value: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, value);
    dn
}

/// Runs `openssl` with `args` in `dir`; panics with its output on failure.
fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run the openssl CLI ({e}); install openssl (apt-get install openssl)")
        });
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        nexa_testkit::text(&out)
    );
    out.stdout
}

/// A CSR made by the openssl CLI with `newkey` (e.g. `rsa:2048`) and `subj`.
fn openssl_csr(dir: &Path, name: &str, newkey: &[&str], subj: &str) -> String {
    let key = format!("{name}.key");
    let csr = format!("{name}.csr");
    let mut args = vec![
        "req", "-new", "-nodes", "-keyout", &key, "-out", &csr, "-subj", subj,
    ];
    args.extend_from_slice(newkey);
    openssl(dir, &args);
    std::fs::read_to_string(dir.join(csr)).unwrap()
}

/// Flips one bit of the byte at `at` in the CSR's DER and re-encodes it as PEM.
fn tamper(pem: &str, at: impl FnOnce(&[u8]) -> usize) -> String {
    let mut der = pem_der(pem);
    let i = at(&der);
    der[i] ^= 0x01;
    pem_wrap("CERTIFICATE REQUEST", &der)
}

/// Position of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("{needle:02x?} not found in DER"))
}

fn cases(server: &TestServer, tmp: &Path) -> Vec<Case> {
    use Method as M;
    let wg = wg_public_key();
    let (key, good) = make_csr(DEV);
    let post = |name: &str, csr: &str, status: u16, code: &'static str| {
        case(
            name,
            M::POST,
            enroll_path(DEV),
            JSON,
            body(csr, &wg),
            status,
            code,
        )
    };
    let good_der = pem_der(&good);
    let mut c = Vec::new();

    // ---- PEM framing: 422 csr_invalid_pem
    c.push(post(
        "csr garbage",
        "this is not a CSR at all",
        422,
        "csr_invalid_pem",
    ));
    c.push(post("csr empty string", "", 422, "csr_invalid_pem"));
    let lines: Vec<&str> = good.lines().collect();
    let mut truncated = lines[..lines.len() - 1].join("\n");
    truncated.truncate(truncated.len() - 7); // cut mid-line: base64 no longer a multiple of 4
    truncated.push_str("\n-----END CERTIFICATE REQUEST-----\n");
    c.push(post(
        "csr truncated base64",
        &truncated,
        422,
        "csr_invalid_pem",
    ));
    let half = &good[..good.len() / 2];
    c.push(post(
        "csr cut off, no END line",
        half,
        422,
        "csr_invalid_pem",
    ));
    let bad_b64 = good.replacen(&lines[1][..8], "!!!!****", 1);
    c.push(post(
        "csr base64 with invalid characters",
        &bad_b64,
        422,
        "csr_invalid_pem",
    ));
    c.push(post(
        "csr under CERTIFICATE label",
        &pem_wrap("CERTIFICATE", &good_der),
        422,
        "csr_invalid_pem",
    ));
    c.push(post(
        "csr is a PRIVATE KEY",
        &key.serialize_pem(),
        422,
        "csr_invalid_pem",
    ));
    let (_, other) = make_csr(DEV);
    c.push(post(
        "two CSRs concatenated",
        &format!("{good}{other}"),
        422,
        "csr_invalid_pem",
    ));
    c.push(post(
        "csr followed by text",
        &format!("{good}trailing text\n"),
        422,
        "csr_invalid_pem",
    ));
    // A valid CSR plus trailing blank lines (otherwise accepted): > 16 KiB, body < 64 KiB.
    let huge = format!("{good}{}", "\n".repeat(17 * 1024));
    c.push(post("csr over 16 KiB", &huge, 422, "csr_invalid_pem"));

    // ---- DER structure: 422 csr_malformed
    c.push(post(
        "csr DER truncated (valid base64)",
        &pem_wrap("CERTIFICATE REQUEST", &good_der[..good_der.len() - 20]),
        422,
        "csr_malformed",
    ));
    c.push(post(
        "csr DER is random bytes",
        &pem_wrap("CERTIFICATE REQUEST", &[0x42; 200]),
        422,
        "csr_malformed",
    ));
    let mut trailing = good_der.clone();
    trailing.extend_from_slice(&[0, 0, 0, 0]);
    c.push(post(
        "csr DER with trailing bytes",
        &pem_wrap("CERTIFICATE REQUEST", &trailing),
        422,
        "csr_malformed",
    ));

    // ---- key type: 422 csr_unsupported_key
    let rsa = openssl_csr(tmp, "rsa", &["-newkey", "rsa:2048"], &format!("/CN={DEV}"));
    c.push(post(
        "csr RSA-2048 (openssl)",
        &rsa,
        422,
        "csr_unsupported_key",
    ));
    c.push(post(
        "csr EC P-384",
        &csr_with(&rcgen::PKCS_ECDSA_P384_SHA384, cn(DEV)),
        422,
        "csr_unsupported_key",
    ));
    c.push(post(
        "csr Ed25519",
        &csr_with(&rcgen::PKCS_ED25519, cn(DEV)),
        422,
        "csr_unsupported_key",
    ));

    // ---- signature: 422 csr_signature_invalid
    // The signature BIT STRING ends the DER; its last byte is the low byte of ECDSA `s`.
    c.push(post(
        "csr signature tampered",
        &tamper(&good, |der| der.len() - 1),
        422,
        "csr_signature_invalid",
    ));
    // Uncompressed P-256 point: BIT STRING (0x03 0x42 0x00) then 0x04 X Y. Flip a bit of Y.
    c.push(post(
        "csr public key tampered",
        &tamper(&good, |der| find(der, &[0x03, 0x42, 0x00, 0x04]) + 4 + 60),
        422,
        "csr_signature_invalid",
    ));
    // Signed for CN=bad-0, then the subject rewritten to CN=bad-1 (same length).
    let (_, other_cn) = make_csr("bad-0");
    let mut der = pem_der(&other_cn);
    let at = find(&der, b"bad-0");
    der[at..at + 5].copy_from_slice(DEV.as_bytes());
    c.push(post(
        "csr subject rewritten after signing",
        &pem_wrap("CERTIFICATE REQUEST", &der),
        422,
        "csr_signature_invalid",
    ));

    // ---- subject: 422 csr_subject_mismatch
    c.push(post(
        "csr CN is another id",
        &make_csr("bad-2").1,
        422,
        "csr_subject_mismatch",
    ));
    c.push(post(
        "csr CN differs in case",
        &make_csr("BAD-1").1,
        422,
        "csr_subject_mismatch",
    ));
    let mut org_only = DistinguishedName::new();
    org_only.push(DnType::OrganizationName, "Nexa");
    c.push(post(
        "csr without CN",
        &csr_with(&rcgen::PKCS_ECDSA_P256_SHA256, org_only),
        422,
        "csr_subject_mismatch",
    ));
    let two_cns = openssl_csr(
        tmp,
        "twocn",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
        &format!("/CN={DEV}/CN=bad-2"),
    );
    c.push(post(
        "csr with two CNs (openssl)",
        &two_cns,
        422,
        "csr_subject_mismatch",
    ));

    // ---- device id in the path: 400 invalid_device_id
    let valid = body(&good, &wg);
    for (name, id) in [
        ("path ..%2F..%2Fetc", "..%2F..%2Fetc"),
        ("path ..%2F..%2Fetc%2Fpasswd", "..%2F..%2Fetc%2Fpasswd"),
        ("path %2e%2e", "%2e%2e"),
        ("path %2E%2E%2F", "%2E%2E%2F"),
        ("path id with %20 space", "bad%201"),
        ("path empty id", ""),
        ("path id 65 chars", &"a".repeat(65)),
        ("path -leading", "-leading"),
        ("path trailing.", "bad-1."),
        ("path non-UTF-8 %FF", "%FF"),
        ("path NUL %00", "bad%001"),
        ("path non-ASCII %C3%A9", "d%C3%A9v"),
        ("path id with ; and =", "a;b=c"),
    ] {
        c.push(case(
            name,
            M::POST,
            enroll_path(id),
            JSON,
            valid.clone(),
            400,
            "invalid_device_id",
        ));
    }
    // Literal dot segments (sent raw): no route matches; nothing is resolved on disk.
    c.push(case(
        "path literal ../../etc/passwd",
        M::POST,
        "/api/devices/../../etc/passwd",
        JSON,
        valid.clone(),
        404,
        "not_found",
    ));

    // ---- body size: 413 payload_too_large
    // A well-formed request, ~100 KiB because of an oversized hostname.
    let over = serde_json::to_vec(&json!({
        "csr_pem": good, "wg_public_key": wg, "hostname": "x".repeat(100 * 1024),
    }))
    .unwrap();
    assert!(over.len() > BODY_LIMIT);
    c.push(case(
        "body 100 KiB",
        M::POST,
        enroll_path(DEV),
        JSON,
        over,
        413,
        "payload_too_large",
    ));
    c.push(case(
        "body just over the limit",
        M::POST,
        enroll_path(DEV),
        JSON,
        vec![b' '; BODY_LIMIT + 1],
        413,
        "payload_too_large",
    ));
    c.push(case(
        "body 10 MiB",
        M::POST,
        enroll_path(DEV),
        JSON,
        vec![b'{'; 10 * 1024 * 1024],
        413,
        "payload_too_large",
    ));

    // ---- content type: 415 unsupported_media_type
    for (name, ct) in [
        ("content-type text/plain", Some("text/plain")),
        ("content-type none", None),
        (
            "content-type form-urlencoded",
            Some("application/x-www-form-urlencoded"),
        ),
        ("content-type application/jsonx", Some("application/jsonx")),
        (
            "content-type multipart",
            Some("multipart/form-data; boundary=x"),
        ),
    ] {
        c.push(case(
            name,
            M::POST,
            enroll_path(DEV),
            ct,
            valid.clone(),
            415,
            "unsupported_media_type",
        ));
    }

    // ---- JSON: 400 malformed_json
    let mut trunc = valid.clone();
    trunc.truncate(valid.len() / 2);
    let bad_json: Vec<(&str, Vec<u8>)> = vec![
        ("json empty body", Vec::new()),
        ("json truncated", trunc),
        ("json is a string", b"\"hello\"".to_vec()),
        ("json is a number", b"42".to_vec()),
        ("json is null", b"null".to_vec()),
        ("json empty array", b"[]".to_vec()),
        (
            "json wrong field types",
            br#"{"csr_pem": 1, "wg_public_key": true}"#.to_vec(),
        ),
        (
            "json csr_pem null",
            serde_json::to_vec(&json!({"csr_pem": null, "wg_public_key": wg})).unwrap(),
        ),
        (
            "json hostname is a number",
            serde_json::to_vec(&json!({"csr_pem": good, "wg_public_key": wg, "hostname": 7}))
                .unwrap(),
        ),
        (
            "json missing csr_pem",
            serde_json::to_vec(&json!({"wg_public_key": wg})).unwrap(),
        ),
        (
            "json missing wg_public_key",
            serde_json::to_vec(&json!({"csr_pem": good})).unwrap(),
        ),
        ("json empty object", b"{}".to_vec()),
        (
            "json duplicate csr_pem",
            format!(
                r#"{{"csr_pem": {g}, "csr_pem": {g}, "wg_public_key": "{wg}"}}"#,
                g = json!(good)
            )
            .into_bytes(),
        ),
        (
            "json invalid UTF-8",
            b"{\"csr_pem\": \"\xff\xfe\", \"wg_public_key\": \"x\"}".to_vec(),
        ),
        (
            "json trailing garbage",
            [valid.as_slice(), b" xyz"].concat(),
        ),
    ];
    for (name, b) in bad_json {
        c.push(case(
            name,
            M::POST,
            enroll_path(DEV),
            JSON,
            b,
            400,
            "malformed_json",
        ));
    }
    // A JSON array is not an object, even if its elements line up with the fields.
    let (_, arr_csr) = make_csr(ARR_DEV);
    c.push(case(
        "json positional array with valid values",
        M::POST,
        enroll_path(ARR_DEV),
        JSON,
        serde_json::to_vec(&json!([arr_csr, wg_public_key()])).unwrap(),
        400,
        "malformed_json",
    ));

    // ---- WireGuard key: 422 invalid_wireguard_key
    for (name, k) in [
        ("wg key not base64", "not base64!!".to_owned()),
        ("wg key empty", String::new()),
        ("wg key 31 bytes", STANDARD.encode([7u8; 31])),
        ("wg key 33 bytes", STANDARD.encode([7u8; 33])),
        ("wg key all zeros", STANDARD.encode([0u8; 32])),
        ("wg key hex instead of base64", "07".repeat(32)),
    ] {
        c.push(case(
            name,
            M::POST,
            enroll_path(DEV),
            JSON,
            body(&good, &k),
            422,
            "invalid_wireguard_key",
        ));
    }

    // ---- optional fields: 422 invalid_field
    for (name, field, value) in [
        ("hostname with newline", "hostname", "gw\nevil".to_owned()),
        ("hostname 300 chars", "hostname", "h".repeat(300)),
        (
            "machine_uid with control char",
            "machine_uid",
            "abc\u{7}def".to_owned(),
        ),
        ("machine_uid 300 chars", "machine_uid", "m".repeat(300)),
    ] {
        let b = serde_json::to_vec(&json!({ "csr_pem": good, "wg_public_key": wg, field: value }))
            .unwrap();
        c.push(case(
            name,
            M::POST,
            enroll_path(DEV),
            JSON,
            b,
            422,
            "invalid_field",
        ));
    }

    // ---- state: registration and key ownership
    let (_, ghost_csr) = make_csr(GHOST);
    c.push(case(
        "unregistered device, valid CSR",
        M::POST,
        enroll_path(GHOST),
        JSON,
        body(&ghost_csr, &wg),
        403,
        "device_not_registered",
    ));
    let gateway = std::fs::read_to_string(server.data_dir.join("wireguard/public.key")).unwrap();
    let gateway = gateway.trim();
    c.push(post_with_key("gateway's own WireGuard key", &good, gateway));

    // ---- routing
    c.push(case(
        "GET on enroll",
        M::GET,
        enroll_path(DEV),
        None,
        Vec::new(),
        405,
        "method_not_allowed",
    ));
    c.push(case(
        "PUT on enroll",
        M::PUT,
        enroll_path(DEV),
        JSON,
        valid.clone(),
        405,
        "method_not_allowed",
    ));
    c.push(case(
        "DELETE on enroll",
        M::DELETE,
        enroll_path(DEV),
        None,
        Vec::new(),
        405,
        "method_not_allowed",
    ));
    c.push(case(
        "POST on healthz",
        M::POST,
        "/healthz",
        JSON,
        valid.clone(),
        405,
        "method_not_allowed",
    ));
    c.push(case(
        "unknown path",
        M::GET,
        "/api/nope",
        None,
        Vec::new(),
        404,
        "not_found",
    ));
    c.push(case(
        "unknown path under devices",
        M::POST,
        format!("/api/devices/{DEV}/enrol"),
        JSON,
        valid,
        404,
        "not_found",
    ));
    c
}

fn post_with_key(name: &str, csr: &str, key: &str) -> Case {
    case(
        name,
        Method::POST,
        enroll_path(DEV),
        JSON,
        body(csr, key),
        409,
        "wireguard_key_in_use",
    )
}

/// What came back for one request.
#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

async fn send(server: &TestServer, client: &reqwest::Client, c: &Case) -> Result<Answer, String> {
    let url = format!("{}{}", server.url, c.path);
    let parsed = reqwest::Url::parse(&url).map_err(|e| format!("bad url {url}: {e}"))?;
    if parsed.path() != c.path {
        // reqwest would send a different path than the row asks for; send it verbatim.
        let root = server.root_cert_path();
        let (port, method, path, ct, body) = (
            server.port,
            c.method.to_string(),
            c.path.clone(),
            c.content_type,
            c.body.clone(),
        );
        return tokio::task::spawn_blocking(move || {
            raw_request(&root, port, &method, &path, ct, &body)
        })
        .await
        .map_err(|e| e.to_string())?;
    }
    let mut req = client
        .request(c.method.clone(), parsed)
        .body(c.body.clone());
    if let Some(ct) = c.content_type {
        req = req.header(reqwest::header::CONTENT_TYPE, ct);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| format!("request failed: {e:?}"))?;
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = resp
        .bytes()
        .await
        .map_err(|e| format!("reading the response failed: {e:?}"))?
        .to_vec();
    Ok(Answer {
        status,
        content_type,
        body,
    })
}

/// One HTTP/1.1 request over TLS with the path exactly as given.
fn raw_request(
    root: &Path,
    port: u16,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Answer, String> {
    let pem = std::fs::read(root).map_err(|e| e.to_string())?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(&pem) {
        let cert: rustls_pki_types::CertificateDer<'static> = cert.map_err(|e| e.to_string())?;
        roots.add(cert).map_err(|e| e.to_string())?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let sock = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(ct) = content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    head.push_str("\r\n");
    tls.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
    tls.write_all(body).map_err(|e| e.to_string())?;
    tls.flush().map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    if let Err(e) = tls.read_to_end(&mut raw) {
        // A peer closing without close_notify is fine once the response is in.
        if raw.is_empty() {
            return Err(format!("reading the raw response failed: {e}"));
        }
    }
    let split = find(&raw, b"\r\n\r\n");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut payload = raw[split + 4..].to_vec();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    let header = |name: &str| {
        head.lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
    };
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        payload = dechunk(&payload);
    } else if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        payload.truncate(len);
    }
    Ok(Answer {
        status,
        content_type: header("content-type").unwrap_or_default(),
        body: payload,
    })
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}

/// Checks one answer against its row; returns what is wrong.
fn check(c: &Case, answer: &Answer) -> Vec<String> {
    let mut wrong = Vec::new();
    if answer.status != c.status {
        wrong.push(format!("status {} (want {})", answer.status, c.status));
    }
    if !answer
        .content_type
        .to_ascii_lowercase()
        .starts_with("application/json")
    {
        wrong.push(format!(
            "content-type {:?} (want application/json)",
            answer.content_type
        ));
    }
    match serde_json::from_slice::<Value>(&answer.body) {
        Err(e) => wrong.push(format!(
            "body is not JSON ({e}): {:?}",
            shorten(&String::from_utf8_lossy(&answer.body))
        )),
        Ok(v) => {
            let code = v.pointer("/error/code").and_then(Value::as_str);
            let message = v.pointer("/error/message").and_then(Value::as_str);
            if code != Some(c.code) {
                wrong.push(format!("code {code:?} (want {:?})", c.code));
            }
            if message.is_none_or(|m| m.trim().is_empty()) {
                wrong.push("error.message missing or empty".into());
            }
            if !wrong.is_empty() {
                wrong.push(format!("body: {}", shorten(&v.to_string())));
            }
        }
    }
    wrong
}

/// At most 300 characters of `s`, for failure messages.
fn shorten(s: &str) -> String {
    match s.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// `(action, device_id)` of every audit event, sorted.
fn audit_events(server: &TestServer) -> Vec<(String, String)> {
    let mut events: Vec<(String, String)> = server
        .cli_ok(&["audit", "--json", "--limit", "1000"])
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["action"].as_str().unwrap_or_default().to_owned(),
                v["device_id"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    events.sort();
    events
}

fn devices(server: &TestServer) -> Value {
    serde_json::from_str(&server.cli_ok(&["device", "list", "--json"])).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_with_the_right_code_and_changes_nothing() {
    let mut server = TestServer::start();
    server.register(&[DEV, ARR_DEV]);
    let tmp = tempfile::tempdir().unwrap();
    let cases = cases(&server, tmp.path());
    assert!(cases.len() >= 32, "only {} cases", cases.len());
    let mut names = std::collections::HashSet::new();
    for c in &cases {
        assert!(
            names.insert(c.name.as_str()),
            "duplicate case name {:?}",
            c.name
        );
    }
    let devices_before = devices(&server);
    let audit_before = audit_events(&server);
    let client = server.http_client();

    // Every row is checked and every failure collected, so one run shows all of them.
    let mut failures = Vec::new();
    for c in &cases {
        match send(&server, &client, c).await {
            Err(e) => failures.push(format!("{} ({} {}): {e}", c.name, c.method, c.path)),
            Ok(answer) => {
                let wrong = check(c, &answer);
                if !wrong.is_empty() {
                    failures.push(format!(
                        "{} ({} {}): {}",
                        c.name,
                        c.method,
                        c.path,
                        wrong.join("; ")
                    ));
                }
            }
        }
        assert!(
            server.is_running(),
            "server died on case {:?}; log:\n{}",
            c.name,
            server.log()
        );
    }

    // Nothing a refused request did is visible anywhere.
    let devices_after = devices(&server);
    if devices_after != devices_before {
        failures.push(format!(
            "devices changed:\n    before {devices_before}\n    after  {devices_after}"
        ));
    }
    let audit_after = audit_events(&server);
    if audit_after != audit_before {
        failures.push(format!(
            "audit events written:\n    before {audit_before:?}\n    after  {audit_after:?}"
        ));
    }
    for id in [DEV, ARR_DEV] {
        let state = server.device(id)["state"].clone();
        if state != "registered" {
            failures.push(format!("device {id} is {state}, not registered"));
        }
    }

    // And the server kept serving.
    assert!(server.is_running(), "server exited; log:\n{}", server.log());
    let health = client
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200, "healthz after the bad input");
    server.register(&["ok-1"]);
    let (_, csr) = make_csr("ok-1");
    let ok_key = wg_public_key();
    let resp = client
        .post(format!("{}{}", server.url, enroll_path("ok-1")))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body(&csr, &ok_key))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 201, "valid enrollment after the bad input: {text}");
    let enrolled: nexa_proto::EnrollResponse = serde_json::from_str(&text).unwrap();
    assert_eq!(enrolled.device_id, "ok-1");
    assert_eq!(server.device("ok-1")["state"], "enrolled");

    // A key now owned by ok-1 is refused for another device, again without a trace.
    let taken = post_with_key("wg key owned by another device", &make_csr(DEV).1, &ok_key);
    let answer = send(&server, &client, &taken).await.unwrap();
    let wrong = check(&taken, &answer);
    if !wrong.is_empty() {
        failures.push(format!("{}: {}", taken.name, wrong.join("; ")));
    }

    let mut want = vec![
        ("device.enrolled".to_owned(), "ok-1".to_owned()),
        ("device.registered".to_owned(), ARR_DEV.to_owned()),
        ("device.registered".to_owned(), DEV.to_owned()),
        ("device.registered".to_owned(), "ok-1".to_owned()),
    ];
    want.sort();
    let audit_final = audit_events(&server);
    if audit_final != want {
        failures.push(format!(
            "audit trail is not just the registrations and one enrollment:\n    want {want:?}\n    got  {audit_final:?}"
        ));
    }
    assert!(server.is_running(), "server exited; log:\n{}", server.log());

    assert!(
        failures.is_empty(),
        "{} problems over {} bad-input cases:\n  {}\n--- server log\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n  "),
        server.log()
    );
}
