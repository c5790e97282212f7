//! The device's WireGuard interface, made to match `/certs/wg0.conf` over netlink.
//!
//! [`spec`] turns the profile into an [`InterfaceSpec`] (resolving the gateway endpoint and
//! working out which allowed IPs need a route); [`up`] reconciles the kernel with it, so a
//! second run changes nothing and an edited profile is applied as a difference; [`down`]
//! removes the interface; [`show`] reports it.

pub mod profile;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use ipnet::IpNet;
use nexa_wg::{IfName, InterfaceSpec, InterfaceState, PeerSpec, Plan, WgError, WgLink, reconcile};

use crate::certs::CertsDir;
use profile::{Profile, ProfileError};

pub const DEFAULT_INTERFACE: &str = "wg0";

/// Why the tunnel could not be configured.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error("no WireGuard profile at {0}: enroll first with `nexa-agent enroll`")]
    NotEnrolled(PathBuf),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} {source}; re-enroll with `nexa-agent enroll --force` to rewrite it")]
    Profile { path: PathBuf, source: ProfileError },
    #[error(
        "cannot resolve the gateway endpoint {endpoint:?}: {reason}; check DNS and the network, then run `nexa-agent wg up` again"
    )]
    Endpoint { endpoint: String, reason: String },
    #[error("WireGuard interface {iface}: {source}")]
    Wg {
        iface: String,
        #[source]
        source: WgError,
    },
}

/// Reads the profile under `certs` and builds the interface it describes.
pub fn spec(certs: &CertsDir, name: &IfName) -> Result<InterfaceSpec, TunnelError> {
    let path = certs.wg_conf();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => zeroize::Zeroizing::new(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(TunnelError::NotEnrolled(path));
        }
        Err(source) => return Err(TunnelError::Read { path, source }),
    };
    let profile = profile::parse(&text).map_err(|source| TunnelError::Profile {
        path: path.clone(),
        source,
    })?;
    build(profile, name, resolve)
}

/// Resolves `host:port` to one socket address.
fn resolve(endpoint: &str) -> Result<SocketAddr, String> {
    endpoint
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or_else(|| "no addresses".to_owned())
}

fn build(
    profile: Profile,
    name: &IfName,
    resolve: impl Fn(&str) -> Result<SocketAddr, String>,
) -> Result<InterfaceSpec, TunnelError> {
    let connected: Vec<IpNet> = profile.addresses.iter().map(IpNet::trunc).collect();
    let mut peers = Vec::with_capacity(profile.peers.len());
    let mut endpoints = Vec::new();
    for peer in profile.peers {
        let endpoint = match &peer.endpoint {
            Some(ep) => Some(resolve(ep).map_err(|reason| TunnelError::Endpoint {
                endpoint: ep.clone(),
                reason,
            })?),
            None => None,
        };
        endpoints.extend(endpoint.map(|e| e.ip()));
        peers.push(PeerSpec {
            public_key: peer.public_key,
            endpoint,
            allowed_ips: peer.allowed_ips,
            persistent_keepalive: peer.persistent_keepalive,
        });
    }
    let mut routes: Vec<IpNet> = Vec::new();
    for net in peers
        .iter()
        .flat_map(|p| p.allowed_ips.iter())
        .map(IpNet::trunc)
    {
        if net.prefix_len() == 0 {
            // Full tunnel needs policy routing (as wg-quick does); not installed here.
            tracing::warn!(%net, "full-tunnel AllowedIPs are accepted for the peer but no default route is installed");
            continue;
        }
        if endpoints.iter().any(|ip| net.contains(ip)) {
            // A route into the tunnel for the tunnel's own endpoint would loop its packets.
            tracing::warn!(%net, "allowed IPs contain the gateway endpoint; no route installed for them");
            continue;
        }
        if !connected.iter().any(|c| c.contains(&net)) && !routes.contains(&net) {
            routes.push(net);
        }
    }
    Ok(InterfaceSpec {
        name: name.clone(),
        private_key: profile.private_key,
        listen_port: profile.listen_port,
        addresses: profile.addresses,
        peers,
        routes,
    })
}

fn wg_err(name: &IfName) -> impl FnOnce(WgError) -> TunnelError + '_ {
    move |source| TunnelError::Wg {
        iface: name.to_string(),
        source,
    }
}

/// Makes the interface match the profile; returns what had to change (empty: nothing).
pub fn up(link: &dyn WgLink, certs: &CertsDir, name: &IfName) -> Result<Plan, TunnelError> {
    let spec = spec(certs, name)?;
    reconcile(link, &spec).map_err(wg_err(name))
}

