//! The fake hawkBit's DDI side, driven over HTTP with reqwest the way a device would, and
//! checked against the research contract (`DDI.md`): poll and links, configData,
//! deploymentBase bodies, the feedback state machine and its history, 410 after close,
//! downloads with Range / If-Range / injected drops, cancel and confirmation flows,
//! installedBase, authentication modes, injected 429 / 5xx and a server that goes down.
//! If the fake drifts from hawkBit, the agent's tests against it stop meaning anything.
//!
//! This module is what those test files share (each includes it with `mod`): a fake with
//! one known target and a client speaking for it ([`Device`]), a plain-HTTP client, and
//! small readers of DDI bodies and responses. Each test file uses only part of it.

// Every test file compiles this module on its own and uses only some of it.
#![allow(dead_code)]

use std::time::Duration;

use nexa_testkit::hawkbit::{Artifact, DistributionSet, FakeHawkbit};
use reqwest::StatusCode;
use serde_json::{Value, json};

pub const ID: &str = "dev-0001";
pub const TOKEN: &str = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6";

/// A plain-HTTP client (the workspace's reqwest wants a TLS setup even so).
pub fn http() -> reqwest::Client {
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
pub struct Device {
    pub hb: FakeHawkbit,
    pub http: reqwest::Client,
    pub auth: String,
}

impl Device {
    pub fn new() -> Self {
        let hb = FakeHawkbit::start();
        hb.insert_target_with_token(ID, TOKEN);
        hb.set_polling_sleep(Duration::from_secs(10));
        Self {
            hb,
            http: http(),
            auth: format!("TargetToken {TOKEN}"),
        }
    }

    pub fn base(&self) -> String {
        self.hb.controller_url(ID)
    }

    pub async fn get(&self, url: &str) -> reqwest::Response {
        self.http
            .get(url)
            .header("Authorization", &self.auth)
            .send()
            .await
            .unwrap()
    }

    pub async fn get_json(&self, url: &str) -> Value {
        let r = self.get(url).await;
        assert_eq!(r.status(), 200, "GET {url}");
        r.json().await.unwrap()
    }

    pub async fn poll(&self) -> Value {
        self.get_json(&self.base()).await
    }

    pub async fn post(&self, url: &str, body: &Value) -> StatusCode {
        self.http
            .post(url)
            .header("Authorization", &self.auth)
            .json(body)
            .send()
            .await
            .unwrap()
            .status()
    }

    pub async fn put(&self, url: &str, body: &Value) -> StatusCode {
        self.http
            .put(url)
            .header("Authorization", &self.auth)
            .json(body)
            .send()
            .await
            .unwrap()
            .status()
    }

    pub async fn feedback(&self, action: u64, execution: &str, finished: &str) -> StatusCode {
        let url = format!("{}/deploymentBase/{action}/feedback", self.base());
        self.post(&url, &status(execution, finished)).await
    }

    pub async fn cancel_feedback(
        &self,
        action: u64,
        execution: &str,
        finished: &str,
    ) -> StatusCode {
        let url = format!("{}/cancelAction/{action}/feedback", self.base());
        self.post(&url, &status(execution, finished)).await
    }

    /// The deploymentBase href of the poll, if any.
    pub async fn deployment_href(&self) -> Option<String> {
        link(&self.poll().await, "deploymentBase")
    }
}

pub fn status(execution: &str, finished: &str) -> Value {
    json!({ "status": { "execution": execution, "result": { "finished": finished } } })
}

pub fn link(body: &Value, rel: &str) -> Option<String> {
    body["_links"][rel]["href"].as_str().map(str::to_owned)
}

pub fn rels(body: &Value) -> Vec<String> {
    let mut rels: Vec<String> = body
        .get("_links")
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    rels.sort();
    rels
}

pub fn rootfs(data: &[u8]) -> DistributionSet {
    DistributionSet::single("rootfs", "1.0.75", Artifact::bytes("rootfs.raucb", data))
}

/// The first artifact's download href of a deploymentBase body.
pub fn download_href(body: &Value) -> String {
    body["deployment"]["chunks"][0]["artifacts"][0]["_links"]["download-http"]["href"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Reads a body until it ends or fails; `true` = it failed.
pub async fn read_all(mut r: reqwest::Response) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    loop {
        match r.chunk().await {
            Ok(Some(c)) => out.extend_from_slice(&c),
            Ok(None) => return (out, false),
            Err(_) => return (out, true),
        }
    }
}

pub fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}
