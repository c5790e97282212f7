//! The agent's error type and its mapping to documented exit codes.

use std::process::ExitCode;

use crate::auth::AuthError;
use crate::bridge::BridgeError;
use crate::certs::CertsError;
use crate::config::ConfigError;
use crate::device_id::ResolveIdError;
use crate::keys::KeyError;
use crate::password::PasswordError;
use crate::renew::RenewError;
use crate::tunnel::TunnelError;
use crate::verify::VerifyError;

/// Exit codes, documented in `nexa-agent --help` and the README.
pub mod exit {
    /// Success (including "already enrolled").
    pub const OK: u8 = 0;
    /// A local failure (file system, key generation) or, for `status`, "not enrolled".
    pub const FAILURE: u8 = 1;
    /// Usage or configuration error.
    pub const USAGE: u8 = 2;
    /// The bridge refused the request (4xx); retrying will not help.
    pub const REFUSED: u8 = 3;
    /// The bridge or the material it returned is not trusted (pin or chain mismatch).
    pub const UNTRUSTED: u8 = 4;
    /// The bridge stayed unreachable or unavailable for the whole retry period.
    pub const UNAVAILABLE: u8 = 5;
    /// The WireGuard interface could not be configured (no module, no CAP_NET_ADMIN,
    /// unresolvable endpoint, netlink failure). Enrollment itself, if any, succeeded.
    pub const TUNNEL: u8 = 6;
    /// The enrollment still waits for an administrator's approval after `--approval-timeout`.
    /// The staged keys are kept: running `enroll` again continues the same pending enrollment.
    pub const PENDING: u8 = 7;
}

/// Everything that can stop an agent command.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    DeviceId(#[from] ResolveIdError),
    #[error(transparent)]
    Certs(#[from] CertsError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Bridge(#[from] BridgeError),
    #[error("the bridge's answer failed verification: {0}")]
    Verify(#[from] VerifyError),
    #[error("the bridge's answer is inconsistent: {0}")]
    Inconsistent(String),
    #[error(transparent)]
    Tunnel(#[from] TunnelError),
    #[error("MQTT identity: {0}")]
    MqttTls(crate::identity::TlsSetupError),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Renew(#[from] RenewError),
    #[error(transparent)]
    Auth(Box<AuthError>),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error(
        "enrollment {pending_id} of {device} is still waiting for an administrator's approval \
         (waited {waited}; the next poll would pass --approval-timeout {timeout}); run \
         `nexa-agent enroll` again to keep waiting — the same keys are kept"
    )]
    ApprovalPending {
        device: String,
        pending_id: String,
        waited: String,
        timeout: String,
    },
}

impl AgentError {
    pub fn exit_code(&self) -> u8 {
        match self {
            AgentError::Config(_) | AgentError::DeviceId(_) => exit::USAGE,
            AgentError::Certs(_) | AgentError::Key(_) => exit::FAILURE,
            AgentError::Bridge(b) => bridge_exit(b),
            AgentError::Auth(a) => bridge_exit(a.bridge()),
            AgentError::Password(p) => p.exit_code(),
            AgentError::ApprovalPending { .. } => exit::PENDING,
            AgentError::Verify(_) | AgentError::Inconsistent(_) => exit::UNTRUSTED,
            AgentError::Tunnel(TunnelError::NotEnrolled(_)) => exit::FAILURE,
            AgentError::Tunnel(_) => exit::TUNNEL,
            AgentError::MqttTls(_) | AgentError::Signals(_) => exit::FAILURE,
            AgentError::Renew(RenewError::Revoked { .. }) => exit::REFUSED,
            AgentError::Renew(_) => exit::FAILURE,
        }
    }

    pub fn to_exit_code(&self) -> ExitCode {
        ExitCode::from(self.exit_code())
    }
}

impl From<AuthError> for AgentError {
    fn from(e: AuthError) -> Self {
        AgentError::Auth(Box::new(e))
    }
}

fn bridge_exit(b: &BridgeError) -> u8 {
    match b {
        BridgeError::Refused { .. } => exit::REFUSED,
        BridgeError::Untrusted { .. } | BridgeError::TlsRejected { .. } => exit::UNTRUSTED,
        BridgeError::Unavailable { .. }
        | BridgeError::Network { .. }
        | BridgeError::BadResponse { .. } => exit::UNAVAILABLE,
        BridgeError::Tls(_) => exit::FAILURE,
    }
}
