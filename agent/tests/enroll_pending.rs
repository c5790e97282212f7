//! Enrollment against a scripted bridge stand-in (TLS, pinned root): an enrollment held for an
//! administrator's approval (202, then 200 or 403), the approval timeout (exit 7, keys kept
//! for the next run), zero-touch credentials in the request, a technician's login with the
//! Bearer token (refreshed once), and no secret in the agent's output at debug level.
//! Through the library (`nexa_agent::enroll::enroll`) and the real binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nexa_agent::backoff::Backoff;
use nexa_agent::certs::CertsDir;
use nexa_agent::config::{AgentConfig, Overrides};
use nexa_agent::enroll::approval::ApprovalWait;
use nexa_agent::enroll::{EnrollOptions, EnrollOutcome, enroll};
use nexa_agent::secret::SecretString;
use nexa_agent::verify::inspect;
use nexa_proto::{
    CertificateInfo, EnrollPending, EnrollResponse, Fingerprint, TokenResponse, WireguardProfile,
};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use x509_parser::prelude::FromDer;

const ID: &str = "dev-1";
const SITE: &str = "site-north";
/// A well-formed enrollment key (32 bytes of 0x5a).
const KEY: &str = "cek_WlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlo";
const PASSWORD: &str = "correct horse battery staple";

// ---------------------------------------------------------------------------------------------
// A CA like the bridge's.

struct Pki {
    issuing: Issuer<'static, KeyPair>,
    chain_pem: String,
    fingerprint: Fingerprint,
    server_chain: Vec<CertificateDer<'static>>,
    server_key_pem: String,
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

fn ca(cn: &str, depth: u8) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = name(cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(depth));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::days(1);
    p.not_after = now + time::Duration::days(3650);
    p
}

/// A P-256 public key given as its raw point (what a CSR carries).
struct RawKey(Vec<u8>);

impl rcgen::PublicKeyData for RawKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

impl Pki {
    fn new() -> Self {
        let root_key = KeyPair::generate().unwrap();
        let root_params = ca("Test Root", 1);
        let root = root_params.self_signed(&root_key).unwrap();
        let root_issuer = Issuer::new(root_params, root_key);
        let issuing_key = KeyPair::generate().unwrap();
        let issuing_params = ca("Test Issuing", 0);
        let issuing_cert = issuing_params
            .signed_by(&issuing_key, &root_issuer)
            .unwrap();
        let issuing = Issuer::new(issuing_params, issuing_key);
        let server_key = KeyPair::generate().unwrap();
        let mut sp = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        sp.distinguished_name = name("bridge");
        sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server = sp.signed_by(&server_key, &issuing).unwrap();
        Self {
            issuing,
            chain_pem: format!("{}{}", issuing_cert.pem(), root.pem()),
            fingerprint: Fingerprint::of_der(root.der()),
            server_chain: vec![
                server.der().clone(),
                issuing_cert.der().clone(),
                root.der().clone(),
            ],
            server_key_pem: server_key.serialize_pem(),
        }
    }

    fn device(&self, public: &RawKey) -> String {
        let mut p = CertificateParams::new(vec![ID.to_owned()]).unwrap();
        p.distinguished_name = name(ID);
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let now = OffsetDateTime::now_utc();
        p.not_before = now - time::Duration::minutes(5);
        p.not_after = now + time::Duration::days(30);
        p.serial_number = Some(SerialNumber::from_slice(&rand::random::<[u8; 16]>()));
        p.signed_by(public, &self.issuing).unwrap().pem()
    }
}

// ---------------------------------------------------------------------------------------------
// The bridge stand-in: answers from a script, records every request.

