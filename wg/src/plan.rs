//! The difference between a spec and the kernel's state, as the list of changes that closes
//! it. Pure: [`diff`] decides, a [`crate::WgLink`] carries the plan out.

use std::collections::HashMap;
use std::fmt;

use ipnet::IpNet;
use nexa_proto::WgPublicKey;

use crate::spec::{InterfaceSpec, InterfaceState, PeerSpec, PeerState, PrivateKey, normalize};

/// Changes to one interface. Applying an empty plan does nothing at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Create the link (it does not exist).
    pub create: bool,
    pub private_key: Option<PrivateKey>,
    pub listen_port: Option<u16>,
    /// Peers to add or reconfigure; each replaces that peer's allowed IPs.
    pub upsert_peers: Vec<PeerSpec>,
    pub remove_peers: Vec<WgPublicKey>,
    pub add_addresses: Vec<IpNet>,
    pub remove_addresses: Vec<IpNet>,
    /// Bring the link up.
    pub set_up: bool,
    pub add_routes: Vec<IpNet>,
    pub remove_routes: Vec<IpNet>,
}

impl Plan {
    /// Only peer changes: what one enrollment or revocation needs, without reading the rest.
    pub fn peers(upsert: Vec<PeerSpec>, remove: Vec<WgPublicKey>) -> Self {
        Self {
            upsert_peers: upsert,
            remove_peers: remove,
            ..Self::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        !self.create
            && self.private_key.is_none()
            && self.listen_port.is_none()
            && self.upsert_peers.is_empty()
            && self.remove_peers.is_empty()
            && self.add_addresses.is_empty()
            && self.remove_addresses.is_empty()
            && !self.set_up
            && self.add_routes.is_empty()
            && self.remove_routes.is_empty()
    }

    /// Whether the plan touches WireGuard settings (generic netlink) at all.
    pub fn touches_device(&self) -> bool {
        self.create
            || self.private_key.is_some()
            || self.listen_port.is_some()
            || !self.upsert_peers.is_empty()
            || !self.remove_peers.is_empty()
    }
}

/// A one-line account of a plan for logs: never contains key material.
impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("no changes");
        }
        let mut parts: Vec<String> = Vec::new();
        if self.create {
            parts.push("create link".into());
        }
        if self.private_key.is_some() {
            parts.push("set private key".into());
        }
        if let Some(port) = self.listen_port {
            parts.push(format!("listen port {port}"));
        }
        let counts = [
            (self.upsert_peers.len(), "peer(s) added or updated"),
            (self.remove_peers.len(), "peer(s) removed"),
            (self.add_addresses.len(), "address(es) added"),
            (self.remove_addresses.len(), "address(es) removed"),
            (self.add_routes.len(), "route(s) added"),
            (self.remove_routes.len(), "route(s) removed"),
        ];
        for (n, what) in counts {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        if self.set_up {
            parts.push("link up".into());
        }
        f.write_str(&parts.join(", "))
    }
}

/// The changes that make `observed` (None: the link does not exist) match `desired`.
pub fn diff(desired: &InterfaceSpec, observed: Option<&InterfaceState>) -> Plan {
    let empty = InterfaceState::default();
    let state = observed.unwrap_or(&empty);
    let mut plan = Plan {
        create: observed.is_none(),
        ..Plan::default()
    };

    if state.public_key.as_ref() != Some(&desired.private_key.public_key()) {
        plan.private_key = Some(desired.private_key.clone());
    }
    if let Some(port) = desired.listen_port
        && port != state.listen_port
    {
        plan.listen_port = Some(port);
    }

    let current: HashMap<&WgPublicKey, &PeerState> =
        state.peers.iter().map(|p| (&p.public_key, p)).collect();
    for peer in &desired.peers {
        match current.get(&peer.public_key) {
            Some(have) if peer_matches(peer, have) => {}
            _ => plan.upsert_peers.push(peer.clone()),
        }
    }
    let wanted: HashMap<&WgPublicKey, ()> =
        desired.peers.iter().map(|p| (&p.public_key, ())).collect();
    plan.remove_peers = state
        .peers
        .iter()
        .filter(|p| !wanted.contains_key(&p.public_key))
        .map(|p| p.public_key.clone())
        .collect();

    (plan.add_addresses, plan.remove_addresses) = set_diff(&desired.addresses, &state.addresses);
    plan.set_up = !state.up;
    (plan.add_routes, plan.remove_routes) =
        set_diff(&normalize(&desired.routes), &normalize(&state.routes));
    plan
}

fn peer_matches(want: &PeerSpec, have: &PeerState) -> bool {
    let endpoint_ok = match want.endpoint {
        None => true,
        Some(ep) => have.endpoint == Some(ep),
    };
    endpoint_ok
        && want.persistent_keepalive == have.persistent_keepalive
        && want.normalized_allowed_ips() == normalize(&have.allowed_ips)
}

