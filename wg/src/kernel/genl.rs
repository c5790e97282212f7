//! WireGuard's generic-netlink API: device keys, port and peers.
//!
//! This is the only file that uses `wireguard-control` (LGPL-2.1-or-later). It splits large
//! peer sets into as many messages as the kernel's netlink buffer needs and never sets
//! "replace peers", so a plan with one peer writes one peer.

use std::io;

use ipnet::IpNet;
use nexa_proto::WgPublicKey;
use wireguard_control::{Backend, Device, DeviceUpdate, InterfaceName, Key, PeerConfigBuilder};
use zeroize::Zeroize as _;

use crate::plan::Plan;
use crate::spec::{IfName, PeerSpec, PeerState};

/// What generic netlink reports about a device.
#[derive(Debug)]
pub(super) struct DeviceState {
    pub public_key: Option<WgPublicKey>,
    pub listen_port: u16,
    pub peers: Vec<PeerState>,
}

fn iface(name: &IfName) -> io::Result<InterfaceName> {
    name.as_str()
        .parse::<InterfaceName>()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
}

pub(super) fn read(name: &IfName) -> io::Result<DeviceState> {
    let mut device = Device::get(&iface(name)?, Backend::Kernel)?;
    // The kernel sends the private key too; it is not needed (the public key is compared).
    if let Some(key) = device.private_key.as_mut() {
        key.0.zeroize();
    }
    let peers = device
        .peers
        .into_iter()
        .map(|info| {
            let config = info.config;
            PeerState {
                public_key: WgPublicKey::from_bytes(config.public_key.0),
                endpoint: config.endpoint,
                allowed_ips: config
                    .allowed_ips
                    .iter()
                    .filter_map(|ip| IpNet::new(ip.address, ip.cidr).ok())
                    .collect(),
                persistent_keepalive: config.persistent_keepalive_interval.unwrap_or(0),
                last_handshake: info.stats.last_handshake_time,
                rx_bytes: info.stats.rx_bytes,
                tx_bytes: info.stats.tx_bytes,
            }
        })
        .collect();
    Ok(DeviceState {
        public_key: device.public_key.map(|k| WgPublicKey::from_bytes(k.0)),
        listen_port: device.listen_port.unwrap_or(0),
        peers,
    })
}

fn peer_config(peer: &PeerSpec) -> PeerConfigBuilder {
    let mut builder = PeerConfigBuilder::new(&key_of(&peer.public_key))
        .replace_allowed_ips()
        .set_persistent_keepalive_interval(peer.persistent_keepalive);
    if let Some(endpoint) = peer.endpoint {
        builder = builder.set_endpoint(endpoint);
    }
    for net in peer.normalized_allowed_ips() {
        builder = builder.add_allowed_ip(net.addr(), net.prefix_len());
    }
    builder
}

fn key_of(key: &WgPublicKey) -> Key {
    Key(*key.as_bytes())
}

/// Creates the link when absent and applies the WireGuard half of `plan`.
pub(super) fn apply(name: &IfName, plan: &Plan) -> io::Result<()> {
    let mut update = DeviceUpdate::new();
    if let Some(private_key) = &plan.private_key {
        update = update.set_private_key(Key(*private_key.as_bytes()));
    }
    if let Some(port) = plan.listen_port {
        update = update.set_listen_port(port);
    }
    for key in &plan.remove_peers {
        update = update.remove_peer_by_key(&key_of(key));
    }
    let peers: Vec<PeerConfigBuilder> = plan.upsert_peers.iter().map(peer_config).collect();
    update = update.add_peers(&peers);
    update.apply(&iface(name)?, Backend::Kernel)
}
