//! A real smallstep step-ca for tests, built from Debian's Go sources by
//! `scripts/stepca.sh` (once per test process; or point [`BIN_DIR_ENV`] at a directory
//! holding `step-ca` and `step-ca-init` to skip the script).
//!
//! [`StepCa::start`] initializes a fresh PKI in a temporary directory, exactly as
//! `step ca init` would: a root and an intermediate CA (P-256, keys encrypted with a random
//! password) and one password-protected JWK provisioner, [`PROVISIONER`], whose private key
//! is the `encryptedKey` JWE in `ca.json` (the same password decrypts it). It then serves
//! HTTPS on 127.0.0.1 on a free port (its TLS certificate has SANs 127.0.0.1 and localhost,
//! issued by the intermediate) and returns once `GET /health` answers over TLS verified
//! against the root. [`StepCa::start_with`] first writes [`StepCaOptions`] into `ca.json`,
//! e.g. a short default certificate lifetime.
//!
//! Gotchas for tests that sign (see the step-ca research notes): mint one-time tokens only
//! after the CA has (re)started, as it rejects tokens issued before its start unless
//! [`StepCaOptions::disable_issued_at_check`]; give each token a unique `jti`; a 401 body
//! says nothing, the reason is in [`StepCa::log`]. Needs the Debian packages `golang-go` and
//! `golang-github-smallstep-certificates-dev`, which the script installs if missing.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use sha2::{Digest, Sha256};

use crate::wait_until;

/// The JWK provisioner every [`StepCa`] has.
pub const PROVISIONER: &str = "iot-bridge";
/// Environment variable naming a directory with prebuilt `step-ca` and `step-ca-init`;
/// when set, `scripts/stepca.sh` is not run.
pub const BIN_DIR_ENV: &str = "NEXA_STEPCA_BIN_DIR";

/// How long startup may take before the fixture gives up (it takes ~0.1 s).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a graceful stop may take before the process is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Written into the log before each start.
const START_MARKER: &str = "--- nexa_testkit::stepca: start #";
/// step-ca's built-in bounds of certificate lifetimes.
const STEP_MIN_TLS: Duration = Duration::from_secs(5 * 60);
const STEP_MAX_TLS: Duration = Duration::from_secs(24 * 60 * 60);

/// What to write into `ca.json` before the first start. Durations become Go durations
/// (`"90s"`) in the global `authority.claims`, which apply to the provisioner.
#[derive(Debug, Clone, Default)]
pub struct StepCaOptions {
    /// `defaultTLSCertDuration`: the lifetime of a certificate signed without `notAfter`
    /// (step-ca's default: 24 h). If it lies outside step-ca's default bounds (5 min..24 h)
    /// and the bound is not given below, that bound is moved to it, so
    /// `Some(Duration::from_secs(60))` alone yields 1-minute certificates.
    pub default_tls_cert_duration: Option<Duration>,
    /// `minTLSCertDuration` (step-ca's default: 5 min).
    pub min_tls_cert_duration: Option<Duration>,
    /// `maxTLSCertDuration` (step-ca's default: 24 h).
    pub max_tls_cert_duration: Option<Duration>,
    /// `authority.disableIssuedAtCheck`: accept tokens minted before the CA's (re)start.
    pub disable_issued_at_check: bool,
    /// No database: no token-replay protection across restarts, no revocation (501).
    pub no_db: bool,
}

/// A running step-ca with a fresh PKI; killed on drop. See the module documentation.
#[derive(Debug)]
pub struct StepCa {
    /// `https://127.0.0.1:PORT`
    pub url: String,
    pub port: u16,
    /// Lowercase hex SHA-256 of the root certificate's DER, as step-ca prints it.
    pub root_fingerprint: String,
    /// The JWK provisioner's name, [`PROVISIONER`].
    pub provisioner: String,
    /// The password of the CA keys and of the provisioner's encrypted key (no newline).
    pub password_file: PathBuf,
    /// PEM of the root CA certificate: the only trust anchor clients need.
    pub root_cert: PathBuf,
    /// PEM of the intermediate CA certificate, which issues the leaf certificates.
    pub intermediate_cert: PathBuf,
    /// The CA's configuration.
    pub ca_json: PathBuf,
    dir: tempfile::TempDir,
    step_ca: PathBuf,
    tls: Arc<rustls::ClientConfig>,
    child: Option<Child>,
    log_path: PathBuf,
    starts: u32,
}

