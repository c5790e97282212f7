//! The one place domain errors become HTTP responses.
//!
//! Every error is `{"error":{"code","message"}}`. Client mistakes get 4xx with a message that
//! says what to fix; server faults get 500 with a generic message and the full cause in the
//! log only.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nexa_proto::{ErrorBody, ErrorCode, ErrorDetail};

use crate::auth::tokens::AuthError;
use crate::ca::SignerError;
use crate::enroll::EnrollError;
use crate::hawkbit::HawkbitError;
use crate::http::webhook::HAWKBIT_RETRY_AFTER_S;
use crate::renew::RenewError;

/// An API error response.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    pub retry_after_secs: Option<u64>,
    /// Ask the client to close the connection after this answer.
    pub close_connection: bool,
    /// Send `WWW-Authenticate: Bearer` (a 401 for a missing or bad token).
    pub www_authenticate: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after_secs: None,
            close_connection: false,
            www_authenticate: false,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.www_authenticate {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"nexa\""),
            );
        }
        resp
    }
}

impl From<EnrollError> for ApiError {
    fn from(e: EnrollError) -> Self {
        use StatusCode as S;
        let msg = e.to_string();
        match e {
            EnrollError::Csr(c) => ApiError::new(S::UNPROCESSABLE_ENTITY, c.code, c.message),
            EnrollError::WgKey(_) => {
                ApiError::new(S::UNPROCESSABLE_ENTITY, ErrorCode::InvalidWireguardKey, msg)
            }
            EnrollError::InvalidField { .. } => {
                ApiError::new(S::UNPROCESSABLE_ENTITY, ErrorCode::InvalidField, msg)
            }
            EnrollError::NotRegistered(_) => {
                ApiError::new(S::FORBIDDEN, ErrorCode::DeviceNotRegistered, msg)
            }
            EnrollError::Revoked(_) => ApiError::new(S::FORBIDDEN, ErrorCode::DeviceRevoked, msg),
            EnrollError::Decommissioned(_) => {
                ApiError::new(S::FORBIDDEN, ErrorCode::DeviceDecommissioned, msg)
            }
            EnrollError::AlreadyEnrolled(_) => {
                ApiError::new(S::CONFLICT, ErrorCode::DeviceAlreadyEnrolled, msg)
            }
            EnrollError::WgKeyInUse => {
                ApiError::new(S::CONFLICT, ErrorCode::WireguardKeyInUse, msg)
            }
            EnrollError::PoolExhausted(_) => {
                tracing::error!("{msg}; enlarge WG_SUBNET's pool or remove devices");
                ApiError {
                    retry_after_secs: Some(300),
                    ..ApiError::new(S::SERVICE_UNAVAILABLE, ErrorCode::AddressPoolExhausted, msg)
                }
            }
            EnrollError::Signer(SignerError::Unavailable { retry_after, .. }) => {
                tracing::warn!("{msg}");
                ApiError {
                    retry_after_secs: Some(retry_after.as_secs().max(1)),
                    ..ApiError::new(S::SERVICE_UNAVAILABLE, ErrorCode::SignerUnavailable, msg)
                }
            }
            EnrollError::Signer(SignerError::Rejected { .. }) => {
                tracing::warn!("{msg}");
                ApiError::new(S::UNPROCESSABLE_ENTITY, ErrorCode::SignerRejected, msg)
            }
            EnrollError::Contention(_) => {
                tracing::warn!("{msg}");
                ApiError {
                    retry_after_secs: Some(1),
                    ..ApiError::new(S::SERVICE_UNAVAILABLE, ErrorCode::TryAgain, msg)
                }
            }
            EnrollError::Hawkbit(HawkbitError::Unavailable { .. }) => {
                tracing::warn!("{msg}");
                ApiError {
                    retry_after_secs: Some(HAWKBIT_RETRY_AFTER_S),
                    ..ApiError::new(
                        S::BAD_GATEWAY,
                        ErrorCode::HawkbitUnavailable,
                        "the bridge cannot reach hawkBit to provision this device's update target; \
                         try again later",
                    )
                }
            }
            EnrollError::Hawkbit(HawkbitError::Refused { .. }) => {
                tracing::error!("{msg}");
                ApiError::new(
                    S::BAD_GATEWAY,
                    ErrorCode::HawkbitRefused,
                    "hawkBit refused to provision this device's update target; the bridge log \
                     has the details",
                )
            }
            EnrollError::MachineKnownAs { .. } => {
                ApiError::new(S::CONFLICT, ErrorCode::MachineUidInUse, msg)
            }
            EnrollError::Rejected(_) => {
                ApiError::new(S::FORBIDDEN, ErrorCode::EnrollmentRejected, msg)
            }
            EnrollError::EnrollmentKeyInvalid => {
                ApiError::new(S::UNAUTHORIZED, ErrorCode::EnrollmentKeyInvalid, msg)
            }
            EnrollError::RateLimited { retry_after, .. } => ApiError {
                retry_after_secs: Some(retry_after.as_secs().max(1)),
                ..ApiError::new(S::TOO_MANY_REQUESTS, ErrorCode::RateLimited, msg)
            },
            EnrollError::Signer(SignerError::Internal(_))
            | EnrollError::Internal(_)
            | EnrollError::Hawkbit(HawkbitError::Setup(_))
            | EnrollError::Db(_)
            | EnrollError::CommitFailed(_)
            | EnrollError::WriterStopped => internal(&e),
        }
    }
}

