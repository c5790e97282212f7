//! The enrollment limiter: a request budget per (site code, source address), and a lockout
//! after repeated bad enrollment keys.
//!
//! Memory is bounded: at most `max_entries` pairs are tracked. When the table is full, idle
//! entries (budget refilled, no failures in the window, not locked) are dropped first, then the
//! least recently active ones, so a flood from many addresses costs a fixed amount of memory
//! (and can at worst make the limiter forget someone, never grow).
//!
//! This state lives in one process: each replica limits on its own (a soft defence; keys are
//! 256-bit, guessing is hopeless either way, the lockout keeps the log quiet and the CPU free).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Requests per second one (site, address) pair may keep up (a factory behind one NAT
    /// address enrolls many devices at once, so the default is generous).
    pub rate_per_s: f64,
    /// Requests allowed in a burst.
    pub burst: u32,
    /// Bad keys within `window` that lock the pair out.
    pub max_failures: u32,
    /// The failure window, and how long a lockout lasts.
    pub window: Duration,
    /// Pairs tracked at most.
    pub max_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            rate_per_s: 20.0,
            burst: 200,
            max_failures: 10,
            window: Duration::from_secs(15 * 60),
            max_entries: 65_536,
        }
    }
}

/// The limiter's verdict on a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Over the request budget; try again after this long.
    RateLimited(Duration),
    /// Too many bad keys; locked out for this long.
    LockedOut(Duration),
}

#[derive(Debug, Clone)]
struct Entry {
    tokens: f64,
    refilled: Instant,
    failures: u32,
    window_start: Instant,
    locked_until: Option<Instant>,
    last_active: Instant,
}

/// The limiter. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct EnrollLimiter {
    limits: Limits,
    entries: Mutex<HashMap<(String, IpAddr), Entry>>,
}

impl EnrollLimiter {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Takes one request from the pair's budget, unless locked out or over budget.
    pub fn check(&self, site: &str, ip: IpAddr, now: Instant) -> Verdict {
        let mut map = self.lock();
        let limits = self.limits;
        let entry = entry(&mut map, &limits, site, ip, now);
        entry.last_active = now;
        if let Some(until) = entry.locked_until {
            if until > now {
                return Verdict::LockedOut(until - now);
            }
            entry.locked_until = None;
            entry.failures = 0;
            entry.window_start = now;
        }
        let elapsed = now.saturating_duration_since(entry.refilled).as_secs_f64();
        entry.tokens = (entry.tokens + elapsed * limits.rate_per_s).min(f64::from(limits.burst));
        entry.refilled = now;
        if entry.tokens >= 1.0 {
            entry.tokens -= 1.0;
            Verdict::Allowed
        } else {
            let wait = (1.0 - entry.tokens) / limits.rate_per_s.max(f64::MIN_POSITIVE);
            Verdict::RateLimited(Duration::from_secs_f64(wait.min(3600.0)))
        }
    }

    /// Records a bad site code or key; returns the lockout if this one started it.
    pub fn failure(&self, site: &str, ip: IpAddr, now: Instant) -> Option<Duration> {
        let mut map = self.lock();
        let limits = self.limits;
        let entry = entry(&mut map, &limits, site, ip, now);
        entry.last_active = now;
        if now.saturating_duration_since(entry.window_start) >= limits.window {
            entry.failures = 0;
            entry.window_start = now;
        }
        entry.failures += 1;
        if entry.failures >= limits.max_failures && entry.locked_until.is_none() {
            entry.locked_until = Some(now + limits.window);
            return Some(limits.window);
        }
        None
    }

    /// A good key clears the pair's failures.
    pub fn success(&self, site: &str, ip: IpAddr) {
        let mut map = self.lock();
        if let Some(e) = map.get_mut(&(site.to_owned(), ip)) {
            e.failures = 0;
        }
    }

