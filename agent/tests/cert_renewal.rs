//! Certificate renewal against a scripted bridge stand-in speaking the renewal contract over
//! mTLS (`POST /api/devices/{id}/renew`, the server certificate pinned by root fingerprint),
//! through the library (`nexa_agent::renew::renew`) and the real binary (`cert renew`,
//! `cert needs-renewal`, `status`, `wg up`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nexa_agent::backoff::Backoff;
use nexa_agent::bridge::BridgeError;
use nexa_agent::certs::{CertsDir, EnrolledFlag, FLAG_VERSION};
use nexa_agent::config::{AgentConfig, Overrides};
use nexa_agent::error::AgentError;
use nexa_agent::keys::DeviceKey;
use nexa_agent::renew::{MqttCheck, MqttProof, RenewError, RenewOptions, RenewOutcome, renew};
use nexa_agent::verify::inspect;
use nexa_proto::{CertificateInfo, EnrollResponse, Fingerprint, RenewResponse, WireguardProfile};
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

// ---------------------------------------------------------------------------------------------
// A CA like the bridge's: root, issuing CA, the bridge's server certificate.

struct Pki {
    issuing: Issuer<'static, KeyPair>,
    /// Issuing CA, then root (what the bridge answers as `ca_chain_pem`).
    chain_pem: String,
    fingerprint: Fingerprint,
    root_der: CertificateDer<'static>,
    root_pem: String,
    server_chain: Vec<CertificateDer<'static>>,
    /// Leaf + issuing CA, PEM (for mosquitto).
    server_chain_pem: String,
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
        let mut sp =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        sp.distinguished_name = name("bridge");
        sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server = sp.signed_by(&server_key, &issuing).unwrap();
        Self {
            issuing,
            chain_pem: format!("{}{}", issuing_cert.pem(), root.pem()),
            fingerprint: Fingerprint::of_der(root.der()),
            root_der: root.der().clone(),
            root_pem: root.pem(),
            server_chain_pem: format!("{}{}", server.pem(), issuing_cert.pem()),
            server_chain: vec![
                server.der().clone(),
                issuing_cert.der().clone(),
                root.der().clone(),
            ],
            server_key_pem: server_key.serialize_pem(),
        }
    }

    /// A device certificate for `public`, CN = `id`, valid `not_before..not_after`.
    fn device(
        &self,
        id: &str,
        public: &impl rcgen::PublicKeyData,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> String {
        let mut p = CertificateParams::new(vec![id.to_owned()]).unwrap();
        p.distinguished_name = name(id);
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.not_before = not_before;
        p.not_after = not_after;
        p.serial_number = Some(SerialNumber::from_slice(&rand::random::<[u8; 16]>()));
        p.signed_by(public, &self.issuing).unwrap().pem()
    }
}

// ---------------------------------------------------------------------------------------------
// The bridge stand-in.

#[derive(Debug, Clone)]
enum Reply {
    /// 200 with a certificate for the CSR's key.
    Sign,
    /// 200 with a certificate for some other key.
    SignForeign,
    Error {
        status: u16,
        code: &'static str,
        retry_after: Option<u64>,
    },
}

