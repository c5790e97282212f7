//! Reads the wg-quick file the agent wrote under `/certs` (`wg0.conf`) back into values.
//!
//! Only the keys the bridge's profile uses are accepted; anything else (DNS, PostUp, …) is an
//! error naming the line, because silently ignoring it would leave the device different from
//! what the file says.

use ipnet::IpNet;
use nexa_proto::WgPublicKey;
use nexa_wg::PrivateKey;

/// The `[Peer]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerProfile {
    pub public_key: WgPublicKey,
    /// `host:port` as written; resolved when the interface is configured.
    pub endpoint: Option<String>,
    pub allowed_ips: Vec<IpNet>,
    pub persistent_keepalive: u16,
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub private_key: PrivateKey,
    pub addresses: Vec<IpNet>,
    pub listen_port: Option<u16>,
    pub peers: Vec<PeerProfile>,
}

/// A problem at a line of the file (1-based; 0 for the file as a whole).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ProfileError {
    pub line: usize,
    pub message: String,
}

fn err(line: usize, message: impl Into<String>) -> ProfileError {
    ProfileError {
        line,
        message: message.into(),
    }
}

#[derive(Default)]
struct PeerDraft {
    line: usize,
    public_key: Option<WgPublicKey>,
    endpoint: Option<String>,
    allowed_ips: Vec<IpNet>,
    persistent_keepalive: u16,
}

/// The key's first word only (`PrivateKey: abc…=` must not put the key into a message), and
/// only if it looks like a key name at all (a bare base64 line does not).
fn key_name(raw: &str) -> &str {
    let word = raw
        .split(|c: char| c.is_whitespace() || c == ':')
        .next()
        .unwrap_or("");
    if !word.is_empty() && word.len() <= 32 && word.bytes().all(|b| b.is_ascii_alphabetic()) {
        word
    } else {
        "(not a key name)"
    }
}

fn list<T>(line: usize, key: &str, value: &str) -> Result<Vec<T>, ProfileError>
where
    T: std::str::FromStr,
{
    value
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse::<T>()
                .map_err(|_| err(line, format!("{key} value {v:?} is not an address/prefix")))
        })
        .collect()
}

