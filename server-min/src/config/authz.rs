//! Settings of who may enroll: the collision gate's notion of "recently online", the
//! enrollment limiter, and user token lifetimes.

use std::time::Duration;

use clap::Args;
use nexa_proto::duration::parse_duration;

use crate::auth::limiter::Limits;
use crate::auth::tokens::TokenLifetimes;

pub const DEFAULT_COLLISION_WINDOW: &str = "7d";
pub const DEFAULT_ENROLL_LOCKOUT: &str = "15m";
pub const DEFAULT_ACCESS_TOKEN_LIFETIME: &str = "15m";
pub const DEFAULT_REFRESH_TOKEN_LIFETIME: &str = "12h";
pub const DEFAULT_PENDING_POLL: &str = "30s";

/// Flags (and environment variables).
#[derive(Debug, Clone, Default, Args)]
pub struct AuthzArgs {
    /// A device seen (enrolled, renewed, connected) within this long is "recently online": a
    /// site-key enrollment of the same machine with other keys then waits for an administrator.
    #[arg(long, env = "NEXA_COLLISION_WINDOW", value_name = "DURATION")]
    pub collision_window: Option<String>,
    /// Bad site codes or enrollment keys from one address that lock it out of that site.
    #[arg(long, env = "NEXA_ENROLL_MAX_FAILURES", value_name = "N")]
    pub enroll_max_failures: Option<u32>,
    /// The window those failures are counted in, and how long a lockout lasts.
    #[arg(long, env = "NEXA_ENROLL_LOCKOUT", value_name = "DURATION")]
    pub enroll_lockout: Option<String>,
    /// Site-key enrollment requests per second one address may keep up (bursts of 10x).
    #[arg(long, env = "NEXA_ENROLL_RATE", value_name = "PER_SECOND")]
    pub enroll_rate: Option<u32>,
    /// How long a user's access token is valid.
    #[arg(long, env = "NEXA_ACCESS_TOKEN_LIFETIME", value_name = "DURATION")]
    pub access_token_lifetime: Option<String>,
    /// How long a user's refresh token is valid.
    #[arg(long, env = "NEXA_REFRESH_TOKEN_LIFETIME", value_name = "DURATION")]
    pub refresh_token_lifetime: Option<String>,
    /// How long a device held by the collision gate is asked to wait before asking again.
    #[arg(long, env = "NEXA_PENDING_POLL", value_name = "DURATION")]
    pub pending_poll: Option<String>,
}

/// The same keys in the config file.
#[derive(Debug, Clone, Default)]
pub struct AuthzFileKeys {
    pub collision_window: Option<String>,
    pub enroll_max_failures: Option<u32>,
    pub enroll_lockout: Option<String>,
    pub enroll_rate: Option<u32>,
    pub access_token_lifetime: Option<String>,
    pub refresh_token_lifetime: Option<String>,
    pub pending_poll: Option<String>,
}

/// Resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthzSettings {
    pub collision_window: Duration,
    pub limits: Limits,
    pub tokens: TokenLifetimes,
    pub pending_poll: Duration,
}

