//! `nexa-agent run` against a real bridge and a real mosquitto with mTLS: it enrolls, connects
//! with its certificate chain as the device id, publishes client attributes and telemetry in
//! ThingsBoard's format, answers server-side RPC, and stops cleanly on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nexa_testkit::mosquitto::Broker;
use nexa_testkit::{KillOnDrop, TestServer, wait_until};

fn lines(child: Child) -> Vec<(String, serde_json::Value)> {
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(t, p)| (t.to_owned(), serde_json::from_str(p).unwrap_or_default()))
        .collect()
}

/// `nexa-agent run` for `id` on `bridge`, talking to `broker`, logging to `dir/agent.log`;
/// `extra` adds environment. Returns the process and a reader of its log.
fn run_agent(
    bridge: &TestServer,
    broker: &Broker,
    id: &str,
    dir: &Path,
    extra: &[(&str, &std::ffi::OsStr)],
) -> (KillOnDrop, impl Fn() -> String + use<>) {
    let log_path = dir.join("agent.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut cmd = bridge.agent(id, &dir.join("certs"));
    cmd.env(
        "NEXA_MQTT_URL",
        format!("mqtts://127.0.0.1:{}", broker.port),
    )
    .env("NEXA_TELEMETRY_INTERVAL", "1s");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let child = KillOnDrop(
        cmd.arg("run")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    (child, move || {
        std::fs::read_to_string(&log_path).unwrap_or_default()
    })
}

fn sigterm(child: &Child) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn run_enrolls_connects_publishes_and_answers_rpc() {
    let server = TestServer::start();
    let broker = Broker::start(&server);
    let root = server.root_cert_path();
    server.register(&["dev-run-1"]);
    let tmp = tempfile::tempdir().unwrap();

    // Watch everything the device sends before it starts; play systemd's notify socket.
    let watch = broker.subscribe(&root, "v1/devices/me/#", 3, 30);
    let notify_path = tmp.path().join("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let (mut agent, agent_log) = run_agent(
        &server,
        &broker,
        "dev-run-1",
        tmp.path(),
        &[("NOTIFY_SOCKET", notify_path.as_os_str())],
    );

    let mut buf = [0u8; 256];
    let n = notify.recv(&mut buf).expect("READY=1 from the agent");
    assert_eq!(&buf[..n], b"READY=1");

    let got = lines(watch);
    let attrs = got
        .iter()
        .find(|(t, _)| t == "v1/devices/me/attributes")
        .unwrap_or_else(|| panic!("no attributes: {got:?}\n{}", agent_log()));
    assert_eq!(attrs.1["deviceId"], "dev-run-1");
    assert_eq!(attrs.1["agentVersion"], env!("CARGO_PKG_VERSION"));
    assert_eq!(attrs.1["tunnel"], "disabled");
    assert!(attrs.1["certNotAfter"].is_string() && attrs.1["wgAddress"].is_string());
    let tel = got
        .iter()
        .find(|(t, _)| t == "v1/devices/me/telemetry")
        .unwrap_or_else(|| panic!("no telemetry: {got:?}"));
    assert!(tel.1["ts"].as_u64().unwrap() > 1_600_000_000_000);
    assert!(tel.1["values"]["uptime_s"].as_u64().is_some(), "{}", tel.1);
    assert!(
        tel.1["values"]["mem_total_kib"].as_u64().is_some(),
        "{}",
        tel.1
    );
    assert!(broker.log().contains("u'dev-run-1'"), "{}", broker.log());

    // Server-side RPC: `status`, then an unknown method.
    let monitor = broker.monitor();
    for (id, method) in [("7", "status"), ("8", "reboot-everything"), ("9", "sync")] {
        let answer = broker.subscribe(&root, &format!("v1/devices/me/rpc/response/{id}"), 1, 15);
        let out = broker.publish(
            &root,
            &monitor,
            "rpc-caller",
            &format!("v1/devices/me/rpc/request/{id}"),
            &format!(r#"{{"method":"{method}","params":{{}}}}"#),
        );
        assert!(out.status.success());
        let got = lines(answer);
        let body = &got
            .first()
            .unwrap_or_else(|| panic!("no answer to {method}\n{}", agent_log()))
            .1;
        match method {
            "status" => {
                assert_eq!(body["state"], "enrolled", "{body}");
                assert_eq!(body["device_id"], "dev-run-1", "{body}");
            }
            "sync" => assert_eq!(body["tunnel"], "disabled", "{body}"),
            _ => assert_eq!(body["error"]["code"], "unknown_method", "{body}"),
        }
    }

    // A shared attribute changes the telemetry interval.
    let out = broker.publish(
        &root,
        &monitor,
        "attr-writer",
        "v1/devices/me/attributes",
        r#"{"telemetryIntervalS": 7}"#,
    );
    assert!(out.status.success());
    assert!(
        wait_until(Duration::from_secs(10), || agent_log()
            .contains("telemetry interval changed interval_s=7")),
        "{}",
        agent_log()
    );

    // SIGTERM: out within a second, status 0, and the broker saw a clean disconnect.
    let t = Instant::now();
    sigterm(&agent);
    let exited = wait_until(Duration::from_secs(3), || {
        agent.try_wait().unwrap().is_some()
    });
    assert!(exited, "{}", agent_log());
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        t.elapsed()
    );
    assert!(agent.wait().unwrap().success(), "{}", agent_log());
    assert!(
        wait_until(Duration::from_secs(3), || broker
            .log()
            .contains("dev-run-1 disconnected")),
        "{}",
        broker.log()
    );
    // After READY=1: what it was doing (STATUS=), then STOPPING=1 last.
    let mut notes = Vec::new();
    while let Ok(n) = notify.recv(&mut buf) {
        notes.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        if notes.last().is_some_and(|n| n == "STOPPING=1") {
            break;
        }
    }
    assert_eq!(
        notes.last().map(String::as_str),
        Some("STOPPING=1"),
        "{notes:?}"
    );
    assert!(
        notes.iter().any(|n| n == "STATUS=running as dev-run-1"),
        "{notes:?}"
    );
    assert!(
        !notes.iter().any(|n| n == "READY=1"),
        "READY=1 twice: {notes:?}"
    );
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn telemetry_taken_while_the_broker_is_down_arrives_after_it_is_back() {
    let server = TestServer::start();
    let mut broker = Broker::start(&server);
    let root = server.root_cert_path();
    server.register(&["dev-run-2"]);
    let tmp = tempfile::tempdir().unwrap();

    // A persistent session survives the broker restart, so nothing the agent flushes is missed.
    let mut watcher = broker.watch_persistent(&root, "v1/devices/me/telemetry", "watcher-2");
    let seen: Arc<Mutex<Vec<u64>>> = Arc::default();
    let reader = {
        let seen = seen.clone();
        let stdout = watcher.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some((_, payload)) = line.split_once(' ')
                    && let Ok(v) = serde_json::from_str::<serde_json::Value>(payload)
                    && let Some(ts) = v["ts"].as_u64()
                {
                    seen.lock().unwrap().push(ts);
                }
            }
        })
    };
    // Tight reconnect bounds: the agent must be back within about 2 s of the broker.
    let (mut agent, agent_log) = run_agent(
        &server,
        &broker,
        "dev-run-2",
        tmp.path(),
        &[
            ("NEXA_MQTT_RECONNECT_MIN", "1s".as_ref()),
            ("NEXA_MQTT_RECONNECT_MAX", "2s".as_ref()),
        ],
    );
    assert!(
        wait_until(Duration::from_secs(30), || !seen.lock().unwrap().is_empty()),
        "no telemetry before the outage\n{}",
        agent_log()
    );

    let down_at = now_ms();
    broker.restart_after(Duration::from_secs(6));
    let up_at = now_ms();
    let back = Instant::now();
    assert!(
        wait_until(Duration::from_secs(10), || agent_log()
            .contains("connected to the broker again")),
        "{}",
        agent_log()
    );
    // Unbounded doubling would be at 4-8 s per attempt after a 6 s outage; the 2 s cap holds.
    assert!(
        back.elapsed() < Duration::from_millis(3500),
        "reconnected {:?} after the broker was back\n{}",
        back.elapsed(),
        agent_log()
    );
    let during = |seen: &Vec<u64>| seen.iter().any(|ts| *ts > down_at + 500 && *ts < up_at);
    let delivered = wait_until(Duration::from_secs(40), || during(&seen.lock().unwrap()));
    assert!(
        delivered,
        "no sample from the outage arrived: {:?} (down {down_at}, up {up_at})\n{}",
        seen.lock().unwrap(),
        agent_log()
    );
    assert!(
        agent.try_wait().unwrap().is_none(),
        "the agent must survive the outage"
    );
    sigterm(&agent);
    assert!(agent.wait().unwrap().success());
    let _ = watcher.kill();
    let _ = watcher.wait();
    let _ = reader.join();
}