/// The directory holding `step-ca` and `step-ca-init`: [`BIN_DIR_ENV`] if set, else what
/// `scripts/stepca.sh` prints (it installs and builds on first use, ~2 minutes cold; then it
/// returns at once). Run once per process.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = match std::env::var_os(BIN_DIR_ENV) {
            Some(dir) => PathBuf::from(dir),
            None => {
                let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/stepca.sh");
                let out = Command::new("bash")
                    .arg(&script)
                    .stdin(Stdio::null())
                    .output()
                    .expect("run bash scripts/stepca.sh");
                let stdout = String::from_utf8_lossy(&out.stdout);
                assert!(
                    out.status.success(),
                    "{} failed ({}):\n{}{}",
                    script.display(),
                    out.status,
                    stdout,
                    String::from_utf8_lossy(&out.stderr)
                );
                let last = stdout.lines().rev().find(|l| !l.trim().is_empty());
                PathBuf::from(last.expect("stepca.sh printed no directory").trim())
            }
        };
        for tool in ["step-ca", "step-ca-init"] {
            assert!(
                dir.join(tool).is_file(),
                "{} has no `{tool}`; run `bash scripts/stepca.sh` or fix {BIN_DIR_ENV}",
                dir.display()
            );
        }
        dir
    })
}

impl StepCa {
    /// A fresh CA with step-ca's defaults (24 h certificates, a database).
    pub fn start() -> Self {
        Self::start_with(StepCaOptions::default())
    }

    /// A fresh CA with `options` written into `ca.json`. Panics with the log on failure.
    pub fn start_with(options: StepCaOptions) -> Self {
        let bin = bin_dir();
        let dir = tempfile::tempdir().expect("tempdir");
        let steppath = dir.path().join("ca");
        let password_file = dir.path().join("password");
        std::fs::write(&password_file, format!("{:032x}", rand::random::<u128>()))
            .expect("write password file");

        let mut init = Command::new(bin.join("step-ca-init"));
        init.env("STEPPATH", &steppath)
            .args(["--name", "Nexa Test", "--provisioner", PROVISIONER])
            .args(["--address", "127.0.0.1:0", "--dns", "127.0.0.1,localhost"])
            .arg("--password-file")
            .arg(&password_file)
            .stdin(Stdio::null());
        if options.no_db {
            init.arg("--no-db");
        }
        let out = init.output().expect("run step-ca-init");
        assert!(
            out.status.success(),
            "step-ca-init failed:\n{}",
            crate::text(&out)
        );
        let printed = String::from_utf8_lossy(&out.stdout).trim().to_owned();

        let root_cert = steppath.join("certs/root_ca.crt");
        let root = CertificateDer::from_pem_file(&root_cert).expect("root certificate PEM");
        let root_fingerprint = sha256_hex(&root);
        assert_eq!(
            printed, root_fingerprint,
            "step-ca-init's fingerprint differs from the root's SHA-256"
        );
        let ca_json = steppath.join("config/ca.json");
        write_options(&ca_json, &options);

        let mut ca = Self {
            url: String::new(),
            port: 0,
            root_fingerprint,
            provisioner: PROVISIONER.to_owned(),
            password_file,
            root_cert,
            intermediate_cert: steppath.join("certs/intermediate_ca.crt"),
            ca_json,
            step_ca: bin.join("step-ca"),
            tls: Arc::new(tls_config(root)),
            child: None,
            log_path: dir.path().join("step-ca.log"),
            starts: 0,
            dir,
        };
        // A free port may be taken between probing and binding it: try another one then.
        for attempt in 1.. {
            ca.port = free_port();
            ca.url = format!("https://127.0.0.1:{}", ca.port);
            ca.edit_config(|cfg| cfg["address"] = format!("127.0.0.1:{}", ca.port).into());
            match ca.spawn() {
                Ok(()) => break,
                Err(e) if attempt < 3 && e.contains("address already in use") => {}
                Err(e) => panic!("step-ca did not start: {e}; its log:\n{}", ca.log()),
            }
        }
        ca
    }

