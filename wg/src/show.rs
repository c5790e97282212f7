//! An interface as the kernel has it, for people (in the spirit of `wg show`) and for
//! scripts (JSON). Used by `nexa-agent wg show` and `nexa-server gateway show`.

use std::time::{Duration, SystemTime};

use crate::spec::{IfName, InterfaceState};
use serde_json::json;

fn ago(t: Option<SystemTime>, now: SystemTime) -> String {
    match t {
        None => "never".into(),
        Some(t) => match now.duration_since(t) {
            Ok(d) if d < Duration::from_secs(1) => "just now".into(),
            Ok(d) => format!("{}s ago", d.as_secs()),
            Err(_) => "just now".into(),
        },
    }
}

fn unix(t: Option<SystemTime>) -> Option<u64> {
    t.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
}

/// Human-readable, in the spirit of `wg show`.
pub fn render(name: &IfName, state: Option<&InterfaceState>, now: SystemTime) -> String {
    let Some(st) = state else {
        return format!("interface {name}: not present\n");
    };
    let mut out = format!(
        "interface {name}: {}\n  public key: {}\n  listening port: {}\n  addresses: {}\n",
        if st.up { "up" } else { "down" },
        st.public_key
            .as_ref()
            .map_or_else(|| "(none)".into(), ToString::to_string),
        st.listen_port,
        join(&st.addresses),
    );
    if !st.routes.is_empty() {
        out.push_str(&format!("  routes: {}\n", join(&st.routes)));
    }
    for p in &st.peers {
        out.push_str(&format!(
            "\npeer {}\n  endpoint: {}\n  allowed ips: {}\n  latest handshake: {}\n  transfer: {} B received, {} B sent\n",
            p.public_key,
            p.endpoint.map_or_else(|| "(none)".into(), |e| e.to_string()),
            join(&p.allowed_ips),
            ago(p.last_handshake, now),
            p.rx_bytes,
            p.tx_bytes,
        ));
        if p.persistent_keepalive > 0 {
            out.push_str(&format!(
                "  persistent keepalive: every {}s\n",
                p.persistent_keepalive
            ));
        }
    }
    out
}

fn join<T: ToString>(items: &[T]) -> String {
    if items.is_empty() {
        return "(none)".into();
    }
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Machine-readable: `present` false when the interface does not exist.
pub fn to_json(name: &IfName, state: Option<&InterfaceState>) -> serde_json::Value {
    let Some(st) = state else {
        return json!({ "interface": name.as_str(), "present": false });
    };
    json!({
        "interface": name.as_str(),
        "present": true,
        "up": st.up,
        "public_key": st.public_key.as_ref().map(ToString::to_string),
        "listen_port": st.listen_port,
        "addresses": st.addresses.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "routes": st.routes.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "peers": st.peers.iter().map(|p| json!({
            "public_key": p.public_key.to_string(),
            "endpoint": p.endpoint.map(|e| e.to_string()),
            "allowed_ips": p.allowed_ips.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "persistent_keepalive": p.persistent_keepalive,
            "latest_handshake": unix(p.last_handshake),
            "rx_bytes": p.rx_bytes,
            "tx_bytes": p.tx_bytes,
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::PeerState;
    use nexa_proto::WgPublicKey;

    #[test]
    fn renders_present_and_absent() {
        let name = IfName::parse("wg0").unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        assert!(render(&name, None, now).contains("not present"));
        assert_eq!(to_json(&name, None)["present"], false);
        let st = InterfaceState {
            public_key: Some(WgPublicKey::from_bytes([1; 32])),
            listen_port: 40000,
            up: true,
            addresses: vec!["10.8.0.2/24".parse().unwrap()],
            routes: vec![],
            peers: vec![PeerState {
                public_key: WgPublicKey::from_bytes([2; 32]),
                endpoint: Some("192.0.2.1:51820".parse().unwrap()),
                allowed_ips: vec!["10.8.0.0/24".parse().unwrap()],
                persistent_keepalive: 25,
                last_handshake: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(990)),
                rx_bytes: 92,
                tx_bytes: 180,
            }],
        };
        let text = render(&name, Some(&st), now);
        assert!(text.contains("interface wg0: up"), "{text}");
        assert!(text.contains("latest handshake: 10s ago"), "{text}");
        assert!(text.contains("every 25s"), "{text}");
        let j = to_json(&name, Some(&st));
        assert_eq!(j["peers"][0]["latest_handshake"], 990);
        assert_eq!(j["peers"][0]["endpoint"], "192.0.2.1:51820");
    }
}