#[test]
fn a_certificate_the_broker_does_not_trust_is_reported_as_such() {
    // The broker trusts bridge A; the device enrolls at bridge B.
    let bridge_a = TestServer::start();
    let broker = Broker::start(&bridge_a);
    let bridge_b = TestServer::start();
    bridge_b.register(&["dev-run-3"]);
    let tmp = tempfile::tempdir().unwrap();
    // The broker's own certificate is from bridge A: trust that CA for it.
    let root_a = bridge_a.root_cert_path();
    let (mut agent, agent_log) = run_agent(
        &bridge_b,
        &broker,
        "dev-run-3",
        tmp.path(),
        &[("NEXA_MQTT_CA", root_a.as_os_str())],
    );
    let reported = wait_until(Duration::from_secs(30), || {
        agent_log().contains("certificate_rejected")
    });
    assert!(reported, "{}\n--- broker\n{}", agent_log(), broker.log());
    assert!(
        agent.try_wait().unwrap().is_none(),
        "a refusal is not fatal"
    );

    // `status` shows why the session is down.
    let out = bridge_b
        .agent("dev-run-3", &tmp.path().join("certs"))
        .args(["status", "--json"])
        .output()
        .unwrap();
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["daemon"]["mqtt"]["state"], "refused", "{st}");
    assert_eq!(st["daemon"]["mqtt"]["code"], "certificate_rejected", "{st}");
    assert_eq!(st["daemon"]["pid"], agent.id(), "{st}");
    sigterm(&agent);
    assert!(agent.wait().unwrap().success());
    let out = bridge_b
        .agent("dev-run-3", &tmp.path().join("certs"))
        .args(["status", "--json"])
        .output()
        .unwrap();
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        st["daemon"].is_null(),
        "a stopped daemon leaves no state: {st}"
    );
}

