//! The Nexa test kit: starts real `nexa-server` processes on free loopback ports with
//! temporary data directories, runs the real `nexa-agent` binary against them, and provides
//! the helpers the integration tests and benchmarks share (CSRs, WireGuard keys, an HTTPS
//! client trusting a server's root, and a TCP proxy that can withhold responses).
//!
//! This is test-support code: a fixture that cannot be set up panics with a message, which is
//! how a test should fail, hence the lint allowances below.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod api;
pub mod hawkbit;
pub mod mosquitto;
pub mod procfs;
pub mod proxy;
pub mod rauc;
pub mod stepca;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

/// Directory holding the workspace binaries of the current profile, built once per process
/// so tests never run stale binaries.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        // target/<profile>/deps/<test> or target/<profile>/<bench>
        let mut dir = exe.parent().expect("exe dir").to_path_buf();
        if dir.ends_with("deps") {
            dir.pop();
        }
        let profile = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("debug")
            .to_owned();
        let target_dir = dir.parent().expect("target dir").to_path_buf();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--quiet",
            "--bins",
            "-p",
            "nexa-agent",
            "-p",
            "nexa-server",
        ])
        .env("CARGO_TARGET_DIR", &target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
        // What cargo sets for this test process only: build scripts that track one of them
        // (ring's tracks CARGO_MANIFEST_DIR) would otherwise rebuild every binary each time
        // the value differs from a plain `cargo build` in a shell.
        for (key, _) in std::env::vars_os() {
            let Some(key) = key.to_str() else { continue };
            if key.starts_with("CARGO_PKG_")
                || key.starts_with("CARGO_BIN_EXE_")
                || matches!(
                    key,
                    "CARGO_MANIFEST_DIR"
                        | "CARGO_MANIFEST_PATH"
                        | "CARGO_CRATE_NAME"
                        | "CARGO_PRIMARY_PACKAGE"
                        | "CARGO_TARGET_TMPDIR"
                        | "CARGO_RUSTC_CURRENT_DIR"
                )
            {
                cmd.env_remove(key);
            }
        }
        match profile.as_str() {
            "debug" => {}
            "release" => {
                cmd.arg("--release");
            }
            other => {
                cmd.args(["--profile", other]);
            }
        }
        let status = cmd
            .status()
            .expect("run cargo build for the binaries under test");
        assert!(
            status.success(),
            "building nexa-agent and nexa-server failed"
        );
        dir
    })
}

pub fn server_bin() -> PathBuf {
    bin_dir().join("nexa-server")
}

pub fn agent_bin() -> PathBuf {
    bin_dir().join("nexa-agent")
}

/// A running `nexa-server serve` on 127.0.0.1 with its own data directory.
#[derive(Debug)]
pub struct TestServer {
    pub tmp: tempfile::TempDir,
    pub data_dir: PathBuf,
    pub url: String,
    pub port: u16,
    pub fingerprint: String,
    child: Option<Child>,
    stderr_log: PathBuf,
    without_net_admin: bool,
    /// The `serve` flags and environment it was started with, reused by `restart`.
    launch_args: Vec<String>,
    launch_envs: Vec<(String, String)>,
}

impl TestServer {
    /// Initialises a data directory and starts serving on a free port.
    pub fn start() -> Self {
        Self::start_with(&[], &[])
    }

    /// Like [`start_with`](Self::start_with), with the server lacking CAP_NET_ADMIN.
    pub fn start_without_net_admin(args: &[&str], envs: &[(&str, &str)]) -> Self {
        Self::launch(args, envs, true)
    }

    /// Like [`start`](Self::start) with extra `serve` flags and environment.
    pub fn start_with(args: &[&str], envs: &[(&str, &str)]) -> Self {
        Self::launch(args, envs, false)
    }

