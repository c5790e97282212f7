//! `POST /webhooks/thingsboard` against a real `nexa-server` and the stateful fake hawkBit
//! Management API of the test kit, for devices enrolled before hawkBit was configured on the
//! bridge (the others got their target at enrollment): exactly one target per device, however
//! often and however concurrently ThingsBoard reports the connect; refused calls answered and
//! audited.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use nexa_testkit::hawkbit::{self, FakeHawkbit};
use nexa_testkit::{TestServer, make_csr, wg_public_key};
use serde_json::{Value, json};

const SECRET: &str = "3f9c1e0a7b5d4c2e8f6a1b3c5d7e9f00";
const HEADER: &str = "X-Nexa-Webhook-Secret";

struct Setup {
    server: TestServer,
    /// The password and secret files; `restart` reads them again.
    _secrets: tempfile::TempDir,
    hawkbit: FakeHawkbit,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
}

/// A bridge whose devices `enrolled` enrolled before hawkBit was configured on it (so no
/// target was provisioned at enrollment), restarted with hawkBit and the webhook secret.
fn setup(enrolled: &[&str]) -> Setup {
    let hawkbit = FakeHawkbit::start();
    let secrets = tempfile::tempdir().unwrap();
    let pw = secrets.path().join("hawkbit-password");
    std::fs::write(&pw, format!("{}\n", hawkbit::PASSWORD)).unwrap();
    let secret = secrets.path().join("webhook-secret");
    std::fs::write(&secret, SECRET).unwrap();
    let server = TestServer::start_with(
        &[],
        &[
            ("THINGSBOARD_WEBHOOK_SECRET_FILE", secret.to_str().unwrap()),
            ("MQTT_BROKER_URL", "mqtts://broker.example.net"),
        ],
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut s = Setup {
        http: server.http_client(),
        server,
        _secrets: secrets,
        hawkbit,
        rt,
    };
    for id in enrolled {
        let response = s.enroll(id);
        assert!(response.get("hawkbit").is_none(), "{response}");
    }
    s.server.set_env("HAWKBIT_URL", &s.hawkbit.url.clone());
    s.server.set_env("HAWKBIT_USER", hawkbit::USER);
    s.server
        .set_env("HAWKBIT_PASSWORD_FILE", pw.to_str().unwrap());
    s.server.restart();
    s.http = s.server.http_client();
    s
}

impl Setup {
    /// Registers and enrolls `id` over HTTP; returns the enrollment response.
    fn enroll(&self, id: &str) -> Value {
        self.server.register(&[id]);
        let (_key, csr) = make_csr(id);
        self.rt.block_on(async {
            let resp = self
                .http
                .post(format!("{}/api/devices/{id}/enroll", self.server.url))
                .json(&json!({ "csr_pem": csr, "wg_public_key": wg_public_key() }))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 201, "enroll {id}");
            resp.json().await.unwrap()
        })
    }

    /// Sends one webhook call; returns status, Retry-After and JSON body.
    fn call(&self, secret: Option<&str>, body: Value) -> (u16, Option<String>, Value) {
        self.rt
            .block_on(call(&self.http, &self.server.url, secret, body))
    }

    fn audit(&self) -> Vec<Value> {
        let out = self.server.cli_ok(&["audit", "--json", "--limit", "1000"]);
        out.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

async fn call(
    http: &reqwest::Client,
    url: &str,
    secret: Option<&str>,
    body: Value,
) -> (u16, Option<String>, Value) {
    let mut req = http.post(format!("{url}/webhooks/thingsboard")).json(&body);
    if let Some(s) = secret {
        req = req.header(HEADER, s);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, retry, resp.json().await.unwrap())
}

fn connect(id: &str) -> Value {
    json!({ "msgType": "POST_CONNECT", "deviceName": id })
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

fn count(events: &[Value], action: &str, device: Option<&str>) -> usize {
    events
        .iter()
        .filter(|e| e["action"] == action)
        .filter(|e| device.is_none_or(|d| e["device_id"] == d))
        .count()
}

#[test]
fn each_device_gets_exactly_one_hawkbit_target() {
    let s = setup(&["dev-1", "dev-2", "dev-3"]);

    // First connect creates the target.
    let (status, _, body) = s.call(Some(SECRET), connect("dev-1"));
    assert_eq!(
        (status, &body["hawkbit"]),
        (200, &json!("created")),
        "{body}"
    );
    // ThingsBoard's own event name and the metadata layout a script node passes through.
    let (status, _, body) = s.call(
        Some(SECRET),
        json!({ "msgType": "CONNECT_EVENT", "metadata": { "deviceName": "dev-1" },
                "lastConnectTime": 1_758_038_320_471_u64 }),
    );
    assert_eq!(
        (status, &body["hawkbit"]),
        (200, &json!("already_provisioned")),
        "{body}"
    );
    assert_eq!(
        s.hawkbit.create_calls(),
        1,
        "a known target costs hawkBit no call"
    );

    // Eight concurrent connects of one device: all succeed, one target.
    let results = s.rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (http, url) = (s.http.clone(), s.server.url.clone());
            set.spawn(async move { call(&http, &url, Some(SECRET), connect("dev-2")).await });
        }
        set.join_all().await
    });
    for (status, _, body) in &results {
        assert_eq!(*status, 200, "{body}");
        assert!(
            ["created", "already_existed", "already_provisioned"]
                .contains(&body["hawkbit"].as_str().unwrap()),
            "{body}"
        );
    }
    assert_eq!(
        results
            .iter()
            .filter(|(_, _, b)| b["hawkbit"] == "created")
            .count(),
        1
    );

    // A target created elsewhere: hawkBit's 409 counts as success.
    s.hawkbit.insert_target("dev-3");
    let (status, _, body) = s.call(Some(SECRET), connect("dev-3"));
    assert_eq!(
        (status, &body["hawkbit"]),
        (200, &json!("already_existed")),
        "{body}"
    );

    let targets = s.hawkbit.targets();
    let ids: Vec<&str> = targets.iter().map(|t| t.controller_id.as_str()).collect();
    assert_eq!(ids, ["dev-1", "dev-2", "dev-3"]);
    let dev1 = &targets[0];
    assert_eq!(dev1.name, "dev-1");
    assert!(!dev1.security_token.is_empty());
    assert_eq!(
        s.hawkbit.unauthorized_calls(),
        0,
        "the bridge authenticates"
    );

    let audit = s.audit();
    for id in ["dev-1", "dev-2", "dev-3"] {
        assert_eq!(count(&audit, "hawkbit.target_created", Some(id)), 1, "{id}");
    }
    let shown = s.server.device("dev-1");
    assert_ne!(shown["hawkbit_target_at"], "-", "{shown}");

    // After a restart the store still knows: no new hawkBit call.
    let calls = s.hawkbit.create_calls();
    let mut s = s;
    s.server.restart();
    s.http = s.server.http_client();
    let (status, _, body) = s.call(Some(SECRET), connect("dev-1"));
    assert_eq!(
        (status, &body["hawkbit"]),
        (200, &json!("already_provisioned")),
        "{body}"
    );
    assert_eq!(s.hawkbit.create_calls(), calls);
    assert_eq!(s.hawkbit.targets().len(), 3);
}