pub fn parse(text: &str) -> Result<Profile, ProfileError> {
    enum Section {
        None,
        Interface,
        Peer,
    }
    let mut section = Section::None;
    let mut private_key = None;
    let mut addresses = Vec::new();
    let mut listen_port = None;
    let mut peers: Vec<PeerDraft> = Vec::new();
    let mut seen_interface = false;

    for (idx, raw) in text.lines().enumerate() {
        let n = idx + 1;
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if line.eq_ignore_ascii_case("[Interface]") {
            if seen_interface {
                return Err(err(n, "a second [Interface] section"));
            }
            seen_interface = true;
            section = Section::Interface;
            continue;
        }
        if line.eq_ignore_ascii_case("[Peer]") {
            peers.push(PeerDraft {
                line: n,
                ..PeerDraft::default()
            });
            section = Section::Peer;
            continue;
        }
        // Messages never quote the line: it may hold the private key.
        let (key, value) = line
            .split_once('=')
            .map(|(k, v)| (key_name(k.trim()), v.trim()))
            .ok_or_else(|| err(n, "expected `Key = Value` or a [Section]"))?;
        match (&section, key.to_ascii_lowercase().as_str()) {
            (Section::None, _) => return Err(err(n, format!("{key} outside of a section"))),
            (Section::Interface, "privatekey") => {
                private_key = Some(
                    PrivateKey::from_base64(value)
                        .map_err(|_| err(n, "PrivateKey is not a 32-byte base64 key"))?,
                );
            }
            (Section::Interface, "address") => addresses.extend(list::<IpNet>(n, key, value)?),
            (Section::Interface, "listenport") => {
                listen_port = Some(
                    value
                        .parse::<u16>()
                        .map_err(|_| err(n, format!("ListenPort {value:?} is not a port")))?,
                );
            }
            (Section::Peer, field) => {
                let Some(peer) = peers.last_mut() else {
                    return Err(err(n, "peer key outside of a [Peer] section"));
                };
                match field {
                    "publickey" => {
                        peer.public_key = Some(
                            WgPublicKey::parse(value)
                                .map_err(|e| err(n, format!("PublicKey: {e}")))?,
                        );
                    }
                    "endpoint" => peer.endpoint = Some(value.to_owned()),
                    "allowedips" => peer.allowed_ips.extend(list::<IpNet>(n, key, value)?),
                    "persistentkeepalive" => {
                        peer.persistent_keepalive = if value.eq_ignore_ascii_case("off") {
                            0
                        } else {
                            value.parse().map_err(|_| {
                                err(
                                    n,
                                    format!(
                                        "PersistentKeepalive {value:?} is not a number of seconds"
                                    ),
                                )
                            })?
                        };
                    }
                    _ => return Err(err(n, format!("unsupported key {key} in [Peer]"))),
                }
            }
            (Section::Interface, _) => {
                return Err(err(n, format!("unsupported key {key} in [Interface]")));
            }
        }
    }

    let private_key = private_key.ok_or_else(|| err(0, "no PrivateKey in [Interface]"))?;
    if addresses.is_empty() {
        return Err(err(0, "no Address in [Interface]"));
    }
    let peers = peers
        .into_iter()
        .map(|d| {
            Ok(PeerProfile {
                public_key: d
                    .public_key
                    .ok_or_else(|| err(d.line, "[Peer] without PublicKey"))?,
                endpoint: d.endpoint,
                allowed_ips: d.allowed_ips,
                persistent_keepalive: d.persistent_keepalive,
            })
        })
        .collect::<Result<Vec<_>, ProfileError>>()?;
    Ok(Profile {
        private_key,
        addresses,
        listen_port,
        peers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use nexa_proto::WireguardProfile;
    use nexa_proto::wireguard::render_wg_quick;

    #[test]
    fn reads_back_what_the_agent_renders() {
        let gateway = STANDARD.encode([9u8; 32]);
        let profile = WireguardProfile {
            address: "10.8.0.2/24".into(),
            server_public_key: gateway.clone(),
            endpoint: "vpn.example.com:51820".into(),
            allowed_ips: vec!["10.8.0.0/24".into(), "192.168.50.0/24".into()],
            persistent_keepalive: 25,
        };
        let text = render_wg_quick(&profile, Some(&STANDARD.encode([4u8; 32])));
        let p = parse(&text).unwrap();
        assert_eq!(p.private_key.as_bytes(), &[4u8; 32]);
        assert_eq!(p.addresses, vec!["10.8.0.2/24".parse::<IpNet>().unwrap()]);
        assert_eq!(p.listen_port, None);
        assert_eq!(p.peers.len(), 1);
        let peer = &p.peers[0];
        assert_eq!(peer.public_key.to_base64(), gateway);
        assert_eq!(peer.endpoint.as_deref(), Some("vpn.example.com:51820"));
        assert_eq!(peer.allowed_ips.len(), 2);
        assert_eq!(peer.persistent_keepalive, 25);
    }

    #[test]
    fn errors_name_the_line() {
        let key = STANDARD.encode([4u8; 32]);
        let cases = [
            ("Address = 10.0.0.1/24\n", 1, "outside of a section"),
            (
                "[Interface]\nPrivateKey = x\n",
                2,
                "PrivateKey is not a 32-byte base64 key",
            ),
            (
                &format!("[Interface]\nPrivateKey = {key}\nDNS = 1.1.1.1\n"),
                3,
                "unsupported key DNS",
            ),
            (
                &format!("[Interface]\nPrivateKey = {key}\nAddress = nope\n"),
                3,
                "not an address",
            ),
            (
                &format!("[Interface]\nPrivateKey = {key}\n"),
                0,
                "no Address",
            ),
            (
                &format!(
                    "[Interface]\nPrivateKey = {key}\nAddress = 10.0.0.2/24\n[Peer]\nEndpoint = a:1\n"
                ),
                4,
                "without PublicKey",
            ),
            ("[Interface]\njunk\n", 2, "expected `Key = Value`"),
        ];
        for (text, line, needle) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.message.contains(needle), "{text:?}: {e}");
        }
    }

    #[test]
    fn a_mistyped_private_key_line_does_not_put_the_key_into_the_error() {
        let key = STANDARD.encode([4u8; 32]);
        for line in [
            format!("PrivateKey: {key}"),
            format!("PrivateKey {key}"),
            format!("Private Key = {key}"),
            key.clone(),
        ] {
            let e = parse(&format!("[Interface]\n{line}\n"))
                .unwrap_err()
                .to_string();
            assert!(!e.contains(&key[..20]), "{e}");
        }
    }
}
