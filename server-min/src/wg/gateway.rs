//! The gateway's WireGuard key pair, generated once by `init`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use nexa_proto::WgPublicKey;
use rand::RngCore;
use zeroize::Zeroizing;

/// A fresh Curve25519 key pair: (private key base64, public key).
pub fn generate_keypair() -> (Zeroizing<String>, WgPublicKey) {
    let mut secret = Zeroizing::new([0u8; 32]);
    rand::rng().fill_bytes(secret.as_mut());
    // Clamp as `wg genkey` does, so the stored key is byte-identical to what wg prints.
    secret[0] &= 248;
    secret[31] = (secret[31] & 127) | 64;
    let static_secret = x25519_dalek::StaticSecret::from(*secret);
    let public = x25519_dalek::PublicKey::from(&static_secret);
    (
        Zeroizing::new(STANDARD.encode(*secret)),
        WgPublicKey::from_bytes(public.to_bytes()),
    )
}