#[derive(Debug, Clone)]
struct Seen {
    path: String,
    /// DER of the client certificate presented, if any.
    client_cert: Option<Vec<u8>>,
    /// The CSR's public key (raw point).
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
        let mut roots = rustls::RootCertStore::empty();
        roots.add(pki.root_der.clone()).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .allow_unauthenticated()
        .build()
        .unwrap();
        let key = PrivateKeyDer::from_pem_slice(pki.server_key_pem.as_bytes()).unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
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
                // A failed handshake or a client that goes away is just the next connection.
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
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            if h.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body)?;
        drop(reader);
        let client_cert = tls
            .conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec());
        let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let csr_key = request["csr_pem"].as_str().map(csr_public_key);
        self.seen.lock().unwrap().push(Seen {
            path: path.clone(),
            client_cert,
            csr_key: csr_key.clone(),
        });
        let reply = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Reply::Sign);
        let (status, json, retry_after) = match reply {
            Reply::Error {
                status,
                code,
                retry_after,
            } => (
                status,
                serde_json::json!({"error": {"code": code, "message": format!("scripted {code}")}}),
                retry_after,
            ),
            Reply::Sign | Reply::SignForeign => {
                let key = match (reply, csr_key) {
                    (Reply::Sign, Some(k)) => RawKey(k),
                    _ => RawKey(KeyPair::generate().unwrap().public_key_raw().to_vec()),
                };
                let nb = OffsetDateTime::now_utc() - time::Duration::minutes(5);
                let na = nb + time::Duration::days(30);
                let cert_pem = pki.device(ID, &key, nb, na);
                let serial = inspect(&cert_pem, "issued").unwrap().facts.serial_hex;
                let certificate = CertificateInfo {
                    serial,
                    not_after: na.format(&Rfc3339).unwrap(),
                };
                let json = if path.ends_with("/enroll") {
                    serde_json::to_value(EnrollResponse {
                        device_id: ID.into(),
                        certificate_pem: cert_pem,
                        ca_chain_pem: pki.chain_pem.clone(),
                        wireguard_config: String::new(),
                        wireguard: WireguardProfile {
                            address: "10.8.0.2/24".into(),
                            server_public_key: "CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk="
                                .into(),
                            endpoint: "127.0.0.1:51820".into(),
                            allowed_ips: vec!["10.8.0.0/24".into()],
                            persistent_keepalive: 25,
                        },
                        profile_revision: 2,
                        certificate,
                        mqtt_url: None,
                        hawkbit: None,
                    })
                } else {
                    serde_json::to_value(RenewResponse {
                        device_id: ID.into(),
                        certificate_pem: cert_pem,
                        ca_chain_pem: pki.chain_pem.clone(),
                        certificate,
                    })
                };
                (200, json.unwrap(), None)
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
}

/// The raw public key of a PEM CSR.
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
// A device.

struct Device {
    tmp: tempfile::TempDir,
    certs: CertsDir,
    pki: Arc<Pki>,
}

impl Device {
    /// Enrolled with a certificate valid `from..to` (relative to now).
    fn enrolled(from: time::Duration, to: time::Duration) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let certs = CertsDir::new(tmp.path().join("certs"));
        std::fs::create_dir_all(certs.root()).unwrap();
        let pki = Arc::new(Pki::new());
        let key = DeviceKey::generate().unwrap();
        let public = KeyPair::from_pem(key.pem()).unwrap();
        let now = OffsetDateTime::now_utc();
        let cert = pki.device(ID, &public, now + from, now + to);
        let facts = inspect(&cert, "cert").unwrap().facts;
        std::fs::write(certs.device_key(), key.pem()).unwrap();
        std::fs::set_permissions(certs.device_key(), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        std::fs::write(certs.device_cert(), &cert).unwrap();
        std::fs::write(certs.ca_chain(), &pki.chain_pem).unwrap();
        std::fs::write(
            certs.wg_conf(),
            "[Interface]\nPrivateKey = BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBA=\nAddress = 10.8.0.2/24\n",
        )
        .unwrap();
        let flag = EnrolledFlag {
            version: FLAG_VERSION,
            device_id: ID.into(),
            enrolled_at: now.format(&Rfc3339).unwrap(),
            bridge: "https://bridge.invalid/".into(),
            root_fingerprint: pki.fingerprint.to_string(),
            serial: facts.serial_hex,
            not_after: facts.not_after.format(&Rfc3339).unwrap(),
            address: "10.8.0.2/24".into(),
            profile_revision: 1,
            mqtt_url: None,
            hawkbit: None,
        };
        std::fs::write(certs.flag(), serde_json::to_vec_pretty(&flag).unwrap()).unwrap();
        Self { tmp, certs, pki }
    }

    /// Enrolled at 90 % of a 30-day lifetime: due.
    fn due() -> Self {
        Self::enrolled(time::Duration::days(-27), time::Duration::days(3))
    }

    fn config(&self, bridge: &str, mqtt_url: Option<&str>) -> AgentConfig {
        AgentConfig::load(
            &self.tmp.path().join("agent.toml"),
            false,
            Overrides {
                bridge_url: Some(bridge.into()),
                root_fingerprint: Some(self.pki.fingerprint.to_string()),
                device_id: Some(ID.into()),
                certs_dir: Some(self.certs.root().to_owned()),
                state_dir: Some(self.tmp.path().join("run")),
                mqtt_url: mqtt_url.map(str::to_owned),
                ..Overrides::default()
            },
        )
        .unwrap()
    }

    /// Every file of the certs directory with its bytes.
    fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        std::fs::read_dir(self.certs.root())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .map(|p| {
                let bytes = std::fs::read(&p).unwrap();
                (p, bytes)
            })
            .collect()
    }

    fn cert_der(&self) -> Vec<u8> {
        inspect(
            &std::fs::read_to_string(self.certs.device_cert()).unwrap(),
            "c",
        )
        .unwrap()
        .der
    }

    fn key_spki(&self) -> Vec<u8> {
        DeviceKey::from_pem(
            std::fs::read_to_string(self.certs.device_key())
                .unwrap()
                .into(),
            "k",
        )
        .unwrap()
        .spki_der()
    }

    fn agent(&self, bridge: &str, args: &[&str]) -> Output {
        std::fs::write(self.tmp.path().join("agent.toml"), "").unwrap();
        Command::new(env!("CARGO_BIN_EXE_nexa-agent"))
            .env_clear()
            .arg("--config")
            .arg(self.tmp.path().join("agent.toml"))
            .args(["--bridge-url", bridge])
            .args(["--root-fingerprint", &self.pki.fingerprint.to_string()])
            .args(["--device-id", ID])
            .arg("--certs-dir")
            .arg(self.certs.root())
            .arg("--state-dir")
            .arg(self.tmp.path().join("run"))
            .args(args)
            .output()
            .unwrap()
    }
}