#[derive(Debug, Clone)]
enum Reply {
    /// 200/201 with a certificate for the CSR's key.
    Sign,
    /// 202 `EnrollPending`; `Retry-After` when given.
    Pending {
        retry_after: Option<u64>,
    },
    /// 200 `TokenResponse` with this access token (refresh token `ref-` + the same suffix).
    Token(&'static str),
    Error {
        status: u16,
        code: &'static str,
    },
}

#[derive(Debug, Clone)]
struct Seen {
    path: String,
    authorization: Option<String>,
    body: serde_json::Value,
    csr_key: Option<Vec<u8>>,
}

#[derive(Clone)]
struct Bridge {
    url: String,
    script: Arc<Mutex<VecDeque<Reply>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Bridge {
    fn start(pki: &Arc<Pki>, script: Vec<Reply>) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::from_pem_slice(pki.server_key_pem.as_bytes()).unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(pki.server_chain.clone(), key)
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let bridge = Bridge {
            url: format!(
                "https://127.0.0.1:{}/",
                listener.local_addr().unwrap().port()
            ),
            script: Arc::new(Mutex::new(script.into())),
            seen: Arc::new(Mutex::new(Vec::new())),
        };
        let (b, pki) = (bridge.clone(), pki.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let conn = rustls::ServerConnection::new(config.clone()).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, stream);
                let _ = b.serve(&pki, &mut tls);
            }
        });
        bridge
    }

    fn serve(
        &self,
        pki: &Pki,
        tls: &mut rustls::StreamOwned<rustls::ServerConnection, std::net::TcpStream>,
    ) -> std::io::Result<()> {
        let mut reader = BufReader::new(&mut *tls);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let path = line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let (mut length, mut authorization) = (0usize, None);
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            if h.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if k.eq_ignore_ascii_case("authorization") {
                    authorization = Some(v.trim().to_owned());
                }
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body)?;
        drop(reader);
        let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let csr_key = request["csr_pem"].as_str().map(csr_public_key);
        self.seen.lock().unwrap().push(Seen {
            path: path.clone(),
            authorization,
            body: request,
            csr_key: csr_key.clone(),
        });
        let scripted = self.script.lock().unwrap().pop_front();
        let reply = scripted.unwrap_or(if path.contains("/auth/") {
            Reply::Token("acc-default")
        } else {
            Reply::Sign
        });
        let (status, json, retry_after) = match reply {
            Reply::Error { status, code } => (
                status,
                serde_json::json!({"error": {"code": code, "message": format!("scripted {code}")}}),
                None,
            ),
            Reply::Pending { retry_after } => (
                202,
                serde_json::to_value(EnrollPending {
                    device_id: ID.into(),
                    status: "pending".into(),
                    pending_id: "pend-1".into(),
                    message: "the machine looks like an enrolled device".into(),
                    retry_after_s: retry_after.unwrap_or(0),
                })
                .unwrap(),
                retry_after,
            ),
            Reply::Token(access) => (
                200,
                serde_json::to_value(TokenResponse {
                    access_token: access.into(),
                    token_type: "Bearer".into(),
                    expires_in: 900,
                    refresh_token: access.replacen("acc-", "ref-", 1),
                    refresh_expires_in: 86_400,
                    username: "tech".into(),
                    role: "technician".into(),
                })
                .unwrap(),
                None,
            ),
            Reply::Sign => {
                let cert_pem = pki.device(&RawKey(csr_key.unwrap_or_default()));
                let facts = inspect(&cert_pem, "issued").unwrap().facts;
                let json = serde_json::to_value(EnrollResponse {
                    device_id: ID.into(),
                    certificate_pem: cert_pem,
                    ca_chain_pem: pki.chain_pem.clone(),
                    wireguard_config: String::new(),
                    wireguard: WireguardProfile {
                        address: "10.8.0.2/24".into(),
                        server_public_key: "CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=".into(),
                        endpoint: "127.0.0.1:51820".into(),
                        allowed_ips: vec!["10.8.0.0/24".into()],
                        persistent_keepalive: 25,
                    },
                    profile_revision: 1,
                    certificate: CertificateInfo {
                        serial: facts.serial_hex,
                        not_after: facts.not_after.format(&Rfc3339).unwrap(),
                    },
                    mqtt_url: None,
                    hawkbit: None,
                })
                .unwrap();
                (200, json, None)
            }
        };
        let body = json.to_string();
        let mut head = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        if let Some(s) = retry_after {
            head.push_str(&format!("Retry-After: {s}\r\n"));
        }
        head.push_str("\r\n");
        tls.write_all(head.as_bytes())?;
        tls.write_all(body.as_bytes())?;
        tls.conn.send_close_notify();
        tls.flush()
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn enrollments(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.path.ends_with("/enroll"))
            .collect()
    }
}

fn csr_public_key(pem: &str) -> Vec<u8> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    let (_, csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&block.contents)
            .unwrap();
    csr.certification_request_info
        .subject_pki
        .subject_public_key
        .data
        .to_vec()
}

// ---------------------------------------------------------------------------------------------
// A device that is not enrolled yet.

struct Device {
    tmp: tempfile::TempDir,
    certs: CertsDir,
    pki: Arc<Pki>,
}

