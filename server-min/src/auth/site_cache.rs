//! Sites' active enrollment keys kept in memory, so that a good key is checked without a
//! database round trip (one SQLite statement costs more CPU than the rest of the check).
//!
//! Freshness across processes: every change to a site or its key, by `serve` or by a CLI
//! command on the same data directory, replaces the stamp file `auth/sites.stamp` after its
//! commit ([`SitesStamp::bump`]). The cache reads the stamp's identity (inode, size,
//! modification and change times; one `stat`) before each lookup and uses an entry only when it
//! was loaded under the same stamp, and for at most [`MAX_AGE`] (a bound for changes made
//! outside the bridge, such as a hand-edited database). Reading the stamp before the database
//! read makes the race safe: a change committed after the stamp was read bumps it afterwards,
//! so the entry loaded meanwhile is dropped at the next check.
//!
//! A key that does not match a cached entry is always checked against the database, so a
//! freshly rotated key works at once and a bad key never counts against a stale entry.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::auth::secret::random_bytes;
use crate::datadir::DataDir;
use crate::db::sites::{ActiveKey, SiteRow};

/// Longest an entry is used, even under an unchanged stamp.
pub const MAX_AGE: Duration = Duration::from_secs(30);
/// Sites kept at most; a full cache is emptied of expired entries, then of all.
const MAX_ENTRIES: usize = 4096;

/// The stamp file that tells every process on a data directory that sites changed.
#[derive(Debug, Clone)]
pub struct SitesStamp {
    dir: DataDir,
}

/// What identifies one version of the stamp file (None: there is none yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StampId(Option<(u64, u64, i64, i64, i64, i64)>);

impl SitesStamp {
    pub fn new(dir: DataDir) -> Self {
        Self { dir }
    }

    /// The stamp's current identity; an unreadable stamp matches no entry.
    pub fn read(&self) -> Option<StampId> {
        match std::fs::metadata(self.dir.sites_stamp()) {
            Ok(m) => Some(StampId(Some((
                m.ino(),
                m.size(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec(),
            )))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(StampId(None)),
            Err(_) => None,
        }
    }

    /// Replaces the stamp (a new file renamed over the old one: a new inode). Called after a
    /// committed change; a failure is logged, and caches notice the change within
    /// [`MAX_AGE`].
    pub fn bump(&self) {
        let path = self.dir.sites_stamp();
        let written = random_bytes::<16>()
            .map_err(|e| e.to_string())
            .and_then(|b| {
                self.dir
                    .write_public(&path, hex::encode(b.as_ref()).as_bytes())
                    .map_err(|e| crate::error_chain(&e))
            });
        if let Err(e) = written {
            tracing::warn!(
                path = %path.display(),
                error = %e,
                "cannot replace the sites stamp; other processes use cached site keys for up to {} s",
                MAX_AGE.as_secs()
            );
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.sites_stamp()
    }
}

#[derive(Debug, Clone)]
struct Entry {
    stamp: StampId,
    loaded: Instant,
    site: SiteRow,
    key: ActiveKey,
}

/// The cache of one process.
#[derive(Debug)]
pub struct SiteKeyCache {
    stamp: SitesStamp,
    entries: Mutex<HashMap<String, Entry>>,
}

impl SiteKeyCache {
    pub fn new(stamp: SitesStamp) -> Self {
        Self {
            stamp,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The stamp to look up and load under; read it before the database.
    pub fn stamp(&self) -> Option<StampId> {
        self.stamp.read()
    }

    /// The site and its active key, when loaded under `stamp` less than [`MAX_AGE`] ago.
    pub fn get(&self, code: &str, stamp: StampId, now: Instant) -> Option<(SiteRow, ActiveKey)> {
        let mut map = self.lock();
        let fresh = map
            .get(code)
            .map(|e| e.stamp == stamp && now.saturating_duration_since(e.loaded) < MAX_AGE)?;
        if !fresh {
            map.remove(code);
            return None;
        }
        map.get(code).map(|e| (e.site.clone(), e.key.clone()))
    }

    /// Keeps what the database said under `stamp`.
    pub fn put(&self, code: &str, stamp: StampId, now: Instant, site: &SiteRow, key: &ActiveKey) {
        let mut map = self.lock();
        if map.len() >= MAX_ENTRIES && !map.contains_key(code) {
            map.retain(|_, e| now.saturating_duration_since(e.loaded) < MAX_AGE);
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
        }
        map.insert(
            code.to_owned(),
            Entry {
                stamp,
                loaded: now,
                site: site.clone(),
                key: key.clone(),
            },
        );
    }

    /// Forgets a site the database no longer has (or whose key is gone).
    pub fn forget(&self, code: &str) {
        self.lock().remove(code);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // Nothing panics while holding the lock; a poisoned map is still consistent.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(code: &str) -> SiteRow {
        SiteRow {
            id: format!("id-{code}"),
            tenant: "default".into(),
            site_code: code.into(),
            name: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn key(version: i64) -> ActiveKey {
        ActiveKey {
            version,
            key_hash: format!("hash{version}"),
            fingerprint: "ABCD".into(),
        }
    }

    fn cache() -> (tempfile::TempDir, SiteKeyCache, SitesStamp) {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        std::fs::create_dir_all(dir.path().join("auth")).unwrap();
        let stamp = SitesStamp::new(data);
        (dir, SiteKeyCache::new(stamp.clone()), stamp)
    }

    #[test]
    fn an_entry_serves_until_the_stamp_changes() {
        let (_dir, cache, stamp) = cache();
        let now = Instant::now();
        let s0 = cache.stamp().unwrap();
        assert_eq!(s0, StampId(None), "no stamp file yet");
        cache.put("plant", s0, now, &site("plant"), &key(1));
        assert_eq!(cache.get("plant", s0, now).unwrap().1.version, 1);

        stamp.bump();
        let s1 = cache.stamp().unwrap();
        assert_ne!(s0, s1);
        assert!(
            cache.get("plant", s1, now).is_none(),
            "a bumped stamp drops the entry"
        );
        assert!(cache.is_empty());

        cache.put("plant", s1, now, &site("plant"), &key(2));
        stamp.bump();
        let s2 = cache.stamp().unwrap();
        assert_ne!(s1, s2, "every bump is a new stamp");
        assert!(cache.get("plant", s2, now).is_none());
    }

    #[test]
    fn an_entry_expires_after_max_age() {
        let (_dir, cache, _) = cache();
        let now = Instant::now();
        let s = cache.stamp().unwrap();
        cache.put("plant", s, now, &site("plant"), &key(1));
        assert!(cache.get("plant", s, now + MAX_AGE / 2).is_some());
        assert!(cache.get("plant", s, now + MAX_AGE).is_none());
    }

    #[test]
    fn the_cache_is_bounded() {
        let (_dir, cache, _) = cache();
        let now = Instant::now();
        let s = cache.stamp().unwrap();
        for i in 0..MAX_ENTRIES + 10 {
            let code = format!("site-{i}");
            cache.put(&code, s, now, &site(&code), &key(1));
        }
        assert!(cache.len() <= MAX_ENTRIES, "{}", cache.len());
        cache.forget("site-0");
        assert!(cache.get("site-0", s, now).is_none());
    }
}
