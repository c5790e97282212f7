//! Unit tests of the D-Bus client: error classification, slot parsing, and the paths that
//! must fail fast without a bus.

use super::*;

fn owned(v: Value<'_>) -> OwnedValue {
    OwnedValue::try_from(v).unwrap()
}

#[test]
fn slot_status_reads_rauc_keys_and_tolerates_missing_ones() {
    let mut fields = HashMap::new();
    fields.insert("bootname".to_owned(), owned(Value::from("B")));
    fields.insert("class".to_owned(), owned(Value::from("rootfs")));
    fields.insert("state".to_owned(), owned(Value::from("inactive")));
    fields.insert("boot-status".to_owned(), owned(Value::from("good")));
    fields.insert("device".to_owned(), owned(Value::from("/dev/mmcblk0p3")));
    fields.insert("size".to_owned(), owned(Value::from(8_u64 << 20)));
    assert_eq!(
        slot_status("rootfs.1".into(), &fields),
        SlotStatus {
            name: "rootfs.1".into(),
            bootname: Some("B".into()),
            class: Some("rootfs".into()),
            state: Some("inactive".into()),
            boot_status: Some("good".into()),
        }
    );

    let mut sparse = HashMap::new();
    sparse.insert("class".to_owned(), owned(Value::from("appfs")));
    // A value of the wrong type is treated as missing.
    sparse.insert("state".to_owned(), owned(Value::from(7_u32)));
    assert_eq!(
        slot_status("appfs.0".into(), &sparse),
        SlotStatus {
            name: "appfs.0".into(),
            class: Some("appfs".into()),
            ..SlotStatus::default()
        }
    );
}

#[test]
fn zbus_errors_are_classified() {
    let bus = Bus::Address("unix:path=/nowhere".into());
    let io = zbus::Error::InputOutput(
        std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused").into(),
    );
    assert!(matches!(
        map_zbus_error("GetPrimary", &bus, io),
        RaucError::Unavailable { reason } if reason.contains("unix:path=/nowhere")
    ));
    let timeout = zbus::Error::InputOutput(
        std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out").into(),
    );
    assert!(matches!(
        map_zbus_error("Mark", &bus, timeout),
        RaucError::Unavailable { reason } if reason.contains("did not answer in time")
    ));
    let fdo = zbus::Error::FDO(Box::new(zbus::fdo::Error::ServiceUnknown(
        "The name is not activatable".into(),
    )));
    assert!(matches!(
        map_zbus_error("GetPrimary", &bus, fdo),
        RaucError::Unavailable { reason } if reason.contains("not activatable")
    ));
    assert!(matches!(
        map_zbus_error("GetSlotStatus", &bus, zbus::Error::InvalidReply),
        RaucError::Protocol(_)
    ));
}

#[tokio::test]
async fn no_bus_is_unavailable_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let address = format!("unix:path={}", dir.path().join("no-bus.sock").display());
    let rauc = DbusRauc::at_address(&address);
    for e in [
        rauc.system_info().await.unwrap_err(),
        rauc.primary().await.unwrap_err(),
        rauc.mark_good_booted().await.unwrap_err(),
        rauc.slots().await.unwrap_err(),
    ] {
        let RaucError::Unavailable { reason } = &e else {
            panic!("{e:?}")
        };
        assert!(reason.contains("no-bus.sock"), "{reason}");
        assert!(reason.contains("systemctl status rauc"), "{reason}");
    }
    let bundle = dir.path().join("update.raucb");
    let (tx, _rx) = watch::channel(InstallProgress::default());
    assert!(matches!(
        rauc.install(&bundle, tx).await,
        Err(RaucError::Unavailable { .. })
    ));
    // A malformed address is a call-time error too, not a construction failure.
    let bad = DbusRauc::at_address("not an address");
    assert!(matches!(
        bad.primary().await,
        Err(RaucError::Unavailable { .. })
    ));
}

#[tokio::test]
async fn a_relative_path_is_refused_before_connecting() {
    // Nothing listens here: a refusal proves no connection was attempted.
    let rauc = DbusRauc::at_address("unix:path=/nonexistent/nexa-test-bus.sock");
    let (tx, rx) = watch::channel(InstallProgress::default());
    let e = rauc
        .install(Path::new("bundles/update.raucb"), tx)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, RaucError::Refused { message } if message.contains("relative")),
        "{e:?}"
    );
    assert_eq!(*rx.borrow(), InstallProgress::default());
}
