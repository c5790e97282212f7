//! Users: administrators and field technicians.

use zeroize::Zeroizing;

use super::{Actor, AdminError, AdminService, commit, record};
use crate::auth::Role;
use crate::auth::password;
use crate::auth::secret::random_id;
use crate::db::users::{self, UserRow};

/// Longest user name accepted.
const MAX_USERNAME: usize = 64;

fn check_username(name: &str) -> Result<(), AdminError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_USERNAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(AdminError::InvalidField {
            field: "username",
            reason: format!("{name:?} must be 1-{MAX_USERNAME} characters of A-Z a-z 0-9 . _ - @"),
        })
    }
}

async fn hash_off_thread(password: Zeroizing<String>) -> Result<String, AdminError> {
    password::check_policy(&password)?;
    tokio::task::spawn_blocking(move || password::hash(&password))
        .await
        .map_err(|e| AdminError::Task(e.to_string()))?
        .map_err(AdminError::from)
}

impl AdminService {
    pub async fn add_user(
        &self,
        username: &str,
        role: Role,
        password: Zeroizing<String>,
        actor: &Actor,
    ) -> Result<UserRow, AdminError> {
        check_username(username)?;
        let hash = hash_off_thread(password).await?;
        let now = self.now();
        let user = UserRow {
            id: random_id::<16>()?,
            username: username.into(),
            password_hash: hash,
            role: role.as_str().into(),
            created_at: now,
            updated_at: now,
            disabled_at: None,
        };
        let mut tx = self.db.begin_write().await?;
        if !users::create(&mut tx, &user).await? {
            return Err(AdminError::UserExists(username.into()));
        }
        record(
            &mut tx,
            actor,
            "user.added",
            None,
            serde_json::json!({ "username": username, "role": role.as_str(), "outcome": "ok" }),
        )
        .await?;
        commit(tx, "committing a new user").await?;
        Ok(user)
    }

    /// Sets a new password; every token of the user stops working.
    pub async fn set_password(
        &self,
        username: &str,
        password: Zeroizing<String>,
        actor: &Actor,
    ) -> Result<(), AdminError> {
        let hash = hash_off_thread(password).await?;
        let now = self.now();
        let mut tx = self.db.begin_write().await?;
        let user = users::by_name(&mut tx, username)
            .await?
            .ok_or_else(|| AdminError::UserUnknown(username.into()))?;
        users::set_password(&mut tx, username, &hash, now).await?;
        let revoked = users::revoke_user_tokens(&mut tx, &user.id, now).await?;
        record(
            &mut tx,
            actor,
            "user.password_changed",
            None,
            serde_json::json!({ "username": username, "tokens_revoked": revoked, "outcome": "ok" }),
        )
        .await?;
        commit(tx, "committing a password change").await?;
        Ok(())
    }

    /// Disables (every token stops working at once) or enables a user.
    pub async fn set_disabled(
        &self,
        username: &str,
        disabled: bool,
        actor: &Actor,
    ) -> Result<(), AdminError> {
        let now = self.now();
        let mut tx = self.db.begin_write().await?;
        let user = users::by_name(&mut tx, username)
            .await?
            .ok_or_else(|| AdminError::UserUnknown(username.into()))?;
        users::set_disabled(&mut tx, username, disabled, now).await?;
        let revoked = if disabled {
            users::revoke_user_tokens(&mut tx, &user.id, now).await?
        } else {
            0
        };
        record(
            &mut tx,
            actor,
            if disabled {
                "user.disabled"
            } else {
                "user.enabled"
            },
            None,
            serde_json::json!({ "username": username, "tokens_revoked": revoked, "outcome": "ok" }),
        )
        .await?;
        commit(tx, "committing a user's state").await?;
        Ok(())
    }

    pub async fn list_users(&self) -> Result<Vec<UserRow>, AdminError> {
        let mut conn = self.db.acquire().await?;
        Ok(users::list(&mut conn).await?)
    }
}
