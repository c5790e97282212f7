//! What an interface should look like ([`InterfaceSpec`]) and what the kernel reports
//! ([`InterfaceState`]). Plain data: no I/O.

use std::fmt;
use std::net::SocketAddr;
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ipnet::IpNet;
use nexa_proto::WgPublicKey;
use zeroize::Zeroizing;

/// Why a value cannot be part of a spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error(
        "interface name {0:?} is not valid: use 1 to 15 characters, no '/', no spaces (e.g. wg0)"
    )]
    InterfaceName(String),
    #[error("WireGuard private key is not 32 bytes of standard base64 (as `wg genkey` prints)")]
    PrivateKey,
    #[error("peer {0} is listed twice; each public key may appear once")]
    DuplicatePeer(String),
    #[error(
        "allowed IP {net} is given to two peers ({first} and {second}); the kernel keeps only the last"
    )]
    SharedAllowedIp {
        net: String,
        first: String,
        second: String,
    },
}

/// A Linux interface name: 1–15 bytes, no `/`, no whitespace, not `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IfName(String);

impl IfName {
    pub fn parse(name: &str) -> Result<Self, SpecError> {
        let ok = !name.is_empty()
            && name.len() < 16
            && name != "."
            && name != ".."
            && name
                .bytes()
                .all(|b| b != b'/' && b != 0 && b != b':' && b.is_ascii_graphic());
        if ok {
            Ok(Self(name.to_owned()))
        } else {
            Err(SpecError::InterfaceName(name.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Curve25519 private key. Wiped on drop; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct PrivateKey(Zeroizing<[u8; 32]>);

impl PrivateKey {
    pub fn from_base64(s: &str) -> Result<Self, SpecError> {
        let bytes = Zeroizing::new(
            STANDARD
                .decode(s.trim())
                .map_err(|_| SpecError::PrivateKey)?,
        );
        let arr: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| SpecError::PrivateKey)?;
        Ok(Self(Zeroizing::new(arr)))
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// A fresh key, clamped as `wg genkey` does, so its base64 is byte-identical to wg's.
    pub fn generate() -> Self {
        use rand::RngCore as _;
        let mut secret = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(secret.as_mut());
        secret[0] &= 248;
        secret[31] = (secret[31] & 127) | 64;
        Self(secret)
    }

    /// Standard base64, as in a wg-quick `PrivateKey =` line.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(*self.0))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The matching public key.
    pub fn public_key(&self) -> WgPublicKey {
        let secret = x25519_dalek::StaticSecret::from(*self.0);
        WgPublicKey::from_bytes(x25519_dalek::PublicKey::from(&secret).to_bytes())
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey(<redacted>)")
    }
}

/// One peer as it should be configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSpec {
    pub public_key: WgPublicKey,
    /// `None`: the peer roams; whatever endpoint the kernel learned is left alone.
    pub endpoint: Option<SocketAddr>,
    pub allowed_ips: Vec<IpNet>,
    /// Seconds; 0 is off.
    pub persistent_keepalive: u16,
}

impl PeerSpec {
    /// Allowed IPs as the kernel stores them: host bits cleared, sorted, without duplicates.
    pub fn normalized_allowed_ips(&self) -> Vec<IpNet> {
        normalize(&self.allowed_ips)
    }
}

/// Networks with host bits cleared, sorted, without duplicates.
pub fn normalize(nets: &[IpNet]) -> Vec<IpNet> {
    let mut out: Vec<IpNet> = nets.iter().map(IpNet::trunc).collect();
    out.sort();
    out.dedup();
    out
}

/// A whole interface as it should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceSpec {
    pub name: IfName,
    pub private_key: PrivateKey,
    /// `None`: keep whatever port the kernel chose.
    pub listen_port: Option<u16>,
    /// Interface addresses with their prefix, e.g. `10.8.0.2/24`.
    pub addresses: Vec<IpNet>,
    pub peers: Vec<PeerSpec>,
    /// Extra routes through the interface, beyond the prefixes of its addresses.
    pub routes: Vec<IpNet>,
}

impl InterfaceSpec {
    /// A spec the kernel can hold stably: each peer once, each allowed IP with one peer.
    /// (Otherwise every pass would rewrite the peers in turn, never converging.)
    pub fn validate(&self) -> Result<(), SpecError> {
        use std::collections::HashMap;
        let mut keys = std::collections::HashSet::with_capacity(self.peers.len());
        let mut owners: HashMap<IpNet, &WgPublicKey> = HashMap::with_capacity(self.peers.len());
        for peer in &self.peers {
            if !keys.insert(&peer.public_key) {
                return Err(SpecError::DuplicatePeer(peer.public_key.to_string()));
            }
            for net in peer.normalized_allowed_ips() {
                if let Some(first) = owners.insert(net, &peer.public_key) {
                    return Err(SpecError::SharedAllowedIp {
                        net: net.to_string(),
                        first: first.to_string(),
                        second: peer.public_key.to_string(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// A peer as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerState {
    pub public_key: WgPublicKey,
    pub endpoint: Option<SocketAddr>,
    pub allowed_ips: Vec<IpNet>,
    pub persistent_keepalive: u16,
    pub last_handshake: Option<SystemTime>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// An existing WireGuard interface as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InterfaceState {
    /// Public key of the configured private key, if one is set.
    pub public_key: Option<WgPublicKey>,
    pub listen_port: u16,
    pub up: bool,
    pub addresses: Vec<IpNet>,
    /// Routes through the interface that this crate manages (protocol `static`, main table).
    pub routes: Vec<IpNet>,
    pub peers: Vec<PeerState>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_follow_the_kernel_rules() {
        for good in ["wg0", "nexa0", "a", "wg-site_1.x", "abcdefghijklmno"] {
            assert!(IfName::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "abcdefghijklmnop",
            "wg/0",
            "wg 0",
            "wg:0",
            "wg\t",
        ] {
            assert_eq!(
                IfName::parse(bad),
                Err(SpecError::InterfaceName(bad.into()))
            );
        }
    }

    #[test]
    fn private_key_round_trip_and_redaction() {
        let key = PrivateKey::from_base64(&STANDARD.encode([5u8; 32])).unwrap();
        assert_eq!(key.as_bytes(), &[5u8; 32]);
        assert_eq!(format!("{key:?}"), "PrivateKey(<redacted>)");
        assert_eq!(PrivateKey::from_base64("short"), Err(SpecError::PrivateKey));
        assert_eq!(
            PrivateKey::from_base64(&STANDARD.encode([1u8; 31])),
            Err(SpecError::PrivateKey)
        );
        // The public key is what x25519 derives, as `wg pubkey` does.
        let secret = x25519_dalek::StaticSecret::from([5u8; 32]);
        let expected = x25519_dalek::PublicKey::from(&secret).to_bytes();
        assert_eq!(key.public_key(), WgPublicKey::from_bytes(expected));
        assert_eq!(
            PrivateKey::from_base64(&key.to_base64()).unwrap(),
            key,
            "base64 round trip"
        );
        let fresh = PrivateKey::generate();
        assert_eq!(fresh.as_bytes()[0] & 7, 0, "clamped low bits");
        assert_eq!(fresh.as_bytes()[31] & 0xc0, 0x40, "clamped high bits");
        assert_ne!(fresh, PrivateKey::generate());
    }

    #[test]
    fn a_spec_with_a_peer_twice_or_a_shared_allowed_ip_is_refused() {
        let peer = |k: u8, ip: &str| PeerSpec {
            public_key: WgPublicKey::from_bytes([k; 32]),
            endpoint: None,
            allowed_ips: vec![ip.parse().unwrap()],
            persistent_keepalive: 0,
        };
        let mut spec = InterfaceSpec {
            name: IfName::parse("wg0").unwrap(),
            private_key: PrivateKey::from_bytes([1; 32]),
            listen_port: None,
            addresses: vec![],
            peers: vec![peer(1, "10.0.0.2/32"), peer(2, "10.0.0.3/32")],
            routes: vec![],
        };
        assert_eq!(spec.validate(), Ok(()));
        spec.peers.push(peer(1, "10.0.0.4/32"));
        assert!(matches!(spec.validate(), Err(SpecError::DuplicatePeer(_))));
        spec.peers.pop();
        spec.peers.push(peer(3, "10.0.0.3/32"));
        assert!(matches!(
            spec.validate(),
            Err(SpecError::SharedAllowedIp { .. })
        ));
    }

    #[test]
    fn allowed_ips_normalize_like_the_kernel() {
        let peer = PeerSpec {
            public_key: WgPublicKey::from_bytes([1; 32]),
            endpoint: None,
            allowed_ips: vec![
                "10.8.0.5/24".parse().unwrap(),
                "10.8.0.0/24".parse().unwrap(),
                "192.168.1.7/32".parse().unwrap(),
            ],
            persistent_keepalive: 0,
        };
        assert_eq!(
            peer.normalized_allowed_ips(),
            vec![
                "10.8.0.0/24".parse::<IpNet>().unwrap(),
                "192.168.1.7/32".parse().unwrap()
            ]
        );
    }
}
