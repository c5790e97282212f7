//! The agent's hawkBit DDI (Direct Device Integration) client: the device polls its
//! controller resource, reports configuration data, downloads and installs deployments and
//! answers cancellations, following the DDI contract (research notes on DDI).
//!
//! `model` is the wire format, `sleep` the server's polling interval and `settings` the
//! `[hawkbit]` configuration; all three are pure.

pub mod client;
pub mod digest;
pub mod download;
pub mod model;
pub mod pending;
pub mod settings;
pub mod sleep;
