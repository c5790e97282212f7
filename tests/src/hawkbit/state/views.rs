//! The JSON the device is shown, built from the store: the poll body with its links,
//! deploymentBase / installedBase / confirmationBase bodies (chunks, artifacts with their
//! hashes and download links, `actionHistory`), artifact lists and the auto-confirm state.
//! Building the poll body also counts the poll.

use std::time::SystemTime;

use serde_json::{Value, json};

use super::super::SERVER_PREFIX;
use super::super::content::StoredArtifact;
use super::super::spec::{ActionState, DownloadLinks};
use super::{Action, Base, Ddi, encode_segment};

/// hawkBit's cap on `actionHistory` messages.
const MAX_HISTORY_MESSAGES: usize = 100;

fn link(href: String) -> Value {
    json!({ "href": href })
}

impl Ddi {
    /// The body of `GET {base}`; counts the poll.
    pub(crate) fn poll_body(&mut self, base: &Base) -> Value {
        let cid = base.controller_id.clone();
        let sleep = self.sleep.clone();
        let c = self.controller(&cid);
        c.polls += 1;
        c.last_poll = Some(SystemTime::now());
        let request_attributes = c.request_attributes;
        let installed = c.installed;
        let root = base.controller();
        let mut links = serde_json::Map::new();
        if let Some(a) = self.active_action(&cid) {
            let (rel, href) = match a.state {
                ActionState::WaitingForConfirmation => (
                    "confirmationBase",
                    format!("{root}/confirmationBase/{}?c={}", a.id, a.c_value()),
                ),
                ActionState::Canceling => ("cancelAction", format!("{root}/cancelAction/{}", a.id)),
                _ => (
                    "deploymentBase",
                    format!("{root}/deploymentBase/{}?c={}", a.id, a.c_value()),
                ),
            };
            links.insert(rel.to_owned(), link(href));
        }
        if let Some(id) = installed {
            links.insert(
                "installedBase".to_owned(),
                link(format!("{root}/installedBase/{id}")),
            );
        }
        if request_attributes {
            links.insert("configData".to_owned(), link(format!("{root}/configData")));
        }
        let mut body = json!({ "config": { "polling": { "sleep": sleep } } });
        if !links.is_empty() {
            body["_links"] = Value::Object(links);
        }
        body
    }

    fn artifact_json(&self, a: &StoredArtifact, base: &Base) -> Value {
        let root = base.controller();
        let name = encode_segment(&a.filename);
        let ddi = format!("{root}/softwaremodules/{}/artifacts/{name}", a.module);
        let download = if a.external {
            format!("{}/external/{}/{name}", base.origin, a.module)
        } else {
            ddi.clone()
        };
        let md5sum = format!("{ddi}.MD5SUM");
        let mut links = json!({
            "download-http": link(download.clone()),
            "md5sum-http": link(md5sum.clone()),
        });
        if self.links == DownloadLinks::Both {
            links["download"] = link(download);
            links["md5sum"] = link(md5sum);
        }
        let mut hashes = json!({ "sha1": a.hashes.sha1, "md5": a.hashes.md5 });
        if !a.omit_sha256 {
            hashes["sha256"] = json!(a.hashes.sha256);
        }
        json!({
            "filename": a.filename,
            "hashes": hashes,
            "size": a.size(),
            "_links": links,
        })
    }

    /// `GET …/softwaremodules/{id}/artifacts`.
    pub(crate) fn artifacts_json(&self, module: u64, base: &Base) -> Option<Value> {
        let m = self.modules.get(&module)?;
        Some(Value::Array(
            m.artifacts
                .iter()
                .map(|a| self.artifact_json(a, base))
                .collect(),
        ))
    }

    fn chunk_json(&self, module: u64, base: &Base) -> Value {
        let m = &self.modules[&module];
        let part = match m.part.as_str() {
            "application" => "bApp",
            "runtime" => "jvm",
            other => other,
        };
        let mut chunk = json!({
            "part": part,
            "version": m.version,
            "name": m.name,
            "artifacts": m.artifacts.iter().map(|a| self.artifact_json(a, base)).collect::<Vec<_>>(),
        });
        if m.encrypted {
            chunk["encrypted"] = json!(true);
        }
        if !m.metadata.is_empty() {
            chunk["metadata"] = Value::Array(
                m.metadata
                    .iter()
                    .map(|(k, v)| json!({ "key": k, "value": v }))
                    .collect(),
            );
        }
        chunk
    }

    /// The `deployment` object (also `confirmation` of confirmationBase).
    fn deployment_json(&self, a: &Action, base: &Base) -> Value {
        let set = &self.sets[&a.set];
        let mut d = json!({
            "download": a.download_handling(),
            "update": a.update_handling(),
            "chunks": set.modules.iter().map(|m| self.chunk_json(*m, base)).collect::<Vec<_>>(),
        });
        if let Some(w) = a.window {
            d["maintenanceWindow"] = json!(w.as_str());
        }
        d
    }

    /// `actionHistory` for `?actionHistory=n`: the non-server messages, newest first.
    fn history_json(a: &Action, count: i64) -> Option<Value> {
        if count == 0 {
            return None;
        }
        let limit = usize::try_from(count)
            .ok()
            .filter(|n| *n < MAX_HISTORY_MESSAGES)
            .unwrap_or(MAX_HISTORY_MESSAGES);
        let messages: Vec<&String> = a
            .statuses
            .iter()
            .rev()
            .flat_map(|s| s.messages.iter().rev())
            .filter(|m| !m.starts_with(SERVER_PREFIX))
            .take(limit)
            .collect();
        (!messages.is_empty()).then(|| json!({ "status": a.state.as_str(), "messages": messages }))
    }

    /// The body of deploymentBase / installedBase (`member` = `deployment`) or
    /// confirmationBase (`member` = `confirmation`).
    pub(crate) fn action_body(&self, a: &Action, base: &Base, member: &str, history: i64) -> Value {
        let mut body = json!({ "id": a.id.to_string() });
        body[member] = self.deployment_json(a, base);
        if let Some(h) = Self::history_json(a, history) {
            body["actionHistory"] = h;
        }
        body
    }

    /// `GET confirmationBase`.
    pub(crate) fn confirmation_state(&mut self, base: &Base) -> Value {
        let root = base.controller();
        let cid = base.controller_id.clone();
        let auto = self.controller(&cid).auto_confirm.clone();
        let mut links = serde_json::Map::new();
        if let Some(a) = self
            .active_action(&cid)
            .filter(|a| a.state == ActionState::WaitingForConfirmation)
        {
            links.insert(
                "confirmationBase".to_owned(),
                link(format!(
                    "{root}/confirmationBase/{}?c={}",
                    a.id,
                    a.c_value()
                )),
            );
        }
        let state = match &auto {
            Some(a) => {
                links.insert(
                    "deactivateAutoConfirm".to_owned(),
                    link(format!("{root}/confirmationBase/deactivateAutoConfirm")),
                );
                let mut s = json!({ "active": true, "activatedAt": a.activated_at });
                if let Some(i) = &a.initiator {
                    s["initiator"] = json!(i);
                }
                if let Some(r) = &a.remark {
                    s["remark"] = json!(r);
                }
                s
            }
            None => {
                links.insert(
                    "activateAutoConfirm".to_owned(),
                    link(format!("{root}/confirmationBase/activateAutoConfirm")),
                );
                json!({ "active": false })
            }
        };
        json!({ "autoConfirm": state, "_links": links })
    }
}
