//! Who is calling: an authenticated user and their role.

use serde::Serialize;

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything: sites, keys, pending enrollments, devices, users' tokens, the audit log.
    Admin,
    /// Re-enrolls devices in the field (`nexa-agent enroll --force --user NAME`).
    Technician,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Technician => "technician",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Role::Admin),
            "technician" => Some(Role::Technician),
            _ => None,
        }
    }

    /// Whether this role may re-enroll a device with new keys.
    pub fn may_reenroll(self) -> bool {
        matches!(self, Role::Admin | Role::Technician)
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A user with a valid access token.
    User {
        user_id: String,
        username: String,
        role: Role,
    },
    /// The bridge's static admin bearer token (`NEXA_ADMIN_TOKEN`).
    AdminToken,
}

impl Principal {
    /// The actor recorded in the audit trail.
    pub fn actor(&self) -> String {
        match self {
            Principal::User { username, role, .. } => format!("{}:{username}", role.as_str()),
            Principal::AdminToken => "admin:api".to_owned(),
        }
    }

    pub fn is_admin(&self) -> bool {
        matches!(
            self,
            Principal::AdminToken
                | Principal::User {
                    role: Role::Admin,
                    ..
                }
        )
    }
}
