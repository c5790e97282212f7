//! The fake's actions from the device's side: hawkBit's deploymentBase body and how it
//! follows the action type and maintenance window, the deployment feedback state machine
//! with its status history, `actionHistory` and 410 after close, download-only actions,
//! the quotas answering 429, and installedBase (also for a version reported offline).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fake_hawkbit_common;

use std::time::Duration;

use fake_hawkbit_common::{Device, ID, link, rels, rootfs};
use nexa_testkit::hawkbit::{
    ActionState, ActionType, Artifact, Assignment, Chunk, DistributionSet, DownloadLinks,
    FeedbackChannel, Hashes, MaintenanceWindow, SERVER_PREFIX, StatusKind,
};
use serde_json::json;

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
