//! One deployment action: from reading the deployment through the download (watching for a
//! cancel), the wait for a maintenance window and the RAUC install (rejecting a cancel) to the
//! success report or the pending update and reboot request.

use tokio::sync::watch;

use super::{Engine, Outcome, now_ms, rfc3339_now};
use crate::hawkbit::client::DdiError;
use crate::hawkbit::digest::Expected;
use crate::hawkbit::download::{self, Wanted};
use crate::hawkbit::model::{
    Artifact, DeploymentBase, Execution, Feedback, Finished, Handling, MaintenanceWindow,
};
use crate::hawkbit::pending::PendingUpdate;
use crate::hawkbit::settings::AfterInstall;
use crate::hawkbit::status::Phase;
use crate::rauc::{InstallProgress, RaucError};

impl Engine {
    pub(super) async fn deployment(&mut self, href: &str) {
        let d = match self.p.ddi.deployment(href).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the deployment");
                return;
            }
        };
        if matches!(self.p.pending.load(), Ok(Some(p)) if p.action == d.id) {
            return; // installed, waiting for the reboot
        }
        let id = d.id.clone();
        let outcome = self.handle(href, d).await;
        self.clean_spool();
        match outcome {
            Outcome::Done(result) => {
                tracing::info!(action = %id, %result, "action finished");
                self.finish(format!("{id}: {result}"));
            }
            Outcome::Dropped(why) => {
                tracing::info!(action = %id, reason = %why, "action dropped");
                self.finish(format!("{id}: {why}"));
            }
            Outcome::Left => {}
        }
    }

    /// Ends the action with `closed`+`failure`.
    async fn fail(&self, action: &str, why: String) -> Outcome {
        tracing::warn!(action, error = %why, "update failed");
        // Clean before the verdict: once the server knows, the device holds nothing more.
        self.clean_spool();
        let fb = Feedback::new(now_ms(), Execution::Closed, Finished::Failure).detail(why.clone());
        let _ = self.report(action, fb).await;
        Outcome::Done(format!("failure: {why}"))
    }

    async fn handle(&mut self, href: &str, d: DeploymentBase) -> Outcome {
        let action = d.id.clone();
        let artifact = match single_artifact(&d) {
            Ok(a) => a.clone(),
            Err(why) => return self.fail(&action, why).await,
        };
        let digest = match Expected::strongest(&artifact.hashes) {
            Ok(x) => x,
            Err(e) => {
                return self
                    .fail(&action, format!("{}: {e}", artifact.filename))
                    .await;
            }
        };
        let name = match download::sanitize(&artifact.filename) {
            Ok(n) => n,
            Err(e) => return self.fail(&action, e.to_string()).await,
        };
        let Some(url) = artifact.download_href().map(str::to_owned) else {
            return self
                .fail(
                    &action,
                    format!("{} has no download link", artifact.filename),
                )
                .await;
        };
        if d.deployment.download == Handling::Skip {
            return Outcome::Left;
        }
        let version = d
            .deployment
            .chunks
            .first()
            .map(|c| format!("{} {}", c.name, c.version))
            .unwrap_or_default();
        let retrieved = Feedback::new(now_ms(), Execution::Proceeding, Finished::None).detail(
            format!("retrieved: {name} ({version}), {} bytes", artifact.size),
        );
        if let Err(e) = self.report(&action, retrieved).await
            && closed_by_server(&e)
        {
            return Outcome::Dropped(CLOSED.into());
        }

        // Download, watching for a cancel.
        self.phase(Phase::Downloading, &action, &name, Some(0));
        let started = std::time::Instant::now();
        let path = {
            let wanted = Wanted {
                url: &url,
                name: &name,
                size: artifact.size,
                digest: &digest,
            };
            let status = self.status.clone();
            let mut on_progress = move |done: u64, total: u64| {
                let pct = percent(done, total);
                status.send_if_modified(|s| {
                    let changed = s.progress != Some(pct);
                    s.progress = Some(pct);
                    changed
                });
            };
            let download_headers = self.p.ddi.download_headers(&url);
            let fetch = download::fetch(
                self.p.ddi.http(),
                &download_headers,
                &self.p.spool,
                &wanted,
                self.p.timing.download,
                &mut on_progress,
            );
            tokio::pin!(fetch);
            let mut reported: u8 = 0;
            let mut tick = tokio::time::interval(self.p.timing.active_poll);
            tick.tick().await;
            loop {
                tokio::select! {
                    res = &mut fetch => break res,
                    _ = tick.tick() => {
                        if let Some(stop) = self.cancel_requested(&action).await {
                            let fb = Feedback::new(now_ms(), Execution::Closed, Finished::Success)
                                .detail("canceled during the download");
                            let _ = self.send_feedback(&stop, fb, true).await;
                            return Outcome::Done("canceled".into());
                        }
                        let pct = self.status.borrow().progress.unwrap_or(0);
                        if pct >= reported.saturating_add(10) && pct < 100 {
                            reported = pct - pct % 10;
                            let fb = Feedback::new(now_ms(), Execution::Proceeding, Finished::None)
                                .progress(u32::from(pct), 100)
                                .detail(format!("downloading {name}: {pct}%"));
                            // Returning drops the download; the spool is cleaned after.
                            if let Err(e) = self.report(&action, fb).await
                                && closed_by_server(&e)
                            {
                                return Outcome::Dropped(CLOSED.into());
                            }
                        }
                    }
                }
            }
        };
        let path = match path {
            Ok(p) => p,
            Err(e) => return self.fail(&action, format!("download of {name}: {e}")).await,
        };
        let secs = started.elapsed().as_secs_f64();
        let fb = Feedback::new(now_ms(), Execution::Downloaded, Finished::None).detail(format!(
            "{name} downloaded and verified ({}) in {secs:.2} s, {:.1} MiB/s",
            digest.algorithm(),
            artifact.size as f64 / 1_048_576.0 / secs.max(0.001)
        ));
        if let Err(e) = self.report(&action, fb).await {
            return Outcome::Dropped(if closed_by_server(&e) {
                CLOSED.into()
            } else {
                format!(
                    "the server did not take the download report ({e}); it offers the action again"
                )
            });
        }

        // Install only when the server says so; wait for a closed window.
        let mut deployment = d.deployment;
        loop {
            let window_closed =
                deployment.maintenance_window == Some(MaintenanceWindow::Unavailable);
            if deployment.update != Handling::Skip && !window_closed {
                break;
            }
            if deployment.maintenance_window.is_none() {
                // Download only: the server closes the action on `downloaded`.
                return Outcome::Done("downloaded".into());
            }
            self.phase(Phase::Waiting, &action, &name, None);
            tokio::time::sleep(self.p.timing.active_poll).await;
            if let Some(stop) = self.cancel_requested(&action).await {
                let fb = Feedback::new(now_ms(), Execution::Closed, Finished::Success)
                    .detail("canceled while waiting for the maintenance window");
                let _ = self.send_feedback(&stop, fb, true).await;
                return Outcome::Done("canceled".into());
            }
            match self.p.ddi.deployment(href).await {
                Ok(next) if next.id == action => deployment = next.deployment,
                Ok(_) | Err(DdiError::NotFound { .. } | DdiError::Gone { .. }) => {
                    return Outcome::Dropped(CLOSED.into());
                }
                Err(e) => tracing::warn!(error = %e, "cannot re-read the deployment"),
            }
        }
        self.install(&action, &name, &version, &path).await
    }

    /// A cancel for `action` announced by the server, if any (`stopId`).
    async fn cancel_requested(&self, action: &str) -> Option<String> {
        let base = self.p.ddi.poll().await.ok()?;
        let link = base.links.cancel_action?;
        let cancel = self.p.ddi.cancel_action(&link.href).await.ok()?;
        (cancel.cancel_action.stop_id == action).then_some(cancel.cancel_action.stop_id)
    }

    async fn install(
        &mut self,
        action: &str,
        name: &str,
        version: &str,
        path: &std::path::Path,
    ) -> Outcome {
        let before = match self.p.rauc.system_info().await {
            Ok(i) => i,
            Err(e) => return self.fail(action, format!("RAUC: {e}")).await,
        };
        self.phase(Phase::Installing, action, name, Some(0));
        let fb = Feedback::new(now_ms(), Execution::Proceeding, Finished::None)
            .detail(format!("installing {name} with RAUC"));
        // The last moment to learn the action was closed before anything changes on the
        // device; a merely unreachable server gets the final report instead.
        if let Err(e) = self.report(action, fb).await
            && closed_by_server(&e)
        {
            return Outcome::Dropped(CLOSED.into());
        }

        let (tx, mut rx) = watch::channel(InstallProgress::default());
        let rauc = self.p.rauc.clone();
        let install = rauc.install(path, tx);
        tokio::pin!(install);
        let mut tick = tokio::time::interval(self.p.timing.active_poll);
        tick.tick().await;
        let mut progress_open = true;
        let result = loop {
            tokio::select! {
                res = &mut install => break res,
                changed = rx.changed(), if progress_open => {
                    if changed.is_err() {
                        progress_open = false;
                        continue;
                    }
                    let pct = rx.borrow_and_update().percent;
                    self.status.send_modify(|s| s.progress = Some(pct));
                }
                _ = tick.tick() => {
                    if let Some(stop) = self.cancel_requested(action).await {
                        let fb = Feedback::new(now_ms(), Execution::Rejected, Finished::Success)
                            .detail("RAUC is installing; the update can no longer be canceled");
                        let _ = self.send_feedback(&stop, fb, true).await;
                    }
                }
            }
        };
        match result {
            Ok(()) => {}
            Err(RaucError::InstallFailed { last_error }) => {
                return self.fail(action, format!("RAUC: {last_error}")).await;
            }
            Err(e) => return self.fail(action, format!("RAUC: {e}")).await,
        }
        let target = self.installed_slot().await;
        match self.p.after_install {
            AfterInstall::Report => {
                self.clean_spool();
                let fb =
                    Feedback::new(now_ms(), Execution::Closed, Finished::Success).detail(format!(
                        "installed {version} to slot {}",
                        target.as_deref().unwrap_or("?")
                    ));
                let _ = self.report(action, fb).await;
                Outcome::Done("success".into())
            }
            AfterInstall::Reboot(_) => {
                let Some(target) = target else {
                    return self
                        .fail(action, "installed, but RAUC names no primary slot".into())
                        .await;
                };
                let pending = PendingUpdate {
                    action: action.to_owned(),
                    target_slot: target.clone(),
                    from_slot: before.boot_slot.clone(),
                    what: version.to_owned(),
                    installed_at: rfc3339_now(),
                    boot_id: self.p.boot_id.clone(),
                };
                if let Err(e) = self.p.pending.save(&pending) {
                    return self
                        .fail(
                            action,
                            format!("cannot record the update for its reboot: {e}"),
                        )
                        .await;
                }
                self.phase(Phase::Rebooting, action, name, Some(100));
                let fb = Feedback::new(now_ms(), Execution::Proceeding, Finished::None).detail(
                    format!("installed to slot {target}; rebooting to confirm it"),
                );
                let _ = self.report(action, fb).await;
                if let Err(e) = self.p.rebooter.reboot().await {
                    tracing::error!(error = %e, "the update takes effect at the next reboot");
                    self.set_error(&e.to_string());
                }
                Outcome::Left
            }
        }
    }

    /// The bootname of the slot RAUC made primary.
    async fn installed_slot(&self) -> Option<String> {
        let primary = self.p.rauc.primary().await.ok()?;
        let slots = self.p.rauc.slots().await.ok()?;
        slots
            .into_iter()
            .find(|s| s.name == primary)
            .and_then(|s| s.bootname)
    }
}

