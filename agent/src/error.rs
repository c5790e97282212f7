//! The agent's error type and its mapping to documented exit codes.

use std::process::ExitCode;

use crate::bridge::BridgeError;
use crate::certs::CertsError;
use crate::config::ConfigError;
use crate::device_id::ResolveIdError;
use crate::keys::KeyError;
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
    MqttTls(crate::mqtt::tls::TlsSetupError),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Renew(#[from] RenewError),
}

impl AgentError {
    pub fn exit_code(&self) -> u8 {
        match self {
            AgentError::Config(_) | AgentError::DeviceId(_) => exit::USAGE,
            AgentError::Certs(_) | AgentError::Key(_) => exit::FAILURE,
            AgentError::Bridge(b) => match b {
                BridgeError::Refused { .. } => exit::REFUSED,
                BridgeError::Untrusted { .. } | BridgeError::TlsRejected { .. } => exit::UNTRUSTED,
                BridgeError::Unavailable { .. }
                | BridgeError::Network { .. }
                | BridgeError::BadResponse { .. } => exit::UNAVAILABLE,
                BridgeError::Tls(_) => exit::FAILURE,
            },
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
