//! WireGuard on the bridge side: the address pool and the gateway's identity.

pub mod gateway;
pub mod manager;
pub mod pool;
