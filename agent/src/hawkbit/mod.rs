//! The agent's hawkBit DDI (Direct Device Integration) client: the device polls its
//! controller resource, reports configuration data, downloads and installs deployments and
//! answers cancellations, following the DDI contract (research notes on DDI).
//!
//! `engine` is the update loop; it drives `client` (DDI calls), `download` (resumable,
//! verified, into the spool), RAUC through `crate::rauc::Installer`, `reboot` (logind or
//! systemd) and `pending` (the installed update awaiting its reboot). `model`, `sleep`,
//! `settings`, `digest` and `status` are pure.
//!
//! Only `config` (the `[hawkbit]` table, the bridge's announcement) and `status` (the
//! engine's state in `agent-state.json`) are part of every build: they are formats on disk.
//! Everything else is the `ota` feature.

pub mod config;
pub mod status;

#[cfg(feature = "ota")]
pub mod client;
#[cfg(feature = "ota")]
pub mod digest;
#[cfg(feature = "ota")]
pub mod download;
#[cfg(feature = "ota")]
pub mod engine;
#[cfg(feature = "ota")]
pub mod model;
#[cfg(feature = "ota")]
pub mod pending;
#[cfg(feature = "ota")]
pub mod reboot;
#[cfg(feature = "ota")]
pub mod settings;
#[cfg(feature = "ota")]
pub mod sleep;