fn options(force: bool, mqtt: MqttCheck) -> RenewOptions {
    RenewOptions {
        force,
        backoff: Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_secs(2),
            give_up_after: Duration::from_secs(10),
        },
        sysroot: PathBuf::from("/nonexistent-sysroot"),
        mqtt,
        mqtt_timeout: Duration::from_secs(5),
    }
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

fn assert_nothing_staged(certs: &CertsDir) {
    for p in [
        certs.device_key_new(),
        certs.device_cert_new(),
        certs.ca_chain_new(),
        certs.renew_commit(),
    ] {
        assert!(!p.exists(), "{} left behind", p.display());
    }
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_due_certificate_is_renewed_with_a_new_key_over_mtls_and_promoted() {
    let dev = Device::due();
    let bridge = Bridge::start(&dev.pki, vec![]);
    let cfg = dev.config(&bridge.url, None);
    let old_der = dev.cert_der();
    let old_spki = dev.key_spki();

    let outcome = renew(&cfg, &options(false, MqttCheck::Auto)).await.unwrap();
    let RenewOutcome::Renewed {
        old_serial,
        new,
        chain_replaced,
        mqtt,
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert!(!chain_replaced);
    assert!(matches!(mqtt, MqttProof::Skipped { .. }), "{mqtt:?}");
    assert_ne!(old_serial, new.serial_hex);

    let seen = bridge.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, format!("/api/devices/{ID}/renew"));
    assert_eq!(
        seen[0].client_cert.as_deref(),
        Some(old_der.as_slice()),
        "authenticated with the current certificate"
    );
    // The new key is the one the CSR carried, and not the old one.
    let new_spki = dev.key_spki();
    assert_ne!(new_spki, old_spki, "rekeyed");
    let cert = inspect(
        &std::fs::read_to_string(dev.certs.device_cert()).unwrap(),
        "new",
    )
    .unwrap();
    assert_eq!(cert.spki, new_spki, "device.key matches device.crt");
    assert!(new_spki.ends_with(seen[0].csr_key.as_deref().unwrap()));
    let mode = std::fs::metadata(dev.certs.device_key())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let flag = dev.certs.read_flag().unwrap().unwrap().unwrap();
    assert_eq!(flag.serial, new.serial_hex);
    assert_nothing_staged(&dev.certs);
    // The renewed set is a valid enrollment.
    let check = dev
        .certs
        .check(
            None,
            Some(dev.pki.fingerprint),
            std::time::SystemTime::now(),
        )
        .unwrap();
    assert!(
        matches!(check, nexa_agent::certs::Current::Valid { .. }),
        "{check:?}"
    );

    // Not due any more: no request.
    let outcome = renew(&cfg, &options(false, MqttCheck::Auto)).await.unwrap();
    assert!(
        matches!(outcome, RenewOutcome::NotDue { .. }),
        "{outcome:?}"
    );
    assert_eq!(bridge.seen().len(), 1);
}

#[tokio::test]
async fn an_unavailable_signer_is_retried_after_retry_after() {
    let dev = Device::due();
    let busy = Reply::Error {
        status: 503,
        code: "signer_unavailable",
        retry_after: Some(1),
    };
    let bridge = Bridge::start(&dev.pki, vec![busy.clone(), busy]);
    let cfg = dev.config(&bridge.url, None);
    let started = std::time::Instant::now();
    let outcome = renew(&cfg, &options(false, MqttCheck::Skip)).await.unwrap();
    assert!(
        matches!(outcome, RenewOutcome::Renewed { .. }),
        "{outcome:?}"
    );
    assert_eq!(bridge.seen().len(), 3);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "Retry-After honoured"
    );
}

