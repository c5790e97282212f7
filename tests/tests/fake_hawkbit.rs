//! The fake hawkBit's DDI side, driven over HTTP with reqwest the way a device would, and
//! checked against the research contract (`DDI.md`): poll and links, configData,
//! deploymentBase bodies, the feedback state machine and its history, 410 after close,
//! downloads with Range / If-Range / injected drops, cancel and confirmation flows,
//! installedBase, authentication modes, injected 429 / 5xx and a server that goes down.
//! If the fake drifts from hawkBit, the agent's tests against it stop meaning anything.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use nexa_testkit::hawkbit::{
    ActionState, ActionType, Artifact, Assignment, AuthKind, Chunk, DdiAuth, DistributionSet,
    DownMode, DownloadFault, DownloadLinks, FakeHawkbit, Fault, FeedbackChannel, Hashes,
    HeaderAuth, MaintenanceWindow, Route, SERVER_PREFIX, StatusKind, generated_bytes,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

const ID: &str = "dev-0001";
const TOKEN: &str = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6";

/// A plain-HTTP client (the workspace's reqwest wants a TLS setup even so).
fn http() -> reqwest::Client {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// A fake with one known target `ID` (token `TOKEN`) and a client speaking for it.
struct Device {
    hb: FakeHawkbit,
    http: reqwest::Client,
    auth: String,
}

impl Device {
    fn new() -> Self {
        let hb = FakeHawkbit::start();
        hb.insert_target_with_token(ID, TOKEN);
        hb.set_polling_sleep(Duration::from_secs(10));
        Self {
            hb,
            http: http(),
            auth: format!("TargetToken {TOKEN}"),
        }
    }

    fn base(&self) -> String {
        self.hb.controller_url(ID)
    }

    async fn get(&self, url: &str) -> reqwest::Response {
        self.http
            .get(url)
            .header("Authorization", &self.auth)
            .send()
            .await
            .unwrap()
    }

    async fn get_json(&self, url: &str) -> Value {
        let r = self.get(url).await;
        assert_eq!(r.status(), 200, "GET {url}");
        r.json().await.unwrap()
    }

    async fn poll(&self) -> Value {
        self.get_json(&self.base()).await
    }

    async fn post(&self, url: &str, body: &Value) -> StatusCode {
        self.http
            .post(url)
            .header("Authorization", &self.auth)
            .json(body)
            .send()
            .await
            .unwrap()
            .status()
    }

    async fn put(&self, url: &str, body: &Value) -> StatusCode {
        self.http
            .put(url)
            .header("Authorization", &self.auth)
            .json(body)
            .send()
            .await
            .unwrap()
            .status()
    }

    async fn feedback(&self, action: u64, execution: &str, finished: &str) -> StatusCode {
        let url = format!("{}/deploymentBase/{action}/feedback", self.base());
        self.post(&url, &status(execution, finished)).await
    }

    async fn cancel_feedback(&self, action: u64, execution: &str, finished: &str) -> StatusCode {
        let url = format!("{}/cancelAction/{action}/feedback", self.base());
        self.post(&url, &status(execution, finished)).await
    }

    /// The deploymentBase href of the poll, if any.
    async fn deployment_href(&self) -> Option<String> {
        link(&self.poll().await, "deploymentBase")
    }
}

fn status(execution: &str, finished: &str) -> Value {
    json!({ "status": { "execution": execution, "result": { "finished": finished } } })
}

fn link(body: &Value, rel: &str) -> Option<String> {
    body["_links"][rel]["href"].as_str().map(str::to_owned)
}

fn rels(body: &Value) -> Vec<String> {
    let mut rels: Vec<String> = body
        .get("_links")
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    rels.sort();
    rels
}

fn rootfs(data: &[u8]) -> DistributionSet {
    DistributionSet::single("rootfs", "1.0.75", Artifact::bytes("rootfs.raucb", data))
}

/// The first artifact's download href of a deploymentBase body.
fn download_href(body: &Value) -> String {
    body["deployment"]["chunks"][0]["artifacts"][0]["_links"]["download-http"]["href"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Reads a body until it ends or fails; `true` = it failed.
async fn read_all(mut r: reqwest::Response) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    loop {
        match r.chunk().await {
            Ok(Some(c)) => out.extend_from_slice(&c),
            Ok(None) => return (out, false),
            Err(_) => return (out, true),
        }
    }
}

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn poll_sleep_links_and_config_data() {
    let d = Device::new();
    let r = d.get(&d.base()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type").unwrap(), "application/hal+json");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["config"]["polling"]["sleep"], "00:00:10");
    // A new target is asked for its attributes, nothing else.
    assert_eq!(rels(&body), ["configData"]);
    assert_eq!(
        link(&body, "configData").unwrap(),
        format!("{}/DEFAULT/controller/v1/{ID}/configData", d.hb.url)
    );

    let cfg = format!("{}/configData", d.base());
    let put = |body: Value| {
        let d = &d;
        let cfg = cfg.clone();
        async move { d.put(&cfg, &body).await }
    };
    assert_eq!(put(json!({ "data": {} })).await, 400, "empty data");
    assert_eq!(
        put(json!({ "data": { "a": { "b": "c" } } })).await,
        400,
        "nested"
    );
    assert_eq!(
        put(json!({ "mode": "upsert", "data": { "a": "1" } })).await,
        400
    );
    let wrong_type = d
        .http
        .put(&cfg)
        .header("Authorization", &d.auth)
        .header("Content-Type", "text/plain")
        .body(r#"{"data":{"a":"1"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_type.status(), 415);
    assert!(
        d.hb.attributes_requested(ID),
        "refused bodies change nothing"
    );

    assert_eq!(
        put(json!({ "mode": "merge", "data": { "hwRevision": "2", "VIN": "X1" } })).await,
        200
    );
    assert_eq!(rels(&d.poll().await), Vec::<String>::new(), "no links left");
    assert!(
        d.poll().await.get("_links").is_none(),
        "empty _links omitted"
    );
    // merge is the default; replace clears; remove drops the keys named.
    assert_eq!(put(json!({ "data": { "serial": "7", "n": 3 } })).await, 200);
    assert_eq!(
        d.hb.attributes(ID).into_iter().collect::<Vec<_>>(),
        [
            ("VIN".into(), "X1".into()),
            ("hwRevision".into(), "2".into()),
            ("n".into(), "3".into()),
            ("serial".into(), "7".into()),
        ]
    );
    assert_eq!(
        put(json!({ "mode": "remove", "data": { "n": "" } })).await,
        200
    );
    assert_eq!(
        put(json!({ "mode": "replace", "data": { "only": "this" } })).await,
        200
    );
    assert_eq!(
        d.hb.attributes(ID).into_iter().collect::<Vec<_>>(),
        [("only".into(), "this".into())]
    );

    // The operator asks again.
    d.hb.request_attributes(ID);
    assert_eq!(rels(&d.poll().await), ["configData"]);

    // Sleep of a day or more: ISO-8601; and anything a test wants to feed a parser.
    d.hb.set_polling_sleep(Duration::from_secs(36 * 3600));
    assert_eq!(d.poll().await["config"]["polling"]["sleep"], "PT36H");
    d.hb.set_polling_sleep_raw("aa:bb:cc");
    assert_eq!(d.poll().await["config"]["polling"]["sleep"], "aa:bb:cc");
    assert_eq!(d.hb.polls(ID), 6);
    assert!(d.hb.last_poll(ID).is_some());
}

#[tokio::test]
async fn content_negotiation_and_etags() {
    let d = Device::new();
    let get = |accept: &'static str| {
        let d = &d;
        async move {
            d.http
                .get(d.base())
                .header("Authorization", &d.auth)
                .header("Accept", accept)
                .send()
                .await
                .unwrap()
        }
    };
    let r = get("application/json").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type").unwrap(), "application/json");
    let etag = header(&r, "etag").unwrap();
    assert!(etag.starts_with("\"0") && etag.len() == 35, "{etag}");
    assert_eq!(get("text/plain").await.status(), 406);
    assert_eq!(get("text/html, */*;q=0.1").await.status(), 200);

    let cond = d
        .http
        .get(d.base())
        .header("Authorization", &d.auth)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(cond.status(), 304);
    assert_eq!(cond.bytes().await.unwrap().len(), 0);
    // Something changed: the body and its tag change.
    d.hb.deploy(ID, rootfs(b"x"), Assignment::forced());
    let cond = d
        .http
        .get(d.base())
        .header("Authorization", &d.auth)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(cond.status(), 200);
    assert_ne!(header(&cond, "etag").unwrap(), etag);
}

#[tokio::test]
async fn deployment_base_body_is_hawkbits() {
    let d = Device::new();
    let os = b"hello, rootfs";
    let app = b"app";
    let set = DistributionSet::new("nexa-image", "1.0.75")
        .chunk(
            Chunk::new("os", "rootfs", "1.0.75")
                .artifact(Artifact::bytes("rootfs.raucb", os))
                .metadata("install-hint", "reboot"),
        )
        .chunk(
            Chunk::new("application", "app", "2")
                .encrypted()
                .artifact(Artifact::bytes("app.tar", app).without_sha256()),
        );
    let action = d.hb.deploy(
        ID,
        set,
        Assignment::soft().window(MaintenanceWindow::Unavailable),
    );
    let poll = d.poll().await;
    assert_eq!(rels(&poll), ["configData", "deploymentBase"]);
    let href = link(&poll, "deploymentBase").unwrap();
    let prefix = format!("{}/deploymentBase/{action}?c=", d.base());
    assert!(href.starts_with(&prefix), "{href}");

    let body = d.get_json(&href).await;
    let base = d.base();
    let (h_os, h_app) = (Hashes::of(os), Hashes::of(app));
    let links = |module: u64, file: &str| {
        let url = format!("{base}/softwaremodules/{module}/artifacts/{file}");
        json!({
            "download-http": { "href": url },
            "md5sum-http": { "href": format!("{url}.MD5SUM") },
        })
    };
    assert_eq!(
        body,
        json!({
            "id": action.to_string(),
            "deployment": {
                "download": "attempt",
                "update": "skip",
                "maintenanceWindow": "unavailable",
                "chunks": [
                    {
                        "part": "os", "version": "1.0.75", "name": "rootfs",
                        "artifacts": [{
                            "filename": "rootfs.raucb",
                            "hashes": { "sha1": h_os.sha1, "md5": h_os.md5, "sha256": h_os.sha256 },
                            "size": 13,
                            "_links": links(1, "rootfs.raucb"),
                        }],
                        "metadata": [{ "key": "install-hint", "value": "reboot" }],
                    },
                    {
                        "part": "bApp", "version": "2", "name": "app", "encrypted": true,
                        "artifacts": [{
                            "filename": "app.tar",
                            "hashes": { "sha1": h_app.sha1, "md5": h_app.md5 },
                            "size": 3,
                            "_links": links(2, "app.tar"),
                        }],
                    },
                ],
            },
        })
    );

    // The window opens: install allowed, and the link's c changes with it.
    d.hb.set_maintenance_window(action, Some(MaintenanceWindow::Available));
    let href2 = d.deployment_href().await.unwrap();
    assert_ne!(href2, href);
    let dep = &d.get_json(&href2).await["deployment"];
    assert_eq!(
        (&dep["download"], &dep["update"]),
        (&json!("attempt"), &json!("attempt"))
    );
    // soft → forced.
    d.hb.set_maintenance_window(action, None);
    d.hb.set_action_type(action, ActionType::Forced);
    let href3 = d.deployment_href().await.unwrap();
    assert_ne!(href3, href2);
    let dep = d.get_json(&href3).await["deployment"].clone();
    assert_eq!(
        (&dep["download"], &dep["update"]),
        (&json!("forced"), &json!("forced"))
    );
    assert!(dep.get("maintenanceWindow").is_none());
    // Time-forced: soft until the time, forced after.
    let later = std::time::SystemTime::now() + Duration::from_secs(3600);
    d.hb.set_action_type(action, ActionType::TimeForced { at: later });
    assert_eq!(
        d.get_json(&href3).await["deployment"]["download"],
        "attempt"
    );
    d.hb.set_action_type(
        action,
        ActionType::TimeForced {
            at: std::time::SystemTime::UNIX_EPOCH,
        },
    );
    assert_eq!(d.get_json(&href3).await["deployment"]["download"], "forced");

    // Reading it leaves one RETRIEVED entry, however often.
    let kinds: Vec<_> = d.hb.statuses(action).iter().map(|s| s.kind).collect();
    assert_eq!(kinds, [StatusKind::Running, StatusKind::Retrieved]);

    // The both-protocols link layout.
    d.hb.set_download_links(DownloadLinks::Both);
    let links =
        d.get_json(&href3).await["deployment"]["chunks"][0]["artifacts"][0]["_links"].clone();
    let mut rels: Vec<_> = links.as_object().unwrap().keys().cloned().collect();
    rels.sort();
    assert_eq!(rels, ["download", "download-http", "md5sum", "md5sum-http"]);

    // The module's artifact list.
    let list = d
        .get_json(&format!("{}/softwaremodules/2/artifacts", d.base()))
        .await;
    assert_eq!(list[0]["filename"], "app.tar");
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(
        d.get(&format!("{}/softwaremodules/99/artifacts", d.base()))
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn feedback_state_machine_history_and_410() {
    let d = Device::new();
    d.put(
        &format!("{}/configData", d.base()),
        &json!({ "data": { "a": "b" } }),
    )
    .await;
    let action = d.hb.deploy(ID, rootfs(b"image"), Assignment::forced());
    let href = d.deployment_href().await.unwrap();
    d.get_json(&format!("{href}&actionHistory=5")).await;
    let fb_url = format!("{}/deploymentBase/{action}/feedback", d.base());

    // Malformed feedback: 400, not recorded.
    for bad in [
        json!({}),
        json!({ "status": { "execution": "CLOSED", "result": { "finished": "success" } } }),
        json!({ "status": { "execution": "closed", "result": {} } }),
        json!({ "status": { "execution": "closed", "result": { "finished": "ok" } } }),
        json!({ "status": { "execution": "proceeding", "result": { "finished": "none", "progress": { "of": 2 } } } }),
        json!({ "status": { "execution": "proceeding", "result": { "finished": "none" }, "details": "x" } }),
    ] {
        assert_eq!(d.post(&fb_url, &bad).await, 400, "{bad}");
    }
    assert!(d.hb.feedback(action).is_empty());

    let progress = json!({
        "id": "legacy members are ignored",
        "timestamp": 1_627_997_501_890_i64,
        "status": {
            "execution": "proceeding",
            "result": { "finished": "none", "progress": { "cnt": 2, "of": 5 } },
            "code": 200,
            "details": ["Downloading rootfs.raucb"],
        },
    });
    assert_eq!(d.post(&fb_url, &progress).await, 200);
    assert_eq!(d.feedback(action, "download", "none").await, 200);
    assert_eq!(d.feedback(action, "downloaded", "none").await, 200);
    assert_eq!(d.feedback(action, "scheduled", "none").await, 200);
    assert_eq!(d.feedback(action, "resumed", "none").await, 200);
    assert_eq!(d.feedback(action, "rejected", "none").await, 200);
    assert_eq!(
        d.hb.action(action).state,
        ActionState::Running,
        "still open"
    );
    // actionHistory: device messages only, newest first.
    let hist = d.get_json(&format!("{href}&actionHistory=2")).await;
    assert_eq!(
        hist["actionHistory"],
        json!({ "status": "RUNNING", "messages": ["Device reported status code: 200", "Downloading rootfs.raucb"] })
    );
    assert!(d.get_json(&href).await.get("actionHistory").is_none());

    let closed = json!({
        "status": {
            "execution": "closed",
            "result": { "finished": "success" },
            "code": 0,
            "details": ["Installed", "Rebooted into B"],
        },
    });
    assert_eq!(d.post(&fb_url, &closed).await, 200);
    let view = d.hb.action(action);
    assert_eq!(view.state, ActionState::Finished);
    assert!(!view.is_active());
    let kinds: Vec<_> = view.statuses.iter().map(|s| s.kind).collect();
    use StatusKind::*;
    assert_eq!(
        kinds,
        [
            Running, Retrieved, Running, Download, Downloaded, Running, Running, Warning,
            Retrieved, Finished
        ]
    );
    let last = view.statuses.last().unwrap();
    assert_eq!(
        last.messages,
        [
            "Installed",
            "Rebooted into B",
            "Device reported status code: 0"
        ]
    );
    assert_eq!(last.code, Some(0));
    assert_eq!(view.statuses[2].occurred_at, 1_627_997_501_890);
    // Empty details get the server's words.
    assert_eq!(
        view.statuses[3].messages,
        [format!("{SERVER_PREFIX}Target started the download")]
    );
    let first = &view.feedback[0];
    assert_eq!(first.channel, FeedbackChannel::Deployment);
    assert_eq!(first.progress, Some((2, Some(5))));
    assert_eq!(first.timestamp, Some(1_627_997_501_890));
    assert_eq!(first.body, progress);
    assert_eq!(view.accepted_feedback().len(), 7);

    // Closed: the poll has no deploymentBase; installedBase and configData appear.
    let poll = d.poll().await;
    assert_eq!(rels(&poll), ["configData", "installedBase"]);
    assert_eq!(
        link(&poll, "installedBase").unwrap(),
        format!("{}/installedBase/{action}", d.base())
    );
    assert_eq!(d.hb.installed_action(ID), Some(action));
    let installed = d.get_json(&link(&poll, "installedBase").unwrap()).await;
    assert_eq!(installed["id"], action.to_string());
    assert_eq!(installed["deployment"]["chunks"][0]["name"], "rootfs");

    // Feedback for a closed action: 410 (recorded as refused); unknown action: 404.
    assert_eq!(d.feedback(action, "closed", "success").await, 410);
    assert_eq!(d.hb.feedback(action).last().unwrap().answered, 410);
    assert_eq!(d.feedback(999, "closed", "success").await, 404);
    assert_eq!(d.hb.action(action).state, ActionState::Finished);

    // A failed action: ERROR, closed, installedBase still the old one.
    let failing = d.hb.deploy(ID, rootfs(b"image 2"), Assignment::forced());
    let fail = json!({
        "status": { "execution": "closed", "result": { "finished": "failure" }, "details": ["hash mismatch"] },
    });
    assert_eq!(
        d.post(
            &format!("{}/deploymentBase/{failing}/feedback", d.base()),
            &fail
        )
        .await,
        200
    );
    assert_eq!(d.hb.action(failing).state, ActionState::Error);
    assert_eq!(d.hb.installed_action(ID), Some(action));
    assert_eq!(rels(&d.poll().await), ["configData", "installedBase"]);
    // installedBase of an open action: 404.
    let open = d.hb.deploy(ID, rootfs(b"image 3"), Assignment::forced());
    assert_eq!(
        d.get(&format!("{}/installedBase/{open}", d.base()))
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn download_only_closes_on_downloaded_and_quotas_answer_429() {
    let d = Device::new();
    let action = d.hb.deploy(ID, rootfs(b"x"), Assignment::download_only());
    let dep = d.get_json(&d.deployment_href().await.unwrap()).await;
    assert_eq!(
        (&dep["deployment"]["download"], &dep["deployment"]["update"]),
        (&json!("forced"), &json!("skip"))
    );
    d.put(
        &format!("{}/configData", d.base()),
        &json!({ "data": { "a": "b" } }),
    )
    .await;
    assert_eq!(d.feedback(action, "downloaded", "none").await, 200);
    assert_eq!(d.hb.action(action).state, ActionState::Downloaded);
    assert_eq!(
        rels(&d.poll().await),
        ["configData"],
        "closed, attributes wanted"
    );
    assert_eq!(d.feedback(action, "closed", "success").await, 410);

    // Quotas: messages per status, entries per action (final statuses are exempt).
    d.hb.set_quotas(4, 2);
    let action = d.hb.deploy(ID, rootfs(b"y"), Assignment::forced());
    let url = format!("{}/deploymentBase/{action}/feedback", d.base());
    let chatty = json!({
        "status": { "execution": "proceeding", "result": { "finished": "none" }, "details": ["a", "b", "c"] },
    });
    assert_eq!(d.post(&url, &chatty).await, 429);
    assert_eq!(d.feedback(action, "proceeding", "none").await, 200); // 2 entries
    assert_eq!(d.feedback(action, "proceeding", "none").await, 200); // 3
    assert_eq!(d.feedback(action, "proceeding", "none").await, 200); // 4
    assert_eq!(d.feedback(action, "proceeding", "none").await, 429);
    assert_eq!(d.feedback(action, "closed", "success").await, 200);
    let answers: Vec<u16> = d.hb.feedback(action).iter().map(|f| f.answered).collect();
    assert_eq!(answers, [429, 200, 200, 200, 429, 200]);
}

#[tokio::test]
async fn artifact_download_range_if_range_and_md5sum() {
    let d = Device::new();
    let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let action = d.hb.deploy(ID, rootfs(&data), Assignment::forced());
    let dep = d.get_json(&d.deployment_href().await.unwrap()).await;
    let url = download_href(&dep);
    let sha1 = Hashes::of(&data).sha1;
    let etag = format!("\"{sha1}\"");

    let r = d.get(&url).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-length").unwrap(), "1000");
    assert_eq!(
        header(&r, "content-type").unwrap(),
        "application/octet-stream"
    );
    assert_eq!(header(&r, "accept-ranges").unwrap(), "bytes");
    assert_eq!(header(&r, "etag").unwrap(), etag);
    assert_eq!(
        header(&r, "content-disposition").unwrap(),
        "attachment;filename=rootfs.raucb"
    );
    assert_eq!(header(&r, "x-content-type-options").unwrap(), "nosniff");
    assert!(header(&r, "last-modified").unwrap().ends_with(" GMT"));
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[..]);
    let downloads = |d: &Device| {
        d.hb.statuses(action)
            .iter()
            .filter(|s| s.kind == StatusKind::Download)
            .count()
    };
    assert_eq!(downloads(&d), 1, "a full download is noted");

    let ranged = |range: &'static str, if_range: Option<String>| {
        let d = &d;
        let url = url.clone();
        async move {
            let mut req = d
                .http
                .get(&url)
                .header("Authorization", &d.auth)
                .header("Range", range);
            if let Some(v) = if_range {
                req = req.header("If-Range", v);
            }
            req.send().await.unwrap()
        }
    };
    for (range, start, end) in [
        ("bytes=0-99", 0, 99),
        ("bytes=900-", 900, 999),
        ("bytes=-10", 990, 999),
        ("bytes=990-5000", 990, 999),
    ] {
        let r = ranged(range, None).await;
        assert_eq!(r.status(), 206, "{range}");
        assert_eq!(
            header(&r, "content-range").unwrap(),
            format!("bytes {start}-{end}/1000")
        );
        assert_eq!(
            header(&r, "content-length").unwrap(),
            (end - start + 1).to_string()
        );
        assert_eq!(r.bytes().await.unwrap().as_ref(), &data[start..=end]);
    }
    for range in ["bytes=1000-", "bytes=5-1", "bytes=x-y"] {
        let r = ranged(range, None).await;
        assert_eq!(r.status(), 416, "{range}");
        assert_eq!(header(&r, "content-range").unwrap(), "bytes */1000");
    }
    assert_eq!(downloads(&d), 1, "Range requests are not noted");

    // If-Range: the same content resumes, another content restarts with 200.
    let r = ranged("bytes=500-", Some(etag.clone())).await;
    assert_eq!(r.status(), 206);
    let r = ranged("bytes=500-", Some("\"0000\"".into())).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), 1000);
    // If-Match naming another content: 412.
    let r = d
        .http
        .get(&url)
        .header("Authorization", &d.auth)
        .header("If-Match", "\"0000\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 412);

    // Several ranges: multipart/byteranges.
    let r = ranged("bytes=0-1,998-999", None).await;
    assert_eq!(r.status(), 206);
    let ctype = header(&r, "content-type").unwrap();
    let boundary = ctype.split("boundary=").nth(1).unwrap().to_owned();
    let body = r.bytes().await.unwrap();
    let text = String::from_utf8_lossy(&body);
    assert!(text.starts_with(&format!("--{boundary}\r\n")), "{text}");
    assert!(text.contains("Content-Range: bytes 0-1/1000\r\n\r\n\u{0}\u{1}\r\n"));
    assert!(text.ends_with(&format!("\r\n--{boundary}--\r\n")));

    // .MD5SUM: `<md5>  <filename>`.
    let md5 = d.get(&format!("{url}.MD5SUM")).await;
    assert_eq!(md5.status(), 200);
    assert_eq!(header(&md5, "content-type").unwrap(), "text/plain");
    assert_eq!(
        md5.text().await.unwrap(),
        format!("{}  rootfs.raucb", Hashes::of(&data).md5)
    );
    assert_eq!(d.get(&format!("{url}.nope")).await.status(), 404);

    // After the action closed a full download is refused, a ranged one still served.
    assert_eq!(d.feedback(action, "closed", "success").await, 200);
    assert_eq!(d.get(&url).await.status(), 404);
    assert_eq!(ranged("bytes=0-0", None).await.status(), 206);
}

#[tokio::test]
async fn dropped_downloads_resume_and_stalls_and_throttling() {
    let d = Device::new();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 256) as u8).collect();
    d.hb.deploy(ID, rootfs(&data), Assignment::forced());
    let url = download_href(&d.get_json(&d.deployment_href().await.unwrap()).await);
    let etag = format!("\"{}\"", Hashes::of(&data).sha1);

    d.hb.inject_download(DownloadFault::drop_after(30_000).times(2));
    let r = d.get(&url).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-length").unwrap(), "100000");
    let (mut got, failed) = read_all(r).await;
    assert!(failed, "the body must end in an error");
    assert_eq!(got.len(), 30_000);
    // Resume; dropped again 30 000 bytes later, then complete.
    while got.len() < data.len() {
        let r = d
            .http
            .get(&url)
            .header("Authorization", &d.auth)
            .header("Range", format!("bytes={}-", got.len()))
            .header("If-Range", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 206);
        let (part, _) = read_all(r).await;
        got.extend_from_slice(&part);
    }
    assert_eq!(got, data);
    let ranged = d.requests_to_ranges();
    assert_eq!(ranged, ["bytes=30000-", "bytes=60000-"]);

    // A stall: the body pauses, then completes.
    d.hb.inject_download(DownloadFault::stall_after(1000, Duration::from_millis(400)));
    let t = Instant::now();
    let (body, failed) = read_all(d.get(&url).await).await;
    assert!(!failed && body == data);
    assert!(t.elapsed() >= Duration::from_millis(400));

    // Throttled to 200 kB/s: 100 kB take about half a second.
    d.hb.set_download_rate(Some(200_000));
    let t = Instant::now();
    let (body, _) = read_all(d.get(&url).await).await;
    assert_eq!(body, data);
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );
}

impl Device {
    fn requests_to_ranges(&self) -> Vec<String> {
        self.hb
            .requests_to(Route::Artifact)
            .iter()
            .filter_map(|r| r.header("range").map(str::to_owned))
            .collect()
    }
}

#[tokio::test]
async fn generated_content_streams_and_corruption_shows() {
    let d = Device::new();
    // 3 MiB generated, hashed by the fake; plus a 5 GB one with declared hashes.
    let size = 3 * 1024 * 1024 + 17;
    let big = 5_000_000_000_u64;
    let declared = Hashes {
        sha1: "0".repeat(40),
        md5: "0".repeat(32),
        sha256: "0".repeat(64),
    };
    let set = DistributionSet::new("gen", "1").chunk(
        Chunk::new("os", "gen", "1")
            .artifact(Artifact::generated("gen.bin", size, 42))
            .artifact(Artifact::generated("huge.bin", big, 7).with_hashes(declared)),
    );
    d.hb.deploy(ID, set, Assignment::forced());
    let dep = d.get_json(&d.deployment_href().await.unwrap()).await;
    let arts = &dep["deployment"]["chunks"][0]["artifacts"];
    assert_eq!(arts[1]["size"], json!(big), "64-bit size");
    let expected = generated_bytes(42, 0, size as usize);
    assert_eq!(arts[0]["hashes"]["sha256"], Hashes::of(&expected).sha256);

    let body = d.get(&download_href(&dep)).await.bytes().await.unwrap();
    assert_eq!(body.as_ref(), &expected[..]);
    let huge = arts[1]["_links"]["download-http"]["href"].as_str().unwrap();
    let r = d
        .http
        .get(huge)
        .header("Authorization", &d.auth)
        .header("Range", "bytes=4999999990-")
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&r, "content-range").unwrap(),
        format!("bytes 4999999990-4999999999/{big}")
    );
    assert_eq!(
        r.bytes().await.unwrap().as_ref(),
        &generated_bytes(7, big - 10, 10)[..]
    );

    // Corrupted: same size and advertised hashes, different content.
    d.hb.set_corrupted("gen.bin", true);
    let bad = d.get(&download_href(&dep)).await.bytes().await.unwrap();
    assert_eq!(bad.len(), expected.len());
    assert_ne!(
        Hashes::of(&bad).sha256,
        arts[0]["hashes"]["sha256"].as_str().unwrap()
    );
    d.hb.set_corrupted("gen.bin", false);
    let good = d.get(&download_href(&dep)).await.bytes().await.unwrap();
    assert_eq!(good.as_ref(), &expected[..]);

    // The flipped byte sits in the middle.
    let d2 = Device::new();
    let set = DistributionSet::single(
        "c",
        "1",
        Artifact::bytes("c.bin", b"0123456789").corrupted(),
    );
    d2.hb.deploy(ID, set, Assignment::forced());
    let dep = d2.get_json(&d2.deployment_href().await.unwrap()).await;
    let body = d2.get(&download_href(&dep)).await.bytes().await.unwrap();
    assert_eq!(body.as_ref(), b"01234\xca6789");
}