fn flag_serial(certs: &Path) -> String {
    let flag: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(certs.join("enrolled")).unwrap()).unwrap();
    flag["serial"].as_str().unwrap().to_owned()
}

fn reenroll(server: &TestServer, id: &str, certs: &Path) -> String {
    server.cli_ok(&["device", "allow-reenroll", id, "--for", "10m"]);
    let out = server
        .agent(id, certs)
        .args(["enroll", "--force"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", nexa_testkit::text(&out));
    flag_serial(certs)
}

#[test]
fn run_uses_the_announced_broker_and_takes_up_a_re_enrollment() {
    let mut server = TestServer::start();
    let broker = Broker::start(&server);
    // The bridge tells devices where the broker is; the agent is not configured with it.
    server.set_env(
        "MQTT_BROKER_URL",
        &format!("mqtts://127.0.0.1:{}", broker.port),
    );
    server.restart();
    let root = server.root_cert_path();
    server.register(&["dev-run-4"]);
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("certs");
    let log_path = tmp.path().join("agent.log");
    let mut agent = KillOnDrop(
        server
            .agent("dev-run-4", &certs)
            .env_remove("NEXA_MQTT_URL")
            .env("NEXA_TELEMETRY_INTERVAL", "1s")
            .arg("run")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap(),
    );
    let agent_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let sessions = || broker.log().matches("u'dev-run-4'").count();
    assert!(
        wait_until(Duration::from_secs(30), || sessions() == 1),
        "{}\n--- broker\n{}",
        agent_log(),
        broker.log()
    );
    let flag: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(certs.join("enrolled")).unwrap()).unwrap();
    assert_eq!(
        flag["mqtt_url"],
        format!("mqtts://127.0.0.1:{}", broker.port),
        "{flag}"
    );
    let first = flag_serial(&certs);

    // A field tech re-enrolls while the daemon runs; `sync` takes the new identity up.
    let second = reenroll(&server, "dev-run-4", &certs);
    assert_ne!(first, second);
    let monitor = broker.monitor();
    let answer = broker.subscribe(&root, "v1/devices/me/rpc/response/41", 1, 15);
    let out = broker.publish(
        &root,
        &monitor,
        "rpc-caller",
        "v1/devices/me/rpc/request/41",
        r#"{"method":"sync"}"#,
    );
    assert!(out.status.success());
    let got = lines(answer);
    let body = &got
        .first()
        .unwrap_or_else(|| panic!("no answer to sync\n{}", agent_log()))
        .1;
    assert_eq!(body["identityChanged"], true, "{body}");
    assert_eq!(body["serial"], second.as_str(), "{body}");
    assert!(
        wait_until(Duration::from_secs(15), || sessions() == 2),
        "the session was not rebuilt\n{}\n--- broker\n{}",
        agent_log(),
        broker.log()
    );

    // Again, picked up by SIGHUP (systemctl reload) this time.
    let third = reenroll(&server, "dev-run-4", &certs);
    let status = std::process::Command::new("kill")
        .args(["-HUP", &agent.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        wait_until(Duration::from_secs(15), || sessions() == 3),
        "SIGHUP did not rebuild the session\n{}",
        agent_log()
    );
    assert!(agent_log().contains(&third), "{}", agent_log());
    assert!(agent.try_wait().unwrap().is_none(), "{}", agent_log());
    sigterm(&agent);
    assert!(agent.wait().unwrap().success(), "{}", agent_log());
}