#[tokio::test]
async fn refusals_and_bad_answers_leave_the_current_pair_byte_identical() {
    for (reply, exit) in [
        (
            Reply::Error {
                status: 422,
                code: "signer_rejected",
                retry_after: None,
            },
            3,
        ),
        (
            Reply::Error {
                status: 401,
                code: "client_certificate_invalid",
                retry_after: None,
            },
            3,
        ),
        (Reply::SignForeign, 4),
    ] {
        let dev = Device::due();
        let before = dev.snapshot();
        let bridge = Bridge::start(&dev.pki, vec![reply.clone()]);
        let cfg = dev.config(&bridge.url, None);
        let e = renew(&cfg, &options(false, MqttCheck::Skip))
            .await
            .unwrap_err();
        assert_eq!(e.exit_code(), exit, "{reply:?}: {e}");
        assert_eq!(bridge.seen().len(), 1, "{reply:?}: not retried");
        assert_eq!(dev.snapshot(), before, "{reply:?}: nothing changed");
        assert!(!dev.certs.revoked_marker().exists());
    }
}

#[tokio::test]
async fn a_pair_the_broker_does_not_accept_is_discarded() {
    let dev = Device::due();
    let before = dev.snapshot();
    let bridge = Bridge::start(&dev.pki, vec![]);
    // A broker address where nothing listens.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = dev.config(&bridge.url, Some(&format!("mqtts://127.0.0.1:{port}")));
    let e = renew(&cfg, &options(false, MqttCheck::Auto))
        .await
        .unwrap_err();
    assert!(
        matches!(e, AgentError::Renew(RenewError::Probe(_))),
        "{e:?}"
    );
    assert!(e.to_string().contains("stays in use"), "{e}");
    assert_eq!(bridge.seen().len(), 1, "the bridge did issue");
    assert_eq!(dev.snapshot(), before, "the old pair stays");
    assert_nothing_staged(&dev.certs);
}

#[tokio::test]
async fn an_expired_certificate_falls_back_to_re_enrollment() {
    // Without the operator's window the bridge refuses, and nothing changes.
    let dev = Device::enrolled(time::Duration::days(-31), time::Duration::days(-1));
    let before = dev.snapshot();
    let refuse = Reply::Error {
        status: 409,
        code: "device_already_enrolled",
        retry_after: None,
    };
    let bridge = Bridge::start(&dev.pki, vec![refuse]);
    let cfg = dev.config(&bridge.url, None);
    let e = renew(&cfg, &options(false, MqttCheck::Skip))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, AgentError::Bridge(BridgeError::Refused { code, .. }) if code == "device_already_enrolled"),
        "{e:?}"
    );
    let seen = bridge.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, format!("/api/devices/{ID}/enroll"));
    assert!(seen[0].client_cert.is_none(), "enrollment is not mTLS");
    assert_eq!(dev.snapshot(), before);

    // With it, the device enrolls again with new keys.
    let outcome = renew(&cfg, &options(false, MqttCheck::Skip)).await.unwrap();
    assert!(
        matches!(outcome, RenewOutcome::ReEnrolled(_)),
        "{outcome:?}"
    );
    let check = dev
        .certs
        .check(
            None,
            Some(dev.pki.fingerprint),
            std::time::SystemTime::now(),
        )
        .unwrap();
    assert!(
        matches!(check, nexa_agent::certs::Current::Valid { .. }),
        "{check:?}"
    );
}

