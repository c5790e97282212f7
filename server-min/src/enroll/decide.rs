//! What an enrollment request is, given what the bridge knows: a pure function, so every case
//! of the authorization model is one unit test.
//!
//! Inputs are the device row of the requested id, the live device already holding the same
//! `machine_uid` under another id, the pending enrollment of these exact keys, and what the
//! request proved: a site's enrollment key, a user's access token, or nothing.

use crate::db::devices::{self, DeviceRow};
use crate::db::pending::{self, PendingRow};

/// Who, besides the device's own keys, authorized a re-enrollment with new keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReenrollBy {
    /// An operator's one-time window (`device allow-reenroll`).
    Window,
    /// A field technician (or admin) logged in; the actor as audited.
    User(String),
    /// An administrator approved the pending enrollment with this id.
    Approved(String),
    /// The site key, for the same machine after it was offline longer than the collision
    /// window (re-flashed, keys lost): same id and address.
    SameMachine,
}

/// The decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// First certificate. `register`: the device row is created now (site key, unknown id).
    First {
        register: bool,
    },
    /// The same keys again.
    Repeat,
    /// New keys for an enrolled device.
    Reenroll(ReenrollBy),
    /// Held by the collision gate; `existing` is the pending row if there is one already.
    Hold {
        existing: Option<String>,
        reason: String,
    },
    Refuse(Refusal),
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NotRegistered,
    Revoked,
    Decommissioned,
    AlreadyEnrolled,
    /// This machine is enrolled as another device id.
    MachineKnownAs(String),
    /// An administrator rejected the pending enrollment of these keys.
    Rejected(String),
}

/// What the request proved beyond its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Proof<'a> {
    /// A valid site enrollment key was presented.
    pub site_key: bool,
    /// A user allowed to re-enroll presented a valid access token (the audit actor).
    pub user: Option<&'a str>,
}

/// Everything `decide` looks at.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub device: Option<&'a DeviceRow>,
    /// Another live (not revoked or decommissioned) device with the request's machine_uid.
    pub machine_owner: Option<&'a str>,
    pub pending: Option<&'a PendingRow>,
    pub spki_sha256: &'a str,
    pub wg_key: &'a str,
    pub machine_uid: Option<&'a str>,
    pub hostname: Option<&'a str>,
    pub proof: Proof<'a>,
    pub now: i64,
    /// Seconds within which a device counts as recently online.
    pub collision_window: i64,
}

