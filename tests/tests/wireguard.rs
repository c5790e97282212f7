//! WireGuard on the host, end to end with the real binaries: revocation, and the degraded
//! paths (no CAP_NET_ADMIN) of the gateway and the agent. The kernel-level proof (interfaces,
//! handshake, ping through the tunnel) is the QEMU boot test, `scripts/qemu-test.sh`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use nexa_testkit::{TestServer, text, without_net_admin};

fn healthz(server: &TestServer) -> serde_json::Value {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let resp = server
            .http_client()
            .get(format!("{}/healthz", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    })
}

fn audit_actions(server: &TestServer, id: &str) -> Vec<String> {
    server
        .cli_ok(&["audit", "--device", id, "--json"])
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["action"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[test]
fn revoked_device_is_recorded_and_can_never_enroll_again() {
    let server = TestServer::start();
    server.register(&["dev-r"]);
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("certs");
    let out = server
        .agent("dev-r", &certs)
        .arg("enroll")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let before = server.device("dev-r");

    let out = server.cli(&["device", "revoke", "dev-r", "--reason", "stolen"]);
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("device dev-r revoked"), "{said}");
    assert!(
        said.contains(before["cert_serial"].as_str().unwrap()),
        "names the revoked certificate: {said}"
    );

    let after = server.device("dev-r");
    assert_eq!(after["state"], "revoked");
    assert_eq!(
        after["address"], before["address"],
        "the address is kept, not reused"
    );
    assert_eq!(after["certificates"]["revoked"], 1);
    assert!(audit_actions(&server, "dev-r").contains(&"device.revoked".to_owned()));

    // Idempotent for the operator; refused for the device, even with an open window.
    let again = server.cli(&["device", "revoke", "dev-r"]);
    assert!(again.status.success() && text(&again).contains("already revoked"));
    let window = server.cli(&["device", "allow-reenroll", "dev-r"]);
    assert_eq!(window.status.code(), Some(1), "{}", text(&window));
    assert!(text(&window).contains("revoked"));
    let out = server
        .agent("dev-r", &certs)
        .args(["enroll", "--force"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("device_revoked"), "{}", text(&out));

    // Unknown ids are an error naming the id.
    let out = server.cli(&["device", "revoke", "nobody"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("nobody"), "{}", text(&out));
}

#[test]
fn gateway_without_cap_net_admin_is_degraded_but_the_api_serves() {
    let server = TestServer::start_without_net_admin(
        &["--gateway", "managed", "--wg-interface", "nexa-t0"],
        &[],
    );
    let ok = nexa_testkit::wait_until(Duration::from_secs(10), || {
        healthz(&server)["status"] == "degraded"
    });
    let health = healthz(&server);
    assert!(ok, "{health}");
    assert_eq!(health["gateway"]["mode"], "managed");
    assert_eq!(health["gateway"]["interface"], "nexa-t0");
    assert_eq!(health["gateway"]["error"]["code"], "no_cap_net_admin");
    assert!(
        health["gateway"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("CAP_NET_ADMIN"),
        "{health}"
    );
    assert!(
        server.log().contains("gateway degraded"),
        "{}",
        server.log()
    );

    // Enrollment is unaffected.
    server.register(&["dev-d"]);
    let tmp = tempfile::tempdir().unwrap();
    let out = server
        .agent("dev-d", &tmp.path().join("certs"))
        .arg("enroll")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn external_gateway_reports_external_and_bad_gateway_settings_are_named() {
    let server = TestServer::start();
    let health = healthz(&server);
    assert_eq!(health["status"], "ok");
    assert_eq!(health["gateway"]["mode"], "external");

    let cases: [(&[&str], &str); 4] = [
        (&["--gateway", "sideways"], "NEXA_GATEWAY"),
        (
            &[
                "--gateway",
                "managed",
                "--wg-interface",
                "much-too-long-name",
            ],
            "WG_INTERFACE",
        ),
        (
            &["--gateway", "managed", "--wg-listen-port", "0"],
            "WG_LISTEN_PORT",
        ),
        (
            &["--gateway", "managed", "--gateway-reconcile", "0s"],
            "NEXA_GATEWAY_RECONCILE",
        ),
    ];
    for (args, needle) in cases {
        let mut full = vec!["serve", "--listen", "127.0.0.1:0"];
        full.extend_from_slice(args);
        let out = server.cli(&full);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(needle), "{args:?}: {}", text(&out));
    }
}

#[test]
fn agent_tunnel_errors_name_the_cause_and_keep_the_enrollment() {
    let server = TestServer::start();
    server.register(&["dev-w"]);
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("certs");

    // Not enrolled yet: `wg up` says to enroll first (exit 1).
    let out = server
        .agent("dev-w", &certs)
        .args(["wg", "up"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("nexa-agent enroll"), "{}", text(&out));

    // Enrollment succeeds; bringing the tunnel up without the capability fails with exit 6,
    // naming the capability, and the certificates stay.
    let mut enroll = server.agent("dev-w", &certs);
    enroll
        .env("NEXA_MANAGE_WIREGUARD", "true")
        .env("NEXA_WG_INTERFACE", "nexa-t1")
        .arg("enroll");
    let out = without_net_admin(&enroll).output().unwrap();
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("enrolled dev-w"), "{said}");
    assert!(
        said.contains("nexa-t1") && said.contains("CAP_NET_ADMIN"),
        "{said}"
    );
    assert!(certs.join("enrolled").exists() && certs.join("wg0.conf").exists());

    let mut up = server.agent("dev-w", &certs);
    up.env("NEXA_WG_INTERFACE", "nexa-t1").args(["wg", "up"]);
    let out = without_net_admin(&up).output().unwrap();
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));

    // A bad interface name is a usage error naming the variable.
    let out = server
        .agent("dev-w", &certs)
        .env("NEXA_WG_INTERFACE", "bad/name")
        .args(["wg", "show"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("NEXA_WG_INTERFACE"), "{}", text(&out));
}
