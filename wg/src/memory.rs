//! An in-memory [`WgLink`]: applies plans to a map of interfaces the way the kernel would, and
//! counts what it was asked to do. For tests of the logic above the OS boundary.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use crate::link::{WgError, WgLink};
use crate::plan::Plan;
use crate::spec::{IfName, InterfaceState, PeerState, normalize};

/// What a [`MemoryLink`] was asked to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Calls {
    /// Calls of `apply`, including those that failed.
    pub attempts: usize,
    /// Non-empty plans applied.
    pub applies: usize,
    /// Peers written (added or updated) over all plans.
    pub peers_written: usize,
    pub peers_removed: usize,
}

#[derive(Debug, Default)]
struct Inner {
    links: HashMap<IfName, InterfaceState>,
    calls: Calls,
    fail_with: Option<fn() -> WgError>,
}

/// Interfaces kept in memory.
#[derive(Debug, Default)]
pub struct MemoryLink {
    inner: Mutex<Inner>,
}

impl MemoryLink {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock only happens in a failing test; keep going.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state of one interface, as `read` returns it.
    pub fn state(&self, name: &IfName) -> Option<InterfaceState> {
        self.lock().links.get(name).cloned()
    }

    /// Changes an interface behind the manager's back (a human with `wg set`).
    pub fn tamper(&self, name: &IfName, f: impl FnOnce(&mut InterfaceState)) {
        if let Some(state) = self.lock().links.get_mut(name) {
            f(state);
        }
    }

    pub fn calls(&self) -> Calls {
        self.lock().calls.clone()
    }

    /// Every later call fails with what `make` returns (e.g. a missing module); `None` heals.
    pub fn fail_with(&self, make: Option<fn() -> WgError>) {
        self.lock().fail_with = make;
    }
}

impl WgLink for MemoryLink {
    fn read(&self, name: &IfName) -> Result<Option<InterfaceState>, WgError> {
        let inner = self.lock();
        if let Some(make) = inner.fail_with {
            return Err(make());
        }
        Ok(inner.links.get(name).cloned())
    }

    fn apply(&self, name: &IfName, plan: &Plan) -> Result<(), WgError> {
        let mut inner = self.lock();
        inner.calls.attempts += 1;
        if let Some(make) = inner.fail_with {
            return Err(make());
        }
        if plan.is_empty() {
            return Ok(());
        }
        inner.calls.applies += 1;
        inner.calls.peers_written += plan.upsert_peers.len();
        inner.calls.peers_removed += plan.remove_peers.len();
        if !plan.create && !inner.links.contains_key(name) {
            return Err(WgError::Netlink {
                op: "set device",
                iface: name.to_string(),
                source: std::io::Error::from_raw_os_error(libc::ENODEV),
            });
        }
        let state = inner
            .links
            .entry(name.clone())
            .or_insert_with(|| InterfaceState {
                listen_port: 40000,
                ..InterfaceState::default()
            });
        if let Some(key) = &plan.private_key {
            state.public_key = Some(key.public_key());
        }
        if let Some(port) = plan.listen_port {
            state.listen_port = port;
        }
        state
            .peers
            .retain(|p| !plan.remove_peers.contains(&p.public_key));
        for want in &plan.upsert_peers {
            let learned = state
                .peers
                .iter()
                .find(|p| p.public_key == want.public_key)
                .and_then(|p| p.endpoint);
            state.peers.retain(|p| p.public_key != want.public_key);
            state.peers.push(PeerState {
                public_key: want.public_key.clone(),
                endpoint: want.endpoint.or(learned),
                allowed_ips: want.normalized_allowed_ips(),
                persistent_keepalive: want.persistent_keepalive,
                last_handshake: None,
                rx_bytes: 0,
                tx_bytes: 0,
            });
        }
        state
            .addresses
            .retain(|a| !plan.remove_addresses.contains(a));
        state.addresses.extend(plan.add_addresses.iter().copied());
        if plan.set_up {
            state.up = true;
        }
        state.routes.retain(|r| !plan.remove_routes.contains(r));
        state.routes.extend(plan.add_routes.iter().copied());
        state.routes = normalize(&state.routes);
        Ok(())
    }

    fn delete(&self, name: &IfName) -> Result<bool, WgError> {
        let mut inner = self.lock();
        if let Some(make) = inner.fail_with {
            return Err(make());
        }
        Ok(inner.links.remove(name).is_some())
    }
}
