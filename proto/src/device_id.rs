//! The device-id rule, one definition for agent and server.
//!
//! A device id is 1 to 64 ASCII characters from `[A-Za-z0-9._-]`, starting and ending with a
//! letter or digit. That keeps it safe as a path component, a certificate CN, a DNS SAN label
//! set, an MQTT client id and a URL path segment without escaping: `..`, `/`, whitespace and
//! control characters can never appear.

use std::fmt;

/// Maximum length of a device id in bytes.
pub const MAX_LEN: usize = 64;

/// A validated device id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(String);

/// Why a string is not a device id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceIdError {
    #[error("device id is empty")]
    Empty,
    #[error("device id is {len} characters long; at most {MAX_LEN} are allowed")]
    TooLong { len: usize },
    #[error(
        "device id contains {found:?} at position {position}; only letters, digits, '.', '_' and '-' are allowed"
    )]
    InvalidChar { found: char, position: usize },
    #[error("device id must start and end with a letter or digit")]
    BadEdge,
}

impl DeviceId {
    /// Validates `s` against the device-id rule.
    pub fn parse(s: &str) -> Result<Self, DeviceIdError> {
        if s.is_empty() {
            return Err(DeviceIdError::Empty);
        }
        let len = s.chars().count();
        if len > MAX_LEN {
            return Err(DeviceIdError::TooLong { len });
        }
        if let Some((position, found)) = s.chars().enumerate().find(|(_, c)| !is_allowed(*c)) {
            return Err(DeviceIdError::InvalidChar { found, position });
        }
        let bytes = s.as_bytes();
        let edge_ok = |b: u8| b.is_ascii_alphanumeric();
        if !edge_ok(bytes[0]) || !edge_ok(bytes[bytes.len() - 1]) {
            return Err(DeviceIdError::BadEdge);
        }
        Ok(Self(s.to_owned()))
    }

    /// Turns an arbitrary identifier (a DMI serial, a machine-id) into a device id: lower-cases
    /// it, maps every disallowed character to `-`, collapses runs of `-`, trims the edges and
    /// truncates to [`MAX_LEN`]. Returns `None` when nothing usable is left (for example a DMI
    /// serial of only spaces, or a placeholder such as "To Be Filled By O.E.M." is *not*
    /// rejected here; callers filter placeholders).
    pub fn sanitize(raw: &str) -> Option<Self> {
        let mut out = String::with_capacity(raw.len().min(MAX_LEN));
        for c in raw.trim().chars() {
            let c = c.to_ascii_lowercase();
            let c = if is_allowed(c) { c } else { '-' };
            if c == '-' && out.ends_with('-') {
                continue;
            }
            out.push(c);
        }
        let trimmed: String = out
            .trim_matches(|c: char| !c.is_ascii_alphanumeric())
            .chars()
            .take(MAX_LEN)
            .collect();
        let trimmed = trimmed.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
        Self::parse(trimmed).ok()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for DeviceId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for DeviceId {
    type Err = DeviceIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_typical_ids() {
        for ok in ["device-001", "A", "sn.00A1_b", "0", &"a".repeat(64)] {
            assert_eq!(DeviceId::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_bad_ids() {
        let cases: &[(&str, DeviceIdError)] = &[
            ("", DeviceIdError::Empty),
            (&"a".repeat(65), DeviceIdError::TooLong { len: 65 }),
            (
                "../etc",
                DeviceIdError::InvalidChar {
                    found: '/',
                    position: 2,
                },
            ),
            ("..", DeviceIdError::BadEdge),
            ("-dev", DeviceIdError::BadEdge),
            ("dev.", DeviceIdError::BadEdge),
            (
                "dev 1",
                DeviceIdError::InvalidChar {
                    found: ' ',
                    position: 3,
                },
            ),
            (
                "dév",
                DeviceIdError::InvalidChar {
                    found: 'é',
                    position: 1,
                },
            ),
            (
                "a\0b",
                DeviceIdError::InvalidChar {
                    found: '\0',
                    position: 1,
                },
            ),
            (
                "a%2Fb",
                DeviceIdError::InvalidChar {
                    found: '%',
                    position: 1,
                },
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                DeviceId::parse(input).unwrap_err(),
                *want,
                "input {input:?}"
            );
        }
    }

    #[test]
    fn sanitizes_hardware_identifiers() {
        let cases = [
            ("  PF2ABC12 ", Some("pf2abc12")),
            ("Serial: 00/11 22", Some("serial-00-11-22")),
            ("---", None),
            ("", None),
            ("ÄÖÜ", None),
            (
                "0123456789abcdef0123456789abcdef",
                Some("0123456789abcdef0123456789abcdef"),
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(
                DeviceId::sanitize(raw).map(|d| d.0),
                want.map(str::to_owned),
                "raw {raw:?}"
            );
        }
        let long = format!("{}-{}", "x".repeat(63), "y".repeat(10));
        let id = DeviceId::sanitize(&long).unwrap();
        assert_eq!(id.as_str(), "x".repeat(63));
    }
}