#[tokio::test]
async fn cancel_flow() {
    let d = Device::new();
    let action = d.hb.deploy(ID, rootfs(b"x"), Assignment::forced());
    let dep_href = d.deployment_href().await.unwrap();

    // Cancel feedback while nothing is being canceled: 405.
    assert_eq!(d.cancel_feedback(action, "closed", "success").await, 405);

    d.hb.cancel(action);
    let poll = d.poll().await;
    assert_eq!(rels(&poll), ["cancelAction", "configData"]);
    let cancel_href = link(&poll, "cancelAction").unwrap();
    assert_eq!(cancel_href, format!("{}/cancelAction/{action}", d.base()));
    assert_eq!(
        d.get(&dep_href).await.status(),
        404,
        "no deploymentBase while canceling"
    );
    let id = action.to_string();
    assert_eq!(
        d.get_json(&cancel_href).await,
        json!({ "id": id, "cancelAction": { "stopId": id } })
    );

    // The device refuses: the action goes on, deploymentBase again.
    assert_eq!(d.cancel_feedback(action, "rejected", "success").await, 200);
    assert_eq!(d.hb.action(action).state, ActionState::Running);
    assert!(d.deployment_href().await.is_some());
    assert_eq!(d.get(&cancel_href).await.status(), 404);

    // Canceled again; `canceled` here is only a warning; `closed` accepts.
    d.hb.cancel(action);
    assert_eq!(d.cancel_feedback(action, "proceeding", "none").await, 200);
    assert_eq!(d.cancel_feedback(action, "canceled", "success").await, 200);
    assert_eq!(d.hb.action(action).state, ActionState::Canceling);
    assert_eq!(d.cancel_feedback(action, "closed", "success").await, 200);
    let view = d.hb.action(action);
    assert_eq!(view.state, ActionState::Canceled);
    let kinds: Vec<_> = view.statuses.iter().map(|s| s.kind).collect();
    use StatusKind::*;
    assert_eq!(
        kinds,
        [
            Running,
            Canceling,
            Retrieved,
            CancelRejected,
            Canceling,
            Running,
            Warning,
            Canceled
        ]
    );
    assert_eq!(
        view.statuses.last().unwrap().messages,
        [format!("{SERVER_PREFIX}Cancellation confirmed")]
    );
    assert!(
        view.feedback
            .iter()
            .all(|f| f.channel == FeedbackChannel::Cancel)
    );
    assert_eq!(rels(&d.poll().await), ["configData"]);
    assert_eq!(d.feedback(action, "closed", "success").await, 410);
    assert_eq!(
        d.get(&format!("{}/installedBase/{action}", d.base()))
            .await
            .status(),
        404
    );

    // Cancel during install: the device finishes the update instead.
    let action = d.hb.deploy(ID, rootfs(b"y"), Assignment::forced());
    d.hb.cancel(action);
    assert_eq!(d.feedback(action, "closed", "success").await, 200);
    assert_eq!(d.hb.action(action).state, ActionState::Finished);

    // A new assignment supersedes an open one (no multi-assignment).
    let old = d.hb.deploy(ID, rootfs(b"1"), Assignment::forced());
    let new = d.hb.deploy(ID, rootfs(b"2"), Assignment::forced());
    assert_eq!(d.hb.action(old).state, ActionState::Canceling);
    assert_eq!(
        link(&d.poll().await, "cancelAction").unwrap(),
        format!("{}/cancelAction/{old}", d.base())
    );
    assert_eq!(d.cancel_feedback(old, "closed", "success").await, 200);
    assert!(
        d.deployment_href()
            .await
            .unwrap()
            .contains(&format!("/deploymentBase/{new}?"))
    );
    // Force-quit ends a cancel without the device.
    d.hb.cancel(new);
    d.hb.force_quit(new);
    assert_eq!(d.hb.action(new).state, ActionState::Canceled);
}

