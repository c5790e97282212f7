//! An action's life apart from the device's feedback: the [`Action`] record and what it
//! tells the device (`download` / `update` handling, the `c` of its links), and the
//! server-side transitions on [`Ddi`] — assignment (superseding older actions without
//! multi-assignment, waiting for confirmation), operator cancel and force-quit, an
//! installed version reported offline, and the RETRIEVED and DOWNLOAD entries the server
//! adds when the device reads its action or downloads an artifact.

use std::time::SystemTime;

use super::super::SERVER_PREFIX;
use super::super::spec::{
    ActionState, ActionType, ActionView, Assignment, Feedback, MaintenanceWindow, StatusEntry,
    StatusKind,
};
use super::{Ddi, Refusal, now_ms};

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

    pub(super) fn is_canceling_or_canceled(&self) -> bool {
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

    pub(super) fn push_status(
        &mut self,
        kind: StatusKind,
        messages: Vec<String>,
        code: Option<i64>,
        at: i64,
    ) {
        self.statuses.push(StatusEntry {
            kind,
            messages,
            code,
            occurred_at: at,
        });
    }
}

impl Ddi {
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
}
