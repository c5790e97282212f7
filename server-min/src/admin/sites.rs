//! Sites and their enrollment keys.

use serde::Serialize;

use super::{Actor, AdminError, AdminService, commit, record};
use crate::auth::SiteKey;
use crate::auth::secret::random_id;
use crate::auth::site_key::display_fingerprint;
use crate::db::sites::{self, DEFAULT_TENANT, SiteRow, SiteSummary};
use crate::enroll::site::valid_site_code;

/// Longest site name accepted.
const MAX_NAME: usize = 200;

/// A key just minted: the only time its plaintext exists outside the device.
#[derive(Serialize)]
pub struct MintedKey {
    pub site_code: String,
    pub version: i64,
    /// 4 hex characters, e.g. `1A2B`.
    pub fingerprint: String,
    /// `v3 (1A2B)`.
    pub display: String,
    /// `cek_…`: shown once, stored nowhere.
    pub enrollment_key: String,
}

impl std::fmt::Debug for MintedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MintedKey")
            .field("site_code", &self.site_code)
            .field("display", &self.display)
            .finish_non_exhaustive()
    }
}

/// What may be known of a site's key without the key.
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    pub site_code: String,
    pub version: i64,
    pub fingerprint: String,
    pub display: String,
    pub created_at: Option<i64>,
}

fn check_name(name: Option<&str>) -> Result<(), AdminError> {
    if let Some(n) = name
        && (n.chars().count() > MAX_NAME || n.chars().any(char::is_control))
    {
        return Err(AdminError::InvalidField {
            field: "name",
            reason: format!("at most {MAX_NAME} characters without control characters"),
        });
    }
    Ok(())
}

fn check_code(code: &str) -> Result<(), AdminError> {
    if valid_site_code(code) {
        Ok(())
    } else {
        Err(AdminError::InvalidField {
            field: "site_code",
            reason: format!(
                "{code:?} must be 1-64 characters of A-Z a-z 0-9 . _ -, starting and ending with a letter or digit"
            ),
        })
    }
}

impl AdminService {
    /// Creates a site and mints its first enrollment key.
    pub async fn create_site(
        &self,
        code: &str,
        name: Option<&str>,
        actor: &Actor,
    ) -> Result<MintedKey, AdminError> {
        check_code(code)?;
        check_name(name)?;
        let now = self.now();
        let site = SiteRow {
            id: random_id::<16>()?,
            tenant: DEFAULT_TENANT.into(),
            site_code: code.into(),
            name: name.map(str::to_owned),
            created_at: now,
            updated_at: now,
        };
        let key = SiteKey::mint()?;
        let mut tx = self.db.begin_write().await?;
        if !sites::create(&mut tx, &site).await? {
            return Err(AdminError::SiteExists(code.into()));
        }
        let minted = self.store_key(&mut tx, &site, key, actor).await?;
        record(
            &mut tx,
            actor,
            "site.created",
            None,
            serde_json::json!({ "site": code, "name": name, "key": minted.display, "outcome": "ok" }),
        )
        .await?;
        commit(tx, "committing a new site").await?;
        self.sites_changed();
        tracing::info!(site = code, key = %minted.display, "site created");
        Ok(minted)
    }

    pub async fn list_sites(&self) -> Result<Vec<SiteSummary>, AdminError> {
        let mut conn = self.db.acquire().await?;
        Ok(sites::list(&mut conn, DEFAULT_TENANT).await?)
    }

    pub async fn site(&self, code: &str) -> Result<SiteSummary, AdminError> {
        let mut conn = self.db.acquire().await?;
        sites::summary(&mut conn, DEFAULT_TENANT, code)
            .await?
            .ok_or_else(|| AdminError::SiteUnknown(code.into()))
    }

    /// Changes a site's display name.
    pub async fn rename_site(
        &self,
        code: &str,
        name: Option<&str>,
        actor: &Actor,
    ) -> Result<SiteSummary, AdminError> {
        check_name(name)?;
        let mut tx = self.db.begin_write().await?;
        let site = sites::get_by_code(&mut tx, DEFAULT_TENANT, code)
            .await?
            .ok_or_else(|| AdminError::SiteUnknown(code.into()))?;
        sites::rename(&mut tx, &site.id, name, self.now()).await?;
        record(
            &mut tx,
            actor,
            "site.renamed",
            None,
            serde_json::json!({ "site": code, "from": site.name, "to": name, "outcome": "ok" }),
        )
        .await?;
        commit(tx, "committing a site's name").await?;
        self.sites_changed();
        self.site(code).await
    }

    /// Deletes a site that no device belongs to.
    pub async fn delete_site(&self, code: &str, actor: &Actor) -> Result<(), AdminError> {
        let mut tx = self.db.begin_write().await?;
        let site = sites::get_by_code(&mut tx, DEFAULT_TENANT, code)
            .await?
            .ok_or_else(|| AdminError::SiteUnknown(code.into()))?;
        if !sites::delete(&mut tx, &site.id).await? {
            return Err(AdminError::SiteInUse(code.into()));
        }
        record(
            &mut tx,
            actor,
            "site.deleted",
            None,
            serde_json::json!({ "site": code, "outcome": "ok" }),
        )
        .await?;
        commit(tx, "committing a site's deletion").await?;
        self.sites_changed();
        Ok(())
    }

    /// Mints a new key for the site; the old one stops working in the same transaction.
    pub async fn rotate_key(&self, code: &str, actor: &Actor) -> Result<MintedKey, AdminError> {
        let key = SiteKey::mint()?;
        let mut tx = self.db.begin_write().await?;
        let site = sites::get_by_code(&mut tx, DEFAULT_TENANT, code)
            .await?
            .ok_or_else(|| AdminError::SiteUnknown(code.into()))?;
        let previous = sites::active_key(&mut tx, &site.id).await?;
        let minted = self.store_key(&mut tx, &site, key, actor).await?;
        record(
            &mut tx,
            actor,
            "site.key_rotated",
            None,
            serde_json::json!({
                "site": code,
                "key": minted.display,
                "previous": previous.map(|p| display_fingerprint(p.version, &p.fingerprint)),
                "outcome": "ok",
            }),
        )
        .await?;
        commit(tx, "committing a key rotation").await?;
        self.sites_changed();
        tracing::info!(site = code, key = %minted.display, "site enrollment key rotated");
        Ok(minted)
    }

    /// The active key's version and fingerprint (never the key).
    pub async fn key_info(&self, code: &str) -> Result<Option<KeyInfo>, AdminError> {
        let s = self.site(code).await?;
        Ok(s.key_version
            .zip(s.key_fingerprint.clone())
            .map(|(version, fingerprint)| KeyInfo {
                site_code: s.site.site_code.clone(),
                version,
                display: display_fingerprint(version, &fingerprint),
                fingerprint,
                created_at: s.key_created_at,
            }))
    }

    async fn store_key(
        &self,
        tx: &mut crate::db::Tx,
        site: &SiteRow,
        key: SiteKey,
        actor: &Actor,
    ) -> Result<MintedKey, AdminError> {
        let fingerprint = key.fingerprint();
        let version = sites::rotate_key(
            tx,
            &site.id,
            &self.hasher.hash(key.expose()),
            &fingerprint,
            &actor.name,
            self.now(),
        )
        .await?;
        Ok(MintedKey {
            site_code: site.site_code.clone(),
            version,
            display: display_fingerprint(version, &fingerprint),
            fingerprint,
            enrollment_key: key.expose().to_owned(),
        })
    }
}
