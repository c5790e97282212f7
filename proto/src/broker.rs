//! The MQTT broker address: `mqtts://HOST[:PORT]`, port 8883 by default.
//!
//! The bridge may announce it in the enrollment response and the agent may be configured with
//! it; both parse it here so a URL one side accepts is never refused by the other.

use std::fmt;

/// The MQTT-over-TLS port when the URL names none.
pub const DEFAULT_MQTT_PORT: u16 = 8883;

/// Where the MQTT broker is. Only TLS is supported: the device authenticates with its
/// certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
}

/// Why a broker URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "MQTT broker URL {value:?} is invalid: {reason} (expected mqtts://HOST[:PORT], port 8883 by default)"
)]
pub struct BrokerUrlError {
    pub value: String,
    pub reason: String,
}

impl BrokerUrl {
    pub fn parse(raw: &str) -> Result<Self, BrokerUrlError> {
        let bad = |reason: &str| BrokerUrlError {
            value: raw.to_owned(),
            reason: reason.to_owned(),
        };
        let url = url::Url::parse(raw.trim()).map_err(|e| bad(&e.to_string()))?;
        if url.scheme() != "mqtts" {
            return Err(bad("only mqtts:// (MQTT over TLS) is supported"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad(
                "it must not carry credentials: the device authenticates with its certificate",
            ));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("it has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err(bad("it must not have a path, query or fragment"));
        }
        if url.port() == Some(0) {
            return Err(bad("port 0 is not a port"));
        }
        Ok(Self {
            host,
            port: url.port().unwrap_or(DEFAULT_MQTT_PORT),
        })
    }
}

impl fmt::Display for BrokerUrl {
    /// The canonical form, always with the port: `mqtts://host:8883`, `mqtts://[::1]:8883`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "mqtts://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "mqtts://{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_host_port_and_defaults() {
        let b = BrokerUrl::parse("mqtts://broker.example.com").unwrap();
        assert_eq!((b.host.as_str(), b.port), ("broker.example.com", 8883));
        assert_eq!(b.to_string(), "mqtts://broker.example.com:8883");
        let b = BrokerUrl::parse(" mqtts://10.0.0.1:18883/ ").unwrap();
        assert_eq!((b.host.as_str(), b.port), ("10.0.0.1", 18883));
        let b = BrokerUrl::parse("mqtts://[::1]:8884").unwrap();
        assert_eq!(b.host, "::1");
        assert_eq!(b.to_string(), "mqtts://[::1]:8884");
        assert_eq!(BrokerUrl::parse(&b.to_string()).unwrap(), b);
    }

    #[test]
    fn refuses_what_the_agent_cannot_use() {
        for (raw, why) in [
            ("mqtt://broker:1883", "only mqtts://"),
            ("broker.example.com", "relative URL"),
            ("mqtts://user:pw@broker", "credentials"),
            ("mqtts://broker/topic", "path"),
            ("mqtts://broker?x=1", "path, query"),
            ("mqtts://broker:0", "port 0"),
        ] {
            let e = BrokerUrl::parse(raw).unwrap_err();
            assert!(e.to_string().contains(why), "{raw}: {e}");
            assert!(e.to_string().contains(raw), "{raw}: {e}");
        }
    }
}
