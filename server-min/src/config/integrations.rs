//! Settings of the services around the bridge: the MQTT broker devices are told about, the
//! hawkBit Management API targets are created in, and the secret ThingsBoard's rule engine
//! presents on `POST /webhooks/thingsboard`.
//!
//! Secrets come from the environment or from a file, never from the config file itself, and
//! never appear in `Debug` output or logs.

use std::path::{Path, PathBuf};

use clap::Args;
use nexa_proto::base_url::BaseUrlError;
use nexa_proto::{BrokerUrl, BrokerUrlError};
use url::Url;
use zeroize::Zeroizing;

/// hawkBit's default tenant.
pub const DEFAULT_HAWKBIT_TENANT: &str = "DEFAULT";

/// The shortest webhook secret accepted: 128 bits of hex, or a long passphrase.
pub const MIN_WEBHOOK_SECRET: usize = 16;

/// Flags (and environment variables) of the integrations.
#[derive(Debug, Clone, Default, Args)]
pub struct IntegrationArgs {
    /// MQTT broker announced to devices in the enrollment response, mqtts://HOST[:PORT].
    #[arg(long, env = "MQTT_BROKER_URL", value_name = "URL")]
    pub mqtt_url: Option<String>,
    /// hawkBit base URL (Management API at URL/rest/v1); unset: no targets are created.
    #[arg(long, env = "HAWKBIT_URL", value_name = "URL")]
    pub hawkbit_url: Option<String>,
    /// hawkBit URL devices poll (DDI), announced at enrollment (default: HAWKBIT_URL).
    #[arg(long, env = "HAWKBIT_DDI_URL", value_name = "URL")]
    pub hawkbit_ddi_url: Option<String>,
    /// hawkBit tenant of the devices' targets (default DEFAULT).
    #[arg(long, env = "HAWKBIT_TENANT", value_name = "NAME")]
    pub hawkbit_tenant: Option<String>,
    /// hawkBit Management API user (HTTP Basic).
    #[arg(long, env = "HAWKBIT_USER", value_name = "NAME")]
    pub hawkbit_user: Option<String>,
    /// hawkBit password; prefer HAWKBIT_PASSWORD_FILE, a flag shows in the process list.
    #[arg(
        long,
        env = "HAWKBIT_PASSWORD",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub hawkbit_password: Option<String>,
    /// File holding the hawkBit password (first line).
    #[arg(long, env = "HAWKBIT_PASSWORD_FILE", value_name = "FILE")]
    pub hawkbit_password_file: Option<PathBuf>,
    /// PEM CA file hawkBit's TLS certificate must chain to (default: the system's roots).
    #[arg(long, env = "HAWKBIT_CA", value_name = "FILE")]
    pub hawkbit_ca: Option<PathBuf>,
    /// Secret ThingsBoard sends in X-Nexa-Webhook-Secret; prefer the _FILE variant.
    #[arg(
        long,
        env = "THINGSBOARD_WEBHOOK_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub webhook_secret: Option<String>,
    /// File holding the webhook secret (first line).
    #[arg(long, env = "THINGSBOARD_WEBHOOK_SECRET_FILE", value_name = "FILE")]
    pub webhook_secret_file: Option<PathBuf>,
}

/// The integration keys of the config file (secrets only as files).
#[derive(Debug, Clone, Default)]
pub struct IntegrationFileKeys {
    pub mqtt_url: Option<String>,
    pub hawkbit_url: Option<String>,
    pub hawkbit_ddi_url: Option<String>,
    pub hawkbit_tenant: Option<String>,
    pub hawkbit_user: Option<String>,
    pub hawkbit_password_file: Option<PathBuf>,
    pub hawkbit_ca: Option<PathBuf>,
    pub webhook_secret_file: Option<PathBuf>,
}

/// A secret string: zeroized on drop, redacted in `Debug`.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(Zeroizing::new(value))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// How to reach the hawkBit Management API.
#[derive(Debug, Clone)]
pub struct HawkbitSettings {
    /// Management API base URL, ending in `/`.
    pub url: Url,
    /// The base URL devices poll (DDI), ending in `/`; announced at enrollment.
    pub ddi_url: Url,
    /// The tenant of the devices' targets, announced at enrollment.
    pub tenant: String,
    pub user: String,
    pub password: Secret,
    /// Extra trust anchor for hawkBit's TLS certificate.
    pub ca_file: Option<PathBuf>,
}

/// Resolved integration settings.
#[derive(Debug, Clone, Default)]
pub struct Integrations {
    pub mqtt_url: Option<BrokerUrl>,
    pub hawkbit: Option<HawkbitSettings>,
    /// Unset: the webhook answers 503 `webhook_not_configured`.
    pub webhook_secret: Option<Secret>,
}

