//! Wire types and validation rules shared by `nexa-agent` and `nexa-server`.
//!
//! Architecture invariant: this crate does no I/O and knows nothing about HTTP, files or
//! databases. Both sides depend on it so that the device-id rule, the enrollment payloads and
//! the error codes cannot drift apart.

pub mod api;
pub mod base_url;
pub mod broker;
pub mod device_id;
pub mod duration;
pub mod error_code;
pub mod fingerprint;
pub mod wireguard;

pub use api::{
    CertificateInfo, EnrollPending, EnrollRequest, EnrollResponse, ErrorBody, ErrorDetail,
    HawkbitProfile, LoginRequest, RefreshRequest, RenewRequest, RenewResponse, TokenResponse,
    WireguardProfile,
};
pub use broker::{BrokerUrl, BrokerUrlError, DEFAULT_MQTT_PORT};
pub use device_id::{DeviceId, DeviceIdError};
pub use error_code::ErrorCode;
pub use fingerprint::{Fingerprint, FingerprintError};
pub use wireguard::{WgKeyError, WgPublicKey};
