//! What a failed broker connection means for the operator: the broker refused our certificate
//! (re-enrollment or broker configuration), we refused the broker's, the broker refused the
//! MQTT login, or the network is simply not there yet.

use std::error::Error as StdError;

use rumqttc::{ConnectReturnCode, ConnectionError};
use rustls::AlertDescription;

/// A connection failure, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The broker rejected the device certificate during the TLS handshake.
    CertificateRejected(String),
    /// The broker's certificate does not chain to the trusted root or does not name the host.
    BrokerUntrusted(String),
    /// TLS went through but the broker refused the MQTT login (not authorized, bad id).
    LoginRefused(String),
    /// Anything else: unreachable, reset, timeout. Retried quietly.
    Network(String),
}

impl Failure {
    /// A stable short code for status and attributes.
    pub fn code(&self) -> &'static str {
        match self {
            Failure::CertificateRejected(_) => "certificate_rejected",
            Failure::BrokerUntrusted(_) => "broker_untrusted",
            Failure::LoginRefused(_) => "login_refused",
            Failure::Network(_) => "network",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Failure::CertificateRejected(m)
            | Failure::BrokerUntrusted(m)
            | Failure::LoginRefused(m)
            | Failure::Network(m) => m,
        }
    }
}

fn rustls_error<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut cur: Option<&'a (dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(r) = inner.downcast_ref::<rustls::Error>()
        {
            return Some(r);
        }
        cur = err.source();
    }
    None
}

/// Classifies an error from the MQTT event loop.
pub fn classify(e: &ConnectionError) -> Failure {
    if let ConnectionError::ConnectionRefused(code) = e {
        let why = match code {
            ConnectReturnCode::NotAuthorized => "not authorized",
            ConnectReturnCode::BadUserNamePassword => "bad user name or password",
            ConnectReturnCode::BadClientId => "client id (device id) refused",
            ConnectReturnCode::ServiceUnavailable => {
                return Failure::Network("broker unavailable (CONNACK 3)".into());
            }
            _ => "refused",
        };
        return Failure::LoginRefused(format!(
            "the broker refused the MQTT login: {why}; check that the broker knows this device"
        ));
    }
    if let Some(r) = rustls_error(e) {
        return match r {
            rustls::Error::AlertReceived(
                alert @ (AlertDescription::BadCertificate
                | AlertDescription::UnsupportedCertificate
                | AlertDescription::CertificateRevoked
                | AlertDescription::CertificateExpired
                | AlertDescription::CertificateUnknown
                | AlertDescription::UnknownCA
                | AlertDescription::CertificateRequired
                | AlertDescription::AccessDenied
                | AlertDescription::HandshakeFailure
                | AlertDescription::DecryptError),
            ) => Failure::CertificateRejected(format!(
                "the broker rejected the device certificate (TLS alert {alert:?}); check that the \
                 broker trusts the bridge's CA, or re-enroll with `nexa-agent enroll --force`"
            )),
            rustls::Error::InvalidCertificate(why) => Failure::BrokerUntrusted(format!(
                "the broker's certificate is not trusted ({why:?}); set mqtt_ca to the CA that \
                 issued it, or check mqtt_url's host name"
            )),
            other => Failure::Network(format!("TLS: {other}")),
        };
    }
    Failure::Network(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_and_refusals_are_told_apart_from_the_network() {
        let alert = ConnectionError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(AlertDescription::UnknownCA),
        ));
        let f = classify(&alert);
        assert_eq!(f.code(), "certificate_rejected");
        assert!(f.message().contains("UnknownCA"), "{}", f.message());

        let untrusted = ConnectionError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        ));
        assert_eq!(classify(&untrusted).code(), "broker_untrusted");

        let refused = ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized);
        assert_eq!(classify(&refused).code(), "login_refused");

        let down = ConnectionError::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(classify(&down).code(), "network");
    }
}
