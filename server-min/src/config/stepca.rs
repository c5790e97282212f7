//! Which CA signs device certificates: the built-in Sub-CA (default) or a tenant step-ca
//! (`STEP_CA_URL`, `STEP_CA_FINGERPRINT`, `STEP_CA_PROVISIONER_NAME`,
//! `STEP_CA_PROVISIONER_PASSWORD[_FILE]`, the names the original bridge used).

use std::path::PathBuf;

use clap::Args;
use nexa_proto::Fingerprint;
use url::Url;

use super::integrations::{IntegrationError, Secret, secret};

/// Flags (and environment variables) of the step-ca backend.
#[derive(Debug, Clone, Default, Args)]
pub struct StepCaArgs {
    /// step-ca base URL, e.g. https://ca.example.com:9000; set: step-ca signs device certificates.
    #[arg(long, env = "STEP_CA_URL", value_name = "URL")]
    pub stepca_url: Option<String>,
    /// SHA-256 fingerprint of step-ca's root certificate (64 hex digits), pinned.
    #[arg(long, env = "STEP_CA_FINGERPRINT", value_name = "SHA256")]
    pub stepca_fingerprint: Option<String>,
    /// Name of step-ca's JWK provisioner the bridge signs with.
    #[arg(long, env = "STEP_CA_PROVISIONER_NAME", value_name = "NAME")]
    pub stepca_provisioner: Option<String>,
    /// The provisioner's password; prefer the _FILE variant, a flag shows in the process list.
    #[arg(
        long,
        env = "STEP_CA_PROVISIONER_PASSWORD",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub stepca_password: Option<String>,
    /// File holding the provisioner's password (first line).
    #[arg(long, env = "STEP_CA_PROVISIONER_PASSWORD_FILE", value_name = "FILE")]
    pub stepca_password_file: Option<PathBuf>,
}

/// The step-ca keys of the config file (the password only as a file).
#[derive(Debug, Clone, Default)]
pub struct StepCaFileKeys {
    pub stepca_url: Option<String>,
    pub stepca_fingerprint: Option<String>,
    pub stepca_provisioner: Option<String>,
    pub stepca_password_file: Option<PathBuf>,
}

/// How to reach step-ca and sign with its provisioner.
#[derive(Debug, Clone)]
pub struct StepCaSettings {
    /// Base URL, ending in `/`.
    pub url: Url,
    pub fingerprint: Fingerprint,
    pub provisioner: String,
    pub password: Secret,
}

