//! The admin API's bearer token (`NEXA_ADMIN_TOKEN[_FILE]`, config key `admin_token_file`):
//! what `DELETE /api/devices/{id}` requires until users and roles exist. Like the other
//! secrets it comes from the environment or a file, never from the config file itself, and
//! never appears in `Debug` output or logs. Unset: the admin endpoints answer 503.

use std::path::PathBuf;

use clap::Args;

use super::integrations::{IntegrationError, Secret, secret};

/// The shortest admin token accepted: 128 bits of hex, or a long passphrase.
pub const MIN_ADMIN_TOKEN: usize = 16;

/// Flags (and environment variables) of the admin API.
#[derive(Debug, Clone, Default, Args)]
pub struct AdminArgs {
    /// Bearer token of the admin API; prefer NEXA_ADMIN_TOKEN_FILE, a flag shows in the process list.
    #[arg(
        long,
        env = "NEXA_ADMIN_TOKEN",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub admin_token: Option<String>,
    /// File holding the admin API's bearer token (first line).
    #[arg(long, env = "NEXA_ADMIN_TOKEN_FILE", value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
}

/// An admin token that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AdminTokenError {
    #[error(transparent)]
    Secret(#[from] IntegrationError),
    #[error(
        "the admin token (--admin-token[-file] / NEXA_ADMIN_TOKEN[_FILE] / admin_token_file) is {len} characters; use at least {MIN_ADMIN_TOKEN}, e.g. `openssl rand -hex 32`"
    )]
    Weak { len: usize },
}

/// The admin token, if one is configured. `file_key` is the config file's `admin_token_file`.
pub fn resolve(
    args: &AdminArgs,
    file_key: Option<PathBuf>,
) -> Result<Option<Secret>, AdminTokenError> {
    let token = secret(
        "admin token",
        args.admin_token.as_deref(),
        "NEXA_ADMIN_TOKEN",
        args.admin_token_file.as_deref().or(file_key.as_deref()),
    )?;
    if let Some(t) = &token {
        let len = t.expose().chars().count();
        if len < MIN_ADMIN_TOKEN {
            return Err(AdminTokenError::Weak { len });
        }
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_comes_from_the_environment_or_a_file_and_must_be_long() {
        assert!(resolve(&AdminArgs::default(), None).unwrap().is_none());

        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("admin-token");
        std::fs::write(&f, "0123456789abcdef0123\n").unwrap();
        let t = resolve(&AdminArgs::default(), Some(f.clone()))
            .unwrap()
            .unwrap();
        assert_eq!(t.expose(), "0123456789abcdef0123");
        assert!(!format!("{t:?}").contains("0123"), "token in Debug");

        let direct = AdminArgs {
            admin_token: Some("from-the-environment-1".into()),
            ..Default::default()
        };
        let t = resolve(&direct, Some(f)).unwrap().unwrap();
        assert_eq!(t.expose(), "from-the-environment-1", "environment wins");

        let short = AdminArgs {
            admin_token: Some("short".into()),
            ..Default::default()
        };
        let e = resolve(&short, None).unwrap_err().to_string();
        assert!(
            e.contains("at least 16") && e.contains("NEXA_ADMIN_TOKEN"),
            "{e}"
        );

        let missing = AdminArgs {
            admin_token_file: Some(dir.path().join("nope")),
            ..Default::default()
        };
        let e = resolve(&missing, None).unwrap_err().to_string();
        assert!(e.contains("nope") && e.contains("admin token"), "{e}");
    }
}
