//! Revocation at a CA that keeps its own record: step-ca (`POST /1.0/revoke`, passive). The
//! built-in CA needs no call: the bridge's database is its record, and its CRL is built from
//! it.

use std::sync::Arc;

use tokio::sync::OnceCell;

use super::retry::StepError;
use crate::ca::SignerError;
use crate::ca::stepca::{StepCa, StepCaError};
use crate::clock::Clock;
use crate::config::StepCaSettings;
use crate::hawkbit::BoxFuture;

/// A CA the bridge must tell about a revocation.
pub trait CaRevoker: Send + Sync + std::fmt::Debug {
    /// Revokes the certificate with serial `serial_hex`. Revoking one the CA already holds
    /// as revoked succeeds.
    fn revoke<'a>(
        &'a self,
        serial_hex: &'a str,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), StepError>>;
}

/// step-ca's answer to a second revocation of a serial (HTTP 400).
const ALREADY_REVOKED: &str = "is already revoked";

fn classify(serial_hex: &str, e: SignerError) -> Result<(), StepError> {
    match e {
        SignerError::Rejected { reason } if reason.contains(ALREADY_REVOKED) => Ok(()),
        SignerError::Unavailable { reason, .. } => Err(StepError::transient(format!(
            "revoking certificate {serial_hex}: {reason}"
        ))),
        SignerError::Rejected { reason } | SignerError::Internal(reason) => Err(
            StepError::permanent(format!("revoking certificate {serial_hex}: {reason}")),
        ),
    }
}

impl CaRevoker for StepCa {
    fn revoke<'a>(
        &'a self,
        serial_hex: &'a str,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move {
            match StepCa::revoke(self, serial_hex, reason).await {
                Ok(()) => Ok(()),
                Err(e) => classify(serial_hex, e),
            }
        })
    }
}

/// step-ca, connected on first use: the CLI still does every other step when step-ca is
/// down, and the certificate step retries the connection.
#[derive(Debug)]
pub struct ConnectingStepCa {
    settings: StepCaSettings,
    clock: Arc<dyn Clock>,
    ca: OnceCell<StepCa>,
}

impl ConnectingStepCa {
    pub fn new(settings: StepCaSettings, clock: Arc<dyn Clock>) -> Self {
        Self {
            settings,
            clock,
            ca: OnceCell::new(),
        }
    }

    async fn connected(&self) -> Result<&StepCa, StepError> {
        self.ca
            .get_or_try_init(|| StepCa::connect(&self.settings, self.clock.clone()))
            .await
            .map_err(|e| match e {
                StepCaError::Unreachable { .. } => StepError::transient(e.to_string()),
                StepCaError::Refused { status, .. } if status >= 500 || status == 429 => {
                    StepError::transient(e.to_string())
                }
                other => StepError::permanent(other.to_string()),
            })
    }
}

impl CaRevoker for ConnectingStepCa {
    fn revoke<'a>(
        &'a self,
        serial_hex: &'a str,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move {
            let ca = self.connected().await?;
            CaRevoker::revoke(ca, serial_hex, reason).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn step_ca_answers_are_classified() {
        let already = SignerError::Rejected {
            reason: "step-ca answered 400: certificate with serial number '1' is already revoked"
                .into(),
        };
        assert_eq!(classify("01", already), Ok(()));
        let down = SignerError::Unavailable {
            reason: "connection refused".into(),
            retry_after: Duration::from_secs(1),
        };
        let e = classify("01", down).unwrap_err();
        assert!(e.transient && e.message.contains("01") && e.message.contains("refused"));
        let refused = SignerError::Rejected {
            reason: "step-ca answered 401".into(),
        };
        assert!(!classify("01", refused).unwrap_err().transient);
    }
}
