//! A simulated device for the update-engine tests: the real RAUC service (private bus,
//! file-backed A/B slots), the test kit's stateful fake hawkBit, and the engine running as a
//! task. A reboot is simulated by stopping the task, restarting RAUC on the slot the
//! bootloader picks (or on the old one, for a rollback) and starting a new engine with a new
//! boot id. Each test file uses part of it.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use nexa_agent::backoff::Backoff;
use nexa_agent::certs::CertsDir;
use nexa_agent::hawkbit::client::DdiClient;
use nexa_agent::hawkbit::download::{Retry, Spool};
use nexa_agent::hawkbit::engine::{Engine, Parts, Timing};
use nexa_agent::hawkbit::pending::PendingFile;
use nexa_agent::hawkbit::reboot::{BoxFuture, RebootError, Rebooter};
use nexa_agent::hawkbit::settings::{AfterInstall, AuthMode, HawkbitSettings};
use nexa_agent::hawkbit::status::OtaStatus;
use nexa_agent::rauc::DbusRauc;
use nexa_testkit::hawkbit::{
    ActionState, Artifact, Assignment, DistributionSet, FakeHawkbit, Feedback, FeedbackChannel,
};
use nexa_testkit::rauc::RaucSystem;
use nexa_testkit::wait_until;

pub const DEVICE: &str = "dev-ota-e2e";
const TOKEN: &str = "fedcba9876543210fedcba9876543210";

/// Counts reboot requests instead of rebooting.
#[derive(Debug, Default)]
pub struct Reboots(pub AtomicUsize);

impl Rebooter for Reboots {
    fn reboot(&self) -> BoxFuture<'_, Result<(), RebootError>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Ok(()) })
    }
}

pub struct Device {
    pub fake: FakeHawkbit,
    pub rauc: RaucSystem,
    pub tmp: tempfile::TempDir,
    pub rt: tokio::runtime::Runtime,
    pub reboots: Arc<Reboots>,
    pub task: Option<tokio::task::JoinHandle<()>>,
    /// The running engine's status.
    pub status: Option<tokio::sync::watch::Receiver<OtaStatus>>,
    /// Poll interval of the engine while an action runs.
    pub active_poll: Duration,
    /// `hawkbit.stall_timeout` of the engine's client.
    pub stall_timeout: Duration,
}

impl Device {
    pub fn new() -> Self {
        let fake = FakeHawkbit::start();
        fake.insert_target_with_token(DEVICE, TOKEN);
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("token"), TOKEN).unwrap();
        Self {
            fake,
            rauc: RaucSystem::start(),
            tmp,
            rt: tokio::runtime::Runtime::new().unwrap(),
            reboots: Arc::default(),
            task: None,
            status: None,
            active_poll: Duration::from_millis(200),
            stall_timeout: nexa_agent::hawkbit::settings::DEFAULT_STALL_TIMEOUT,
        }
    }

    pub fn spool(&self) -> std::path::PathBuf {
        self.tmp.path().join("spool")
    }

    pub fn pending(&self) -> std::path::PathBuf {
        self.tmp.path().join("ota-pending.json")
    }

    /// Starts an engine as the agent of boot `boot_id` would.
    pub fn start_engine(&mut self, boot_id: &str, after_install: AfterInstall) {
        self.start_engine_with(boot_id, after_install, |_| {});
    }

    /// [`start_engine`](Self::start_engine), with `adjust` changing the engine's parts (its
    /// timing, spool or installer) before it starts.
    pub fn start_engine_with(
        &mut self,
        boot_id: &str,
        after_install: AfterInstall,
        adjust: impl FnOnce(&mut Parts),
    ) {
        let settings = HawkbitSettings {
            stall_timeout: self.stall_timeout,
            url: format!("{}/", self.fake.url).parse().unwrap(),
            tenant: "DEFAULT".into(),
            controller_id: None,
            auth: AuthMode::TargetToken {
                file: self.tmp.path().join("token"),
            },
            ca_file: None,
            data_dir: self.tmp.path().into(),
            spool_dir: self.spool(),
            after_install,
        };
        let ddi = DdiClient::new(&settings, DEVICE, &CertsDir::new(self.tmp.path())).unwrap();
        let facts = BTreeMap::from([("deviceId".to_owned(), DEVICE.to_owned())]);
        let mut parts = Parts {
            ddi,
            rauc: Arc::new(DbusRauc::at_address(self.rauc.bus_address())),
            rebooter: self.reboots.clone(),
            spool: Spool::new(self.spool()),
            pending: PendingFile::new(self.pending()),
            after_install,
            facts,
            boot_id: boot_id.to_owned(),
            timing: Timing {
                active_poll: self.active_poll,
                download: Retry {
                    attempts: 5,
                    backoff: Backoff {
                        initial: Duration::from_millis(50),
                        max: Duration::from_millis(200),
                        give_up_after: Duration::MAX,
                    },
                },
                error_backoff: Backoff {
                    initial: Duration::from_millis(100),
                    max: Duration::from_millis(500),
                    give_up_after: Duration::MAX,
                },
                feedback_attempts: 3,
            },
        };
        adjust(&mut parts);
        let (engine, status) = Engine::new(parts);
        self.fake.set_polling_sleep(Duration::from_secs(1));
        self.status = Some(status);
        self.task = Some(self.rt.spawn(engine.run()));
    }

    pub fn stop_engine(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = self.rt.block_on(t);
        }
    }

    pub fn deploy_bundle(&self, path: &std::path::Path, how: Assignment) -> u64 {
        let bytes = std::fs::read(path).unwrap();
        self.fake.deploy(
            DEVICE,
            DistributionSet::single("rootfs", "2.0", Artifact::bytes("update.raucb", &bytes)),
            how,
        )
    }

    pub fn wait_state(&self, action: u64, want: ActionState) {
        let ok = wait_until(Duration::from_secs(30), || {
            self.fake.action(action).state == want
        });
        assert!(
            ok,
            "action {action} is {:?}, expected {want:?}; feedback: {:#?}\n--- rauc\n{}",
            self.fake.action(action).state,
            self.fake.feedback(action),
            self.rauc.log()
        );
    }

    pub fn details(&self, action: u64) -> Vec<String> {
        self.fake
            .feedback(action)
            .into_iter()
            .flat_map(|f| f.details)
            .collect()
    }

    pub fn spool_is_empty(&self) -> bool {
        std::fs::read_dir(self.spool()).map_or(true, |mut d| d.next().is_none())
    }

    /// The feedback posted to `deploymentBase/{action}/feedback`, in order.
    pub fn deployment_feedback(&self, action: u64) -> Vec<Feedback> {
        self.fake
            .feedback(action)
            .into_iter()
            .filter(|f| f.channel == FeedbackChannel::Deployment)
            .collect()
    }

    /// The `execution` of every deployment feedback of `action`, in order.
    pub fn executions(&self, action: u64) -> Vec<String> {
        self.deployment_feedback(action)
            .into_iter()
            .map(|f| f.execution)
            .collect()
    }

    /// The details of the `closed`+`failure` feedback of `action`, joined by newlines;
    /// panics if there is none or more than one.
    pub fn failure_details(&self, action: u64) -> String {
        let all = self.deployment_feedback(action);
        let failures: Vec<&Feedback> = all
            .iter()
            .filter(|f| f.execution == "closed" && f.finished.as_deref() == Some("failure"))
            .collect();
        assert_eq!(failures.len(), 1, "one closed+failure expected: {all:#?}");
        failures[0].details.join("\n")
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.stop_engine();
    }
}
