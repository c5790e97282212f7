//! The fake's operator-driven flows: cancelAction (refused, accepted, warned, superseded
//! by a new assignment, force-quit) with its cancel feedback rules, and confirmation of an
//! assignment, denied or confirmed by the device or confirmed by auto-confirm.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fake_hawkbit_common;

use fake_hawkbit_common::{Device, ID, link, rels, rootfs};
use nexa_testkit::hawkbit::{ActionState, Assignment, FeedbackChannel, SERVER_PREFIX, StatusKind};
use serde_json::json;

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
