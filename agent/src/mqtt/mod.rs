//! The MQTT side of the agent: the TLS identity for the broker, the session, the offline queue.

pub mod errors;
pub mod queue;
pub mod session;
pub mod tls;
