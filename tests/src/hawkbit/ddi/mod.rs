//! The DDI handlers: parse and check a request the way hawkBit does (authentication, then
//! content negotiation, then the body, then the entities), ask `state/` what happens, and
//! answer with hawkBit's status codes and bodies.
//!
//! This file wires the routes to the handlers, which are grouped by resource: `poll.rs`
//! (the controller base and configData), `actions.rs` (deploymentBase, cancelAction,
//! installedBase), `confirmation.rs` (confirmationBase and auto-confirm), `feedback.rs`
//! (the three feedback resources) and `artifacts.rs` (artifact lists, downloads,
//! `.MD5SUM`, external storage). `auth.rs` decides who may call; `request.rs` holds the
//! checks and answers every handler shares.

// Handlers answer with a `Response` either way; `Result<_, Response>` lets them use `?`.
#![allow(clippy::result_large_err)]

mod actions;
mod artifacts;
mod auth;
mod confirmation;
mod feedback;
mod poll;
mod request;

use axum::Router;
use axum::response::Response;
use axum::routing::{get, post, put};

use super::Shared;
use actions::{cancel_action, deployment_base, installed_base, installed_version};
use artifacts::{artifact, artifact_list, external_artifact};
use confirmation::{
    activate_auto_confirm, confirmation_base, confirmation_state, deactivate_auto_confirm,
};
use feedback::{cancel_feedback, confirmation_feedback, deployment_feedback};
use poll::{config_data, poll};

type Answer = Result<Response, Response>;

pub(crate) fn routes() -> Router<Shared> {
    const C: &str = "/{tenant}/controller/v1/{cid}";
    Router::new()
        .route(C, get(poll))
        .route(&format!("{C}/configData"), put(config_data))
        .route(&format!("{C}/deploymentBase/{{aid}}"), get(deployment_base))
        .route(
            &format!("{C}/deploymentBase/{{aid}}/feedback"),
            post(deployment_feedback),
        )
        .route(&format!("{C}/cancelAction/{{aid}}"), get(cancel_action))
        .route(
            &format!("{C}/cancelAction/{{aid}}/feedback"),
            post(cancel_feedback),
        )
        .route(&format!("{C}/installedBase"), put(installed_version))
        .route(&format!("{C}/installedBase/{{aid}}"), get(installed_base))
        .route(&format!("{C}/confirmationBase"), get(confirmation_state))
        .route(
            &format!("{C}/confirmationBase/activateAutoConfirm"),
            post(activate_auto_confirm),
        )
        .route(
            &format!("{C}/confirmationBase/deactivateAutoConfirm"),
            post(deactivate_auto_confirm),
        )
        .route(
            &format!("{C}/confirmationBase/{{aid}}"),
            get(confirmation_base),
        )
        .route(
            &format!("{C}/confirmationBase/{{aid}}/feedback"),
            post(confirmation_feedback),
        )
        .route(
            &format!("{C}/softwaremodules/{{sm}}/artifacts"),
            get(artifact_list),
        )
        .route(
            &format!("{C}/softwaremodules/{{sm}}/artifacts/{{file}}"),
            get(artifact),
        )
        .route("/external/{sm}/{file}", get(external_artifact))
}