/// An integration setting that cannot be used, naming flag, variable and key.
#[derive(Debug, thiserror::Error)]
pub enum IntegrationError {
    #[error("MQTT broker (--mqtt-url / MQTT_BROKER_URL / mqtt_url): {0}")]
    MqttUrl(BrokerUrlError),
    #[error(
        "hawkBit URL (--hawkbit-url / HAWKBIT_URL / hawkbit_url) {value:?} is invalid: {reason}"
    )]
    HawkbitUrl { value: String, reason: String },
    #[error(
        "HAWKBIT_URL is set but {missing} is not: the Management API needs a user and password (HAWKBIT_USER, HAWKBIT_PASSWORD_FILE)"
    )]
    HawkbitCredentials { missing: &'static str },
    #[error("cannot read {what} file {path}: {source}")]
    SecretFile {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} in {origin} is empty")]
    EmptySecret { what: &'static str, origin: String },
    #[error(
        "the webhook secret (THINGSBOARD_WEBHOOK_SECRET[_FILE]) is {len} characters; use at least {MIN_WEBHOOK_SECRET}, e.g. `openssl rand -hex 16`"
    )]
    WeakWebhookSecret { len: usize },
    #[error(
        "hawkBit tenant (--hawkbit-tenant / HAWKBIT_TENANT / hawkbit_tenant) {0:?} is invalid: use letters, digits, '-', '_' or '.'"
    )]
    HawkbitTenant(String),
    #[error("hawkBit CA file (--hawkbit-ca / HAWKBIT_CA / hawkbit_ca) {0} does not exist")]
    HawkbitCa(PathBuf),
}

impl Integrations {
    pub fn resolve(
        args: &IntegrationArgs,
        file: IntegrationFileKeys,
    ) -> Result<Self, IntegrationError> {
        let mqtt_url = args
            .mqtt_url
            .clone()
            .or(file.mqtt_url)
            .map(|raw| BrokerUrl::parse(&raw).map_err(IntegrationError::MqttUrl))
            .transpose()?;

        let hawkbit = match args.hawkbit_url.clone().or(file.hawkbit_url) {
            None => None,
            Some(raw) => {
                let url = parse_hawkbit_url(&raw)?;
                let ddi_url = match args.hawkbit_ddi_url.clone().or(file.hawkbit_ddi_url) {
                    Some(raw) => parse_hawkbit_url(&raw)?,
                    None => url.clone(),
                };
                let tenant = match args.hawkbit_tenant.clone().or(file.hawkbit_tenant) {
                    None => DEFAULT_HAWKBIT_TENANT.to_owned(),
                    Some(t) => parse_tenant(&t)?,
                };
                let user = args
                    .hawkbit_user
                    .clone()
                    .or(file.hawkbit_user)
                    .filter(|u| !u.trim().is_empty())
                    .ok_or(IntegrationError::HawkbitCredentials {
                        missing: "HAWKBIT_USER",
                    })?;
                let password = secret(
                    "hawkBit password",
                    args.hawkbit_password.as_deref(),
                    "HAWKBIT_PASSWORD",
                    args.hawkbit_password_file
                        .as_deref()
                        .or(file.hawkbit_password_file.as_deref()),
                )?
                .ok_or(IntegrationError::HawkbitCredentials {
                    missing: "HAWKBIT_PASSWORD(_FILE)",
                })?;
                let ca_file = args.hawkbit_ca.clone().or(file.hawkbit_ca);
                if let Some(ca) = &ca_file
                    && !ca.is_file()
                {
                    return Err(IntegrationError::HawkbitCa(ca.clone()));
                }
                Some(HawkbitSettings {
                    url,
                    ddi_url,
                    tenant,
                    user: user.trim().to_owned(),
                    password,
                    ca_file,
                })
            }
        };

        let webhook_secret = secret(
            "webhook secret",
            args.webhook_secret.as_deref(),
            "THINGSBOARD_WEBHOOK_SECRET",
            args.webhook_secret_file
                .as_deref()
                .or(file.webhook_secret_file.as_deref()),
        )?;
        if let Some(s) = &webhook_secret
            && s.expose().chars().count() < MIN_WEBHOOK_SECRET
        {
            return Err(IntegrationError::WeakWebhookSecret {
                len: s.expose().chars().count(),
            });
        }
        Ok(Self {
            mqtt_url,
            hawkbit,
            webhook_secret,
        })
    }
}