impl Device {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let certs = CertsDir::new(tmp.path().join("certs"));
        std::fs::create_dir_all(tmp.path().join("sysroot/etc")).unwrap();
        std::fs::write(
            tmp.path().join("sysroot/etc/machine-id"),
            "0123456789abcdef0123456789abcdef\n",
        )
        .unwrap();
        std::fs::write(tmp.path().join("agent.toml"), "").unwrap();
        Self {
            tmp,
            certs,
            pki: Arc::new(Pki::new()),
        }
    }

    fn config(&self, bridge: &str) -> AgentConfig {
        AgentConfig::load(
            &self.tmp.path().join("agent.toml"),
            true,
            Overrides {
                bridge_url: Some(bridge.into()),
                root_fingerprint: Some(self.pki.fingerprint.to_string()),
                device_id: Some(ID.into()),
                certs_dir: Some(self.certs.root().to_owned()),
                state_dir: Some(self.tmp.path().join("run")),
                site_code: Some(SITE.into()),
                enrollment_key: Some(SecretString::new(KEY.into())),
                ..Overrides::default()
            },
        )
        .unwrap()
    }

    fn sysroot(&self) -> PathBuf {
        self.tmp.path().join("sysroot")
    }

    /// The real binary, zero-touch credentials in the environment, logging at debug.
    fn agent(&self, bridge: &str, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nexa-agent"));
        cmd.env_clear()
            .env("NEXA_ENROLLMENT_KEY", KEY)
            .env("NEXA_SITE_CODE", SITE)
            .env("NEXA_LOG", "debug")
            .env("RUST_LOG", "debug")
            .arg("--config")
            .arg(self.tmp.path().join("agent.toml"))
            .args(["--bridge-url", bridge])
            .args(["--root-fingerprint", &self.pki.fingerprint.to_string()])
            .args(["--device-id", ID])
            .arg("--certs-dir")
            .arg(self.certs.root())
            .arg("--state-dir")
            .arg(self.tmp.path().join("run"))
            .args(["--manage-wireguard", "false"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        let mut child = cmd.spawn().unwrap();
        if let Some(text) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        child.wait_with_output().unwrap()
    }

    fn staged(&self) -> bool {
        self.certs.staging().join("device.key").exists()
    }
}

fn fast() -> Backoff {
    Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(100),
        give_up_after: Duration::from_secs(10),
    }
}

