//! How long an enrollment held for an administrator's approval (202) waits between asking
//! again, and when it stops waiting.
//!
//! Each wait is the larger of the bridge's `Retry-After` (honoured up to an hour) and a
//! backoff that starts at a few seconds, doubles with jitter and is capped at five minutes.
//! The approval timeout (`--approval-timeout`, 24 h by default) bounds the whole wait, counted
//! from the first 202 of this run; it is separate from `--retry-for`, which bounds network
//! errors, 5xx and 429 of each request.

use std::time::Duration;

use crate::backoff::Backoff;

/// The default of `--approval-timeout`.
pub const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// The longest wait between two polls the agent chooses by itself.
pub const POLL_CAP: Duration = Duration::from_secs(300);
/// The first poll's backoff ceiling.
pub const POLL_INITIAL: Duration = Duration::from_secs(5);
/// A `Retry-After` longer than this is taken as this (a bogus header must not park a device).
pub const RETRY_AFTER_LIMIT: Duration = Duration::from_secs(3600);

/// The approval wait of one `enroll` run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApprovalWait {
    /// Stop waiting once this much time has passed since the first 202 (zero: do not wait;
    /// `Duration::MAX`: wait for ever, as the daemon does).
    pub timeout: Duration,
    pub initial: Duration,
    pub cap: Duration,
}

impl Default for ApprovalWait {
    fn default() -> Self {
        Self::with_timeout(DEFAULT_APPROVAL_TIMEOUT)
    }
}

impl ApprovalWait {
    pub fn with_timeout(timeout: Duration) -> Self {
        Self {
            timeout,
            initial: POLL_INITIAL,
            cap: POLL_CAP,
        }
    }

    /// Waits for ever (the daemon: it has nothing better to do than to wait).
    pub fn forever() -> Self {
        Self::with_timeout(Duration::MAX)
    }

    /// The wait before poll `poll + 1` (polls count from 0): max(Retry-After, backoff).
    pub fn delay(&self, poll: u32, retry_after: Option<Duration>) -> Duration {
        let backoff = Backoff {
            initial: self.initial,
            max: self.cap,
            give_up_after: Duration::ZERO,
        }
        .delay(poll, None);
        retry_after
            .map(|r| r.min(RETRY_AFTER_LIMIT))
            .map_or(backoff, |r| r.max(backoff))
    }

    /// The wait before the next poll, or `None` when it would end after the timeout
    /// (`waited`: time since the first 202).
    pub fn next(
        &self,
        waited: Duration,
        poll: u32,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        let d = self.delay(poll, retry_after);
        (waited.saturating_add(d) <= self.timeout).then_some(d)
    }
}

/// A duration for people: `1h 5m`, `3m 20s`, `45s`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m {s}s"),
        (h, 0, _) => format!("{h}h"),
        (h, m, _) => format!("{h}h {m}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn the_backoff_grows_to_five_minutes_with_jitter() {
        let w = ApprovalWait::default();
        assert_eq!(w.timeout, S(24 * 3600));
        for poll in 0..30 {
            let ceiling = POLL_INITIAL
                .saturating_mul(1u32.checked_shl(poll.min(20)).unwrap_or(u32::MAX))
                .min(POLL_CAP);
            for _ in 0..20 {
                let d = w.delay(poll, None);
                assert!(d >= ceiling / 2 && d <= ceiling, "poll {poll}: {d:?}");
            }
        }
        assert!(w.delay(1000, None) <= POLL_CAP);
        assert!(w.delay(1000, None) >= POLL_CAP / 2);
    }

    #[test]
    fn retry_after_wins_when_longer_and_is_bounded() {
        let w = ApprovalWait::default();
        // Short Retry-After: the backoff decides.
        assert!(w.delay(10, Some(S(1))) >= POLL_CAP / 2);
        // Long Retry-After: it decides, even beyond the backoff's cap.
        assert_eq!(w.delay(0, Some(S(600))), S(600));
        assert_eq!(w.delay(0, Some(S(10 * 3600))), RETRY_AFTER_LIMIT);
    }

    #[test]
    fn the_timeout_bounds_the_whole_wait() {
        let w = ApprovalWait::with_timeout(S(60));
        assert_eq!(w.next(S(0), 0, Some(S(30))), Some(S(30)));
        assert_eq!(w.next(S(31), 0, Some(S(30))), None, "would end at 61 s");
        assert_eq!(
            w.next(S(30), 0, Some(S(30))),
            Some(S(30)),
            "ends exactly at 60 s"
        );
        assert_eq!(
            ApprovalWait::with_timeout(Duration::ZERO).next(S(0), 0, None),
            None
        );
        let forever = ApprovalWait::forever();
        assert!(forever.next(S(u64::MAX / 2), 50, Some(S(3600))).is_some());
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human(S(45)), "45s");
        assert_eq!(human(S(300)), "5m");
        assert_eq!(human(S(200)), "3m 20s");
        assert_eq!(human(S(24 * 3600)), "24h");
        assert_eq!(human(S(3900)), "1h 5m");
    }
}