/// A step-ca setting that cannot be used, naming flag, variable and key.
#[derive(Debug, thiserror::Error)]
pub enum StepCaConfigError {
    #[error("step-ca URL (--stepca-url / STEP_CA_URL / stepca_url) {value:?} is invalid: {reason}")]
    Url { value: String, reason: String },
    #[error(
        "STEP_CA_URL is set but {missing} is not: the bridge needs step-ca's root fingerprint, the provisioner's name and its password"
    )]
    Missing { missing: &'static str },
    #[error(
        "step-ca fingerprint (--stepca-fingerprint / STEP_CA_FINGERPRINT / stepca_fingerprint): {0}"
    )]
    Fingerprint(nexa_proto::FingerprintError),
    #[error(
        "{0} is set but STEP_CA_URL is not; set STEP_CA_URL to sign through step-ca, or drop the other STEP_CA_* settings"
    )]
    Orphan(&'static str),
    #[error(transparent)]
    Secret(#[from] IntegrationError),
}

impl StepCaSettings {
    /// `None`: the built-in CA signs.
    pub fn resolve(
        args: &StepCaArgs,
        file: StepCaFileKeys,
    ) -> Result<Option<Self>, StepCaConfigError> {
        let fingerprint = args.stepca_fingerprint.clone().or(file.stepca_fingerprint);
        let provisioner = args.stepca_provisioner.clone().or(file.stepca_provisioner);
        let password = secret(
            "step-ca provisioner password",
            args.stepca_password.as_deref(),
            "STEP_CA_PROVISIONER_PASSWORD",
            args.stepca_password_file
                .as_deref()
                .or(file.stepca_password_file.as_deref()),
        )?;
        let Some(raw) = args.stepca_url.clone().or(file.stepca_url) else {
            let orphan = [
                (fingerprint.is_some(), "STEP_CA_FINGERPRINT"),
                (provisioner.is_some(), "STEP_CA_PROVISIONER_NAME"),
                (password.is_some(), "STEP_CA_PROVISIONER_PASSWORD(_FILE)"),
            ]
            .into_iter()
            .find_map(|(set, name)| set.then_some(name));
            return match orphan {
                Some(name) => Err(StepCaConfigError::Orphan(name)),
                None => Ok(None),
            };
        };
        let url = nexa_proto::base_url::parse_base_url(&raw, &["https"], "use https://").map_err(
            |e| StepCaConfigError::Url {
                value: raw.clone(),
                reason: e.to_string(),
            },
        )?;
        let fingerprint = fingerprint.ok_or(StepCaConfigError::Missing {
            missing: "STEP_CA_FINGERPRINT",
        })?;
        let fingerprint =
            Fingerprint::parse(&fingerprint).map_err(StepCaConfigError::Fingerprint)?;
        let provisioner = provisioner
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .ok_or(StepCaConfigError::Missing {
                missing: "STEP_CA_PROVISIONER_NAME",
            })?;
        let password = password.ok_or(StepCaConfigError::Missing {
            missing: "STEP_CA_PROVISIONER_PASSWORD(_FILE)",
        })?;
        Ok(Some(Self {
            url,
            fingerprint,
            provisioner,
            password,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn full() -> StepCaArgs {
        StepCaArgs {
            stepca_url: Some("https://ca.example.com:9000".into()),
            stepca_fingerprint: Some(FP.to_uppercase()),
            stepca_provisioner: Some("iot-bridge".into()),
            stepca_password: Some("pw".into()),
            stepca_password_file: None,
        }
    }

    #[test]
    fn unset_means_the_builtin_ca_and_a_full_set_means_step_ca() {
        assert!(
            StepCaSettings::resolve(&StepCaArgs::default(), Default::default())
                .unwrap()
                .is_none()
        );
        let s = StepCaSettings::resolve(&full(), Default::default())
            .unwrap()
            .unwrap();
        assert_eq!(s.url.as_str(), "https://ca.example.com:9000/");
        assert_eq!(s.fingerprint.to_string(), FP);
        assert_eq!(s.provisioner, "iot-bridge");
        assert!(!format!("{s:?}").contains("pw\""), "{s:?}");
    }

    #[test]
    fn each_problem_is_named() {
        let cases: Vec<(StepCaArgs, &str)> = vec![
            (
                StepCaArgs {
                    stepca_fingerprint: None,
                    ..full()
                },
                "STEP_CA_FINGERPRINT",
            ),
            (
                StepCaArgs {
                    stepca_provisioner: Some(" ".into()),
                    ..full()
                },
                "STEP_CA_PROVISIONER_NAME",
            ),
            (
                StepCaArgs {
                    stepca_password: None,
                    ..full()
                },
                "STEP_CA_PROVISIONER_PASSWORD",
            ),
            (
                StepCaArgs {
                    stepca_url: Some("http://ca:9000".into()),
                    ..full()
                },
                "https://",
            ),
            (
                StepCaArgs {
                    stepca_fingerprint: Some("abc".into()),
                    ..full()
                },
                "64 hex digits",
            ),
            (
                StepCaArgs {
                    stepca_url: None,
                    ..full()
                },
                "but STEP_CA_URL is not",
            ),
        ];
        for (args, needle) in cases {
            let err = StepCaSettings::resolve(&args, Default::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }
}