/// Logs the full error chain and answers a generic 500.
pub fn internal(e: &dyn std::error::Error) -> ApiError {
    let chain = crate::error_chain(e);
    tracing::error!(error = %chain, "internal error");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::Internal,
        "internal error; the bridge log has the details",
    )
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        use StatusCode as S;
        let msg = e.to_string();
        let unauthorized = |code| {
            let mut err = ApiError::new(S::UNAUTHORIZED, code, msg.clone());
            err.www_authenticate = true;
            err
        };
        match e {
            AuthError::InvalidCredentials => unauthorized(ErrorCode::InvalidCredentials),
            AuthError::TokenInvalid => unauthorized(ErrorCode::TokenInvalid),
            AuthError::TokenExpired => unauthorized(ErrorCode::TokenExpired),
            AuthError::UserDisabled(_) => ApiError::new(S::FORBIDDEN, ErrorCode::UserDisabled, msg),
            AuthError::Random(_) | AuthError::Db(_) | AuthError::Task(_) => internal(&e),
        }
    }
}

impl From<RenewError> for ApiError {
    fn from(e: RenewError) -> Self {
        use StatusCode as S;
        let msg = e.to_string();
        match e {
            RenewError::NoClientCert => {
                ApiError::new(S::UNAUTHORIZED, ErrorCode::ClientCertificateRequired, msg)
            }
            RenewError::ClientCert(_) => {
                ApiError::new(S::UNAUTHORIZED, ErrorCode::ClientCertificateInvalid, msg)
            }
            RenewError::Unknown(_) => ApiError::new(S::NOT_FOUND, ErrorCode::DeviceUnknown, msg),
            RenewError::NotEnrolled(_) => {
                ApiError::new(S::CONFLICT, ErrorCode::DeviceNotEnrolled, msg)
            }
            RenewError::Revoked(_) => ApiError::new(S::FORBIDDEN, ErrorCode::DeviceRevoked, msg),
            RenewError::Decommissioned(_) => {
                ApiError::new(S::FORBIDDEN, ErrorCode::DeviceDecommissioned, msg)
            }
            RenewError::Csr(c) => ApiError::new(S::UNPROCESSABLE_ENTITY, c.code, c.message),
            RenewError::Signer(s) => EnrollError::Signer(s).into(),
            RenewError::Contention => {
                tracing::warn!("{msg}");
                ApiError {
                    retry_after_secs: Some(1),
                    ..ApiError::new(S::SERVICE_UNAVAILABLE, ErrorCode::TryAgain, msg)
                }
            }
            RenewError::Db(e) => EnrollError::Db(e).into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn body_of(resp: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn signer_unavailable_is_503_with_retry_after() {
        let e = EnrollError::Signer(SignerError::Unavailable {
            reason: "step-ca down".into(),
            retry_after: Duration::from_secs(7),
        });
        let resp = ApiError::from(e).into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "7");
        let body = body_of(resp).await;
        assert_eq!(body["error"]["code"], "signer_unavailable");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("step-ca down")
        );
    }

    #[tokio::test]
    async fn internal_errors_do_not_leak_details() {
        let e = EnrollError::Signer(SignerError::Internal("secret path /x/y".into()));
        let resp = ApiError::from(e).into_response();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = body_of(resp).await;
        assert_eq!(body["error"]["code"], "internal");
        assert!(!body["error"]["message"].as_str().unwrap().contains("/x/y"));
    }
}
