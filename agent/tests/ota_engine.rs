//! The update engine end to end against the real RAUC service (private bus, file-backed A/B
//! slots) and the test kit's stateful fake hawkBit. A reboot is simulated: the engine task is
//! stopped, RAUC restarts on the slot the bootloader picks (or on the old one, for a
//! rollback), and a new engine starts with a new boot id. Each scenario asserts the feedback
//! hawkBit recorded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

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
use nexa_agent::hawkbit::settings::{AfterInstall, AuthMode, HawkbitSettings, RebootVia};
use nexa_agent::rauc::DbusRauc;
use nexa_testkit::hawkbit::{
    ActionState, Artifact, Assignment, DistributionSet, FakeHawkbit, MaintenanceWindow,
};
use nexa_testkit::rauc::RaucSystem;
use nexa_testkit::wait_until;

const DEVICE: &str = "dev-ota-e2e";
const TOKEN: &str = "fedcba9876543210fedcba9876543210";

/// Counts reboot requests instead of rebooting.
#[derive(Debug, Default)]
struct Reboots(AtomicUsize);

impl Rebooter for Reboots {
    fn reboot(&self) -> BoxFuture<'_, Result<(), RebootError>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Ok(()) })
    }
}

struct Device {
    fake: FakeHawkbit,
    rauc: RaucSystem,
    tmp: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    reboots: Arc<Reboots>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Device {
    fn new() -> Self {
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
        }
    }

    fn spool(&self) -> std::path::PathBuf {
        self.tmp.path().join("spool")
    }

    fn pending(&self) -> std::path::PathBuf {
        self.tmp.path().join("ota-pending.json")
    }

