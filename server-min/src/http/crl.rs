//! `GET /api/crl`: the built-in CA's certificate revocation list (DER,
//! `application/pkix-crl`; `?format=pem` for PEM). With step-ca signing, step-ca is the
//! authority on revocation and this endpoint answers 404 `step_ca_authoritative`.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nexa_proto::ErrorCode;
use serde::Deserialize;

use super::AppState;
use super::error::{ApiError, internal};
use crate::ca::builtin::BuiltinCa;
use crate::ca::crl;
use crate::db::{Db, certificates};

/// Who answers for revocation.
#[derive(Debug, Clone)]
pub enum CrlSource {
    /// The built-in CA signs: its CRL is built from the database.
    Builtin { ca: Arc<BuiltinCa>, db: Db },
    /// step-ca signs and keeps the revocations (`url` is its base URL).
    StepCa { url: String },
}

#[derive(Debug, Deserialize)]
pub struct CrlQuery {
    format: Option<String>,
}

pub async fn crl(
    State(state): State<AppState>,
    query: Result<Query<CrlQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let invalid = |m: String| ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidField, m);
    let Query(query) = query.map_err(|e| invalid(format!("query: {e}")))?;
    let pem = match query.format.as_deref() {
        None | Some("der") => false,
        Some("pem") => true,
        Some(other) => return Err(invalid(format!("format {other:?}: use der or pem"))),
    };
    let (ca, db) = match state.crl.as_ref() {
        CrlSource::Builtin { ca, db } => (ca, db),
        CrlSource::StepCa { url } => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::StepCaAuthoritative,
                format!(
                    "step-ca signs this bridge's device certificates and is the authority on their revocation; ask step-ca at {url} (its CRL, when enabled, or /1.0/revoke's record)"
                ),
            ));
        }
    };
    let revoked = {
        let mut conn = db.acquire().await.map_err(|e| internal(&e))?;
        certificates::revoked(&mut conn)
            .await
            .map_err(|e| internal(&e))?
    };
    let list =
        crl::build(ca, &revoked, time::OffsetDateTime::now_utc()).map_err(|e| internal(&e))?;
    let (body, content_type) = if pem {
        (list.pem.into_bytes(), "application/x-pem-file")
    } else {
        (list.der, "application/pkix-crl")
    };
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(resp)
}