fn options(dev: &Device, approval_timeout: Duration) -> EnrollOptions {
    EnrollOptions::new(
        false,
        fast(),
        dev.sysroot(),
        ApprovalWait {
            timeout: approval_timeout,
            initial: Duration::from_millis(20),
            cap: Duration::from_millis(100),
        },
    )
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn text(out: &Output) -> String {
    format!(
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn assert_no_secrets(out: &Output, secrets: &[&str]) {
    let all = text(out);
    for s in secrets {
        assert!(!all.contains(s), "{s:?} appears in the output:\n{all}");
    }
}

fn path_exists(p: &Path) -> bool {
    p.exists()
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn two_pendings_then_enrolled_with_the_same_request_each_time() {
    let dev = Device::new();
    let bridge = Bridge::start(
        &dev.pki,
        vec![
            Reply::Pending {
                retry_after: Some(1),
            },
            Reply::Pending { retry_after: None },
            Reply::Sign,
        ],
    );
    let started = Instant::now();
    let outcome = enroll(
        &dev.config(&bridge.url),
        &options(&dev, Duration::from_secs(60)),
    )
    .await
    .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured"
    );
    let EnrollOutcome::Enrolled {
        approved,
        machine_uid,
        ..
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!(approved.as_deref(), Some("pend-1"));
    let seen = bridge.enrollments();
    assert_eq!(seen.len(), 3);
    for s in &seen {
        assert_eq!(s.path, format!("/api/devices/{ID}/enroll"));
        assert_eq!(s.body, seen[0].body, "the same request every time");
        assert_eq!(s.csr_key, seen[0].csr_key);
        assert_eq!(s.body["site_code"], SITE);
        assert_eq!(s.body["enrollment_key"], KEY);
        assert!(s.authorization.is_none());
    }
    let uid = machine_uid.unwrap();
    assert_eq!(seen[0].body["machine_uid"], uid.value());
    assert_eq!(uid.source_names(), "machine_id");
    assert!(
        !seen[0].body["machine_uid"]
            .as_str()
            .unwrap()
            .contains("0123456789abcdef")
    );
    assert!(!dev.staged() && !path_exists(&dev.certs.staging()));
    // Enrolled with the keys that were staged and sent.
    let flag = dev.certs.read_flag().unwrap().unwrap().unwrap();
    assert_eq!(flag.device_id, ID);
}

#[tokio::test]
async fn pending_then_rejected_is_a_refusal_and_drops_the_staged_keys() {
    let dev = Device::new();
    let bridge = Bridge::start(
        &dev.pki,
        vec![
            Reply::Pending { retry_after: None },
            Reply::Error {
                status: 403,
                code: "enrollment_rejected",
            },
        ],
    );
    let e = enroll(
        &dev.config(&bridge.url),
        &options(&dev, Duration::from_secs(60)),
    )
    .await
    .unwrap_err();
    assert_eq!(e.exit_code(), 3, "{e}");
    assert!(e.to_string().contains("enrollment_rejected"), "{e}");
    assert_eq!(bridge.enrollments().len(), 2);
    assert!(!dev.staged(), "refused keys are removed");
    assert!(dev.certs.read_flag().unwrap().is_none());
}

#[test]
fn the_approval_timeout_exits_7_and_the_next_run_sends_the_same_keys() {
    let dev = Device::new();
    let bridge = Bridge::start(
        &dev.pki,
        vec![Reply::Pending {
            retry_after: Some(1),
        }],
    );
    let out = dev.agent(&bridge.url, &["enroll", "--approval-timeout", "1s"], None);
    assert_eq!(code(&out), 7, "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("enrollment pend-1 waits for an administrator's approval"),
        "{stderr}"
    );
    assert!(
        stderr.contains("still waiting for an administrator's approval")
            && stderr.contains("the same keys are kept"),
        "{stderr}"
    );
    assert!(dev.staged(), "the keys are kept for the next run");
    assert_no_secrets(&out, &[KEY, &KEY[4..]]);

    let st = dev.agent(&bridge.url, &["status"], None);
    assert!(
        String::from_utf8_lossy(&st.stdout)
            .contains("enrollment pend-1 waits for an administrator's approval"),
        "{}",
        text(&st)
    );

    // The administrator approved: the next run completes the same enrollment.
    let out = dev.agent(&bridge.url, &["enroll"], None);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(
        text(&out).contains("reused from an unfinished enrollment"),
        "{}",
        text(&out)
    );
    let seen = bridge.enrollments();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].csr_key, seen[0].csr_key, "the same device key");
    assert_eq!(
        seen[1].body["wg_public_key"], seen[0].body["wg_public_key"],
        "the same WireGuard key"
    );
    assert_eq!(seen[1].body["machine_uid"], seen[0].body["machine_uid"]);
    assert_eq!(seen[1].body["enrollment_key"], KEY);
    assert!(!dev.staged());
    assert_no_secrets(&out, &[KEY, &KEY[4..]]);
}

#[test]
fn a_technician_logs_in_and_enrolls_with_the_bearer_token_refreshed_once() {
    let dev = Device::new();
    let bridge = Bridge::start(
        &dev.pki,
        vec![
            Reply::Token("acc-first-SECRET"),
            Reply::Error {
                status: 401,
                code: "token_expired",
            },
            Reply::Token("acc-second-SECRET"),
            Reply::Sign,
        ],
    );
    let out = dev.agent(
        &bridge.url,
        &["enroll", "--force", "--user", "tech", "--password-fd", "0"],
        Some(&format!("{PASSWORD}\n")),
    );
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(
        text(&out).contains("authorized by technician tech"),
        "{}",
        text(&out)
    );
    let seen = bridge.seen();
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/api/v1/auth/login",
            "/api/devices/dev-1/enroll",
            "/api/v1/auth/refresh",
            "/api/devices/dev-1/enroll",
        ]
    );
    assert_eq!(seen[0].body["username"], "tech");
    assert_eq!(seen[0].body["password"], PASSWORD);
    assert!(seen[0].authorization.is_none());
    assert_eq!(
        seen[1].authorization.as_deref(),
        Some("Bearer acc-first-SECRET")
    );
    assert_eq!(seen[2].body["refresh_token"], "ref-first-SECRET");
    assert_eq!(
        seen[3].authorization.as_deref(),
        Some("Bearer acc-second-SECRET")
    );
    assert_eq!(
        seen[3].csr_key, seen[1].csr_key,
        "the same keys after the refresh"
    );
    assert_eq!(seen[3].body["site_code"], SITE);
    assert_no_secrets(
        &out,
        &[KEY, &KEY[4..], PASSWORD, "first-SECRET", "second-SECRET"],
    );
}