/// Removes the interface; false when it was not there.
pub fn down(link: &dyn WgLink, name: &IfName) -> Result<bool, TunnelError> {
    link.delete(name).map_err(wg_err(name))
}

/// The interface's current state; `None` when it does not exist.
pub fn state(link: &dyn WgLink, name: &IfName) -> Result<Option<InterfaceState>, TunnelError> {
    link.read(name).map_err(wg_err(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use nexa_proto::WireguardProfile;
    use nexa_proto::wireguard::render_wg_quick;
    use nexa_wg::MemoryLink;

    fn write_profile(dir: &std::path::Path, allowed: &[&str], endpoint: &str) -> CertsDir {
        let profile = WireguardProfile {
            address: "10.8.0.2/24".into(),
            server_public_key: STANDARD.encode([9u8; 32]),
            endpoint: endpoint.into(),
            allowed_ips: allowed.iter().map(|s| s.to_string()).collect(),
            persistent_keepalive: 25,
        };
        let text = render_wg_quick(&profile, Some(&STANDARD.encode([4u8; 32])));
        std::fs::write(dir.join("wg0.conf"), text).unwrap();
        CertsDir::new(dir)
    }

    #[test]
    fn routes_only_for_networks_outside_the_interface_prefix_and_never_for_the_endpoint() {
        let tmp = tempfile::tempdir().unwrap();
        let certs = write_profile(
            tmp.path(),
            &["10.8.0.0/24", "192.168.50.0/24", "0.0.0.0/0", "127.0.0.0/8"],
            "127.0.0.1:51820",
        );
        let s = spec(&certs, &IfName::parse("wg0").unwrap()).unwrap();
        assert_eq!(s.routes, vec!["192.168.50.0/24".parse::<IpNet>().unwrap()]);
        assert_eq!(
            s.peers[0].endpoint,
            Some("127.0.0.1:51820".parse().unwrap())
        );
        assert_eq!(s.listen_port, None);
    }

    #[test]
    fn up_twice_changes_nothing_and_an_edited_profile_is_a_diff() {
        let tmp = tempfile::tempdir().unwrap();
        let name = IfName::parse("wg0").unwrap();
        let link = MemoryLink::new();
        let certs = write_profile(tmp.path(), &["10.8.0.0/24"], "127.0.0.1:51820");
        let first = up(&link, &certs, &name).unwrap();
        assert!(first.create && first.set_up);
        let second = up(&link, &certs, &name).unwrap();
        assert!(second.is_empty(), "{second}");
        assert_eq!(link.calls().applies, 1);

        // New endpoint port and an extra network: one peer rewritten, one route added.
        let certs = write_profile(
            tmp.path(),
            &["10.8.0.0/24", "192.168.50.0/24"],
            "127.0.0.1:51821",
        );
        let third = up(&link, &certs, &name).unwrap();
        assert!(!third.create && third.private_key.is_none() && !third.set_up);
        assert_eq!(third.upsert_peers.len(), 1);
        assert_eq!(
            third.add_routes,
            vec!["192.168.50.0/24".parse::<IpNet>().unwrap()]
        );
        assert!(up(&link, &certs, &name).unwrap().is_empty());

        assert!(down(&link, &name).unwrap());
        assert!(!down(&link, &name).unwrap());
    }

    #[test]
    fn errors_say_what_to_do() {
        let tmp = tempfile::tempdir().unwrap();
        let name = IfName::parse("wg0").unwrap();
        let link = MemoryLink::new();
        let certs = CertsDir::new(tmp.path());
        let e = up(&link, &certs, &name).unwrap_err().to_string();
        assert!(e.contains("nexa-agent enroll"), "{e}");

        let certs = write_profile(tmp.path(), &["10.8.0.0/24"], "no-such-host.invalid:51820");
        let e = up(&link, &certs, &name).unwrap_err().to_string();
        assert!(
            e.contains("no-such-host.invalid") && e.contains("DNS"),
            "{e}"
        );

        let certs = write_profile(tmp.path(), &["10.8.0.0/24"], "127.0.0.1:51820");
        link.fail_with(Some(|| WgError::NoPermission { op: "create link" }));
        let e = up(&link, &certs, &name).unwrap_err().to_string();
        assert!(e.contains("CAP_NET_ADMIN") && e.contains("wg0"), "{e}");
        link.fail_with(Some(|| WgError::ModuleMissing));
        let e = up(&link, &certs, &name).unwrap_err().to_string();
        assert!(e.contains("modprobe wireguard"), "{e}");
    }
}
