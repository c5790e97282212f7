//! Kernel WireGuard interfaces, made to match a spec over netlink.
//!
//! [`InterfaceSpec`] says what an interface should be; [`diff`] turns it and the kernel's
//! [`InterfaceState`] into a [`Plan`]; a [`WgLink`] reads state and applies plans.
//! [`reconcile`] is the three in a row. Both the device agent (one peer: the gateway) and the
//! bridge (one peer per enrolled device) use it.
//!
//! Licensing: the kernel backend's generic-netlink half uses `wireguard-control`
//! (LGPL-2.1-or-later), confined to `kernel/genl.rs`. Everything else here is Apache-2.0.

pub mod kernel;
pub mod link;
pub mod memory;
pub mod plan;
pub mod show;
pub mod spec;

pub use kernel::KernelLink;
pub use link::{WgError, WgLink, reconcile};
pub use memory::MemoryLink;
pub use plan::{Plan, diff};
pub use spec::{IfName, InterfaceSpec, InterfaceState, PeerSpec, PeerState, PrivateKey, SpecError};
