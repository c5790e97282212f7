//! The MQTT side of the agent: the TLS identity for the broker and the offline queue.

pub mod errors;
pub mod queue;
pub mod tls;
