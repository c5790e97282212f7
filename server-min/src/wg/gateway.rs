//! The gateway's WireGuard key pair, generated once by `init`.

use nexa_proto::WgPublicKey;
use nexa_wg::PrivateKey;
use zeroize::Zeroizing;

/// A fresh Curve25519 key pair: (private key base64, public key).
pub fn generate_keypair() -> (Zeroizing<String>, WgPublicKey) {
    let key = PrivateKey::generate();
    (key.to_base64(), key.public_key())
}
