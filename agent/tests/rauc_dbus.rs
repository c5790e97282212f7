//! The agent's RAUC client (`nexa_agent::rauc::DbusRauc`) against the real `rauc service` on
//! a private bus (`nexa_testkit::rauc::RaucSystem`): reading the device's facts and slots, a
//! good install with its progress, the simulated reboot into the new slot and marking it
//! good, bundles RAUC rejects (foreign signature, other device) with RAUC's own texts, a
//! relative path refused before anything reaches the bus, RAUC missing or dying mid-install
//! reported as `Unavailable` rather than hanging, and a second install while one runs
//! answered `Busy` without disturbing the first.
//!
//! They need root and the Debian packages `rauc`, `dbus`, `squashfs-tools` and `systemd`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nexa_agent::rauc::{DbusRauc, InstallProgress, Installer, RaucError, SlotStatus};
use nexa_testkit::rauc::{COMPATIBLE, RaucSystem};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;

const MIB: u64 = 1 << 20;

fn client(rauc: &RaucSystem) -> Arc<DbusRauc> {
    Arc::new(DbusRauc::at_address(rauc.bus_address()))
}

/// A progress channel and a task recording every value the install sends into it (the
/// watch channel may merge values sent in quick succession), ending when the install drops
/// the sender.
fn progress_recorder() -> (
    watch::Sender<InstallProgress>,
    watch::Receiver<InstallProgress>,
    JoinHandle<Vec<InstallProgress>>,
) {
    let (tx, rx) = watch::channel(InstallProgress::default());
    let mut watcher = rx.clone();
    let recorder = tokio::spawn(async move {
        let mut seen = Vec::new();
        while watcher.changed().await.is_ok() {
            seen.push(watcher.borrow_and_update().clone());
        }
        seen
    });
    (tx, rx, recorder)
}

/// Starts `install` of `bundle` in a task of its own.
fn spawn_install(
    rauc: &Arc<DbusRauc>,
    bundle: &Path,
    tx: watch::Sender<InstallProgress>,
) -> JoinHandle<Result<(), RaucError>> {
    let rauc = Arc::clone(rauc);
    let bundle = bundle.to_owned();
    tokio::spawn(async move { rauc.install(&bundle, tx).await })
}

