//! `nexa-agent`: the Nexa device agent.
//!
//! See ARCHITECTURE.md at the repository root for the map of modules, the enrollment flow and
//! the invariants of the certs directory.

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
pub mod hawkbit;
pub mod keys;
pub mod machine_uid;
pub mod mqtt;
pub mod password;
pub mod rauc;
pub mod renew;
pub mod runstate;
pub mod sdnotify;
pub mod secret;
pub mod status;
pub mod telemetry;
pub mod thingsboard;
pub mod trust;
pub mod tunnel;
pub mod verify;
