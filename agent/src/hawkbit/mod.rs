//! The agent's hawkBit DDI (Direct Device Integration) client: the device polls its
//! controller resource, reports configuration data, downloads and installs deployments and
//! answers cancellations, following the DDI contract (research notes on DDI).
//!
//! `engine` is the update loop; it drives `client` (DDI calls), `download` (resumable,
//! verified, into the spool), RAUC through `crate::rauc::Installer`, `reboot` (logind or
//! systemd) and `pending` (the installed update awaiting its reboot). `model`, `sleep`,
//! `settings`, `digest` and `status` are pure.

pub mod client;
pub mod digest;
pub mod download;
pub mod engine;
pub mod model;
pub mod pending;
pub mod reboot;
pub mod settings;
pub mod sleep;
pub mod status;