    /// Starts an engine as the agent of boot `boot_id` would.
    fn start_engine(&mut self, boot_id: &str, after_install: AfterInstall) {
        let settings = HawkbitSettings {
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
        let (engine, _status) = Engine::new(Parts {
            ddi,
            rauc: Arc::new(DbusRauc::at_address(self.rauc.bus_address())),
            rebooter: self.reboots.clone(),
            spool: Spool::new(self.spool()),
            pending: PendingFile::new(self.pending()),
            after_install,
            facts,
            boot_id: boot_id.to_owned(),
            timing: Timing {
                active_poll: Duration::from_millis(200),
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
        });
        self.fake.set_polling_sleep(Duration::from_secs(1));
        self.task = Some(self.rt.spawn(engine.run()));
    }

    fn stop_engine(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = self.rt.block_on(t);
        }
    }

    fn deploy_bundle(&self, path: &std::path::Path, how: Assignment) -> u64 {
        let bytes = std::fs::read(path).unwrap();
        self.fake.deploy(
            DEVICE,
            DistributionSet::single("rootfs", "2.0", Artifact::bytes("update.raucb", &bytes)),
            how,
        )
    }

    fn wait_state(&self, action: u64, want: ActionState) {
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

    fn details(&self, action: u64) -> Vec<String> {
        self.fake
            .feedback(action)
            .into_iter()
            .flat_map(|f| f.details)
            .collect()
    }

    fn spool_is_empty(&self) -> bool {
        std::fs::read_dir(self.spool()).map_or(true, |mut d| d.next().is_none())
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.stop_engine();
    }
}

#[test]
fn success_is_reported_only_after_the_new_slot_booted_and_was_marked_good() {
    let mut dev = Device::new();
    let bundle = dev.rauc.good_bundle(4 << 20);
    let action = dev.deploy_bundle(&bundle.path, Assignment::forced());
    dev.start_engine("boot-1", AfterInstall::Reboot(RebootVia::Logind));

    assert!(
        wait_until(Duration::from_secs(30), || dev
            .reboots
            .0
            .load(Ordering::SeqCst)
            == 1),
        "no reboot requested; feedback: {:#?}",
        dev.fake.feedback(action)
    );
    assert!(dev.pending().exists());
    assert_eq!(
        dev.fake.action(action).state,
        ActionState::Running,
        "not closed before the boot"
    );
    let executions: Vec<String> = dev
        .fake
        .feedback(action)
        .into_iter()
        .map(|f| f.execution)
        .collect();
    assert!(
        executions.contains(&"downloaded".to_owned()),
        "{executions:?}"
    );
    assert!(!executions.contains(&"closed".to_owned()), "{executions:?}");
    assert!(dev.spool_is_empty());
    assert_eq!(
        dev.fake
            .attributes(DEVICE)
            .get("raucCompatible")
            .map(String::as_str),
        Some("nexa-test-device")
    );

    // Reboot: the bootloader picks the new slot.
    dev.stop_engine();
    assert_eq!(dev.rauc.reboot(), "B");
    dev.start_engine("boot-2", AfterInstall::Reboot(RebootVia::Logind));
    dev.wait_state(action, ActionState::Finished);
    assert_eq!(dev.rauc.slot_state("B"), "good");
    assert!(!dev.pending().exists());
    assert!(
        dev.details(action)
            .iter()
            .any(|d| d.contains("marked it good")),
        "{:?}",
        dev.details(action)
    );
    assert_eq!(dev.reboots.0.load(Ordering::SeqCst), 1);
}

#[test]
fn coming_back_on_the_old_slot_is_a_failure() {
    let mut dev = Device::new();
    let bundle = dev.rauc.good_bundle(2 << 20);
    let action = dev.deploy_bundle(&bundle.path, Assignment::forced());
    dev.start_engine("boot-1", AfterInstall::Reboot(RebootVia::Logind));
    assert!(wait_until(Duration::from_secs(30), || dev
        .reboots
        .0
        .load(Ordering::SeqCst)
        == 1));
    dev.stop_engine();
    dev.rauc.reboot_into("A");
    dev.start_engine("boot-2", AfterInstall::Reboot(RebootVia::Logind));
    dev.wait_state(action, ActionState::Error);
    assert!(
        dev.details(action)
            .iter()
            .any(|d| d.contains("came back on slot A")),
        "{:?}",
        dev.details(action)
    );
    assert!(!dev.pending().exists());
}

#[test]
fn a_bundle_rauc_refuses_fails_the_action_with_raucs_reason() {
    let mut dev = Device::new();
    let bundle = dev.rauc.foreign_bundle(1 << 20);
    let action = dev.deploy_bundle(&bundle.path, Assignment::forced());
    dev.start_engine("boot-1", AfterInstall::Reboot(RebootVia::Logind));
    dev.wait_state(action, ActionState::Error);
    assert!(
        dev.details(action)
            .iter()
            .any(|d| d.contains("signature verification failed")),
        "{:?}",
        dev.details(action)
    );
    assert_eq!(dev.reboots.0.load(Ordering::SeqCst), 0);
    assert!(dev.spool_is_empty());
}

#[test]
fn report_mode_closes_at_once_and_a_waiting_action_can_be_canceled() {
    let mut dev = Device::new();
    let bundle = dev.rauc.good_bundle(1 << 20);
    let first = dev.deploy_bundle(&bundle.path, Assignment::forced());
    dev.start_engine("boot-1", AfterInstall::Report);
    dev.wait_state(first, ActionState::Finished);
    assert_eq!(dev.reboots.0.load(Ordering::SeqCst), 0);

    // A closed maintenance window: downloaded, then waiting; a cancel is accepted.
    let second = dev.deploy_bundle(
        &bundle.path,
        Assignment::forced().window(MaintenanceWindow::Unavailable),
    );
    assert!(
        wait_until(Duration::from_secs(30), || dev
            .fake
            .feedback(second)
            .iter()
            .any(|f| f.execution == "downloaded")),
        "{:#?}",
        dev.fake.feedback(second)
    );
    dev.fake.cancel(second);
    dev.wait_state(second, ActionState::Canceled);
    assert!(wait_until(Duration::from_secs(5), || dev.spool_is_empty()));
}
