//! WireGuard public keys and the wg-quick rendering shared by bridge and device.
//!
//! The bridge renders the profile *without* `PrivateKey` (it never has it); the device renders
//! the same profile with its local private key. One function, so both files agree line by line.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use std::fmt;

use crate::api::WireguardProfile;

/// A Curve25519 public key as WireGuard prints it: 32 bytes, standard base64 with padding.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct WgPublicKey([u8; 32]);

/// Why a string is not a WireGuard key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WgKeyError {
    #[error("WireGuard key is not valid base64")]
    NotBase64,
    #[error("WireGuard key decodes to {0} bytes; it must be exactly 32")]
    Length(usize),
    #[error("WireGuard key is all zeros")]
    AllZero,
}

impl WgPublicKey {
    pub fn parse(s: &str) -> Result<Self, WgKeyError> {
        let bytes = STANDARD
            .decode(s.trim())
            .map_err(|_| WgKeyError::NotBase64)?;
        let arr: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| WgKeyError::Length(bytes.len()))?;
        if arr == [0u8; 32] {
            return Err(WgKeyError::AllZero);
        }
        Ok(Self(arr))
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The canonical base64 spelling.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }
}

impl fmt::Display for WgPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl fmt::Debug for WgPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WgPublicKey({self})")
    }
}

/// Renders a wg-quick configuration. `private_key` is the device's base64 private key, or
/// `None` for the bridge's copy, which carries a comment in its place.
pub fn render_wg_quick(profile: &WireguardProfile, private_key: Option<&str>) -> String {
    let mut out = String::with_capacity(320);
    out.push_str("[Interface]\n");
    match private_key {
        Some(key) => {
            out.push_str("PrivateKey = ");
            out.push_str(key);
            out.push('\n');
        }
        None => {
            out.push_str("# PrivateKey = <generated on the device; never sent to the bridge>\n")
        }
    }
    out.push_str("Address = ");
    out.push_str(&profile.address);
    out.push_str("\n\n[Peer]\nPublicKey = ");
    out.push_str(&profile.server_public_key);
    out.push_str("\nEndpoint = ");
    out.push_str(&profile.endpoint);
    out.push_str("\nAllowedIPs = ");
    out.push_str(&profile.allowed_ips.join(", "));
    out.push('\n');
    if profile.persistent_keepalive > 0 {
        out.push_str("PersistentKeepalive = ");
        out.push_str(&profile.persistent_keepalive.to_string());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_and_rejects_invalid_keys() {
        let key = STANDARD.encode([7u8; 32]);
        assert_eq!(WgPublicKey::parse(&key).unwrap().to_base64(), key);
        assert_eq!(
            WgPublicKey::parse("not base64!"),
            Err(WgKeyError::NotBase64)
        );
        assert_eq!(
            WgPublicKey::parse(&STANDARD.encode([1u8; 31])),
            Err(WgKeyError::Length(31))
        );
        assert_eq!(
            WgPublicKey::parse(&STANDARD.encode([0u8; 32])),
            Err(WgKeyError::AllZero)
        );
    }

    #[test]
    fn renders_with_and_without_private_key() {
        let profile = WireguardProfile {
            address: "10.8.0.2/24".into(),
            server_public_key: STANDARD.encode([9u8; 32]),
            endpoint: "vpn.example.com:51820".into(),
            allowed_ips: vec!["10.8.0.0/24".into()],
            persistent_keepalive: 25,
        };
        let server = render_wg_quick(&profile, None);
        assert!(!server.lines().any(|l| l.starts_with("PrivateKey")));
        assert!(server.contains("Address = 10.8.0.2/24\n"));
        assert!(server.contains("Endpoint = vpn.example.com:51820\n"));
        assert!(server.contains("PersistentKeepalive = 25\n"));
        let device = render_wg_quick(&profile, Some("cHJpdmF0ZQ=="));
        assert!(device.starts_with("[Interface]\nPrivateKey = cHJpdmF0ZQ==\n"));
    }
}