    /// The temporary directory holding everything (`ca/` is the STEPPATH).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The password (of the CA keys and the provisioner's encrypted key).
    pub fn password(&self) -> String {
        std::fs::read_to_string(&self.password_file).expect("read password file")
    }

    /// The parsed `ca.json`.
    pub fn config(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(&self.ca_json).expect("read ca.json");
        serde_json::from_str(&text).expect("parse ca.json")
    }

    /// The provisioner's entry in `ca.json` (`type`, `name`, `key`, `encryptedKey`).
    pub fn provisioner_config(&self) -> serde_json::Value {
        let cfg = self.config();
        cfg["authority"]["provisioners"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == self.provisioner.as_str()))
            .cloned()
            .expect("provisioner in ca.json")
    }

    /// The provisioner's key id (RFC 7638 thumbprint): the `kid` of its tokens.
    pub fn provisioner_kid(&self) -> String {
        self.provisioner_config()["key"]["kid"]
            .as_str()
            .expect("provisioner kid")
            .to_owned()
    }

    /// The provisioner's private JWK as a compact JWE (PBES2-HS256+A128KW, A256GCM) under
    /// [`password`](Self::password).
    pub fn encrypted_key(&self) -> String {
        self.provisioner_config()["encryptedKey"]
            .as_str()
            .expect("provisioner encryptedKey")
            .to_owned()
    }

    /// step-ca's log (stderr and stdout) across all its starts so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// True while the step-ca process runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// True if `GET /health` answers 200 over TLS verified against the root.
    pub fn is_healthy(&self) -> bool {
        self.get("/health").is_ok_and(|(status, _)| status == 200)
    }

    /// Stops step-ca gracefully (SIGTERM, so its database is closed cleanly); kills it if it
    /// does not exit within 10 s. Nothing listens on the port afterwards.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let exited = wait_until(STOP_TIMEOUT, || child.try_wait().ok().flatten().is_some());
            if !exited {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }

    /// Kills step-ca (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops step-ca if it runs and starts it again on the same port with the same PKI,
    /// configuration and database; returns once healthy. Panics with the log on failure.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.spawn() {
            panic!("step-ca did not restart: {e}; its log:\n{}", self.log());
        }
    }

    /// The step-ca process's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// An HTTPS client whose only trust anchor is this CA's root.
    pub fn http_client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_backend_preconfigured((*self.tls).clone())
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("http client")
    }

    /// An HTTPS client trusting only step-ca's root that presents `chain_pem` (leaf first,
    /// then its intermediate) with `key_pem` as its TLS client identity: how a device calls
    /// `POST /1.0/renew` over mTLS.
    pub fn http_client_with_identity(&self, chain_pem: &[u8], key_pem: &[u8]) -> reqwest::Client {
        let root = CertificateDer::from_pem_file(&self.root_cert).expect("step-ca root");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(root).expect("add root");
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem)
            .collect::<Result<_, _>>()
            .expect("client chain PEM");
        let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key_pem).expect("client key PEM");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("tls versions")
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .expect("client identity");
        reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("http client")
    }

    /// Changes `ca.json`; takes effect at the next [`restart`](Self::restart).
    pub fn edit_config(&self, edit: impl FnOnce(&mut serde_json::Value)) {
        edit_json(&self.ca_json, edit);
    }

    /// Starts step-ca and waits until it is healthy; on failure kills it and says why.
    fn spawn(&mut self) -> Result<(), String> {
        self.starts += 1;
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open step-ca log");
        writeln!(log, "{START_MARKER}{} on port {}", self.starts, self.port)
            .expect("write step-ca log");
        let child = Command::new(&self.step_ca)
            .arg(&self.ca_json)
            .arg("--password-file")
            .arg(&self.password_file)
            .env("STEPPATH", self.dir().join("ca"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn step-ca");
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.is_healthy() {
                return Ok(());
            }
            if !self.is_running() {
                let status = self.child.take().and_then(|mut c| c.wait().ok());
                return Err(self.with_cause(format!("step-ca exited ({status:?})")));
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!("step-ca not healthy within {START_TIMEOUT:?}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Appends a recognizable cause from this start's log, for the retry on a taken port.
    fn with_cause(&self, e: String) -> String {
        let log = self.log();
        let this_start = log.rsplit(START_MARKER).next().unwrap_or_default();
        if this_start.contains("address already in use") {
            format!("{e}: address already in use")
        } else {
            e
        }
    }

    /// A blocking `GET path` over HTTP/1.1 and TLS pinned to the root: (status, body).
    /// Works from any thread, also inside an async test.
    fn get(&self, path: &str) -> std::io::Result<(u16, String)> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let sock = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        sock.set_read_timeout(Some(Duration::from_secs(5)))?;
        let name = ServerName::IpAddress(Ipv4Addr::LOCALHOST.into());
        let conn =
            rustls::ClientConnection::new(self.tls.clone(), name).map_err(std::io::Error::other)?;
        let mut tls = rustls::StreamOwned::new(conn, sock);
        write!(
            tls,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
            self.port
        )?;
        let mut raw = Vec::new();
        match tls.read_to_end(&mut raw) {
            Ok(_) => {}
            // A peer closing without close_notify; the response is complete anyway.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
            Err(e) => return Err(e),
        }
        let text = String::from_utf8_lossy(&raw);
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad HTTP response: {text}")))?;
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        Ok((status, body.to_owned()))
    }
}

impl Drop for StepCa {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Writes `options` into `ca.json`.
fn write_options(ca_json: &Path, options: &StepCaOptions) {
    let mut min = options.min_tls_cert_duration;
    let mut max = options.max_tls_cert_duration;
    if let Some(default) = options.default_tls_cert_duration {
        if min.is_none() && default < STEP_MIN_TLS {
            min = Some(default);
        }
        if max.is_none() && default > STEP_MAX_TLS {
            max = Some(default);
        }
    }
    let mut claims = serde_json::Map::new();
    for (key, value) in [
        ("minTLSCertDuration", min),
        ("maxTLSCertDuration", max),
        ("defaultTLSCertDuration", options.default_tls_cert_duration),
    ] {
        if let Some(d) = value {
            claims.insert(key.to_owned(), go_duration(d).into());
        }
    }
    edit_json(ca_json, |cfg| {
        let authority = &mut cfg["authority"];
        if !claims.is_empty() {
            authority["claims"] = claims.into();
        }
        if options.disable_issued_at_check {
            authority["disableIssuedAtCheck"] = true.into();
        }
    });
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let text = std::fs::read_to_string(path).expect("read ca.json");
    let mut value: serde_json::Value = serde_json::from_str(&text).expect("parse ca.json");
    edit(&mut value);
    let text = serde_json::to_string_pretty(&value).expect("serialize ca.json");
    std::fs::write(path, text).expect("write ca.json");
}

/// A Go `time.ParseDuration` string: "90s", "1500ms", "10ns".
fn go_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}ns", d.as_nanos())
    }
}

fn sha256_hex(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

/// A TLS client configuration whose only trust anchor is `root`.
fn tls_config(root: CertificateDer<'static>) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root).expect("add root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("tls versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}