#[tokio::test]
async fn confirmation_and_auto_confirm() {
    let d = Device::new();
    let action = d.hb.deploy(
        ID,
        rootfs(b"x"),
        Assignment::forced().confirmation_required(),
    );
    let poll = d.poll().await;
    assert_eq!(rels(&poll), ["configData", "confirmationBase"]);
    let href = link(&poll, "confirmationBase").unwrap();
    assert!(href.starts_with(&format!("{}/confirmationBase/{action}?c=", d.base())));
    let body = d.get_json(&href).await;
    assert_eq!(body["id"], action.to_string());
    assert_eq!(body["confirmation"]["download"], "forced");
    assert_eq!(
        d.get(&format!("{}/deploymentBase/{action}", d.base()))
            .await
            .status(),
        404
    );
    assert_eq!(d.feedback(action, "proceeding", "none").await, 404);

    let url = format!("{}/confirmationBase/{action}/feedback", d.base());
    assert_eq!(d.post(&url, &json!({ "confirmation": "maybe" })).await, 400);
    assert_eq!(
        d.post(
            &url,
            &json!({ "confirmation": "denied", "details": ["not now"] })
        )
        .await,
        200
    );
    assert_eq!(
        d.hb.action(action).state,
        ActionState::WaitingForConfirmation
    );
    assert_eq!(
        d.post(&url, &json!({ "confirmation": "confirmed", "code": 1 }))
            .await,
        200
    );
    assert_eq!(d.hb.action(action).state, ActionState::Running);
    assert!(d.deployment_href().await.is_some());
    assert_eq!(
        d.post(&url, &json!({ "confirmation": "confirmed" })).await,
        404
    );
    assert_eq!(d.feedback(action, "closed", "success").await, 200);
    assert_eq!(
        d.post(&url, &json!({ "confirmation": "confirmed" })).await,
        410
    );

    // Auto-confirm.
    let state_url = format!("{}/confirmationBase", d.base());
    let state = d.get_json(&state_url).await;
    assert_eq!(state["autoConfirm"], json!({ "active": false }));
    assert!(link(&state, "activateAutoConfirm").is_some());
    let waiting = d.hb.deploy(
        ID,
        rootfs(b"y"),
        Assignment::forced().confirmation_required(),
    );
    let activate = format!("{state_url}/activateAutoConfirm");
    assert_eq!(
        d.post(&activate, &json!({ "initiator": "ops", "remark": "fleet" }))
            .await,
        200
    );
    assert_eq!(d.post(&activate, &json!({})).await, 409);
    assert!(d.hb.auto_confirm_active(ID));
    assert_eq!(d.hb.action(waiting).state, ActionState::Running);
    let state = d.get_json(&state_url).await;
    assert_eq!(state["autoConfirm"]["active"], true);
    assert_eq!(state["autoConfirm"]["initiator"], "ops");
    assert!(link(&state, "deactivateAutoConfirm").is_some());
    let later = d.hb.deploy(
        ID,
        rootfs(b"z"),
        Assignment::forced().confirmation_required(),
    );
    assert_eq!(d.hb.action(later).state, ActionState::Running);
    let r = d
        .http
        .post(format!("{state_url}/deactivateAutoConfirm"))
        .header("Authorization", &d.auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(!d.hb.auto_confirm_active(ID));
}

#[tokio::test]
async fn installed_base_offline_version() {
    let d = Device::new();
    let url = format!("{}/installedBase", d.base());
    let body = json!({ "name": "nexa-image", "version": "2.0" });
    assert_eq!(d.put(&url, &json!({ "name": "nexa-image" })).await, 400);
    assert_eq!(d.put(&url, &body).await, 404, "unknown distribution set");
    d.hb.create_distribution_set(DistributionSet::single(
        "nexa-image",
        "2.0",
        Artifact::bytes("a", b"a"),
    ));
    assert_eq!(d.put(&url, &body).await, 201);
    assert_eq!(d.put(&url, &body).await, 200, "already assigned");
    let installed = d.hb.installed_action(ID).unwrap();
    assert_eq!(d.hb.action(installed).state, ActionState::Finished);
    let poll = d.poll().await;
    assert_eq!(
        link(&poll, "installedBase").unwrap(),
        format!("{url}/{installed}")
    );
    assert!(link(&poll, "deploymentBase").is_none());
}

#[tokio::test]
async fn authentication_modes() {
    let hb = FakeHawkbit::start();
    hb.set_tenant("acme");
    hb.insert_target_with_token(ID, TOKEN);
    hb.insert_target_with_token("dev-0002", "other-token");
    let http = http();
    let base = hb.controller_url(ID);
    assert_eq!(base, format!("{}/acme/controller/v1/{ID}", hb.url));
    let get = |url: String, headers: Vec<(&'static str, String)>| {
        let http = http.clone();
        async move {
            let mut req = http.get(&url);
            for (k, v) in headers {
                req = req.header(k, v);
            }
            req.send().await.unwrap().status()
        }
    };
    let token = |t: &str| vec![("Authorization", format!("TargetToken {t}"))];

    // Target token (the default).
    assert_eq!(get(base.clone(), vec![]).await, 401);
    assert_eq!(get(base.clone(), token(TOKEN)).await, 200);
    assert_eq!(get(base.clone(), token("wrong")).await, 401);
    // (Trailing whitespace is not part of a header value on the wire; a second space is.)
    assert_eq!(
        get(base.clone(), token(&format!(" {TOKEN}"))).await,
        401,
        "two spaces"
    );
    assert_eq!(
        get(base.clone(), token("other-token")).await,
        401,
        "another target's token"
    );
    let wrong_tenant = base.replace("/acme/", "/DEFAULT/");
    assert_eq!(get(wrong_tenant, token(TOKEN)).await, 401);
    let unknown = hb.controller_url("dev-new");
    assert_eq!(
        get(unknown.clone(), token(TOKEN)).await,
        401,
        "unknown target"
    );
    let gw = |k: &str| vec![("Authorization", format!("GatewayToken {k}"))];
    assert_eq!(
        get(base.clone(), gw("gw-key")).await,
        401,
        "gateway tokens off"
    );

    // Gateway token: any controller, unknown ones registered on poll.
    hb.set_auth(DdiAuth {
        gateway_token: Some("gw-key".into()),
        ..DdiAuth::default()
    });
    assert_eq!(get(base.clone(), gw("gw-key")).await, 200);
    assert_eq!(get(base.clone(), gw("nope")).await, 401);
    assert_eq!(get(unknown.clone(), gw("gw-key")).await, 200);
    assert!(hb.targets().iter().any(|t| t.controller_id == "dev-new"));
    hb.set_auto_register(false);
    assert_eq!(get(hb.controller_url("dev-newer"), gw("gw-key")).await, 404);
    hb.set_auto_register(true);

    // Certificate through a reverse proxy: headers only.
    hb.set_auth(DdiAuth {
        target_token: false,
        header: Some(HeaderAuth::new(&["4f1c2a9b"])),
        ..DdiAuth::default()
    });
    assert_eq!(get(base.clone(), token(TOKEN)).await, 401, "tokens off now");
    let proxy = |cn: &str, auth: (&'static str, &str)| {
        vec![
            ("X-Controller-Id", cn.to_owned()),
            (auth.0, auth.1.to_owned()),
        ]
    };
    assert_eq!(
        get(base.clone(), proxy(ID, ("X-Authority", "abc, 4F1C2A9B"))).await,
        200
    );
    assert_eq!(
        get(base.clone(), proxy(ID, ("X-Authority", "abc;def"))).await,
        401
    );
    assert_eq!(
        get(base.clone(), proxy("dev-0002", ("X-Authority", "4f1c2a9b"))).await,
        401
    );
    assert_eq!(
        get(base.clone(), proxy(ID, ("X-Authority-0", "4f1c2a9b"))).await,
        200
    );
    assert_eq!(
        get(base.clone(), proxy(ID, ("X-Authority-1", "4f1c2a9b"))).await,
        200
    );
    assert_eq!(
        get(base.clone(), proxy(ID, ("X-Authority-2", "4f1c2a9b"))).await,
        401,
        "gap"
    );
    hb.set_auth(DdiAuth {
        target_token: false,
        header: Some(HeaderAuth {
            legacy_names: true,
            ..HeaderAuth::new(&["4f1c2a9b"])
        }),
        ..DdiAuth::default()
    });
    let legacy = vec![
        ("X-Ssl-Client-Cn", ID.to_owned()),
        ("X-Ssl-Issuer-Hash-1", "4f1c2a9b".to_owned()),
    ];
    assert_eq!(get(base.clone(), legacy).await, 200);
    assert_eq!(
        get(base.clone(), proxy(ID, ("X-Authority", "4f1c2a9b"))).await,
        401
    );

    // Anonymous downloads only; anonymous everything.
    hb.set_auth(DdiAuth {
        anonymous_download: true,
        ..DdiAuth::default()
    });
    hb.deploy(ID, rootfs(b"abc"), Assignment::forced());
    let dep_href = {
        let poll: Value = http
            .get(&base)
            .header("Authorization", format!("TargetToken {TOKEN}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        link(&poll, "deploymentBase").unwrap()
    };
    assert_eq!(get(dep_href.clone(), vec![]).await, 401);
    let dep: Value = http
        .get(&dep_href)
        .header("Authorization", format!("TargetToken {TOKEN}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(get(download_href(&dep), vec![]).await, 200);
    hb.set_auth(DdiAuth {
        target_token: false,
        anonymous: true,
        ..DdiAuth::default()
    });
    assert_eq!(get(dep_href, vec![]).await, 200);

    // The log names the credentials each request carried.
    let kinds: Vec<AuthKind> = hb.requests().iter().map(|r| r.auth).collect();
    for k in [
        AuthKind::None,
        AuthKind::TargetToken,
        AuthKind::GatewayToken,
        AuthKind::Header,
    ] {
        assert!(kinds.contains(&k), "{k:?}");
    }
    let first = &hb.requests()[0];
    assert_eq!(
        (first.method.as_str(), first.route, first.status, first.auth),
        ("GET", Route::Poll, 401, AuthKind::None)
    );
    assert_eq!(first.controller_id.as_deref(), Some(ID));
    assert_eq!(first.tenant.as_deref(), Some("acme"));
    assert!(hb.ddi_unauthorized_calls() >= 10);
}

#[tokio::test]
async fn percent_encoded_ids_and_external_downloads() {
    let hb = FakeHawkbit::start();
    let id = "rack-7/dev@1";
    hb.insert_target_with_token(id, TOKEN);
    let http = http();
    let base = hb.controller_url(id);
    assert!(
        base.ends_with("/DEFAULT/controller/v1/rack-7%2Fdev%401"),
        "{base}"
    );
    let auth = format!("TargetToken {TOKEN}");
    let poll: Value = http
        .get(&base)
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        link(&poll, "configData").unwrap(),
        format!("{base}/configData")
    );
    assert_eq!(hb.polls(id), 1);
    assert_eq!(hb.requests()[0].controller_id.as_deref(), Some(id));

    // An artifact on "external storage": no DDI auth, and an Authorization header refused.
    hb.deploy(
        id,
        DistributionSet::single("x", "1", Artifact::bytes("../evil name", b"xyz").external()),
        Assignment::forced(),
    );
    let poll: Value = http
        .get(&base)
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let dep: Value = http
        .get(link(&poll, "deploymentBase").unwrap())
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let art = &dep["deployment"]["chunks"][0]["artifacts"][0];
    assert_eq!(art["filename"], "../evil name");
    let url = download_href(&dep);
    assert_eq!(url, format!("{}/external/1/..%2Fevil%20name", hb.url));
    let with_auth = http
        .get(&url)
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(with_auth.status(), 401);
    let without = http.get(&url).send().await.unwrap();
    assert_eq!(without.status(), 200);
    assert_eq!(without.bytes().await.unwrap().as_ref(), b"xyz");
    assert_eq!(hb.requests_to(Route::ExternalArtifact).len(), 2);
}

#[tokio::test]
async fn injected_429_5xx_and_410() {
    let d = Device::new();
    d.hb.inject(Fault::too_many_requests(7).times(2).on(Route::Poll));
    for _ in 0..2 {
        let r = d.get(&d.base()).await;
        assert_eq!(r.status(), 429);
        assert_eq!(header(&r, "retry-after").unwrap(), "7");
    }
    assert_eq!(d.get(&d.base()).await.status(), 200);

    // Any route, before authentication.
    d.hb.inject(Fault::status(503).times(1));
    let r = d.http.get(d.base()).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(d.http.get(d.base()).send().await.unwrap().status(), 401);

    let action = d.hb.deploy(ID, rootfs(b"x"), Assignment::forced());
    d.hb.inject(Fault::gone().on(Route::DeploymentFeedback));
    d.hb.inject(Fault::status(502).on(Route::Artifact));
    assert_eq!(d.feedback(action, "proceeding", "none").await, 410);
    assert!(
        d.hb.feedback(action).is_empty(),
        "an injected answer changes nothing"
    );
    assert_eq!(d.feedback(action, "proceeding", "none").await, 200);
    let url = download_href(&d.get_json(&d.deployment_href().await.unwrap()).await);
    assert_eq!(d.get(&url).await.status(), 502);
    assert_eq!(d.get(&url).await.status(), 200);

    let statuses: Vec<(Route, u16)> =
        d.hb.requests()
            .iter()
            .map(|r| (r.route, r.status))
            .collect();
    assert_eq!(
        statuses,
        [
            (Route::Poll, 429),
            (Route::Poll, 429),
            (Route::Poll, 200),
            (Route::Poll, 503),
            (Route::Poll, 401),
            (Route::DeploymentFeedback, 410),
            (Route::DeploymentFeedback, 200),
            (Route::Poll, 200),
            (Route::DeploymentBase, 200),
            (Route::Artifact, 502),
            (Route::Artifact, 200),
        ]
    );
}

#[tokio::test]
async fn server_down_closes_or_hangs_and_comes_back() {
    let d = Device::new();
    assert_eq!(d.get(&d.base()).await.status(), 200);

    d.hb.set_down(DownMode::Close);
    for _ in 0..3 {
        let r = d
            .http
            .get(d.base())
            .header("Authorization", &d.auth)
            .send()
            .await;
        assert!(r.is_err(), "down: {r:?}");
    }
    d.hb.set_up();
    assert_eq!(d.get(&d.base()).await.status(), 200);

    // Down for a period: requests fail until it is over.
    d.hb.down_for(Duration::from_millis(500), DownMode::Close);
    let t = Instant::now();
    let mut failures = 0;
    loop {
        match d
            .http
            .get(d.base())
            .header("Authorization", &d.auth)
            .send()
            .await
        {
            Ok(r) if r.status() == 200 => break,
            _ => failures += 1,
        }
        assert!(t.elapsed() < Duration::from_secs(10), "never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(failures > 0 && t.elapsed() >= Duration::from_millis(450));

    // Hanging: nothing answers (client timeouts fire); back up, it answers again.
    d.hb.set_down(DownMode::Hang);
    let r = d
        .http
        .get(d.base())
        .header("Authorization", &d.auth)
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(r.unwrap_err().is_timeout());
    let polls = d.hb.polls(ID);
    let waiting = {
        let http = d.http.clone();
        let url = d.base();
        let auth = d.auth.clone();
        tokio::spawn(async move {
            http.get(url)
                .header("Authorization", auth)
                .send()
                .await
                .map(|r| r.status())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(d.hb.polls(ID), polls, "nothing handled while hanging");
    d.hb.set_up();
    assert_eq!(
        waiting.await.unwrap().unwrap(),
        200,
        "the waiting request is answered"
    );
    assert_eq!(d.get(&d.base()).await.status(), 200);
}