    /// Pairs tracked now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, IpAddr), Entry>> {
        // A panic while holding the lock leaves counters only; they stay usable.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn entry<'a>(
    map: &'a mut HashMap<(String, IpAddr), Entry>,
    limits: &Limits,
    site: &str,
    ip: IpAddr,
    now: Instant,
) -> &'a mut Entry {
    let key = (site.to_owned(), ip);
    if !map.contains_key(&key) && map.len() >= limits.max_entries {
        make_room(map, limits, now);
    }
    map.entry(key).or_insert_with(|| Entry {
        tokens: f64::from(limits.burst),
        refilled: now,
        failures: 0,
        window_start: now,
        locked_until: None,
        last_active: now,
    })
}

/// Drops idle entries; if none is idle, the least recently active quarter.
fn make_room(map: &mut HashMap<(String, IpAddr), Entry>, limits: &Limits, now: Instant) {
    let full_after =
        Duration::from_secs_f64(f64::from(limits.burst) / limits.rate_per_s.max(f64::MIN_POSITIVE));
    map.retain(|_, e| {
        let locked = e.locked_until.is_some_and(|u| u > now);
        let failing =
            e.failures > 0 && now.saturating_duration_since(e.window_start) < limits.window;
        let refilling = now.saturating_duration_since(e.refilled) < full_after;
        locked || failing || refilling
    });
    if map.len() >= limits.max_entries {
        let mut ages: Vec<Instant> = map.values().map(|e| e.last_active).collect();
        ages.sort_unstable();
        let cut = ages[ages.len() / 4];
        map.retain(|_, e| e.last_active > cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n))
    }

    fn limits() -> Limits {
        Limits {
            rate_per_s: 1.0,
            burst: 3,
            max_failures: 3,
            window: Duration::from_secs(60),
            max_entries: 100,
        }
    }

    #[test]
    fn the_budget_refills_at_the_rate() {
        let l = EnrollLimiter::new(limits());
        let t = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.check("s", ip(1), t), Verdict::Allowed);
        }
        assert!(matches!(l.check("s", ip(1), t), Verdict::RateLimited(_)));
        assert_eq!(
            l.check("s", ip(2), t),
            Verdict::Allowed,
            "another address has its own budget"
        );
        assert_eq!(
            l.check("t", ip(1), t),
            Verdict::Allowed,
            "another site has its own budget"
        );
        assert_eq!(
            l.check("s", ip(1), t + Duration::from_secs(1)),
            Verdict::Allowed
        );
    }

    #[test]
    fn bad_keys_lock_out_until_the_window_ends() {
        let l = EnrollLimiter::new(limits());
        let t = Instant::now();
        assert_eq!(l.failure("s", ip(1), t), None);
        assert_eq!(l.failure("s", ip(1), t), None);
        assert_eq!(l.failure("s", ip(1), t), Some(Duration::from_secs(60)));
        let later = t + Duration::from_secs(10);
        assert_eq!(
            l.check("s", ip(1), later),
            Verdict::LockedOut(Duration::from_secs(50))
        );
        assert_eq!(l.check("s", ip(2), later), Verdict::Allowed);
        let after = t + Duration::from_secs(61);
        assert_eq!(l.check("s", ip(1), after), Verdict::Allowed, "recovered");
        assert_eq!(
            l.failure("s", ip(1), after),
            None,
            "the count starts afresh"
        );
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up() {
        let l = EnrollLimiter::new(limits());
        let t = Instant::now();
        l.failure("s", ip(1), t);
        l.failure("s", ip(1), t);
        assert_eq!(l.failure("s", ip(1), t + Duration::from_secs(61)), None);
        l.success("s", ip(1));
        assert_eq!(l.failure("s", ip(1), t + Duration::from_secs(62)), None);
    }

    #[test]
    fn many_addresses_never_grow_the_table_past_its_bound() {
        let l = EnrollLimiter::new(limits());
        let t = Instant::now();
        for n in 0..10_000 {
            let now = t + Duration::from_millis(u64::from(n));
            l.check("s", ip(n), now);
            if n % 7 == 0 {
                l.failure("s", ip(n), now);
            }
            assert!(l.len() <= 100, "{} entries after {n}", l.len());
        }
    }
}
