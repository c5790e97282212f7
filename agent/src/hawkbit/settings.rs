//! hawkBit settings of the agent: where the server is, who the device is there, how it
//! authenticates, where downloads go and what happens after an install.
//!
//! ```toml
//! [hawkbit]
//! url = "https://hawkbit.example.com"
//! tenant = "DEFAULT"               # default DEFAULT
//! controller_id = "dev-001"        # default: the device id
//! auth = "target_token"            # target_token (default) | certificate | gateway_token
//! token_file = "/etc/nexa/hawkbit.token"   # default for target_token: the enrollment's
//! ca_file = "/etc/nexa/hawkbit-ca.pem"     # default: the system's roots and the enrollment's
//! data_dir = "/var/lib/nexa"      # the pending update survives reboots here
//! spool_dir = "/var/lib/nexa/spool"  # default: <data_dir>/spool
//! after_install = "reboot"         # reboot (confirm after boot) | report (success at once)
//! reboot_via = "logind"            # logind | systemd | file (see hawkbit::reboot)
//! stall_timeout = "60s"            # a download receiving nothing this long is resumed
//! ```
//!
//! Exactly one authentication mode is in force, and a setting that belongs to another mode
//! is an error at load, not a surprise at the first poll. The default is the target token the
//! bridge issued at enrollment (`/certs/hawkbit.token`); the bridge also announces the DDI
//! URL, tenant and controller id, and each key configured here overrides its announcement.
//! Without a URL from either the agent does not talk to hawkBit at all.

use std::path::PathBuf;

use nexa_proto::base_url::BaseUrlError;
use reqwest::Url;

pub use super::config::{Announced, HawkbitFile};

pub const DEFAULT_TENANT: &str = "DEFAULT";
pub const DEFAULT_DATA_DIR: &str = "/var/lib/nexa";
/// How long a transfer may receive nothing before it is dropped and resumed.
pub const DEFAULT_STALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
const STALL_TIMEOUT_RANGE: std::ops::RangeInclusive<std::time::Duration> =
    std::time::Duration::from_secs(5)..=std::time::Duration::from_secs(3600);

/// How the device proves who it is to hawkBit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMode {
    /// The device certificate, through hawkBit's reverse-proxy scheme (mTLS at the proxy).
    Certificate,
    /// `Authorization: TargetToken …` with the token the bridge issued at enrollment
    /// (`/certs/hawkbit.token`).
    EnrollmentToken,
    /// `Authorization: TargetToken …`, the target's own token, read from this file.
    TargetToken { file: PathBuf },
    /// `Authorization: GatewayToken …`, a tenant-wide key, read from this file.
    GatewayToken { file: PathBuf },
}

impl AuthMode {
    pub fn label(&self) -> &'static str {
        match self {
            AuthMode::Certificate => "certificate",
            AuthMode::EnrollmentToken => "target_token (issued at enrollment)",
            AuthMode::TargetToken { .. } => "target_token",
            AuthMode::GatewayToken { .. } => "gateway_token",
        }
    }
}

/// What follows a successful install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterInstall {
    /// Reboot, and report success only once the new slot booted and was marked good.
    Reboot(RebootVia),
    /// Report success at once (the device reboots by other means).
    Report,
}

/// Who is asked to reboot (the agent never calls `reboot(2)` itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebootVia {
    /// `org.freedesktop.login1.Manager.Reboot`.
    Logind,
    /// `org.freedesktop.systemd1.Manager.StartUnit("reboot.target")`.
    Systemd,
    /// Only the request file `<data_dir>/reboot-request`, which `nexa-reboot.path` acts on
    /// (images without D-Bus access to logind or systemd).
    File,
}

/// Resolved hawkBit settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HawkbitSettings {
    /// Server base URL, ending in `/`.
    pub url: Url,
    pub tenant: String,
    /// `None`: the device id.
    pub controller_id: Option<String>,
    pub auth: AuthMode,
    /// Trust anchors for hawkBit's TLS certificate instead of the defaults.
    pub ca_file: Option<PathBuf>,
    /// Persistent state (the pending update); must survive a reboot.
    pub data_dir: PathBuf,
    pub spool_dir: PathBuf,
    pub after_install: AfterInstall,
    /// A request (poll, report or download) receiving nothing this long fails; a download
    /// then resumes where it stopped.
    pub stall_timeout: std::time::Duration,
}

