//! The site-key check of a zero-touch enrollment: limiter first, then the site's active key.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use super::EnrollError;
use crate::auth::limiter::{EnrollLimiter, Verdict};
use crate::auth::site_cache::SiteKeyCache;
use crate::auth::{KeyHasher, SiteKey};
use crate::db::sites::{self, DEFAULT_TENANT, SiteRow};
use crate::db::{Db, DbError};

/// Longest site code accepted.
pub const MAX_SITE_CODE: usize = 64;

/// Whether `code` is a usable site code: 1–64 of `[A-Za-z0-9._-]`, letter or digit at both ends.
pub fn valid_site_code(code: &str) -> bool {
    let b = code.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_SITE_CODE
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// A site whose key the request presented, with the key's version.
#[derive(Debug, Clone)]
pub struct ProvenSite {
    pub site: SiteRow,
    pub key_version: i64,
}

/// Checks site codes and enrollment keys.
#[derive(Debug, Clone)]
pub struct SiteGate {
    db: Db,
    hasher: KeyHasher,
    limiter: Arc<EnrollLimiter>,
    cache: Arc<SiteKeyCache>,
}

impl SiteGate {
    pub fn new(
        db: Db,
        hasher: KeyHasher,
        limiter: Arc<EnrollLimiter>,
        cache: Arc<SiteKeyCache>,
    ) -> Self {
        Self {
            db,
            hasher,
            limiter,
            cache,
        }
    }

    /// The site, if `key` is its active enrollment key. A locked-out or over-budget
    /// (site code, address) pair is refused before anything is looked up; an unknown site, a
    /// site without a key and a wrong key are one answer (nothing tells them apart) and each
    /// counts towards the lockout.
    pub async fn check(
        &self,
        code: &str,
        key: &str,
        ip: IpAddr,
    ) -> Result<ProvenSite, EnrollError> {
        match self.limiter.check(code, ip, Instant::now()) {
            Verdict::Allowed => {}
            Verdict::RateLimited(wait) => {
                return Err(EnrollError::RateLimited {
                    retry_after: wait,
                    locked_out: false,
                });
            }
            Verdict::LockedOut(wait) => {
                return Err(EnrollError::RateLimited {
                    retry_after: wait,
                    locked_out: true,
                });
            }
        }
        match self.lookup(code, key).await? {
            Some(proven) => {
                self.limiter.success(code, ip);
                Ok(proven)
            }
            None => {
                if let Some(lockout) = self.limiter.failure(code, ip, Instant::now()) {
                    tracing::warn!(
                        target: "nexa::alert",
                        site_code = code,
                        source = %ip,
                        lockout_s = lockout.as_secs(),
                        "[ENROLL] repeated bad enrollment keys: source locked out of the site"
                    );
                }
                tracing::warn!(site_code = code, source = %ip, "enrollment with a bad site code or key refused");
                Err(EnrollError::EnrollmentKeyInvalid)
            }
        }
    }

    /// The cached key first (no database read for a good key), else the database's, which
    /// is then cached. A key the cache refuses is checked against the database: it may have
    /// been minted since.
    async fn lookup(&self, code: &str, key: &str) -> Result<Option<ProvenSite>, DbError> {
        let Some(presented) = SiteKey::parse(key) else {
            return Ok(None);
        };
        // The stamp is read before the database (see auth::site_cache).
        let stamp = self.cache.stamp();
        if let Some((site, active)) = stamp.and_then(|s| self.cache.get(code, s, Instant::now()))
            && self.hasher.verify(presented.expose(), &active.key_hash)
        {
            return Ok(Some(ProvenSite {
                site,
                key_version: active.version,
            }));
        }
        let mut conn = self.db.acquire().await?;
        let Some((site, active)) = sites::with_active_key(&mut conn, DEFAULT_TENANT, code).await?
        else {
            self.cache.forget(code);
            return Ok(None);
        };
        if let Some(s) = stamp {
            self.cache.put(code, s, Instant::now(), &site, &active);
        }
        Ok(self
            .hasher
            .verify(presented.expose(), &active.key_hash)
            .then_some(ProvenSite {
                site,
                key_version: active.version,
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_codes_follow_the_id_rule() {
        for ok in ["berlin-01", "A", "plant_7.hall-2"] {
            assert!(valid_site_code(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "a b", "ä", &"x".repeat(65)] {
            assert!(!valid_site_code(bad), "{bad}");
        }
    }
}
