//! What a decommission run reports: each step with its outcome, and whether the decommission
//! is complete. Pure bookkeeping over the stored progress and this run's results.

use serde::Serialize;

/// The steps of a decommission, in the order they run.
///
/// The device is marked decommissioned first: from that commit on it can neither enroll nor
/// renew, so nothing can issue it a certificate the later steps would miss, and it has left
/// the gateway's peer set (the same commit bumps the peer-set version).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    MarkDecommissioned,
    WireguardPeer,
    RevokeCertificate,
    HawkbitTarget,
    Audit,
}

impl Step {
    pub const ALL: [Step; 5] = [
        Step::MarkDecommissioned,
        Step::WireguardPeer,
        Step::RevokeCertificate,
        Step::HawkbitTarget,
        Step::Audit,
    ];

    /// The name stored in `decommission_steps.step` and shown to people.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::MarkDecommissioned => "mark_decommissioned",
            Step::WireguardPeer => "wireguard_peer",
            Step::RevokeCertificate => "revoke_certificate",
            Step::HawkbitTarget => "hawkbit_target",
            Step::Audit => "audit",
        }
    }
}

/// What happened to a step in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Done by this run.
    Done,
    /// Done by an earlier run; not repeated.
    AlreadyDone,
    /// Nothing to do on this bridge (hawkBit not configured).
    Skipped,
    /// Not done; the next run tries again.
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::AlreadyDone => "already_done",
            Outcome::Skipped => "skipped",
            Outcome::Failed => "failed",
        }
    }

    /// True unless the step failed.
    pub fn is_success(self) -> bool {
        self != Outcome::Failed
    }
}

/// One step's line in the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepReport {
    pub step: Step,
    pub outcome: Outcome,
    /// What was done, for people (no secrets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Why the step failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Attempts made by this run (failed steps only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// True when the failure may heal by itself (the service was unreachable or busy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
}

impl StepReport {
    pub fn done(step: Step, detail: impl Into<String>) -> Self {
        Self::with(step, Outcome::Done, Some(detail.into()))
    }

    pub fn already_done(step: Step) -> Self {
        Self::with(step, Outcome::AlreadyDone, None)
    }

    pub fn skipped(step: Step, detail: impl Into<String>) -> Self {
        Self::with(step, Outcome::Skipped, Some(detail.into()))
    }

    pub fn failed(step: Step, error: String, attempts: u32, retryable: bool) -> Self {
        Self {
            error: Some(error),
            attempts: Some(attempts),
            retryable: Some(retryable),
            ..Self::with(step, Outcome::Failed, None)
        }
    }

    fn with(step: Step, outcome: Outcome, detail: Option<String>) -> Self {
        Self {
            step,
            outcome,
            detail,
            error: None,
            attempts: None,
            retryable: None,
        }
    }
}

/// The result of one decommission run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub device_id: String,
    /// Every step done (or skipped): nothing is left for a re-run.
    pub complete: bool,
    pub steps: Vec<StepReport>,
}

impl Report {
    /// The report of `steps`, which must hold every step once, in [`Step::ALL`] order.
    pub fn new(device_id: String, steps: Vec<StepReport>) -> Self {
        let complete = steps.iter().all(|s| s.outcome.is_success());
        Self {
            device_id,
            complete,
            steps,
        }
    }

    pub fn failed(&self) -> impl Iterator<Item = &StepReport> {
        self.steps.iter().filter(|s| !s.outcome.is_success())
    }

    /// True when this run changed something or failed: such a run is audited.
    pub fn worth_auditing(&self) -> bool {
        self.steps
            .iter()
            .any(|s| matches!(s.outcome, Outcome::Done | Outcome::Failed))
    }

    /// Every failure may heal by itself (the caller should retry later).
    pub fn only_transient_failures(&self) -> bool {
        self.failed().all(|s| s.retryable == Some(true))
    }

    /// `step: outcome` pairs, for the audit trail.
    pub fn outcomes(&self) -> serde_json::Map<String, serde_json::Value> {
        self.steps
            .iter()
            .map(|s| {
                let v = match &s.error {
                    Some(e) => serde_json::json!({ "outcome": s.outcome.as_str(), "error": e }),
                    None => serde_json::Value::from(s.outcome.as_str()),
                };
                (s.step.as_str().to_owned(), v)
            })
            .collect()
    }
}

/// Which steps are already done, from the stored progress.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    done: Vec<Step>,
}

impl Progress {
    /// From the stored step names with a `done_at`; unknown names are ignored.
    pub fn from_done<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let names: Vec<&str> = names.into_iter().collect();
        Self {
            done: Step::ALL
                .into_iter()
                .filter(|s| names.contains(&s.as_str()))
                .collect(),
        }
    }

    pub fn is_done(&self, step: Step) -> bool {
        self.done.contains(&step)
    }

    /// The steps not done yet, in order.
    pub fn pending(&self) -> Vec<Step> {
        Step::ALL
            .into_iter()
            .filter(|s| !self.is_done(*s))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_skips_what_is_done_in_order() {
        let p = Progress::from_done(["revoke_certificate", "mark_decommissioned", "bogus"]);
        assert!(p.is_done(Step::MarkDecommissioned));
        assert!(!p.is_done(Step::WireguardPeer));
        assert_eq!(
            p.pending(),
            [Step::WireguardPeer, Step::HawkbitTarget, Step::Audit]
        );
        assert_eq!(Progress::default().pending(), Step::ALL);
        let all = Progress::from_done(Step::ALL.map(Step::as_str));
        assert!(all.pending().is_empty());
    }

    #[test]
    fn a_report_is_complete_only_without_failures() {
        let ok = Report::new(
            "d".into(),
            vec![
                StepReport::already_done(Step::MarkDecommissioned),
                StepReport::done(Step::RevokeCertificate, "1 certificate"),
                StepReport::skipped(Step::HawkbitTarget, "not configured"),
            ],
        );
        assert!(ok.complete && ok.worth_auditing());
        assert_eq!(ok.failed().count(), 0);

        let nothing = Report::new(
            "d".into(),
            vec![
                StepReport::already_done(Step::MarkDecommissioned),
                StepReport::skipped(Step::HawkbitTarget, "not configured"),
            ],
        );
        assert!(nothing.complete && !nothing.worth_auditing());

        let bad = Report::new(
            "d".into(),
            vec![
                StepReport::done(Step::MarkDecommissioned, "x"),
                StepReport::failed(Step::HawkbitTarget, "down".into(), 3, true),
            ],
        );
        assert!(!bad.complete && bad.worth_auditing() && bad.only_transient_failures());
        let json = serde_json::to_value(&bad).unwrap();
        assert_eq!(json["steps"][1]["step"], "hawkbit_target");
        assert_eq!(json["steps"][1]["outcome"], "failed");
        assert_eq!(json["steps"][1]["attempts"], 3);
        assert_eq!(json["steps"][0]["outcome"], "done");
        assert!(json["steps"][0].get("error").is_none());
        assert_eq!(bad.outcomes()["hawkbit_target"]["error"], "down");
        assert_eq!(bad.outcomes()["mark_decommissioned"], "done");

        let refused = Report::new(
            "d".into(),
            vec![StepReport::failed(
                Step::HawkbitTarget,
                "403".into(),
                1,
                false,
            )],
        );
        assert!(!refused.only_transient_failures());
    }
}