#[test]
fn refused_logins_say_what_to_do_and_change_nothing() {
    for (code_, hint) in [
        (
            "user_disabled",
            "ask an administrator to enable the account",
        ),
        (
            "invalid_credentials",
            "check the user name and the password",
        ),
    ] {
        let dev = Device::new();
        let status = if code_ == "user_disabled" { 403 } else { 401 };
        let bridge = Bridge::start(
            &dev.pki,
            vec![Reply::Error {
                status,
                code: code_,
            }],
        );
        let pw = dev.tmp.path().join("pw");
        std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
        let out = dev.agent(
            &bridge.url,
            &[
                "enroll",
                "--force",
                "--user",
                "tech",
                "--password-file",
                pw.to_str().unwrap(),
            ],
            None,
        );
        assert_eq!(code(&out), 3, "{code_}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(hint) && stderr.contains(code_), "{stderr}");
        assert_eq!(
            bridge.seen().len(),
            1,
            "no enrollment after a refused login"
        );
        assert!(!path_exists(&dev.certs.staging()), "no key staged");
        assert_no_secrets(&out, &[KEY, &KEY[4..], PASSWORD]);
    }
}

#[test]
fn usage_errors_exit_2() {
    let dev = Device::new();
    let unused = "https://127.0.0.1:9/";
    let out = dev.agent(unused, &["enroll", "--user", "tech"], None);
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    // No terminal, no descriptor, no file: refused with what to pass.
    let out = dev.agent(unused, &["enroll", "--force", "--user", "tech"], None);
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--password-fd"),
        "{}",
        text(&out)
    );
    let out = dev.agent(unused, &["enroll", "--approval-timeout", "soon"], None);
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--approval-timeout"));
}

#[test]
fn the_daemon_keeps_waiting_for_the_approval_then_runs() {
    let dev = Device::new();
    let bridge = Bridge::start(&dev.pki, vec![Reply::Pending { retry_after: None }]);
    // Nothing listens there: the daemon runs, reconnecting, once enrolled.
    let broker_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = dev.tmp.path().join("agent.log");
    // systemd's notify socket, with a watchdog of 200 ms (WATCHDOG=1 every 100 ms).
    let notify_path = dev.tmp.path().join("notify");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let notes = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        while let Ok(n) = notify.recv(&mut buf) {
            let note = String::from_utf8_lossy(&buf[..n]).into_owned();
            let done = note.starts_with("STATUS=running");
            got.push(note);
            if done {
                break;
            }
        }
        got
    });
    let mut child = Command::new(env!("CARGO_BIN_EXE_nexa-agent"))
        .env_clear()
        .env("NEXA_ENROLLMENT_KEY", KEY)
        .env("NEXA_SITE_CODE", SITE)
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "200000")
        .arg("--config")
        .arg(dev.tmp.path().join("agent.toml"))
        .args(["--bridge-url", &bridge.url])
        .args(["--root-fingerprint", &dev.pki.fingerprint.to_string()])
        .args(["--device-id", ID])
        .arg("--certs-dir")
        .arg(dev.certs.root())
        .arg("--state-dir")
        .arg(dev.tmp.path().join("run"))
        .args(["--manage-wireguard", "false"])
        .args(["--mqtt-url", &format!("mqtts://127.0.0.1:{broker_port}")])
        .args(["--log", "nexa_agent=debug"])
        .arg("run")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    let wait = |limit: Duration, ok: &dyn Fn() -> bool| {
        let end = Instant::now() + limit;
        while Instant::now() < end && !ok() {
            std::thread::sleep(Duration::from_millis(100));
        }
        ok()
    };
    let pending = wait(Duration::from_secs(10), &|| {
        read().contains("waits for an administrator's approval")
    });
    assert!(pending, "{}", read());
    assert!(
        child.try_wait().unwrap().is_none(),
        "still running: {}",
        read()
    );
    let running = wait(Duration::from_secs(30), &|| {
        read().contains("agent running")
    });
    // The service counted as started before the wait, and the watchdog was fed during it:
    // READY=1 first, then WATCHDOG=1 before the enrollment ended.
    let notes = notes.join().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(running, "{}", read());
    assert_eq!(
        notes.first().map(String::as_str),
        Some("READY=1"),
        "{notes:?}"
    );
    let enrolled = notes
        .iter()
        .position(|n| n.starts_with("STATUS=enrolled as"))
        .unwrap_or_else(|| panic!("no STATUS=enrolled: {notes:?}"));
    assert!(
        notes[..enrolled].iter().any(|n| n == "WATCHDOG=1"),
        "no WATCHDOG=1 while enrolling: {notes:?}"
    );
    assert!(
        notes.iter().filter(|n| *n == "READY=1").count() == 1,
        "{notes:?}"
    );
    let seen = bridge.enrollments();
    assert_eq!(seen.len(), 2, "{}", read());
    assert_eq!(seen[1].body, seen[0].body);
    assert!(read().contains("was approved"), "{}", read());
    assert!(!read().contains(&KEY[4..]));
}