/// A secret given directly (flag / environment) or as a file whose first line is the secret.
pub(super) fn secret(
    what: &'static str,
    direct: Option<&str>,
    direct_name: &str,
    file: Option<&Path>,
) -> Result<Option<Secret>, IntegrationError> {
    let (value, origin) = match (direct, file) {
        (Some(v), _) => (Zeroizing::new(v.to_owned()), direct_name.to_owned()),
        (None, Some(path)) => {
            let text =
                std::fs::read_to_string(path).map_err(|source| IntegrationError::SecretFile {
                    what,
                    path: path.to_owned(),
                    source,
                })?;
            let text = Zeroizing::new(text);
            (
                Zeroizing::new(text.lines().next().unwrap_or("").to_owned()),
                path.display().to_string(),
            )
        }
        (None, None) => return Ok(None),
    };
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(IntegrationError::EmptySecret { what, origin });
    }
    Ok(Some(Secret::new(trimmed.to_owned())))
}

/// A tenant is one path segment of every DDI URL.
fn parse_tenant(raw: &str) -> Result<String, IntegrationError> {
    let t = raw.trim();
    let ok = !t.is_empty()
        && t.len() <= 64
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(t.to_owned())
    } else {
        Err(IntegrationError::HawkbitTenant(raw.to_owned()))
    }
}

fn parse_hawkbit_url(raw: &str) -> Result<Url, IntegrationError> {
    nexa_proto::base_url::parse_base_url(raw, &["http", "https"], "use http:// or https://")
        .map_err(|e| IntegrationError::HawkbitUrl {
            value: raw.to_owned(),
            reason: match e {
                BaseUrlError::Credentials => {
                    "put the credentials in HAWKBIT_USER and HAWKBIT_PASSWORD_FILE, not in the URL"
                        .into()
                }
                other => other.to_string(),
            },
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hawkbit_args(url: &str) -> IntegrationArgs {
        IntegrationArgs {
            hawkbit_url: Some(url.into()),
            hawkbit_user: Some("admin".into()),
            hawkbit_password: Some("pw".into()),
            ..Default::default()
        }
    }

    #[test]
    fn nothing_configured_is_fine() {
        let i = Integrations::resolve(&IntegrationArgs::default(), Default::default()).unwrap();
        assert!(i.mqtt_url.is_none() && i.hawkbit.is_none() && i.webhook_secret.is_none());
    }

    #[test]
    fn hawkbit_needs_credentials_and_a_usable_url() {
        let i = Integrations::resolve(
            &hawkbit_args("http://hawkbit:8080/prefix"),
            Default::default(),
        )
        .unwrap();
        let h = i.hawkbit.unwrap();
        assert_eq!(h.url.as_str(), "http://hawkbit:8080/prefix/");
        assert_eq!(
            h.url.join("rest/v1/targets").unwrap().path(),
            "/prefix/rest/v1/targets"
        );
        assert!(!format!("{h:?}").contains("pw"), "password in Debug");

        let args = IntegrationArgs {
            hawkbit_password: None,
            ..hawkbit_args("http://hawkbit:8080")
        };
        let e = Integrations::resolve(&args, Default::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("HAWKBIT_PASSWORD"), "{e}");
        for (url, why) in [
            ("ftp://h", "http:// or https://"),
            ("http://u:p@h", "HAWKBIT_USER"),
            ("hawkbit:8080", "http:// or https://"),
        ] {
            let e = Integrations::resolve(&hawkbit_args(url), Default::default())
                .unwrap_err()
                .to_string();
            assert!(e.contains(why) && e.contains("HAWKBIT_URL"), "{url}: {e}");
        }
    }

    #[test]
    fn secrets_come_from_files_and_must_be_strong() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("secret");
        std::fs::write(&f, "0123456789abcdef0123\nignored\n").unwrap();
        let file = IntegrationFileKeys {
            webhook_secret_file: Some(f.clone()),
            mqtt_url: Some("mqtts://broker.example".into()),
            ..Default::default()
        };
        let i = Integrations::resolve(&IntegrationArgs::default(), file).unwrap();
        assert_eq!(i.webhook_secret.unwrap().expose(), "0123456789abcdef0123");
        assert_eq!(
            i.mqtt_url.unwrap().to_string(),
            "mqtts://broker.example:8883"
        );

        let args = IntegrationArgs {
            webhook_secret: Some("short".into()),
            ..Default::default()
        };
        let e = Integrations::resolve(&args, Default::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("at least 16"), "{e}");

        let args = IntegrationArgs {
            webhook_secret_file: Some(dir.path().join("missing")),
            ..Default::default()
        };
        let e = Integrations::resolve(&args, Default::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing") && e.contains("webhook secret"), "{e}");

        let args = IntegrationArgs {
            mqtt_url: Some("tcp://broker".into()),
            ..Default::default()
        };
        let e = Integrations::resolve(&args, Default::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("MQTT_BROKER_URL") && e.contains("mqtts://"),
            "{e}"
        );
    }
}
