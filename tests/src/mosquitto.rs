//! A real mosquitto broker for tests: TLS only, client certificates required, the certificate's
//! CN used as the MQTT username, and an ACL keyed on it (`%u`). It trusts only the bridge's
//! root, so a device must present its full chain (leaf + issuing CA), as ThingsBoard's chain
//! strategy requires. Its own certificate and a `monitor` client certificate are issued by the
//! bridge's issuing CA. Needs the Debian packages `mosquitto` and `mosquitto-clients`.

use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, SanType,
};

use crate::{TestServer, wait_until};

/// A running broker; killed on drop.
#[derive(Debug)]
pub struct Broker {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// A certificate and key issued for a test client, as files; `chain` is leaf + issuing CA.
#[derive(Debug, Clone)]
pub struct ClientFiles {
    pub chain: PathBuf,
    pub key: PathBuf,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

/// Issues a certificate for `cn` from the bridge's issuing CA into `dir/<name>.{crt,key}`.
fn issue(server: &TestServer, dir: &Path, name: &str, cn: &str, server_auth: bool) -> ClientFiles {
    let ca_cert = std::fs::read_to_string(server.issuing_cert_path()).expect("issuing cert");
    let ca_key =
        std::fs::read_to_string(server.data_dir.join("ca/issuing.key")).expect("issuing key");
    let issuer = Issuer::from_ca_cert_pem(&ca_cert, KeyPair::from_pem(&ca_key).expect("ca key"))
        .expect("issuer");
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("keygen");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    if server_auth {
        params.subject_alt_names = vec![
            SanType::IpAddress([127, 0, 0, 1].into()),
            SanType::DnsName("localhost".try_into().expect("dns name")),
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    } else {
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    }
    let cert = params.signed_by(&key, &issuer).expect("sign");
    let chain = dir.join(format!("{name}.crt"));
    std::fs::write(&chain, format!("{}{}", cert.pem(), ca_cert)).expect("write chain");
    let key_path = dir.join(format!("{name}.key"));
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");
    ClientFiles {
        chain,
        key: key_path,
    }
}

impl Broker {
    /// Starts mosquitto trusting `server`'s root CA.
    pub fn start(server: &TestServer) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let broker = issue(server, dir.path(), "broker", "localhost", true);
        issue(server, dir.path(), "monitor", "monitor", false);
        let root = server.root_cert_path();
        std::fs::write(
            dir.path().join("acl"),
            "pattern readwrite devices/%u/#\npattern readwrite v1/devices/me/#\nuser monitor\ntopic readwrite #\n",
        )
        .expect("acl");
        let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
        let conf = format!(
            "per_listener_settings true\npersistence true\npersistence_location {}/\n\
             log_dest stderr\nlog_type all\n\
             connection_messages true\nuser {user}\n\
             listener {port} 127.0.0.1\nprotocol mqtt\ncertfile {}\nkeyfile {}\ncafile {}\n\
             require_certificate true\nuse_identity_as_username true\ntls_version tlsv1.2\n\
             allow_anonymous false\nacl_file {}\n",
            dir.path().display(),
            broker.chain.display(),
            broker.key.display(),
            root.display(),
            dir.path().join("acl").display(),
        );
        let conf_path = dir.path().join("mosquitto.conf");
        std::fs::write(&conf_path, conf).expect("conf");
        let mut me = Self {
            port,
            dir,
            child: None,
        };
        me.spawn();
        me
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("broker.log"))
            .expect("log");
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn mosquitto (Debian package mosquitto)");
        self.child = Some(child);
        let port = self.port;
        let up = wait_until(Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "mosquitto did not start; its log:\n{}", self.log());
    }

    /// Stops the broker (SIGKILL); clients see the connection drop.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the broker gracefully (SIGTERM: it saves persistent sessions), waits `down`, and
    /// starts it again on the same port with the same configuration.
    pub fn restart_after(&mut self, down: Duration) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
        std::thread::sleep(down);
        self.spawn();
    }

    /// A `mosquitto_sub` that keeps a persistent QoS 1 session (`-c`) as `id` on `topic`
    /// and reconnects by itself across broker restarts; returns once subscribed.
    pub fn watch_persistent(&self, root: &Path, topic: &str, id: &str) -> Child {
        let mut cmd = Command::new("mosquitto_sub");
        self.client_args(&mut cmd, root, &self.monitor(), id);
        let child = cmd
            .args(["-c", "-t", topic, "-v", "-q", "1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run mosquitto_sub (Debian package mosquitto-clients)");
        let subscribed = wait_until(Duration::from_secs(10), || {
            self.log()
                .lines()
                .any(|l| l.contains(id) && l.contains("SUBSCRIBE"))
        });
        assert!(
            subscribed,
            "watcher did not subscribe; broker log:\n{}",
            self.log()
        );
        child
    }

    /// The `monitor` client's files (may read and write every topic).
    pub fn monitor(&self) -> ClientFiles {
        ClientFiles {
            chain: self.dir.path().join("monitor.crt"),
            key: self.dir.path().join("monitor.key"),
        }
    }

    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(self.dir.path().join("broker.log")) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    fn client_args(&self, cmd: &mut Command, root: &Path, files: &ClientFiles, id: &str) {
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "--cafile"])
            .arg(root)
            .arg("--cert")
            .arg(&files.chain)
            .arg("--key")
            .arg(&files.key)
            .args(["-i", id]);
    }

    /// `mosquitto_pub` one QoS 1 message.
    pub fn publish(
        &self,
        root: &Path,
        files: &ClientFiles,
        id: &str,
        topic: &str,
        msg: &str,
    ) -> Output {
        let mut cmd = Command::new("mosquitto_pub");
        self.client_args(&mut cmd, root, files, id);
        cmd.args(["-q", "1", "-t", topic, "-m", msg])
            .stdin(Stdio::null())
            .output()
            .expect("run mosquitto_pub (Debian package mosquitto-clients)")
    }

    /// Starts `mosquitto_sub` as the monitor on `topic`, exiting after `count` messages or
    /// `timeout_s` seconds; returns once the broker has seen it subscribe.
    pub fn subscribe(&self, root: &Path, topic: &str, count: u32, timeout_s: u32) -> Child {
        let mut cmd = Command::new("mosquitto_sub");
        let id = format!("monitor-{}", rand::random::<u32>());
        self.client_args(&mut cmd, root, &self.monitor(), &id);
        let child = cmd
            .args(["-t", topic, "-v", "-q", "1"])
            .args(["-C", &count.to_string(), "-W", &timeout_s.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run mosquitto_sub (Debian package mosquitto-clients)");
        let subscribed = wait_until(Duration::from_secs(10), || {
            self.log()
                .lines()
                .any(|l| l.contains(&id) && l.contains("SUBSCRIBE"))
        });
        assert!(
            subscribed,
            "monitor did not subscribe; broker log:\n{}",
            self.log()
        );
        child
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}