/// A hawkBit setting that cannot be used; names the key and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HawkbitConfigError {
    #[error("hawkbit.url (NEXA_HAWKBIT_URL) {value:?} is invalid: {reason}")]
    Url { value: String, reason: String },
    #[error(
        "hawkbit.auth (NEXA_HAWKBIT_AUTH) {0:?} is unknown: use certificate, target_token or gateway_token"
    )]
    AuthMode(String),
    #[error(
        "hawkbit.token_file (NEXA_HAWKBIT_TOKEN_FILE) is set but hawkbit.auth is certificate: a device authenticates one way only; remove one of the two"
    )]
    TokenWithCertificate,
    #[error("hawkbit.auth = {0} needs hawkbit.token_file (NEXA_HAWKBIT_TOKEN_FILE)")]
    NoTokenFile(&'static str),
    #[error(
        "the hawkBit {key} the bridge announced at enrollment, {value:?}, is unusable: {reason}; set hawkbit.{key} in the agent's configuration"
    )]
    Announced {
        key: &'static str,
        value: String,
        reason: String,
    },
    #[error("hawkbit.{key} {value:?} is invalid: {reason}")]
    Value {
        key: &'static str,
        value: String,
        reason: &'static str,
    },
}

impl HawkbitSettings {
    /// Where the installed-but-unconfirmed update is recorded.
    pub fn pending_file(&self) -> PathBuf {
        self.data_dir.join("ota-pending.json")
    }

    /// `None` when no URL is configured: hawkBit is off. Checks the configuration alone,
    /// before anything was announced.
    pub fn resolve(file: HawkbitFile) -> Result<Option<Self>, HawkbitConfigError> {
        Self::resolve_with(file, None)
    }

    /// The configuration over what the bridge announced at enrollment, key by key.
    pub fn resolve_with(
        file: HawkbitFile,
        announced: Option<&Announced>,
    ) -> Result<Option<Self>, HawkbitConfigError> {
        let configured_url = file.url.clone().filter(|u| !u.trim().is_empty());
        let Some(raw_url) = configured_url
            .clone()
            .or_else(|| announced.map(|a| a.url.clone()))
        else {
            return Ok(None);
        };
        let url = parse_url(&raw_url).map_err(|e| match (&configured_url, e) {
            (None, HawkbitConfigError::Url { value, reason }) => HawkbitConfigError::Announced {
                key: "url",
                value,
                reason,
            },
            (_, e) => e,
        })?;
        let file = HawkbitFile {
            tenant: file.tenant.or_else(|| announced.map(|a| a.tenant.clone())),
            controller_id: file
                .controller_id
                .or_else(|| announced.map(|a| a.controller_id.clone())),
            ..file
        };
        let data_dir = file
            .data_dir
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let tenant = match file.tenant {
            None => DEFAULT_TENANT.to_owned(),
            Some(t) => path_segment("tenant", t)?,
        };
        let controller_id = file
            .controller_id
            .map(|c| path_segment("controller_id", c))
            .transpose()?;
        let auth = match file.auth.as_deref().map(str::trim) {
            None | Some("target_token") => match file.token_file {
                Some(file) => AuthMode::TargetToken { file },
                None => AuthMode::EnrollmentToken,
            },
            Some("certificate") => {
                if file.token_file.is_some() {
                    return Err(HawkbitConfigError::TokenWithCertificate);
                }
                AuthMode::Certificate
            }
            Some("gateway_token") => AuthMode::GatewayToken {
                file: file
                    .token_file
                    .ok_or(HawkbitConfigError::NoTokenFile("gateway_token"))?,
            },
            Some(other) => return Err(HawkbitConfigError::AuthMode(other.to_owned())),
        };
        let reboot_via = match file.reboot_via.as_deref().map(str::trim) {
            None | Some("logind") => RebootVia::Logind,
            Some("systemd") => RebootVia::Systemd,
            Some("file") => RebootVia::File,
            Some(other) => {
                return Err(HawkbitConfigError::Value {
                    key: "reboot_via",
                    value: other.to_owned(),
                    reason: "use logind, systemd or file",
                });
            }
        };
        let after_install = match file.after_install.as_deref().map(str::trim) {
            None | Some("reboot") => AfterInstall::Reboot(reboot_via),
            Some("report") => AfterInstall::Report,
            Some(other) => {
                return Err(HawkbitConfigError::Value {
                    key: "after_install",
                    value: other.to_owned(),
                    reason: "use reboot or report",
                });
            }
        };
        let stall_timeout = match file.stall_timeout.as_deref() {
            None => DEFAULT_STALL_TIMEOUT,
            Some(raw) => nexa_proto::duration::parse_duration(raw)
                .ok()
                .filter(|d| STALL_TIMEOUT_RANGE.contains(d))
                .ok_or_else(|| HawkbitConfigError::Value {
                    key: "stall_timeout",
                    value: raw.to_owned(),
                    reason: "use a duration from 5s to 1h, e.g. 60s",
                })?,
        };
        Ok(Some(Self {
            url,
            tenant,
            controller_id,
            auth,
            stall_timeout,
            ca_file: file.ca_file,
            spool_dir: file.spool_dir.unwrap_or_else(|| data_dir.join("spool")),
            data_dir,
            after_install,
        }))
    }
}