#[test]
fn a_revoked_device_is_marked_its_tunnel_refused_and_it_stops_renewing() {
    let dev = Device::due();
    let revoked = Reply::Error {
        status: 403,
        code: "device_revoked",
        retry_after: None,
    };
    let bridge = Bridge::start(&dev.pki, vec![revoked]);
    let out = dev.agent(&bridge.url, &["cert", "renew"]);
    assert_eq!(code(&out), 3, "{}", text(&out));
    assert!(text(&out).contains("revoked"), "{}", text(&out));
    assert!(dev.certs.revoked_marker().exists());
    assert_eq!(bridge.seen().len(), 1);

    // No more requests, even forced.
    let out = dev.agent(&bridge.url, &["cert", "renew", "--force"]);
    assert_eq!(code(&out), 3, "{}", text(&out));
    assert_eq!(bridge.seen().len(), 1);
    // The tunnel is refused before the kernel is touched.
    let out = dev.agent(&bridge.url, &["wg", "up"]);
    assert_eq!(code(&out), 3, "{}", text(&out));
    assert!(text(&out).contains("allow-reenroll"), "{}", text(&out));
    let out = dev.agent(&bridge.url, &["cert", "needs-renewal"]);
    assert_eq!(code(&out), 2, "{}", text(&out));
    let out = dev.agent(&bridge.url, &["status"]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(text(&out).contains("REVOKED"), "{}", text(&out));
    let out = dev.agent(&bridge.url, &["status", "--json"]);
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["state"], "revoked");
    assert_eq!(st["revoked"]["code"], "device_revoked");
}