    fn launch(args: &[&str], envs: &[(&str, &str)], without_net_admin: bool) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data_dir = tmp.path().join("data");
        let mut server = Self {
            data_dir,
            url: String::new(),
            port: 0,
            fingerprint: String::new(),
            child: None,
            stderr_log: tmp.path().join("server.log"),
            without_net_admin,
            launch_args: args.iter().map(|a| (*a).to_owned()).collect(),
            launch_envs: envs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            tmp,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(&self.stderr_log).expect("server log file");
        let listen = if self.port == 0 {
            "127.0.0.1:0".to_owned()
        } else {
            format!("127.0.0.1:{}", self.port)
        };
        let mut cmd = Command::new(server_bin());
        cmd.arg("--data-dir")
            .arg(&self.data_dir)
            .args(["serve", "--listen", &listen])
            .args(&self.launch_args)
            .env(
                "NEXA_LOG",
                std::env::var("NEXA_TEST_SERVER_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env_remove("WG_SUBNET")
            .env_remove("WG_SERVER_ENDPOINT")
            .env_remove("WG_SERVER_PUBLIC_KEY")
            .env_remove("WG_INTERFACE")
            .env_remove("MQTT_BROKER_URL")
            .env_remove("HAWKBIT_URL")
            .env_remove("HAWKBIT_USER")
            .env_remove("HAWKBIT_PASSWORD")
            .env_remove("HAWKBIT_PASSWORD_FILE")
            .env_remove("THINGSBOARD_WEBHOOK_SECRET")
            .env_remove("THINGSBOARD_WEBHOOK_SECRET_FILE")
            .env_remove("STEP_CA_URL")
            .env_remove("STEP_CA_FINGERPRINT")
            .env_remove("STEP_CA_PROVISIONER_NAME")
            .env_remove("STEP_CA_PROVISIONER_PASSWORD")
            .env_remove("STEP_CA_PROVISIONER_PASSWORD_FILE")
            .env_remove("NEXA_ADMIN_TOKEN")
            .env_remove("NEXA_ADMIN_TOKEN_FILE")
            // Tests never touch the host's interfaces unless they ask to (envs below).
            .env("NEXA_GATEWAY", "external");
        for (k, v) in &self.launch_envs {
            cmd.env(k, v);
        }
        if self.without_net_admin {
            cmd = without_net_admin(&cmd);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log);
        let mut child = cmd.spawn().expect("spawn nexa-server");
        let stdout = child.stdout.take().expect("server stdout");
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_else(|| {
            let log = std::fs::read_to_string(&self.stderr_log).unwrap_or_default();
            panic!("nexa-server did not start; its log:\n{log}")
        });
        let addr = first
            .strip_prefix("nexa-server listening on https://")
            .expect("listening line")
            .to_owned();
        let fp_line = lines.next().and_then(Result::ok).expect("fingerprint line");
        self.fingerprint = fp_line
            .strip_prefix("root CA fingerprint: ")
            .expect("fingerprint line")
            .to_owned();
        self.port = addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port");
        self.url = format!("https://{addr}");
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        self.child = Some(child);
    }

    /// Stops the server (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the server with SIGTERM (its graceful shutdown) and waits up to `within` for
    /// it to exit; `None` if it is still running then (it is killed).
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        let deadline = Instant::now() + within;
        while sent && Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// Sets an environment variable for the next `restart` (e.g. a port known only now).
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.launch_envs.retain(|(k, _)| k != key);
        self.launch_envs.push((key.to_owned(), value.to_owned()));
    }

    /// Restarts on the same port and data directory, with the same flags and environment.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// True while the server process runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// The server's log so far.
    /// The server process's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// Runs `nexa-server --data-dir DIR <args>`.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(server_bin())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(args)
            .output()
            .expect("run nexa-server")
    }

    /// Runs `nexa-server --data-dir DIR <args>` with the environment `serve` was started with
    /// (hawkBit, step-ca, gateway mode): for commands that resolve the server's settings,
    /// like `device decommission`.
    pub fn cli_as_server(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(server_bin());
        cmd.arg("--data-dir")
            .arg(&self.data_dir)
            .args(args)
            .env("NEXA_GATEWAY", "external");
        for (k, v) in &self.launch_envs {
            cmd.env(k, v);
        }
        cmd.output().expect("run nexa-server")
    }

    /// Runs a CLI command that must succeed; returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "nexa-server {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Registers device ids.
    pub fn register(&self, ids: &[&str]) {
        let mut args = vec!["device", "add"];
        args.extend_from_slice(ids);
        self.cli_ok(&args);
    }