#[test]
fn refused_calls_are_answered_and_audited() {
    let s = setup(&["dev-1"]);
    s.server.register(&["fresh-1"]);

    let (status, _, body) = s.call(None, connect("dev-1"));
    assert_eq!(
        (status, code(&body)),
        (401, "webhook_unauthorized"),
        "{body}"
    );
    let (status, _, body) = s.call(Some("not-the-secret-at-all"), connect("dev-1"));
    assert_eq!(
        (status, code(&body)),
        (401, "webhook_unauthorized"),
        "{body}"
    );
    let (status, _, body) = s.call(Some(SECRET), connect("ghost-7"));
    assert_eq!((status, code(&body)), (404, "device_unknown"), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ghost-7")
    );
    let (status, _, body) = s.call(Some(SECRET), connect("fresh-1"));
    assert_eq!(
        (status, code(&body)),
        (409, "device_not_enrolled"),
        "{body}"
    );
    let (status, _, body) = s.call(Some(SECRET), connect("bad id!"));
    assert_eq!((status, code(&body)), (400, "invalid_device_id"), "{body}");
    let (status, _, body) = s.call(Some(SECRET), json!({ "deviceName": "dev-1" }));
    assert_eq!((status, code(&body)), (422, "invalid_field"), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("msgType")
    );
    let (status, _, body) = s.call(
        Some(SECRET),
        json!({ "msgType": "DISCONNECT_EVENT", "deviceName": "dev-1" }),
    );
    assert_eq!(
        (status, &body["result"]),
        (200, &json!("ignored")),
        "{body}"
    );
    assert_eq!(s.hawkbit.create_calls(), 0, "nothing above reached hawkBit");
    assert!(s.hawkbit.targets().is_empty());

    let audit = s.audit();
    let reasons: Vec<String> = audit
        .iter()
        .filter(|e| e["action"] == "webhook.rejected")
        .map(|e| {
            let detail: Value = serde_json::from_str(e["detail"].as_str().unwrap()).unwrap();
            detail["reason"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(reasons, ["missing_secret", "bad_secret", "unknown_device"]);
    assert_eq!(count(&audit, "webhook.rejected", Some("ghost-7")), 1);

    // A revoked device that still reaches the broker gets no target, and it is recorded.
    s.server.cli_ok(&["device", "revoke", "dev-1"]);
    let (status, _, body) = s.call(Some(SECRET), connect("dev-1"));
    assert_eq!((status, code(&body)), (403, "device_revoked"), "{body}");
    assert_eq!(count(&s.audit(), "webhook.rejected", Some("dev-1")), 1);
    assert!(s.hawkbit.targets().is_empty());
}

#[test]
fn hawkbit_failures_become_clear_gateway_errors_and_heal() {
    let s = setup(&["dev-1"]);

    s.hawkbit.fail_next(503);
    let (status, retry, body) = s.call(Some(SECRET), connect("dev-1"));
    assert_eq!(
        (status, code(&body)),
        (502, "hawkbit_unavailable"),
        "{body}"
    );
    assert_eq!(retry.as_deref(), Some("30"));

    s.hawkbit.fail_next(401);
    let (status, _, body) = s.call(Some(SECRET), connect("dev-1"));
    assert_eq!((status, code(&body)), (502, "hawkbit_refused"), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("HAWKBIT_USER"),
        "{body}"
    );
    assert!(s.hawkbit.targets().is_empty());

    // ThingsBoard retries; hawkBit is back.
    let (status, _, body) = s.call(Some(SECRET), connect("dev-1"));
    assert_eq!(
        (status, &body["hawkbit"]),
        (200, &json!("created")),
        "{body}"
    );
    assert_eq!(s.hawkbit.targets().len(), 1);
    let audit = s.audit();
    assert_eq!(count(&audit, "hawkbit.target_failed", Some("dev-1")), 2);
    assert_eq!(count(&audit, "hawkbit.target_created", Some("dev-1")), 1);
}

#[test]
fn without_a_secret_the_webhook_is_off() {
    let server = TestServer::start();
    let http = server.http_client();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (status, _, body) = rt.block_on(call(&http, &server.url, Some(SECRET), connect("dev-1")));
    assert_eq!(
        (status, code(&body)),
        (503, "webhook_not_configured"),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("THINGSBOARD_WEBHOOK_SECRET_FILE")
    );
}
