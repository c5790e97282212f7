//! JSON bodies of the enrollment API (`POST /api/devices/{id}/enroll`).
//!
//! Field names follow the original bridge (`certificate_pem`, `ca_chain_pem`,
//! `wireguard_config`) so existing tooling keeps working, plus structured metadata.

use serde::{Deserialize, Serialize};

use crate::ErrorCode;

/// What a device sends to enroll.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EnrollRequest {
    /// PKCS#10 CSR, PEM, EC P-256 key, CN = device id.
    pub csr_pem: String,
    /// The device's WireGuard public key, base64.
    pub wg_public_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
}

/// What the bridge answers on success (201 first enrollment, 200 retry or re-enrollment).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EnrollResponse {
    pub device_id: String,
    pub certificate_pem: String,
    /// Issuing CA first, root last.
    pub ca_chain_pem: String,
    /// wg-quick file without the device's private key.
    pub wireguard_config: String,
    pub wireguard: WireguardProfile,
    pub profile_revision: u64,
    pub certificate: CertificateInfo,
    /// The MQTT broker the device should use, `mqtts://host:port`, when the bridge knows it.
    /// The device's own configuration takes precedence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt_url: Option<String>,
    /// The device's hawkBit target and its credential, when the bridge provisions hawkBit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hawkbit: Option<HawkbitProfile>,
}

/// Where and as whom the device polls hawkBit (DDI). The bridge created or updated the
/// device's target with `target_token` as its security token; every enrollment issues a new
/// one, and the previous token stops working.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HawkbitProfile {
    /// DDI server base URL, e.g. `https://hawkbit.example.com/`.
    pub url: String,
    pub tenant: String,
    pub controller_id: String,
    /// `Authorization: TargetToken …` credential. Never logged.
    pub target_token: String,
}

impl std::fmt::Debug for HawkbitProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HawkbitProfile")
            .field("url", &self.url)
            .field("tenant", &self.tenant)
            .field("controller_id", &self.controller_id)
            .field("target_token", &"[redacted]")
            .finish()
    }
}

/// The device's WireGuard profile as structured data.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WireguardProfile {
    /// Interface address with the subnet's prefix length, e.g. `10.8.0.2/24`.
    pub address: String,
    pub server_public_key: String,
    /// `host:port` of the gateway.
    pub endpoint: String,
    pub allowed_ips: Vec<String>,
    /// Seconds; 0 disables keepalives.
    pub persistent_keepalive: u16,
}

/// What a device sends to renew its certificate (`POST /api/devices/{id}/renew`, over mTLS
/// with its current certificate). The CSR is for a NEW key (rekey); CN = device id.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RenewRequest {
    /// PKCS#10 CSR, PEM, EC P-256 key, CN = device id.
    pub csr_pem: String,
}

/// What the bridge answers to a renewal (200).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RenewResponse {
    pub device_id: String,
    pub certificate_pem: String,
    /// Issuing CA first, root last.
    pub ca_chain_pem: String,
    pub certificate: CertificateInfo,
}

/// Metadata of the issued certificate.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CertificateInfo {
    /// Lower-case hex.
    pub serial: String,
    /// RFC 3339, UTC.
    pub not_after: String,
}

/// Every error response: `{"error":{"code","message"}}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
}