    /// `device show ID --json`.
    pub fn device(&self, id: &str) -> serde_json::Value {
        serde_json::from_str(&self.cli_ok(&["device", "show", id, "--json"]))
            .expect("device show json")
    }

    pub fn root_cert_path(&self) -> PathBuf {
        self.data_dir.join("ca/root.crt")
    }

    pub fn issuing_cert_path(&self) -> PathBuf {
        self.data_dir.join("ca/issuing.crt")
    }

    /// An HTTPS client trusting this server's root.
    pub fn http_client(&self) -> reqwest::Client {
        let pem = std::fs::read(self.root_cert_path()).expect("root cert");
        let root = rustls_pki_types::CertificateDer::from(
            rustls_pki_types::pem::PemObject::from_pem_slice(&pem)
                .map(|c: rustls_pki_types::CertificateDer<'static>| c.to_vec())
                .expect("root pem"),
        );
        let mut roots = rustls::RootCertStore::empty();
        roots.add(root).expect("add root");
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("tls versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .no_proxy()
            .build()
            .expect("http client")
    }

    /// An agent command configured for this server, device `id` and `certs_dir`.
    pub fn agent(&self, id: &str, certs_dir: &Path) -> Command {
        agent_command(&self.url, &self.fingerprint, id, certs_dir)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An agent command with configuration only from the environment (no /etc file is read).
pub fn agent_command(url: &str, fingerprint: &str, id: &str, certs_dir: &Path) -> Command {
    agent_command_for(&agent_bin(), url, fingerprint, id, certs_dir)
}

/// Like [`agent_command`] with another agent binary (e.g. the static musl release build).
pub fn agent_command_for(
    bin: &Path,
    url: &str,
    fingerprint: &str,
    id: &str,
    certs_dir: &Path,
) -> Command {
    let mut cmd = Command::new(bin);
    cmd.env("NEXA_AGENT_CONFIG", "/dev/null")
        .env("NEXA_BRIDGE_URL", url)
        .env("NEXA_ROOT_FINGERPRINT", fingerprint)
        .env("NEXA_DEVICE_ID", id)
        .env("NEXA_CERTS_DIR", certs_dir)
        // The daemon's state file goes beside the certs, never into the host's /run.
        .env("NEXA_STATE_DIR", certs_dir.with_extension("run"))
        .env("NEXA_ENROLL_RETRY_FOR", "0")
        .env("NEXA_LOG", "info")
        // Tests never touch the host's interfaces unless they ask to.
        .env("NEXA_MANAGE_WIREGUARD", "false")
        .env_remove("NEXA_WG_INTERFACE")
        .stdin(Stdio::null());
    cmd
}

/// `cmd` run without CAP_NET_ADMIN (util-linux `setpriv` drops it from the bounding and
/// inheritable sets, so even root cannot use it): how the tests prove the degraded paths
/// deterministically on any host, with or without a WireGuard module.
pub fn without_net_admin(cmd: &Command) -> Command {
    let mut wrapped = Command::new("setpriv");
    wrapped
        .args(["--bounding-set=-net_admin", "--inh-caps=-net_admin", "--"])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => wrapped.env(k, v),
            None => wrapped.env_remove(k),
        };
    }
    wrapped.stdin(Stdio::null());
    wrapped
}

/// A P-256 key and a PEM CSR with CN = `cn`.
pub fn make_csr(cn: &str) -> (KeyPair, String) {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("keygen");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    let pem = params
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("csr pem");
    (key, pem)
}

/// A fresh WireGuard public key, base64.
pub fn wg_public_key() -> String {
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    let secret = x25519_dalek::StaticSecret::from(bytes);
    STANDARD.encode(x25519_dalek::PublicKey::from(&secret).as_bytes())
}

/// Polls `check` every 20 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    check()
}

/// Output as text, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A child process (e.g. `nexa-agent run`) killed and reaped when dropped, so a failing test
/// leaves no stray daemon. Derefs to the [`Child`].
#[derive(Debug)]
pub struct KillOnDrop(pub Child);

impl std::ops::Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
