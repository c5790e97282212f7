//! `nexa-agent run` against a real bridge and a real mosquitto with mTLS: it enrolls, connects
//! with its certificate chain as the device id, publishes client attributes and telemetry in
//! ThingsBoard's format, answers server-side RPC, and stops cleanly on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nexa_testkit::mosquitto::Broker;
use nexa_testkit::{TestServer, wait_until};

fn lines(child: Child) -> Vec<(String, serde_json::Value)> {
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(t, p)| (t.to_owned(), serde_json::from_str(p).unwrap_or_default()))
        .collect()
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

    // Watch everything the device sends before it starts.
    let watch = broker.subscribe(&root, "v1/devices/me/#", 3, 30);
    let log = std::fs::File::create(tmp.path().join("agent.log")).unwrap();
    let mut agent = server
        .agent("dev-run-1", &tmp.path().join("certs"))
        .env(
            "NEXA_MQTT_URL",
            format!("mqtts://127.0.0.1:{}", broker.port),
        )
        .env("NEXA_TELEMETRY_INTERVAL", "1s")
        .arg("run")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let agent_log = || std::fs::read_to_string(tmp.path().join("agent.log")).unwrap_or_default();

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
    for (id, method) in [("7", "status"), ("8", "reboot-everything")] {
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
        if method == "status" {
            assert_eq!(body["state"], "enrolled", "{body}");
            assert_eq!(body["device_id"], "dev-run-1", "{body}");
        } else {
            assert_eq!(body["error"]["code"], "unknown_method", "{body}");
        }
    }

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
}
