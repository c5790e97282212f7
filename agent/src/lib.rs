//! `nexa-agent`: the Nexa device agent.
//!
//! See ARCHITECTURE.md at the repository root for the map of modules, the enrollment flow and
//! the invariants of the certs directory.
//!
//! Cargo features (both on by default; [`features`] lists those compiled in):
//! - `mqtt`: the ThingsBoard session of `run` (`mqtt`, `thingsboard`, `telemetry`, the MQTT
//!   proof of a renewed certificate);
//! - `ota`: hawkBit updates installed by RAUC over D-Bus (`hawkbit`'s engine, `rauc`).
//!
//! Enrollment, the WireGuard tunnel, renewal and `status` are in every build.

pub mod atomic;
pub mod auth;
pub mod backoff;
pub mod bridge;
pub mod certs;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod device_id;
pub mod enroll;
pub mod error;
pub mod features;
pub mod hawkbit;
pub mod identity;
pub mod keys;
pub mod machine_uid;
#[cfg(feature = "mqtt")]
pub mod mqtt;
pub mod password;
#[cfg(feature = "ota")]
pub mod rauc;
pub mod renew;
pub mod runstate;
pub mod sdnotify;
pub mod secret;
pub mod status;
#[cfg(feature = "mqtt")]
pub mod telemetry;
#[cfg(feature = "mqtt")]
pub mod thingsboard;
pub mod trust;
pub mod tunnel;
pub mod verify;