#[test]
fn cert_renew_prints_what_it_did() {
    let dev = Device::enrolled(time::Duration::days(-1), time::Duration::days(29));
    let bridge = Bridge::start(&dev.pki, vec![]);
    let out = dev.agent(&bridge.url, &["cert", "renew"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(text(&out).contains("not due"), "{}", text(&out));
    assert!(bridge.seen().is_empty());

    let out = dev.agent(&bridge.url, &["cert", "renew", "--force"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("renewed: certificate") && t.contains("wrote"),
        "{t}"
    );
    assert!(t.contains("MQTT check skipped"), "{t}");
    assert_eq!(bridge.seen().len(), 1);

    let out = dev.agent(&bridge.url, &["status"]);
    assert!(text(&out).contains("renewal:      at "), "{}", text(&out));
}

#[test]
fn needs_renewal_exit_codes() {
    let unused = "https://127.0.0.1:9/";
    let fresh = Device::enrolled(time::Duration::days(-1), time::Duration::days(29));
    let out = fresh.agent(unused, &["cert", "needs-renewal"]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("no:"));

    let due = Device::due();
    let out = due.agent(unused, &["cert", "needs-renewal"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("yes:"));

    let expired = Device::enrolled(time::Duration::days(-31), time::Duration::days(-1));
    let out = expired.agent(unused, &["cert", "needs-renewal"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("expired"));

    // Errors name the file.
    std::fs::remove_file(fresh.certs.device_cert()).unwrap();
    let out = fresh.agent(unused, &["cert", "needs-renewal"]);
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains(&*fresh.certs.device_cert().to_string_lossy()),
        "{}",
        text(&out)
    );
    std::fs::write(due.certs.device_cert(), "not a certificate").unwrap();
    let out = due.agent(unused, &["cert", "needs-renewal"]);
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("device.crt"));

    // A configuration error is an error too.
    std::fs::write(expired.tmp.path().join("bad.toml"), "bridge_url = [").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_nexa-agent"))
        .env_clear()
        .arg("--config")
        .arg(expired.tmp.path().join("bad.toml"))
        .args(["cert", "needs-renewal"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 2, "{}", text(&out));
}

// ---------------------------------------------------------------------------------------------
// The daemon, with a real mosquitto trusting the test root.

struct Mosquitto {
    port: u16,
    dir: tempfile::TempDir,
    child: std::process::Child,
}

impl Mosquitto {
    fn start(pki: &Pki) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let file = |name: &str, body: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, body).unwrap();
            p
        };
        let cert = file("broker.crt", &pki.server_chain_pem);
        let key = file("broker.key", &pki.server_key_pem);
        let ca = file("root.crt", &pki.root_pem);
        let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
        let conf = file(
            "mosquitto.conf",
            &format!(
                "per_listener_settings true\nlog_dest stderr\nlog_type all\nconnection_messages true\n\
                 user {user}\nlistener {port} 127.0.0.1\ncertfile {}\nkeyfile {}\ncafile {}\n\
                 require_certificate true\nuse_identity_as_username true\nallow_anonymous false\n",
                cert.display(),
                key.display(),
                ca.display()
            ),
        );
        let log = std::fs::File::create(dir.path().join("broker.log")).unwrap();
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("mosquitto (Debian package mosquitto)");
        let up = wait(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "mosquitto did not start");
        Self { port, dir, child }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait(limit: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + limit;
    while std::time::Instant::now() < end {
        if ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    ok()
}

/// `nexa-agent run` without WireGuard; stderr goes to `log`.
struct Daemon {
    child: std::process::Child,
    log: PathBuf,
}

impl Daemon {
    fn start(dev: &Device, bridge: &str, broker_port: u16) -> Self {
        std::fs::write(dev.tmp.path().join("agent.toml"), "").unwrap();
        let log = dev.tmp.path().join("agent.log");
        let child = Command::new(env!("CARGO_BIN_EXE_nexa-agent"))
            .env_clear()
            .arg("--config")
            .arg(dev.tmp.path().join("agent.toml"))
            .args(["--bridge-url", bridge])
            .args(["--root-fingerprint", &dev.pki.fingerprint.to_string()])
            .args(["--device-id", ID])
            .arg("--certs-dir")
            .arg(dev.certs.root())
            .arg("--state-dir")
            .arg(dev.tmp.path().join("run"))
            .args(["--manage-wireguard", "false"])
            .args(["--mqtt-url", &format!("mqtts://127.0.0.1:{broker_port}")])
            .args(["--log", "nexa_agent=debug"])
            .args(["run"])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Self { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_daemon_renews_when_due_and_reconnects_with_the_new_pair() {
    // A one-minute certificate issued 30 s ago: due 4 to 10 s from now, after the first
    // connection with it.
    let dev = Device::enrolled(time::Duration::seconds(-30), time::Duration::seconds(30));
    let old_der = dev.cert_der();
    let old_serial = dev.certs.read_flag().unwrap().unwrap().unwrap().serial;
    let broker = Mosquitto::start(&dev.pki);
    let bridge = Bridge::start(&dev.pki, vec![]);
    let daemon = Daemon::start(&dev, &bridge.url, broker.port);

    let renewed = wait(Duration::from_secs(30), || {
        daemon
            .log()
            .contains("certificate renewed; the MQTT session uses it")
    });
    assert!(
        renewed,
        "agent:\n{}\nbroker:\n{}",
        daemon.log(),
        broker.log()
    );
    let log = daemon.log();
    let first = log.find("connected to the broker").unwrap();
    let renewal = log
        .find("certificate renewed; the MQTT session uses it")
        .unwrap();
    assert!(first < renewal, "connected with the old pair first:\n{log}");
    assert!(
        log[renewal..].contains("connected to the broker"),
        "then with the new one:\n{log}"
    );
    let seen = bridge.seen();
    assert_eq!(seen.len(), 1, "one renewal");
    assert_eq!(seen[0].client_cert.as_deref(), Some(old_der.as_slice()));
    assert_ne!(dev.cert_der(), old_der);
    let flag = dev.certs.read_flag().unwrap().unwrap().unwrap();
    assert_ne!(flag.serial, old_serial);
    assert_nothing_staged(&dev.certs);
    // The broker saw the device connect twice: with the old pair, then with the new one.
    let connects = broker
        .log()
        .matches("New client connected from 127.0.0.1")
        .count();
    assert!(connects >= 2, "broker:\n{}", broker.log());
    // Not due any more: no second request.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(bridge.seen().len(), 1, "agent:\n{}", daemon.log());
}

#[test]
fn the_daemon_marks_a_revoked_device_and_stops_renewing() {
    let dev = Device::due();
    let broker = Mosquitto::start(&dev.pki);
    let revoked = Reply::Error {
        status: 403,
        code: "device_decommissioned",
        retry_after: None,
    };
    let bridge = Bridge::start(&dev.pki, vec![revoked]);
    let daemon = Daemon::start(&dev, &bridge.url, broker.port);
    let marked = wait(Duration::from_secs(30), || {
        daemon.log().contains("this device is revoked")
    });
    assert!(marked, "agent:\n{}", daemon.log());
    let marker: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dev.certs.revoked_marker()).unwrap()).unwrap();
    assert_eq!(marker["code"], "device_decommissioned");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(bridge.seen().len(), 1, "no renewal after the revocation");
    assert!(
        daemon.log().contains("stopping renewals"),
        "{}",
        daemon.log()
    );

    // A restarted daemon does not try again.
    drop(daemon);
    let daemon = Daemon::start(&dev, &bridge.url, broker.port);
    let started = wait(Duration::from_secs(15), || {
        daemon.log().contains("agent running")
    });
    assert!(started, "{}", daemon.log());
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(bridge.seen().len(), 1, "{}", daemon.log());
}
