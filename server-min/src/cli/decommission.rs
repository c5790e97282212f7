//! `nexa-server device decommission ID`: the decommission service with the settings `serve`
//! uses (step-ca, hawkBit, the gateway mode), retrying each failing step for `--retry-for`.

use std::sync::Arc;

use nexa_proto::DeviceId;
use nexa_proto::duration::parse_duration;

use super::{CliError, open_existing, operator};
use crate::clock::{Clock, SystemClock};
use crate::config::{Settings, SettingsArgs};
use crate::decommission::{
    CaRevoker, ConnectingStepCa, DecommissionError, DecommissionService, PeerRemoval, Report,
    Request, RetryPolicy,
};
use crate::hawkbit::HawkbitClient;

#[derive(Debug, clap::Args)]
pub struct DecommissionArgs {
    /// The device id.
    pub id: String,
    /// Why, for the audit trail (and step-ca's revocation record).
    #[arg(long)]
    pub reason: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// How long each failing step is retried before it is reported failed.
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    pub retry_for: String,
    #[command(flatten)]
    pub settings: SettingsArgs,
}

pub async fn run(settings: &Settings, args: DecommissionArgs) -> Result<(), CliError> {
    let id = DeviceId::parse(&args.id)
        .map_err(|e| CliError::Usage(format!("{:?} is not a valid device id: {e}", args.id)))?;
    let budget = parse_duration(&args.retry_for)
        .map_err(|e| CliError::Usage(format!("--retry-for {:?}: {e}", args.retry_for)))?;
    let db = open_existing(&settings.data_dir).await?;
    let result = decommission(settings, &db, &id, args.reason, budget).await;
    db.close().await;
    let report = result?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report).unwrap_or_else(|_| "{}".into())
        );
    } else {
        print!("{}", render(&report));
    }
    if report.complete {
        return Ok(());
    }
    let failed: Vec<&str> = report.failed().map(|s| s.step.as_str()).collect();
    Err(CliError::Incomplete(format!(
        "decommission of {id} is incomplete: {} failed; fix the cause shown above and run `nexa-server device decommission {id}` again (done steps are not repeated)",
        failed.join(", ")
    )))
}

async fn decommission(
    settings: &Settings,
    db: &crate::db::Db,
    id: &DeviceId,
    reason: Option<String>,
    budget: std::time::Duration,
) -> Result<Report, CliError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let registry = match &settings.integrations.hawkbit {
        Some(h) => Some(
            HawkbitClient::new(h)
                .map_err(|e| CliError::Failed(e.to_string()))?
                .into_registry(),
        ),
        None => None,
    };
    let revoker: Option<Arc<dyn CaRevoker>> = settings
        .stepca
        .as_ref()
        .map(|s| Arc::new(ConnectingStepCa::new(s.clone(), clock.clone())) as Arc<dyn CaRevoker>);
    let service = DecommissionService::new(
        db.clone(),
        revoker,
        registry,
        PeerRemoval::from(&settings.gateway),
        clock,
    );
    let req = Request {
        actor: operator(),
        source: Some("cli".into()),
        reason,
    };
    service
        .run(id, &req, &RetryPolicy::for_budget(budget))
        .await
        .map_err(|e| match e {
            DecommissionError::UnknownDevice(_) => CliError::Failed(format!(
                "{e}; `nexa-server device list` shows the registered ids"
            )),
            DecommissionError::Db(db) => CliError::Db(db),
        })
}

/// The report for people: a headline, then one line per step.
fn render(report: &Report) -> String {
    let mut out = if report.complete {
        format!("device {} decommissioned\n", report.device_id)
    } else {
        format!(
            "decommission of {} incomplete: {} step(s) failed\n",
            report.device_id,
            report.failed().count()
        )
    };
    for s in &report.steps {
        let text = match (&s.error, &s.detail, s.attempts) {
            (Some(e), _, Some(n)) => format!("{e} ({n} attempt{})", if n == 1 { "" } else { "s" }),
            (Some(e), _, None) => e.clone(),
            (None, Some(d), _) => d.clone(),
            (None, None, _) => String::new(),
        };
        out.push_str(&format!(
            "  {:<20} {:<13} {}\n",
            s.step.as_str(),
            s.outcome.as_str(),
            text
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decommission::{Step, StepReport};

    #[test]
    fn the_report_names_every_step_and_the_failure() {
        let r = Report::new(
            "dev-1".into(),
            vec![
                StepReport::already_done(Step::MarkDecommissioned),
                StepReport::done(Step::RevokeCertificate, "certificate 7f"),
                StepReport::failed(Step::HawkbitTarget, "hawkBit down".into(), 3, true),
            ],
        );
        let text = render(&r);
        assert!(text.starts_with("decommission of dev-1 incomplete: 1 step(s) failed"));
        assert!(text.contains("mark_decommissioned  already_done"), "{text}");
        assert!(
            text.contains("revoke_certificate   done          certificate 7f"),
            "{text}"
        );
        assert!(text.contains("hawkBit down (3 attempts)"), "{text}");
    }
}