pub fn decide(f: &Facts<'_>) -> Decision {
    let Some(device) = f.device else {
        if !f.proof.site_key {
            return Decision::Refuse(Refusal::NotRegistered);
        }
        if let Some(other) = f.machine_owner {
            return Decision::Refuse(Refusal::MachineKnownAs(other.to_owned()));
        }
        return Decision::First { register: true };
    };
    if device.state == devices::STATE_REVOKED {
        return Decision::Refuse(Refusal::Revoked);
    }
    if device.is_decommissioned() {
        return Decision::Refuse(Refusal::Decommissioned);
    }
    if device.state != devices::STATE_ENROLLED {
        if f.proof.site_key
            && let Some(other) = f.machine_owner
        {
            return Decision::Refuse(Refusal::MachineKnownAs(other.to_owned()));
        }
        return Decision::First { register: false };
    }
    let same_keys = device.ec_spki_sha256.as_deref() == Some(f.spki_sha256)
        && device.wg_public_key.as_deref() == Some(f.wg_key);
    if same_keys {
        return Decision::Repeat;
    }
    if let Some(actor) = f.proof.user {
        return Decision::Reenroll(ReenrollBy::User(actor.to_owned()));
    }
    if device.reenroll_until.is_some_and(|until| until > f.now) {
        return Decision::Reenroll(ReenrollBy::Window);
    }
    if !f.proof.site_key {
        return Decision::Refuse(Refusal::AlreadyEnrolled);
    }
    let held = match f.pending {
        Some(p) if p.state == pending::STATE_APPROVED => {
            return Decision::Reenroll(ReenrollBy::Approved(p.id.clone()));
        }
        Some(p) if p.state == pending::STATE_REJECTED => {
            return Decision::Refuse(Refusal::Rejected(p.id.clone()));
        }
        Some(p) if p.state == pending::STATE_PENDING => Some(p.id.clone()),
        // Completed: these keys were the device's once and were replaced since; judged anew.
        _ => None,
    };
    if let Some(existing) = held {
        return Decision::Hold {
            existing: Some(existing),
            reason: String::new(),
        };
    }
    let same_machine = f.machine_uid.is_some() && device.machine_uid.as_deref() == f.machine_uid;
    if !same_machine {
        // Another machine claiming an enrolled id: the site key does not make it this device.
        return Decision::Refuse(Refusal::AlreadyEnrolled);
    }
    let recently_online = device
        .last_seen_at
        .is_some_and(|seen| f.now - seen < f.collision_window);
    if !recently_online {
        return Decision::Reenroll(ReenrollBy::SameMachine);
    }
    let hostname_differs = f.hostname.is_some() && device.hostname.as_deref() != f.hostname;
    let reason = if hostname_differs {
        format!(
            "device {} (same machine_uid) was online {} s ago with other keys and hostname {:?}; \
             this request has hostname {:?}",
            device.id,
            f.now - device.last_seen_at.unwrap_or(f.now),
            device.hostname.as_deref().unwrap_or(""),
            f.hostname.unwrap_or("")
        )
    } else {
        format!(
            "device {} (same machine_uid) was online {} s ago with other keys",
            device.id,
            f.now - device.last_seen_at.unwrap_or(f.now)
        )
    };
    Decision::Hold {
        existing: None,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(state: &str) -> DeviceRow {
        DeviceRow {
            id: "d1".into(),
            state: state.into(),
            note: None,
            created_at: 0,
            updated_at: 0,
            machine_uid: Some("m1".into()),
            hostname: Some("h1".into()),
            ec_spki_sha256: Some("k1".into()),
            wg_public_key: Some("w1".into()),
            wg_host: Some(2),
            profile_revision: 1,
            cert_serial: Some("s".into()),
            cert_not_after: None,
            enrolled_at: Some(0),
            reenroll_until: None,
            generation: 1,
            revoked_at: None,
            hawkbit_target_at: None,
            decommissioned_at: None,
            tenant: "default".into(),
            site_id: None,
            last_seen_at: Some(1_000),
        }
    }

    fn pending_row(state: &str) -> PendingRow {
        PendingRow {
            id: "p1".into(),
            device_id: "d1".into(),
            site_id: None,
            machine_uid: Some("m1".into()),
            hostname: Some("h1".into()),
            ec_spki_sha256: "k2".into(),
            wg_public_key: "w2".into(),
            source: None,
            reason: "r".into(),
            state: state.into(),
            created_at: 0,
            last_seen_at: 0,
            decided_by: None,
            decided_at: None,
            completed_at: None,
        }
    }

    const SITE: Proof<'static> = Proof {
        site_key: true,
        user: None,
    };

    fn facts<'a>(device: Option<&'a DeviceRow>, proof: Proof<'a>) -> Facts<'a> {
        Facts {
            device,
            machine_owner: None,
            pending: None,
            spki_sha256: "k2",
            wg_key: "w2",
            machine_uid: Some("m1"),
            hostname: Some("h1"),
            proof,
            now: 1_100,
            collision_window: 500,
        }
    }

    #[test]
    fn unknown_ids_need_a_site_key_and_a_free_machine() {
        assert_eq!(
            decide(&facts(None, Proof::default())),
            Decision::Refuse(Refusal::NotRegistered)
        );
        assert_eq!(
            decide(&facts(None, SITE)),
            Decision::First { register: true }
        );
        let f = Facts {
            machine_owner: Some("d9"),
            ..facts(None, SITE)
        };
        assert_eq!(
            decide(&f),
            Decision::Refuse(Refusal::MachineKnownAs("d9".into()))
        );
    }

    #[test]
    fn registered_devices_enroll_with_or_without_a_site_key() {
        let d = device(devices::STATE_REGISTERED);
        assert_eq!(
            decide(&facts(Some(&d), Proof::default())),
            Decision::First { register: false }
        );
        assert_eq!(
            decide(&facts(Some(&d), SITE)),
            Decision::First { register: false }
        );
        let f = Facts {
            machine_owner: Some("d9"),
            ..facts(Some(&d), SITE)
        };
        assert_eq!(
            decide(&f),
            Decision::Refuse(Refusal::MachineKnownAs("d9".into()))
        );
    }

    #[test]
    fn revoked_and_decommissioned_stay_refused_whatever_is_proved() {
        let user = Proof {
            site_key: true,
            user: Some("technician:bob"),
        };
        let r = device(devices::STATE_REVOKED);
        assert_eq!(
            decide(&facts(Some(&r), user)),
            Decision::Refuse(Refusal::Revoked)
        );
        let d = device(devices::STATE_DECOMMISSIONED);
        assert_eq!(
            decide(&facts(Some(&d), user)),
            Decision::Refuse(Refusal::Decommissioned)
        );
    }

    #[test]
    fn same_keys_repeat_even_with_another_hostname() {
        let d = device(devices::STATE_ENROLLED);
        let f = Facts {
            spki_sha256: "k1",
            wg_key: "w1",
            hostname: Some("renamed"),
            ..facts(Some(&d), SITE)
        };
        assert_eq!(decide(&f), Decision::Repeat);
    }

    #[test]
    fn new_keys_need_an_authority() {
        let d = device(devices::STATE_ENROLLED);
        assert_eq!(
            decide(&facts(Some(&d), Proof::default())),
            Decision::Refuse(Refusal::AlreadyEnrolled)
        );
        let tech = Proof {
            site_key: false,
            user: Some("technician:bob"),
        };
        assert_eq!(
            decide(&facts(Some(&d), tech)),
            Decision::Reenroll(ReenrollBy::User("technician:bob".into()))
        );
        let mut open = device(devices::STATE_ENROLLED);
        open.reenroll_until = Some(2_000);
        assert_eq!(
            decide(&facts(Some(&open), Proof::default())),
            Decision::Reenroll(ReenrollBy::Window)
        );
    }

    #[test]
    fn the_collision_gate_holds_a_recently_online_machine() {
        let d = device(devices::STATE_ENROLLED);
        let Decision::Hold { existing, reason } = decide(&facts(Some(&d), SITE)) else {
            panic!("held")
        };
        assert_eq!(existing, None);
        assert!(reason.contains("d1"), "{reason}");
        let renamed = Facts {
            hostname: Some("h2"),
            ..facts(Some(&d), SITE)
        };
        let Decision::Hold { reason, .. } = decide(&renamed) else {
            panic!("held")
        };
        assert!(reason.contains("h2"), "{reason}");
        // Offline longer than the window: the same machine comes back (re-flashed).
        let f = Facts {
            now: 1_600,
            ..facts(Some(&d), SITE)
        };
        assert_eq!(decide(&f), Decision::Reenroll(ReenrollBy::SameMachine));
        // Another machine claiming the id gets nothing, online or not.
        let other = Facts {
            machine_uid: Some("m2"),
            now: 1_600,
            ..facts(Some(&d), SITE)
        };
        assert_eq!(decide(&other), Decision::Refuse(Refusal::AlreadyEnrolled));
        let none = Facts {
            machine_uid: None,
            ..facts(Some(&d), SITE)
        };
        assert_eq!(decide(&none), Decision::Refuse(Refusal::AlreadyEnrolled));
    }

    #[test]
    fn pending_enrollments_follow_the_administrators_decision() {
        let d = device(devices::STATE_ENROLLED);
        for (state, want) in [
            (
                pending::STATE_PENDING,
                Decision::Hold {
                    existing: Some("p1".into()),
                    reason: String::new(),
                },
            ),
            (
                pending::STATE_APPROVED,
                Decision::Reenroll(ReenrollBy::Approved("p1".into())),
            ),
            (
                pending::STATE_REJECTED,
                Decision::Refuse(Refusal::Rejected("p1".into())),
            ),
        ] {
            let p = pending_row(state);
            let f = Facts {
                pending: Some(&p),
                ..facts(Some(&d), SITE)
            };
            assert_eq!(decide(&f), want, "{state}");
        }
        let p = pending_row(pending::STATE_COMPLETED);
        let f = Facts {
            pending: Some(&p),
            ..facts(Some(&d), SITE)
        };
        assert!(matches!(decide(&f), Decision::Hold { existing: None, .. }));
    }
}
