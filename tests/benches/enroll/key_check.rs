//! The site-key check on its own: `SiteGate::check` of the bridge library, as `serve` builds
//! it (limiter, the stamp `stat` and the site key cache, else one indexed SQLite read of the
//! site and its active key; HMAC-SHA-256 and a constant-time compare) against a real migrated
//! SQLite file, called back to back on one task. Also measured: the same check when every
//! call misses the cache (the stamp bumped before each), i.e. the database path.
//!
//! Its CPU time per call is what site-key authorization adds to an enrollment's server work;
//! the enrollment benchmark divides it by the server CPU per pre-registered enrollment.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nexa_server::admin::{Actor, AdminService};
use nexa_server::auth::limiter::{EnrollLimiter, Limits};
use nexa_server::auth::site_cache::{SiteKeyCache, SitesStamp};
use nexa_server::auth::{KeyHasher, Pepper};
use nexa_server::clock::SystemClock;
use nexa_server::datadir::DataDir;
use nexa_server::db::Db;
use nexa_server::enroll::site::SiteGate;
use nexa_testkit::procfs::cpu_seconds;

/// Site code of the measurement.
const SITE: &str = "bench-key-check";
/// Checks before timing (SQLite page cache, connection pool, allocator).
const WARMUP: usize = 2_000;

/// CPU and wall time per check, in microseconds.
#[derive(Debug, Clone, Copy)]
pub struct PerCheck {
    pub checks: usize,
    /// CPU (user + system, all threads of this process).
    pub cpu_us: f64,
    pub wall_us: f64,
}

/// What the measurement found.
#[derive(Debug, Clone, Copy)]
pub struct KeyCheckCost {
    /// As `serve` runs it: the site's key cached after the first check.
    pub cached: PerCheck,
    /// Every check reads the database (the first check after a change to the site).
    pub uncached: PerCheck,
}

/// Runs checks of the right key for at least `min_time` and `min_checks`, cached and
/// uncached; a refused check fails the measurement (it would measure the wrong path).
pub fn measure(min_time: Duration, min_checks: usize) -> Result<KeyCheckCost> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("key-check runtime")?;
    rt.block_on(run(min_time, min_checks))
}

async fn run(min_time: Duration, min_checks: usize) -> Result<KeyCheckCost> {
    let dir = tempfile::tempdir().context("key-check data directory")?;
    let db = Db::open_sqlite(&dir.path().join("nexa.db"))
        .await
        .context("opening the key-check database")?;
    let mut pepper = [0u8; 32];
    rand::fill(&mut pepper);
    let hasher = KeyHasher::new(&Pepper::from_bytes(pepper));
    std::fs::create_dir_all(dir.path().join("auth")).context("key-check auth directory")?;
    let stamp = SitesStamp::new(DataDir::new(dir.path()));
    let admin = AdminService::new(db.clone(), hasher.clone(), Arc::new(SystemClock))
        .with_sites_stamp(stamp.clone());
    let actor = Actor {
        name: "operator:bench".into(),
        source: Some("cli".into()),
    };
    let minted = admin
        .create_site(SITE, Some("key-check benchmark"), &actor)
        .await
        .context("creating the key-check site")?;
    // A stamp that cannot be read (its directory is a file) never lets an entry be used:
    // every check of this gate reads the database.
    let not_a_dir = dir.path().join("not-a-dir");
    std::fs::write(&not_a_dir, b"").context("key-check stamp blocker")?;
    let unreadable = SitesStamp::new(DataDir::new(&not_a_dir));
    let gate = |stamp: SitesStamp| {
        // The limiter stays in the path; its budget is raised so that it never refuses.
        let limiter = EnrollLimiter::new(Limits {
            rate_per_s: 1e12,
            burst: u32::MAX,
            ..Limits::default()
        });
        SiteGate::new(
            db.clone(),
            hasher.clone(),
            Arc::new(limiter),
            Arc::new(SiteKeyCache::new(stamp)),
        )
    };
    let key = minted.enrollment_key;
    let cached = time_checks(&gate(stamp), &key, min_time, min_checks).await?;
    let uncached = time_checks(&gate(unreadable), &key, min_time, min_checks).await?;
    db.close().await;
    Ok(KeyCheckCost { cached, uncached })
}

async fn time_checks(
    gate: &SiteGate,
    key: &str,
    min_time: Duration,
    min_checks: usize,
) -> Result<PerCheck> {
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    for _ in 0..WARMUP {
        check_once(gate, key, ip).await?;
    }
    let cpu0 = cpu_seconds("self").context("reading this process's CPU time")?;
    let start = Instant::now();
    let mut checks = 0usize;
    while checks < min_checks || start.elapsed() < min_time {
        for _ in 0..256 {
            check_once(gate, key, ip).await?;
        }
        checks += 256;
    }
    let wall = start.elapsed();
    let cpu = cpu_seconds("self").context("reading this process's CPU time")? - cpu0;
    Ok(PerCheck {
        checks,
        cpu_us: cpu * 1e6 / checks as f64,
        wall_us: wall.as_secs_f64() * 1e6 / checks as f64,
    })
}

async fn check_once(gate: &SiteGate, key: &str, ip: IpAddr) -> Result<()> {
    match gate.check(SITE, key, ip).await {
        Ok(proven) if proven.site.site_code == SITE && proven.key_version == 1 => Ok(()),
        Ok(proven) => bail!(
            "the key check proved site {:?} v{} instead of {SITE} v1",
            proven.site.site_code,
            proven.key_version
        ),
        Err(e) => bail!("the key check refused the site's own key: {e}"),
    }
}