impl Default for AuthzSettings {
    fn default() -> Self {
        Self {
            collision_window: Duration::from_secs(7 * 86_400),
            limits: Limits::default(),
            tokens: TokenLifetimes::default(),
            pending_poll: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{name} (--{flag} / {var} / {key}): {reason}")]
pub struct AuthzConfigError {
    name: &'static str,
    flag: &'static str,
    var: &'static str,
    key: &'static str,
    reason: String,
}

fn duration(
    value: Option<String>,
    default: &str,
    min: Duration,
    (name, flag, var, key): (&'static str, &'static str, &'static str, &'static str),
) -> Result<Duration, AuthzConfigError> {
    let err = |reason: String| AuthzConfigError {
        name,
        flag,
        var,
        key,
        reason,
    };
    let raw = value.unwrap_or_else(|| default.to_owned());
    let d = parse_duration(&raw).map_err(err)?;
    if d < min {
        return Err(err(format!(
            "{raw:?} is shorter than the minimum of {}s",
            min.as_secs()
        )));
    }
    Ok(d)
}

impl AuthzSettings {
    pub fn resolve(args: &AuthzArgs, file: AuthzFileKeys) -> Result<Self, AuthzConfigError> {
        let collision_window = duration(
            args.collision_window.clone().or(file.collision_window),
            DEFAULT_COLLISION_WINDOW,
            Duration::ZERO,
            (
                "collision window",
                "collision-window",
                "NEXA_COLLISION_WINDOW",
                "collision_window",
            ),
        )?;
        let lockout = duration(
            args.enroll_lockout.clone().or(file.enroll_lockout),
            DEFAULT_ENROLL_LOCKOUT,
            Duration::from_secs(1),
            (
                "enrollment lockout",
                "enroll-lockout",
                "NEXA_ENROLL_LOCKOUT",
                "enroll_lockout",
            ),
        )?;
        let max_failures = args
            .enroll_max_failures
            .or(file.enroll_max_failures)
            .unwrap_or(Limits::default().max_failures);
        if max_failures == 0 {
            return Err(AuthzConfigError {
                name: "enrollment failures before lockout",
                flag: "enroll-max-failures",
                var: "NEXA_ENROLL_MAX_FAILURES",
                key: "enroll_max_failures",
                reason: "must be at least 1".into(),
            });
        }
        let rate = args
            .enroll_rate
            .or(file.enroll_rate)
            .unwrap_or(Limits::default().rate_per_s as u32);
        if rate == 0 {
            return Err(AuthzConfigError {
                name: "enrollment rate",
                flag: "enroll-rate",
                var: "NEXA_ENROLL_RATE",
                key: "enroll_rate",
                reason: "must be at least 1 per second".into(),
            });
        }
        let access = duration(
            args.access_token_lifetime
                .clone()
                .or(file.access_token_lifetime),
            DEFAULT_ACCESS_TOKEN_LIFETIME,
            Duration::from_secs(1),
            (
                "access token lifetime",
                "access-token-lifetime",
                "NEXA_ACCESS_TOKEN_LIFETIME",
                "access_token_lifetime",
            ),
        )?;
        let refresh = duration(
            args.refresh_token_lifetime
                .clone()
                .or(file.refresh_token_lifetime),
            DEFAULT_REFRESH_TOKEN_LIFETIME,
            access,
            (
                "refresh token lifetime (at least the access token's)",
                "refresh-token-lifetime",
                "NEXA_REFRESH_TOKEN_LIFETIME",
                "refresh_token_lifetime",
            ),
        )?;
        let pending_poll = duration(
            args.pending_poll.clone().or(file.pending_poll),
            DEFAULT_PENDING_POLL,
            Duration::from_secs(1),
            (
                "pending poll interval",
                "pending-poll",
                "NEXA_PENDING_POLL",
                "pending_poll",
            ),
        )?;
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        Ok(Self {
            collision_window,
            limits: Limits {
                rate_per_s: f64::from(rate),
                burst: rate.saturating_mul(10),
                max_failures,
                window: lockout,
                ..Limits::default()
            },
            tokens: TokenLifetimes {
                access_s: secs(access),
                refresh_s: secs(refresh),
            },
            pending_poll,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_errors_name_the_setting() {
        let s = AuthzSettings::resolve(&AuthzArgs::default(), AuthzFileKeys::default()).unwrap();
        assert_eq!(s, AuthzSettings::default());
        let args = AuthzArgs {
            enroll_lockout: Some("soon".into()),
            ..AuthzArgs::default()
        };
        let e = AuthzSettings::resolve(&args, AuthzFileKeys::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("NEXA_ENROLL_LOCKOUT") && e.contains("soon"),
            "{e}"
        );
        let file = AuthzFileKeys {
            access_token_lifetime: Some("2h".into()),
            refresh_token_lifetime: Some("1h".into()),
            ..AuthzFileKeys::default()
        };
        let e = AuthzSettings::resolve(&AuthzArgs::default(), file)
            .unwrap_err()
            .to_string();
        assert!(e.contains("refresh_token_lifetime"), "{e}");
    }
}
