//! JSON bodies of the enrollment API (`POST /api/devices/{id}/enroll`).
//!
//! Field names follow the original bridge (`certificate_pem`, `ca_chain_pem`,
//! `wireguard_config`) so existing tooling keeps working, plus structured metadata.

use serde::{Deserialize, Serialize};

use crate::ErrorCode;

/// What a device sends to enroll.
///
/// A device the operator registered beforehand needs nothing else. A device nobody registered
/// proves it belongs to a site with `site_code` + `enrollment_key` (zero-touch). A field tech
/// re-enrolling a device sends `Authorization: Bearer <access token>` instead.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EnrollRequest {
    /// PKCS#10 CSR, PEM, EC P-256 key, CN = device id.
    pub csr_pem: String,
    /// The device's WireGuard public key, base64.
    pub wg_public_key: String,
    /// A stable identifier of the hardware (see the agent's `machine_uid` module); the bridge
    /// treats it as opaque and deduplicates devices on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The site the device is installed at (zero-touch enrollment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_code: Option<String>,
    /// The site's enrollment key, `cek_…`. A secret: never logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrollment_key: Option<String>,
}

impl std::fmt::Debug for EnrollRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollRequest")
            .field("wg_public_key", &self.wg_public_key)
            .field("machine_uid", &self.machine_uid)
            .field("hostname", &self.hostname)
            .field("site_code", &self.site_code)
            .field(
                "enrollment_key",
                &self.enrollment_key.as_ref().map(|_| "[redacted]"),
            )
            .finish_non_exhaustive()
    }
}

/// What the bridge answers (202 Accepted, with `Retry-After`) when an enrollment waits for an
/// administrator: the machine looks like a device that is already enrolled and online
/// (collision gate). No certificate is issued. The device asks again with the same keys; once
/// an administrator approved, that request completes the enrollment, and once rejected it is
/// answered 403 `enrollment_rejected`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EnrollPending {
    pub device_id: String,
    /// Always `pending`.
    pub status: String,
    /// The pending enrollment's id, for the administrator (`enrollment approve ID`).
    pub pending_id: String,
    pub message: String,
    /// Seconds the device should wait before asking again (also in `Retry-After`).
    pub retry_after_s: u64,
}

/// `POST /api/v1/auth/login`.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LoginRequest {
    pub username: String,
    /// Never logged.
    pub password: String,
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest")
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .finish()
    }
}

/// `POST /api/v1/auth/refresh`: a refresh token is used once; the answer carries a new pair.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

impl std::fmt::Debug for RefreshRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshRequest { refresh_token: [redacted] }")
    }
}

/// The answer to a login or refresh (200).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenResponse {
    /// Sent as `Authorization: Bearer <access_token>`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds the access token is valid.
    pub expires_in: u64,
    pub refresh_token: String,
    /// Seconds the refresh token is valid.
    pub refresh_expires_in: u64,
    pub username: String,
    /// `admin` or `technician`.
    pub role: String,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("expires_in", &self.expires_in)
            .field("refresh_expires_in", &self.refresh_expires_in)
            .field("username", &self.username)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
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