fn slot<'s>(slots: &'s [SlotStatus], name: &str) -> &'s SlotStatus {
    slots
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no slot {name} in {slots:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_info_primary_and_slots_of_a_fresh_device() {
    let rauc = RaucSystem::start();
    let client = client(&rauc);

    let info = client.system_info().await.unwrap();
    assert_eq!(info.compatible, COMPATIBLE);
    assert_eq!(info.boot_slot, "A");
    assert_eq!(info.variant, "");
    assert_eq!(client.primary().await.unwrap(), "rootfs.0");

    let slots = client.slots().await.unwrap();
    assert_eq!(slots.len(), 2, "{slots:?}");
    assert_eq!(
        slot(&slots, "rootfs.0"),
        &SlotStatus {
            name: "rootfs.0".into(),
            bootname: Some("A".into()),
            class: Some("rootfs".into()),
            state: Some("booted".into()),
            boot_status: Some("good".into()),
        }
    );
    let b = slot(&slots, "rootfs.1");
    assert_eq!(b.bootname.as_deref(), Some("B"));
    assert_eq!(b.state.as_deref(), Some("inactive"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_bundle_installs_with_progress_and_the_new_slot_is_marked_good_after_reboot() {
    let mut rauc = RaucSystem::start();
    let client = client(&rauc);
    let bundle = rauc.good_bundle(8 * MIB);
    let monitor = rauc.monitor();

    let (tx, rx, recorder) = progress_recorder();
    let started = Instant::now();
    client.install(&bundle.path, tx).await.unwrap();
    eprintln!(
        "8 MiB install through DbusRauc took {:?}",
        started.elapsed()
    );
    let seen = recorder.await.unwrap();

    // Progress was forwarded, never went backwards, and ended at 100 %.
    assert!(seen.len() >= 2, "{seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0].percent <= w[1].percent),
        "{seen:?}"
    );
    assert_eq!(
        *rx.borrow(),
        InstallProgress {
            percent: 100,
            message: "Installing done.".into(),
            depth: 1
        }
    );
    // The call as RAUC got it: the absolute path, no options.
    let calls = monitor.calls();
    assert!(
        calls.contains(&("InstallBundle".into(), json!([bundle.path_str(), {}]))),
        "{calls:?}"
    );

    // Slot B holds the image, the bootloader switched to it, A is still booted.
    assert!(rauc.slot_holds("B", &bundle.image));
    assert!(rauc.slot_holds("A", &rauc.factory_image()));
    assert_eq!(rauc.primary(), "B");
    assert_eq!(client.primary().await.unwrap(), "rootfs.1");
    assert_eq!(client.system_info().await.unwrap().boot_slot, "A");

    // Reboot into B; the same client (its connection to the bus outlives the service) marks
    // the booted slot good.
    assert_eq!(rauc.reboot(), "B");
    rauc.set_slot_state("B", "bad"); // as after `set-state B bad` on a real bootloader
    assert_eq!(client.system_info().await.unwrap().boot_slot, "B");
    assert_eq!(client.mark_good_booted().await.unwrap(), "rootfs.1");
    assert_eq!(rauc.slot_state("B"), "good");
    assert_eq!(
        rauc.boot_calls().last().map(String::as_str),
        Some("set-state B good")
    );
    let slots = client.slots().await.unwrap();
    assert_eq!(slot(&slots, "rootfs.1").state.as_deref(), Some("booted"));
    assert_eq!(
        slot(&slots, "rootfs.1").boot_status.as_deref(),
        Some("good")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_bundles_fail_with_rauc_last_error() {
    let rauc = RaucSystem::start();
    let client = client(&rauc);

    let foreign = rauc.foreign_bundle(MIB);
    let started = Instant::now();
    let (tx, _rx) = watch::channel(InstallProgress::default());
    let e = client.install(&foreign.path, tx).await.unwrap_err();
    eprintln!(
        "foreign-signature install failed after {:?}",
        started.elapsed()
    );
    let RaucError::InstallFailed { last_error } = &e else {
        panic!("{e:?}")
    };
    assert!(
        last_error.contains("signature verification failed"),
        "{last_error}"
    );
    assert!(
        e.to_string().contains("signature verification failed"),
        "{e}"
    );

    let incompatible = rauc.incompatible_bundle(MIB);
    let (tx, _rx) = watch::channel(InstallProgress::default());
    let e = client.install(&incompatible.path, tx).await.unwrap_err();
    let RaucError::InstallFailed { last_error } = &e else {
        panic!("{e:?}")
    };
    assert!(last_error.contains("Compatible mismatch"), "{last_error}");
    assert!(last_error.contains("other-device"), "{last_error}");

    // A bundle that is not there is RAUC's asynchronous failure too.
    let missing = rauc.dir().join("bundles/missing.raucb");
    let (tx, _rx) = watch::channel(InstallProgress::default());
    let e = client.install(&missing, tx).await.unwrap_err();
    assert!(
        matches!(&e, RaucError::InstallFailed { last_error } if last_error.contains("missing.raucb")),
        "{e:?}"
    );

    // Nothing was written or switched.
    assert!(rauc.slot_is_blank("B", MIB));
    assert_eq!(rauc.primary(), "A");
    // And the service is fine for the next, good install.
    let good = rauc.good_bundle(MIB);
    let (tx, _rx) = watch::channel(InstallProgress::default());
    client.install(&good.path, tx).await.unwrap();
    assert!(rauc.slot_holds("B", &good.image));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relative_path_is_refused_without_calling_rauc() {
    let rauc = RaucSystem::start();
    let client = client(&rauc);
    let monitor = rauc.monitor();
    // Connected and working, so the refusal is not a connection failure.
    client.system_info().await.unwrap();

    let (tx, rx) = watch::channel(InstallProgress::default());
    let e = client
        .install(Path::new("bundles/update.raucb"), tx)
        .await
        .unwrap_err();
    let RaucError::Refused { message } = &e else {
        panic!("{e:?}")
    };
    assert!(message.contains("relative"), "{message}");
    assert!(message.contains("bundles/update.raucb"), "{message}");
    assert_eq!(*rx.borrow(), InstallProgress::default());
    // Give the monitor a moment to see a stray call, then check there was none.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let calls = monitor.calls();
    assert!(
        !calls.iter().any(|(member, _)| member == "InstallBundle"),
        "{calls:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_service_is_unavailable_and_a_restarted_one_is_found_again() {
    let mut rauc = RaucSystem::start();
    let client = client(&rauc);
    client.system_info().await.unwrap();
    let bundle = rauc.good_bundle(MIB);
    tokio::task::block_in_place(|| rauc.stop_service());

    let started = Instant::now();
    let (tx, _rx) = watch::channel(InstallProgress::default());
    let results = [
        client.system_info().await.map(|_| ()),
        client.primary().await.map(|_| ()),
        client.slots().await.map(|_| ()),
        client.mark_good_booted().await.map(|_| ()),
        client.install(&bundle.path, tx).await,
    ];
    let took = started.elapsed();
    for r in results {
        let e = r.unwrap_err();
        let RaucError::Unavailable { reason } = &e else {
            panic!("{e:?}")
        };
        assert!(reason.contains("systemctl status rauc"), "{reason}");
        assert!(reason.contains("de.pengutronix.rauc"), "{reason}");
    }
    eprintln!("five calls with RAUC stopped answered Unavailable in {took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");

    // Retry-friendly: once RAUC is back, the same client works.
    tokio::task::block_in_place(|| rauc.start_service());
    assert_eq!(client.system_info().await.unwrap().boot_slot, "A");
    let (tx, _rx) = watch::channel(InstallProgress::default());
    client.install(&bundle.path, tx).await.unwrap();
    assert!(rauc.slot_holds("B", &bundle.image));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rauc_dying_mid_install_is_unavailable_not_a_hang() {
    let mut rauc = RaucSystem::start();
    let client = client(&rauc);
    let bundle = rauc.good_bundle(64 * MIB);

    let (tx, mut rx) = watch::channel(InstallProgress::default());
    let install = spawn_install(&client, &bundle.path, tx);
    // Our install runs once its first progress is forwarded.
    tokio::time::timeout(Duration::from_secs(30), rx.changed())
        .await
        .expect("no progress from RAUC within 30 s")
        .expect("the install ended without any progress");
    let progress_at_kill = rx.borrow().clone();
    let killed = Instant::now();
    tokio::task::block_in_place(|| rauc.stop_service());

    let result = tokio::time::timeout(Duration::from_secs(30), install)
        .await
        .expect("install still waiting 30 s after RAUC died")
        .unwrap();
    eprintln!(
        "install ended {:?} after RAUC was killed at {progress_at_kill:?}",
        killed.elapsed()
    );
    let e = result.unwrap_err();
    let RaucError::Unavailable { reason } = &e else {
        panic!("{e:?}")
    };
    assert!(reason.contains("left"), "{reason}");
    assert!(reason.contains(bundle.path_str()), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_install_while_one_runs_is_busy_and_the_first_completes() {
    let rauc = RaucSystem::start();
    let client = client(&rauc);
    let big = rauc.good_bundle(64 * MIB);
    let small = rauc.good_bundle(MIB);

    let monitor = rauc.monitor();
    let (tx1, mut rx1, recorder) = progress_recorder();
    let first = spawn_install(&client, &big.path, tx1);
    tokio::time::timeout(Duration::from_secs(30), rx1.changed())
        .await
        .expect("no progress from RAUC within 30 s")
        .expect("the first install ended without any progress");

    let (tx2, rx2) = watch::channel(InstallProgress::default());
    let second = client.install(&small.path, tx2).await;
    assert_eq!(second, Err(RaucError::Busy));
    // The rejected install forwarded none of the first one's progress.
    assert_eq!(*rx2.borrow(), InstallProgress::default());

    // RAUC 1.8 says Operation "idle" after rejecting the second call, while the first still
    // runs; the first install must not take that for its end.
    tokio::time::timeout(Duration::from_secs(60), first)
        .await
        .expect("first install did not finish within 60 s")
        .unwrap()
        .unwrap();
    let seen = recorder.await.unwrap();
    assert_eq!(seen.last().map(|p| p.percent), Some(100), "{seen:?}");
    assert_eq!(monitor.wait_completed(1, Duration::from_secs(5)), [0]);
    // The trap this test is about was really there: RAUC said "idle" before the first
    // install's Completed.
    let messages = monitor.messages();
    let idle = messages.iter().position(|m| {
        m["member"] == "PropertiesChanged" && m["payload"]["data"][1]["Operation"]["data"] == "idle"
    });
    let completed = messages.iter().position(|m| m["member"] == "Completed");
    eprintln!("Operation idle at message {idle:?}, Completed at {completed:?}");
    assert!(
        idle.is_some() && idle < completed,
        "{:?}",
        monitor.property_changes("Operation")
    );
    assert!(rauc.slot_holds("B", &big.image));
    assert!(!rauc.slot_holds("B", &small.image));
    assert_eq!(rauc.primary(), "B");
}