fn parse_url(raw: &str) -> Result<Url, HawkbitConfigError> {
    nexa_proto::base_url::parse_base_url(
        raw,
        &["http", "https"],
        "use https:// (or http:// behind a trusted network)",
    )
    .map_err(|e| HawkbitConfigError::Url {
        value: raw.to_owned(),
        reason: match e {
            BaseUrlError::Credentials => {
                "credentials do not belong in the URL; see hawkbit.auth".into()
            }
            other => other.to_string(),
        },
    })
}

/// A tenant or controller id: one non-empty path segment without whitespace (hawkBit's rule).
fn path_segment(key: &'static str, value: String) -> Result<String, HawkbitConfigError> {
    let v = value.trim();
    if v.is_empty() || v.chars().count() > 256 || v.chars().any(char::is_whitespace) {
        return Err(HawkbitConfigError::Value {
            key,
            value,
            reason: "must be 1-256 characters without whitespace",
        });
    }
    Ok(v.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(auth: Option<&str>, token: Option<&str>) -> HawkbitFile {
        HawkbitFile {
            url: Some("https://hawkbit.example.com/prefix".into()),
            auth: auth.map(Into::into),
            token_file: token.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn without_a_url_hawkbit_is_off() {
        assert_eq!(HawkbitSettings::resolve(HawkbitFile::default()), Ok(None));
        let blank = HawkbitFile {
            url: Some("  ".into()),
            auth: Some("bogus".into()),
            ..Default::default()
        };
        assert_eq!(HawkbitSettings::resolve(blank), Ok(None));
    }

    #[test]
    fn exactly_one_auth_mode() {
        let s = HawkbitSettings::resolve(file(Some("certificate"), None))
            .unwrap()
            .unwrap();
        assert_eq!(s.auth, AuthMode::Certificate);
        assert_eq!(s.url.as_str(), "https://hawkbit.example.com/prefix/");
        assert_eq!(s.tenant, DEFAULT_TENANT);
        assert_eq!(s.after_install, AfterInstall::Reboot(RebootVia::Logind));
        assert_eq!(s.spool_dir, PathBuf::from("/var/lib/nexa/spool"));
        let s = HawkbitSettings::resolve(file(Some("target_token"), Some("/t")))
            .unwrap()
            .unwrap();
        assert_eq!(s.auth, AuthMode::TargetToken { file: "/t".into() });
        for auth in [None, Some("target_token")] {
            let s = HawkbitSettings::resolve(file(auth, None)).unwrap().unwrap();
            assert_eq!(s.auth, AuthMode::EnrollmentToken, "{auth:?}");
        }
        assert_eq!(
            HawkbitSettings::resolve(file(Some("certificate"), Some("/t"))),
            Err(HawkbitConfigError::TokenWithCertificate)
        );
        assert_eq!(
            HawkbitSettings::resolve(file(Some("gateway_token"), None)),
            Err(HawkbitConfigError::NoTokenFile("gateway_token"))
        );
        let e = HawkbitSettings::resolve(file(Some("password"), None))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"password\"") && e.contains("target_token"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_are_named() {
        for (f, key) in [
            (
                HawkbitFile {
                    url: Some("ftp://h".into()),
                    ..file(Some("certificate"), None)
                },
                "hawkbit.url",
            ),
            (
                HawkbitFile {
                    tenant: Some("my tenant".into()),
                    ..file(Some("certificate"), None)
                },
                "hawkbit.tenant",
            ),
            (
                HawkbitFile {
                    after_install: Some("pray".into()),
                    ..file(Some("certificate"), None)
                },
                "hawkbit.after_install",
            ),
            (
                HawkbitFile {
                    reboot_via: Some("sysrq".into()),
                    ..file(Some("certificate"), None)
                },
                "hawkbit.reboot_via",
            ),
        ] {
            let e = HawkbitSettings::resolve(f).unwrap_err().to_string();
            assert!(e.contains(key), "{key}: {e}");
        }
    }

    #[test]
    fn the_announcement_fills_what_is_not_configured() {
        let announced = Announced {
            url: "https://ddi.example".into(),
            tenant: "ACME".into(),
            controller_id: "dev-7".into(),
        };
        let s = HawkbitSettings::resolve_with(HawkbitFile::default(), Some(&announced))
            .unwrap()
            .unwrap();
        assert_eq!(s.url.as_str(), "https://ddi.example/");
        assert_eq!(s.tenant, "ACME");
        assert_eq!(s.controller_id.as_deref(), Some("dev-7"));
        assert_eq!(s.auth, AuthMode::EnrollmentToken);

        let local = HawkbitFile {
            tenant: Some("LOCAL".into()),
            ..file(Some("certificate"), None)
        };
        let s = HawkbitSettings::resolve_with(local, Some(&announced))
            .unwrap()
            .unwrap();
        assert_eq!(s.url.as_str(), "https://hawkbit.example.com/prefix/");
        assert_eq!(s.tenant, "LOCAL");
        assert_eq!(s.controller_id.as_deref(), Some("dev-7"));
        assert_eq!(s.auth, AuthMode::Certificate);

        let bad = Announced {
            url: "ftp://ddi".into(),
            ..announced
        };
        let e = HawkbitSettings::resolve_with(HawkbitFile::default(), Some(&bad))
            .unwrap_err()
            .to_string();
        assert!(e.contains("announced") && e.contains("hawkbit.url"), "{e}");
    }

    #[test]
    fn flags_override_the_file_key_by_key() {
        let lower = HawkbitFile {
            url: Some("https://file".into()),
            tenant: Some("T1".into()),
            ..Default::default()
        };
        let upper = HawkbitFile {
            tenant: Some("T2".into()),
            ..Default::default()
        };
        let merged = upper.over(lower);
        assert_eq!(merged.url.as_deref(), Some("https://file"));
        assert_eq!(merged.tenant.as_deref(), Some("T2"));
    }

    #[test]
    fn the_stall_timeout_is_a_bounded_duration() {
        let resolve = |v: Option<&str>| {
            HawkbitSettings::resolve(HawkbitFile {
                url: Some("https://hawkbit.example.com".into()),
                stall_timeout: v.map(str::to_owned),
                ..HawkbitFile::default()
            })
        };
        assert_eq!(
            resolve(None).unwrap().unwrap().stall_timeout,
            DEFAULT_STALL_TIMEOUT
        );
        assert_eq!(
            resolve(Some("2m")).unwrap().unwrap().stall_timeout,
            std::time::Duration::from_secs(120)
        );
        for bad in ["1s", "2h", "soon"] {
            let err = resolve(Some(bad)).unwrap_err().to_string();
            assert!(
                err.contains("hawkbit.stall_timeout") && err.contains(bad),
                "{err}"
            );
        }
    }
}