const CLOSED: &str = "closed by the server (HTTP 404/410); nothing more is reported";

/// The server no longer has the action open: stop working on it and stop reporting.
fn closed_by_server(e: &DdiError) -> bool {
    matches!(e, DdiError::Gone { .. } | DdiError::NotFound { .. })
}

/// The one artifact of a deployment; this agent installs one RAUC bundle per action.
fn single_artifact(d: &DeploymentBase) -> Result<&Artifact, String> {
    let chunks = &d.deployment.chunks;
    let artifacts: usize = chunks.iter().map(|c| c.artifacts.len()).sum();
    match (chunks.as_slice(), artifacts) {
        ([chunk], 1) => chunk
            .artifacts
            .first()
            .ok_or_else(|| "the deployment has no artifact".to_owned()),
        _ => Err(format!(
            "deployment {} has {} chunk(s) with {artifacts} artifact(s); this agent installs exactly one RAUC bundle per action",
            d.id,
            chunks.len()
        )),
    }
}

fn percent(done: u64, total: u64) -> u8 {
    if total == 0 {
        return 100;
    }
    u8::try_from(done.saturating_mul(100) / total)
        .unwrap_or(100)
        .min(100)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hawkbit::model::{ArtifactLinks, Chunk, Deployment, Hashes};

    fn artifact(name: &str) -> Artifact {
        Artifact {
            filename: name.into(),
            hashes: Hashes::default(),
            size: 1,
            links: ArtifactLinks::default(),
        }
    }

    fn deployment(chunks: Vec<Vec<&str>>) -> DeploymentBase {
        DeploymentBase {
            id: "5".into(),
            deployment: Deployment {
                download: Handling::Forced,
                update: Handling::Forced,
                maintenance_window: None,
                chunks: chunks
                    .into_iter()
                    .map(|names| Chunk {
                        part: "os".into(),
                        version: "1".into(),
                        name: "rootfs".into(),
                        artifacts: names.into_iter().map(artifact).collect(),
                        metadata: vec![],
                    })
                    .collect(),
            },
        }
    }

    #[test]
    fn exactly_one_bundle_per_action() {
        assert_eq!(
            single_artifact(&deployment(vec![vec!["a.raucb"]]))
                .unwrap()
                .filename,
            "a.raucb"
        );
        for d in [
            deployment(vec![]),
            deployment(vec![vec![]]),
            deployment(vec![vec!["a", "b"]]),
            deployment(vec![vec!["a"], vec!["b"]]),
        ] {
            let e = single_artifact(&d).unwrap_err();
            assert!(e.contains("exactly one RAUC bundle"), "{e}");
        }
    }

    #[test]
    fn percentages_are_bounded() {
        assert_eq!(percent(0, 0), 100);
        assert_eq!(percent(50, 200), 25);
        assert_eq!(percent(300, 200), 100);
        assert_eq!(percent(u64::MAX, 1), 100);
    }
}
