//! The DDI side's state and its rules: controllers, distribution sets, software modules,
//! actions with their status history, and the transitions feedback and operator calls
//! cause. Handlers (`ddi/`) parse and answer; the decisions are made here.
//!
//! This file is the store: [`Ddi`] with the tenant's settings, its tables (controllers,
//! sets, modules, actions), counters and request log, the lookups every rule starts from,
//! and the injected faults it hands out one by one. The rules live beside it: `action.rs`
//! (an action's life as the operator and the server drive it), `feedback.rs` (what the
//! device's feedback does, quotas included), `views.rs` (the JSON the device is shown) and
//! `paths.rs` (path segments and link bases).

mod action;
mod feedback;
mod paths;
mod views;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use super::content::Misbehaviour;
use super::content::StoredArtifact;
use super::spec::{
    DdiAuth, DownloadFault, DownloadFaultKind, DownloadLinks, Fault, RequestRecord, Route,
};

pub(crate) use action::Action;
pub(crate) use feedback::{ActionFeedback, ConfirmationFeedback, Refusal};
pub(crate) use paths::{Base, decode_segment, encode_segment};

/// hawkBit's weight of an action created without one.
const DEFAULT_WEIGHT: i32 = 1000;

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
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

    /// The next injected failure matching `route`, used up by one.
    pub(crate) fn take_fault(&mut self, route: Route) -> Option<Fault> {
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
