//! Stable machine-readable error codes of the bridge API.
//!
//! The HTTP status and the code travel together in `{"error":{"code","message"}}`; clients
//! branch on the code, people read the message. Codes are never renamed once shipped.

use serde::{Deserialize, Serialize};

macro_rules! codes {
    ($($variant:ident => $s:literal),* $(,)?) => {
        /// A stable error code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        #[non_exhaustive]
        pub enum ErrorCode { $($variant),* }

        impl ErrorCode {
            /// The wire spelling of the code.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $s),* }
            }

            /// Every code, for documentation and tests.
            pub const ALL: &'static [ErrorCode] = &[$(Self::$variant),*];
        }
    };
}

codes! {
    InvalidDeviceId => "invalid_device_id",
    MalformedJson => "malformed_json",
    UnsupportedMediaType => "unsupported_media_type",
    PayloadTooLarge => "payload_too_large",
    InvalidWireguardKey => "invalid_wireguard_key",
    InvalidField => "invalid_field",
    CsrInvalidPem => "csr_invalid_pem",
    CsrMalformed => "csr_malformed",
    CsrSignatureInvalid => "csr_signature_invalid",
    CsrUnsupportedKey => "csr_unsupported_key",
    CsrSubjectMismatch => "csr_subject_mismatch",
    DeviceNotRegistered => "device_not_registered",
    DeviceAlreadyEnrolled => "device_already_enrolled",
    DeviceRevoked => "device_revoked",
    ClientCertificateRequired => "client_certificate_required",
    ClientCertificateInvalid => "client_certificate_invalid",
    DeviceDecommissioned => "device_decommissioned",
    SignerRejected => "signer_rejected",
    WireguardKeyInUse => "wireguard_key_in_use",
    AddressPoolExhausted => "address_pool_exhausted",
    SignerUnavailable => "signer_unavailable",
    TryAgain => "try_again",
    DeviceUnknown => "device_unknown",
    DeviceNotEnrolled => "device_not_enrolled",
    WebhookUnauthorized => "webhook_unauthorized",
    WebhookNotConfigured => "webhook_not_configured",
    HawkbitUnavailable => "hawkbit_unavailable",
    HawkbitRefused => "hawkbit_refused",
    AdminUnauthorized => "admin_unauthorized",
    AdminNotConfigured => "admin_not_configured",
    DecommissionIncomplete => "decommission_incomplete",
    StepCaAuthoritative => "step_ca_authoritative",
    EnrollmentKeyInvalid => "enrollment_key_invalid",
    EnrollmentRejected => "enrollment_rejected",
    RateLimited => "rate_limited",
    MachineUidInUse => "machine_uid_in_use",
    SiteUnknown => "site_unknown",
    SiteExists => "site_exists",
    SiteInUse => "site_in_use",
    PendingUnknown => "pending_unknown",
    PendingDecided => "pending_decided",
    InvalidCredentials => "invalid_credentials",
    TokenInvalid => "token_invalid",
    TokenExpired => "token_expired",
    Forbidden => "forbidden",
    UserDisabled => "user_disabled",
    NotFound => "not_found",
    MethodNotAllowed => "method_not_allowed",
    Internal => "internal",
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_spelling_matches_as_str() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            let back: ErrorCode = serde_json::from_str(&json).unwrap();
            assert_eq!(back, *code);
        }
    }
}