/// (in `want` but not `have`, in `have` but not `want`), order kept.
fn set_diff(want: &[IpNet], have: &[IpNet]) -> (Vec<IpNet>, Vec<IpNet>) {
    let add = want.iter().filter(|n| !have.contains(n)).copied().collect();
    let remove = have.iter().filter(|n| !want.contains(n)).copied().collect();
    (add, remove)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> WgPublicKey {
        WgPublicKey::from_bytes([b; 32])
    }

    fn peer(b: u8, ip: &str) -> PeerSpec {
        PeerSpec {
            public_key: key(b),
            endpoint: None,
            allowed_ips: vec![ip.parse().unwrap()],
            persistent_keepalive: 0,
        }
    }

    fn spec() -> InterfaceSpec {
        InterfaceSpec {
            name: crate::IfName::parse("wg0").unwrap(),
            private_key: PrivateKey::from_bytes([3; 32]),
            listen_port: Some(51820),
            addresses: vec!["10.8.0.1/24".parse().unwrap()],
            peers: vec![peer(1, "10.8.0.2/32"), peer(2, "10.8.0.3/32")],
            routes: vec![],
        }
    }

    fn state_of(spec: &InterfaceSpec) -> InterfaceState {
        InterfaceState {
            public_key: Some(spec.private_key.public_key()),
            listen_port: spec.listen_port.unwrap_or(40000),
            up: true,
            addresses: spec.addresses.clone(),
            routes: spec.routes.clone(),
            peers: spec
                .peers
                .iter()
                .map(|p| PeerState {
                    public_key: p.public_key.clone(),
                    endpoint: p.endpoint,
                    allowed_ips: p.normalized_allowed_ips(),
                    persistent_keepalive: p.persistent_keepalive,
                    last_handshake: None,
                    rx_bytes: 0,
                    tx_bytes: 0,
                })
                .collect(),
        }
    }

    #[test]
    fn a_missing_link_gets_everything() {
        let s = spec();
        let plan = diff(&s, None);
        assert!(plan.create && plan.set_up);
        assert_eq!(plan.private_key.as_ref(), Some(&s.private_key));
        assert_eq!(plan.listen_port, Some(51820));
        assert_eq!(plan.upsert_peers, s.peers);
        assert_eq!(plan.add_addresses, s.addresses);
        assert!(plan.remove_peers.is_empty());
    }

    #[test]
    fn a_matching_link_needs_nothing() {
        let s = spec();
        let plan = diff(&s, Some(&state_of(&s)));
        assert!(plan.is_empty(), "{plan}");
        assert_eq!(plan.to_string(), "no changes");
    }

    #[test]
    fn only_the_changed_peer_is_written() {
        let s = spec();
        let mut st = state_of(&s);
        st.peers[1].allowed_ips = vec!["10.8.0.99/32".parse().unwrap()];
        st.peers.push(PeerState {
            public_key: key(9),
            ..st.peers[0].clone()
        });
        let plan = diff(&s, Some(&st));
        assert_eq!(plan.upsert_peers, vec![s.peers[1].clone()]);
        assert_eq!(plan.remove_peers, vec![key(9)]);
        assert!(!plan.create && plan.private_key.is_none() && !plan.set_up);
    }

    #[test]
    fn a_learned_endpoint_is_kept_for_roaming_peers_but_a_configured_one_is_enforced() {
        let mut s = spec();
        let mut st = state_of(&s);
        st.peers[0].endpoint = Some("198.51.100.7:40001".parse().unwrap());
        assert!(diff(&s, Some(&st)).is_empty());
        s.peers[0].endpoint = Some("203.0.113.1:51820".parse().unwrap());
        assert_eq!(diff(&s, Some(&st)).upsert_peers, vec![s.peers[0].clone()]);
    }

    #[test]
    fn key_port_address_route_and_link_state_drift_are_each_repaired() {
        let mut s = spec();
        s.routes = vec!["192.168.50.0/24".parse().unwrap()];
        let mut st = state_of(&s);
        st.public_key = Some(key(7));
        st.listen_port = 1234;
        st.up = false;
        st.addresses = vec!["10.9.0.1/24".parse().unwrap()];
        st.routes = vec!["172.16.0.0/12".parse().unwrap()];
        let plan = diff(&s, Some(&st));
        assert!(plan.private_key.is_some() && plan.set_up);
        assert_eq!(plan.listen_port, Some(51820));
        assert_eq!(plan.add_addresses, s.addresses);
        assert_eq!(plan.remove_addresses, st.addresses);
        assert_eq!(plan.add_routes, s.routes);
        assert_eq!(plan.remove_routes, st.routes);
        assert!(plan.upsert_peers.is_empty() && plan.remove_peers.is_empty());
    }

    #[test]
    fn no_listen_port_means_keep_the_kernels() {
        let mut s = spec();
        s.listen_port = None;
        let st = state_of(&s);
        assert!(diff(&s, Some(&st)).is_empty());
    }

    #[test]
    fn display_counts_without_keys() {
        let plan = diff(&spec(), None);
        let text = plan.to_string();
        assert_eq!(
            text,
            "create link, set private key, listen port 51820, 2 peer(s) added or updated, \
             1 address(es) added, link up"
        );
    }
}
