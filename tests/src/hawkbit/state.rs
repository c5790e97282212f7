//! The DDI side's state and its rules: controllers, distribution sets, software modules,
//! actions with their status history, and the transitions feedback and operator calls
//! cause. Handlers (`ddi.rs`) parse and answer; the decisions are made here.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::{Value, json};

use super::SERVER_PREFIX;
use super::content::Misbehaviour;
use super::content::StoredArtifact;
use super::spec::{
    ActionState, ActionType, ActionView, Assignment, DdiAuth, DownloadFault, DownloadFaultKind,
    DownloadLinks, Fault, Feedback, FeedbackChannel, MaintenanceWindow, RequestRecord, StatusEntry,
    StatusKind,
};

/// hawkBit's weight of an action created without one.
const DEFAULT_WEIGHT: i32 = 1000;
/// hawkBit's cap on `actionHistory` messages.
const MAX_HISTORY_MESSAGES: usize = 100;

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Percent-encodes one path segment (everything but RFC 3986 unreserved characters).
pub(crate) fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes (invalid ones are kept as they are).
pub(crate) fn decode_segment(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(v) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where links point: scheme and authority from the request, the tenant, the controller.
#[derive(Debug, Clone)]
pub(crate) struct Base {
    pub origin: String,
    pub tenant: String,
    pub controller_id: String,
}

impl Base {
    pub(crate) fn controller(&self) -> String {
        format!(
            "{}/{}/controller/v1/{}",
            self.origin,
            encode_segment(&self.tenant),
            encode_segment(&self.controller_id)
        )
    }
}

fn link(href: String) -> Value {
    json!({ "href": href })
}

/// Per-controller DDI state (the Management API's target table says which exist).
#[derive(Debug, Clone)]
pub(crate) struct Controller {
    pub attributes: BTreeMap<String, String>,
    pub request_attributes: bool,
    pub polls: usize,
    pub last_poll: Option<SystemTime>,
    /// The last action closed with success (installedBase).
    pub installed: Option<u64>,
    /// The distribution set last assigned.
    pub assigned_set: Option<u64>,
    pub auto_confirm: Option<AutoConfirm>,
}

impl Default for Controller {
    fn default() -> Self {
        Self {
            attributes: BTreeMap::new(),
            // hawkBit asks every new target for its attributes.
            request_attributes: true,
            polls: 0,
            last_poll: None,
            installed: None,
            assigned_set: None,
            auto_confirm: None,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct AutoConfirm {
    pub initiator: Option<String>,
    pub remark: Option<String>,
    pub activated_at: i64,
}

#[derive(Debug)]
pub(crate) struct SetRecord {
    pub name: String,
    pub version: String,
    pub modules: Vec<u64>,
}

#[derive(Debug)]
pub(crate) struct Module {
    pub part: String,
    pub name: String,
    pub version: String,
    pub encrypted: bool,
    pub metadata: Vec<(String, String)>,
    pub artifacts: Vec<Arc<StoredArtifact>>,
}

#[derive(Debug, Clone)]
pub(crate) struct Action {
    pub id: u64,
    pub controller_id: String,
    pub set: u64,
    pub action_type: ActionType,
    pub window: Option<MaintenanceWindow>,
    pub weight: Option<i32>,
    pub state: ActionState,
    pub statuses: Vec<StatusEntry>,
    pub feedback: Vec<Feedback>,
}

impl Action {
    pub(crate) fn view(&self) -> ActionView {
        ActionView {
            id: self.id,
            controller_id: self.controller_id.clone(),
            distribution_set: self.set,
            action_type: self.action_type,
            maintenance_window: self.window,
            state: self.state,
            statuses: self.statuses.clone(),
            feedback: self.feedback.clone(),
        }
    }

    fn is_canceling_or_canceled(&self) -> bool {
        matches!(self.state, ActionState::Canceling | ActionState::Canceled)
    }

    /// `download` of deploymentBase.
    pub(crate) fn download_handling(&self) -> &'static str {
        let forced = match self.action_type {
            ActionType::Forced | ActionType::DownloadOnly => true,
            ActionType::Soft => false,
            ActionType::TimeForced { at } => SystemTime::now() >= at,
        };
        if forced { "forced" } else { "attempt" }
    }

    /// `update` of deploymentBase.
    pub(crate) fn update_handling(&self) -> &'static str {
        if self.action_type == ActionType::DownloadOnly {
            return "skip";
        }
        match self.window {
            Some(MaintenanceWindow::Unavailable) => "skip",
            _ => self.download_handling(),
        }
    }

    /// The opaque `c` of deploymentBase/confirmationBase links: changes whenever what the
    /// device is told about the action changes.
    pub(crate) fn c_value(&self) -> i32 {
        let key = format!(
            "{}|{}|{}|{:?}",
            self.id,
            self.download_handling(),
            self.update_handling(),
            self.window
        );
        // FNV-1a, folded to an int like Java's hashCode.
        let mut h: u32 = 0x811C_9DC5;
        for b in key.bytes() {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
        h as i32
    }

    fn push_status(&mut self, kind: StatusKind, messages: Vec<String>, code: Option<i64>, at: i64) {
        self.statuses.push(StatusEntry {
            kind,
            messages,
            code,
            occurred_at: at,
        });
    }
}

/// The parsed body of a deploymentBase or cancelAction feedback.
#[derive(Debug, Clone)]
pub(crate) struct ActionFeedback {
    pub body: Value,
    pub execution: String,
    pub finished: String,
    pub progress: Option<(i64, Option<i64>)>,
    pub code: Option<i64>,
    pub details: Vec<String>,
    pub timestamp: Option<i64>,
}

impl ActionFeedback {
    fn record(&self, channel: FeedbackChannel, answered: u16) -> Feedback {
        Feedback {
            channel,
            body: self.body.clone(),
            execution: self.execution.clone(),
            finished: Some(self.finished.clone()),
            progress: self.progress,
            code: self.code,
            details: self.details.clone(),
            timestamp: self.timestamp,
            answered,
        }
    }

    /// The device's lines: details, then the status code line.
    fn device_messages(&self) -> Vec<String> {
        let mut m = self.details.clone();
        if let Some(code) = self.code {
            m.push(format!("Device reported status code: {code}"));
        }
        m
    }
}

/// The parsed body of a confirmationBase feedback.
#[derive(Debug, Clone)]
pub(crate) struct ConfirmationFeedback {
    pub body: Value,
    pub confirmed: bool,
    pub code: Option<i64>,
    pub details: Vec<String>,
}

/// Why a feedback was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    NotFound,
    Gone,
    NotCancelable,
    Quota,
}

impl Refusal {
    pub(crate) fn status(self) -> u16 {
        match self {
            Self::NotFound => 404,
            Self::Gone => 410,
            Self::NotCancelable => 405,
            Self::Quota => 429,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Ddi {
    pub tenant: String,
    pub auth: DdiAuth,
    pub auto_register: bool,
    pub sleep: String,
    pub links: DownloadLinks,
    pub multi_assignment: bool,
    pub max_status_entries: usize,
    pub max_messages: usize,
    pub controllers: BTreeMap<String, Controller>,
    pub sets: BTreeMap<u64, SetRecord>,
    pub modules: BTreeMap<u64, Module>,
    pub actions: BTreeMap<u64, Action>,
    pub next_set: u64,
    pub next_module: u64,
    pub next_action: u64,
    pub faults: Vec<Fault>,
    pub download_faults: Vec<DownloadFault>,
    pub download_rate: Option<u64>,
    pub log: Vec<RequestRecord>,
    pub unauthorized: usize,
}

impl Default for Ddi {
    fn default() -> Self {
        Self {
            tenant: "DEFAULT".to_owned(),
            auth: DdiAuth::default(),
            auto_register: true,
            sleep: "00:05:00".to_owned(),
            links: DownloadLinks::default(),
            multi_assignment: false,
            max_status_entries: 1000,
            max_messages: 50,
            controllers: BTreeMap::new(),
            sets: BTreeMap::new(),
            modules: BTreeMap::new(),
            actions: BTreeMap::new(),
            next_set: 0,
            next_module: 0,
            next_action: 0,
            faults: Vec::new(),
            download_faults: Vec::new(),
            download_rate: None,
            log: Vec::new(),
            unauthorized: 0,
        }
    }
}

impl Ddi {
    pub(crate) fn controller(&mut self, id: &str) -> &mut Controller {
        self.controllers.entry(id.to_owned()).or_default()
    }

    /// The action `id` if it belongs to `controller_id`.
    pub(crate) fn action_of(&self, controller_id: &str, id: u64) -> Option<&Action> {
        self.actions
            .get(&id)
            .filter(|a| a.controller_id == controller_id)
    }

    fn action_of_mut(&mut self, controller_id: &str, id: u64) -> Option<&mut Action> {
        self.actions
            .get_mut(&id)
            .filter(|a| a.controller_id == controller_id)
    }

    /// The action the poll shows: active, highest weight, then oldest.
    pub(crate) fn active_action(&self, controller_id: &str) -> Option<&Action> {
        self.actions
            .values()
            .filter(|a| a.controller_id == controller_id && a.state.is_active())
            .min_by_key(|a| (-a.weight.unwrap_or(DEFAULT_WEIGHT), a.id))
    }

    /// Creates an action for `set`; without multi-assignment, older open actions of the
    /// target are set to canceling first, as hawkBit does.
    pub(crate) fn assign(&mut self, controller_id: &str, set: u64, how: Assignment) -> u64 {
        assert!(
            self.sets.contains_key(&set),
            "fake hawkBit: no distribution set {set}"
        );
        let now = now_ms();
        if !self.multi_assignment {
            for a in self.actions.values_mut().filter(|a| {
                a.controller_id == controller_id
                    && a.state.is_active()
                    && a.state != ActionState::Canceling
            }) {
                a.state = ActionState::Canceling;
                a.push_status(
                    StatusKind::Canceling,
                    vec![format!(
                        "{SERVER_PREFIX}Canceled: superseded by a new assignment"
                    )],
                    None,
                    now,
                );
            }
        }
        let auto_confirm = self.controller(controller_id).auto_confirm.is_some();
        self.controller(controller_id).assigned_set = Some(set);
        self.next_action += 1;
        let id = self.next_action;
        let mut action = Action {
            id,
            controller_id: controller_id.to_owned(),
            set,
            action_type: how.action_type,
            window: how.maintenance_window,
            weight: how.weight,
            state: ActionState::Running,
            statuses: Vec::new(),
            feedback: Vec::new(),
        };
        if how.confirmation_required && !auto_confirm {
            action.state = ActionState::WaitingForConfirmation;
            action.push_status(
                StatusKind::WaitForConfirmation,
                vec![format!(
                    "{SERVER_PREFIX}Assignment waits for the device's confirmation"
                )],
                None,
                now,
            );
        } else {
            action.push_status(
                StatusKind::Running,
                vec![format!("{SERVER_PREFIX}Assignment initiated by the test")],
                None,
                now,
            );
        }
        self.actions.insert(id, action);
        id
    }

    /// Operator cancel: an open action goes to canceling.
    pub(crate) fn cancel(&mut self, id: u64) -> Result<(), String> {
        let a = self
            .actions
            .get_mut(&id)
            .ok_or_else(|| format!("no action {id}"))?;
        if a.is_canceling_or_canceled() {
            return Err(format!("action {id} is already {}", a.state.as_str()));
        }
        if !a.state.is_active() {
            return Err(format!("action {id} is closed ({})", a.state.as_str()));
        }
        a.state = ActionState::Canceling;
        a.push_status(
            StatusKind::Canceling,
            vec!["manual cancelation requested".to_owned()],
            None,
            now_ms(),
        );
        Ok(())
    }

    /// Operator force-quit of a canceling action: canceled without the device.
    pub(crate) fn force_quit(&mut self, id: u64) -> Result<(), String> {
        let a = self
            .actions
            .get_mut(&id)
            .ok_or_else(|| format!("no action {id}"))?;
        if a.state != ActionState::Canceling {
            return Err(format!(
                "action {id} is {}, only canceling actions can be force-quit",
                a.state.as_str()
            ));
        }
        a.state = ActionState::Canceled;
        a.push_status(
            StatusKind::Canceled,
            vec![format!("{SERVER_PREFIX}A force quit has been performed.")],
            None,
            now_ms(),
        );
        Ok(())
    }

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

    /// A RETRIEVED entry for an open action, unless the last entry already is one.
    pub(crate) fn retrieved(&mut self, id: u64, what: &str) {
        let Some(a) = self.actions.get_mut(&id) else {
            return;
        };
        if !a.state.is_active()
            || a.statuses
                .last()
                .is_some_and(|s| s.kind == StatusKind::Retrieved)
        {
            return;
        }
        a.push_status(
            StatusKind::Retrieved,
            vec![format!("{SERVER_PREFIX}Target retrieved {what}")],
            None,
            now_ms(),
        );
    }

    /// The open, not canceling action of the target that contains `module` (a download
    /// without `Range` must have one).
    pub(crate) fn download_action(&self, controller_id: &str, module: u64) -> Option<u64> {
        self.actions
            .values()
            .filter(|a| {
                a.controller_id == controller_id
                    && a.state.is_active()
                    && a.state != ActionState::Canceling
            })
            .find(|a| self.sets[&a.set].modules.contains(&module))
            .map(|a| a.id)
    }

    /// The DOWNLOAD entry of a full download; `Err` when the action's quota is used up.
    pub(crate) fn log_download(&mut self, action: u64, path: &str) -> Result<(), Refusal> {
        let max = self.max_status_entries;
        let a = self.actions.get_mut(&action).ok_or(Refusal::NotFound)?;
        if a.statuses.len() >= max {
            return Err(Refusal::Quota);
        }
        a.push_status(
            StatusKind::Download,
            vec![format!("{SERVER_PREFIX}Target downloads {path}")],
            None,
            now_ms(),
        );
        Ok(())
    }

    /// `POST deploymentBase/{id}/feedback`: the status to answer.
    pub(crate) fn deployment_feedback(
        &mut self,
        controller_id: &str,
        id: u64,
        fb: &ActionFeedback,
    ) -> Result<(), Refusal> {
        let (max_entries, max_messages) = (self.max_status_entries, self.max_messages);
        let Some(a) = self.action_of_mut(controller_id, id) else {
            return Err(Refusal::NotFound);
        };
        let verdict = judge_deployment_feedback(a, fb, max_entries, max_messages);
        a.feedback.push(fb.record(
            FeedbackChannel::Deployment,
            verdict.map_or_else(Refusal::status, |_| 200),
        ));
        let kind = verdict?;
        let download_only = a.action_type == ActionType::DownloadOnly;
        let mut attributes = false;
        let mut installed = false;
        match kind {
            StatusKind::Finished => {
                a.state = ActionState::Finished;
                attributes = true;
                installed = true;
            }
            StatusKind::Error => a.state = ActionState::Error,
            StatusKind::Downloaded if download_only => {
                a.state = ActionState::Downloaded;
                attributes = true;
            }
            _ => {}
        }
        let c = self.controller(controller_id);
        if attributes {
            c.request_attributes = true;
        }
        if installed {
            c.installed = Some(id);
        }
        Ok(())
    }

    /// `POST cancelAction/{id}/feedback`.
    pub(crate) fn cancel_feedback(
        &mut self,
        controller_id: &str,
        id: u64,
        fb: &ActionFeedback,
    ) -> Result<(), Refusal> {
        let (max_entries, max_messages) = (self.max_status_entries, self.max_messages);
        let Some(a) = self.action_of_mut(controller_id, id) else {
            return Err(Refusal::NotFound);
        };
        let verdict = judge_cancel_feedback(a, fb, max_entries, max_messages);
        a.feedback.push(fb.record(
            FeedbackChannel::Cancel,
            verdict.map_or_else(Refusal::status, |_| 200),
        ));
        match verdict? {
            StatusKind::Canceled => a.state = ActionState::Canceled,
            // The device refused or failed to cancel: the action goes on.
            StatusKind::CancelRejected | StatusKind::Error if a.state == ActionState::Canceling => {
                a.state = ActionState::Running;
            }
            _ => {}
        }
        Ok(())
    }

    /// `POST confirmationBase/{id}/feedback`.
    pub(crate) fn confirmation_feedback(
        &mut self,
        controller_id: &str,
        id: u64,
        fb: &ConfirmationFeedback,
    ) -> Result<(), Refusal> {
        let Some(a) = self.action_of_mut(controller_id, id) else {
            return Err(Refusal::NotFound);
        };
        let verdict = if !a.state.is_active() {
            Err(Refusal::Gone)
        } else if a.state != ActionState::WaitingForConfirmation {
            Err(Refusal::NotFound)
        } else {
            Ok(())
        };
        a.feedback.push(Feedback {
            channel: FeedbackChannel::Confirmation,
            body: fb.body.clone(),
            execution: if fb.confirmed { "confirmed" } else { "denied" }.to_owned(),
            finished: None,
            progress: None,
            code: fb.code,
            details: fb.details.clone(),
            timestamp: None,
            answered: verdict.map_or_else(Refusal::status, |()| 200),
        });
        verdict?;
        let mut messages = fb.details.clone();
        if let Some(code) = fb.code {
            messages.push(format!("Device reported status code: {code}"));
        }
        if messages.is_empty() {
            messages.push(format!(
                "{SERVER_PREFIX}Target {} the action",
                if fb.confirmed { "confirmed" } else { "denied" }
            ));
        }
        if fb.confirmed {
            a.state = ActionState::Running;
            a.push_status(StatusKind::Running, messages, fb.code, now_ms());
        } else {
            a.push_status(StatusKind::WaitForConfirmation, messages, fb.code, now_ms());
        }
        Ok(())
    }

    /// Auto-confirm on: every action of the target waiting for confirmation goes on.
    pub(crate) fn activate_auto_confirm(
        &mut self,
        controller_id: &str,
        initiator: Option<String>,
        remark: Option<String>,
    ) -> bool {
        let c = self.controller(controller_id);
        if c.auto_confirm.is_some() {
            return false;
        }
        c.auto_confirm = Some(AutoConfirm {
            initiator,
            remark,
            activated_at: now_ms(),
        });
        let now = now_ms();
        for a in self.actions.values_mut().filter(|a| {
            a.controller_id == controller_id && a.state == ActionState::WaitingForConfirmation
        }) {
            a.state = ActionState::Running;
            a.push_status(
                StatusKind::Running,
                vec![format!("{SERVER_PREFIX}Confirmed by auto-confirmation")],
                None,
                now,
            );
        }
        true
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

    /// `PUT installedBase`: `Ok(true)` = a new offline assignment (201), `Ok(false)` =
    /// already assigned (200), `Err` = no such distribution set.
    pub(crate) fn offline_version(
        &mut self,
        controller_id: &str,
        name: &str,
        version: &str,
    ) -> Result<bool, Refusal> {
        let set = self
            .sets
            .iter()
            .find(|(_, s)| s.name == name && s.version == version)
            .map(|(id, _)| *id)
            .ok_or(Refusal::NotFound)?;
        if self.controller(controller_id).assigned_set == Some(set) {
            return Ok(false);
        }
        self.next_action += 1;
        let id = self.next_action;
        let mut a = Action {
            id,
            controller_id: controller_id.to_owned(),
            set,
            action_type: ActionType::Forced,
            window: None,
            weight: None,
            state: ActionState::Finished,
            statuses: Vec::new(),
            feedback: Vec::new(),
        };
        a.push_status(
            StatusKind::Finished,
            vec![format!(
                "{SERVER_PREFIX}Installed version reported by the device"
            )],
            None,
            now_ms(),
        );
        self.actions.insert(id, a);
        let c = self.controller(controller_id);
        c.assigned_set = Some(set);
        c.installed = Some(id);
        Ok(true)
    }

    /// The next injected failure matching `route`, used up by one.
    pub(crate) fn take_fault(&mut self, route: super::spec::Route) -> Option<Fault> {
        let i = self
            .faults
            .iter()
            .position(|f| f.times > 0 && f.route.is_none_or(|r| r == route))?;
        let f = &mut self.faults[i];
        f.times -= 1;
        let out = f.clone();
        if f.times == 0 {
            self.faults.remove(i);
        }
        Some(out)
    }

    /// How the next download of `filename` misbehaves (used-up faults are removed).
    pub(crate) fn take_download_fault(&mut self, filename: &str) -> Misbehaviour {
        let mut how = Misbehaviour {
            rate: self.download_rate,
            ..Misbehaviour::default()
        };
        if let Some(i) = self
            .download_faults
            .iter()
            .position(|f| f.times > 0 && f.filename.as_deref().is_none_or(|n| n == filename))
        {
            let f = &mut self.download_faults[i];
            f.times -= 1;
            match f.kind {
                DownloadFaultKind::Drop => how.drop_after = Some(f.after_bytes),
                DownloadFaultKind::Stall(d) => how.stall_after = Some((f.after_bytes, d)),
            }
            if f.times == 0 {
                self.download_faults.remove(i);
            }
        }
        how
    }
}

/// The deploymentBase feedback rules: the status entry to add, or why not.
fn judge_deployment_feedback(
    a: &mut Action,
    fb: &ActionFeedback,
    max_entries: usize,
    max_messages: usize,
) -> Result<StatusKind, Refusal> {
    if a.state == ActionState::WaitingForConfirmation {
        return Err(Refusal::NotFound);
    }
    if !a.state.is_active() {
        return Err(Refusal::Gone);
    }
    let failure = fb.finished == "failure";
    let (kind, default) = match fb.execution.as_str() {
        "closed" if failure => (StatusKind::Error, "Target reported CLOSED with ERROR!"),
        "closed" => (StatusKind::Finished, "Target reported CLOSED with OK!"),
        "canceled" => (StatusKind::Canceled, "Target reported the action canceled"),
        "rejected" => (StatusKind::Warning, "Target rejected the update"),
        "download" => (StatusKind::Download, "Target started the download"),
        "downloaded" => (StatusKind::Downloaded, "Target finished the download"),
        _ => (StatusKind::Running, ""),
    };
    let mut messages = fb.device_messages();
    if messages.is_empty() {
        messages.push(if default.is_empty() {
            format!("{SERVER_PREFIX}Target reported {}", fb.execution)
        } else {
            format!("{SERVER_PREFIX}{default}")
        });
    }
    if kind.is_intermediate() && a.statuses.len() >= max_entries {
        return Err(Refusal::Quota);
    }
    if messages.len() > max_messages {
        return Err(Refusal::Quota);
    }
    a.push_status(kind, messages, fb.code, fb.timestamp.unwrap_or_else(now_ms));
    Ok(kind)
}

/// The cancelAction feedback rules: the status entry to add, or why not.
fn judge_cancel_feedback(
    a: &mut Action,
    fb: &ActionFeedback,
    max_entries: usize,
    max_messages: usize,
) -> Result<StatusKind, Refusal> {
    if !a.is_canceling_or_canceled() {
        return Err(Refusal::NotCancelable);
    }
    let failure = fb.finished == "failure";
    let (kind, server) = match fb.execution.as_str() {
        "canceled" => (
            StatusKind::Warning,
            Some("Target sent a cancel for a cancel, which is not supported"),
        ),
        "rejected" => (
            StatusKind::CancelRejected,
            Some("Target rejected the cancellation"),
        ),
        "closed" if failure => (
            StatusKind::Error,
            Some("Target could not complete the cancellation"),
        ),
        "closed" => (StatusKind::Canceled, Some("Cancellation confirmed")),
        _ => (StatusKind::Running, None),
    };
    let mut messages: Vec<String> = server
        .map(|s| format!("{SERVER_PREFIX}{s}"))
        .into_iter()
        .collect();
    messages.extend(fb.device_messages());
    if kind == StatusKind::Running
        && (a.statuses.len() >= max_entries || messages.len() > max_messages)
    {
        return Err(Refusal::Quota);
    }
    a.push_status(kind, messages, fb.code, fb.timestamp.unwrap_or_else(now_ms));
    Ok(kind)
}
