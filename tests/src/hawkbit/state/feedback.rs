//! What the device's feedback does: the parsed bodies ([`ActionFeedback`],
//! [`ConfirmationFeedback`]), hawkBit's rules mapping `execution` / `finished` to a status
//! entry and an action state for deploymentBase and cancelAction, the per-action quotas
//! (entries and messages, answered 429), confirmation and auto-confirm, and [`Refusal`]:
//! why a feedback is refused. Every well-formed feedback for an existing action of the
//! device is recorded with its answer.

use serde_json::Value;

use super::super::SERVER_PREFIX;
use super::super::spec::{ActionState, ActionType, Feedback, FeedbackChannel, StatusKind};
use super::{Action, AutoConfirm, Ddi, now_ms};

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

impl Ddi {
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
