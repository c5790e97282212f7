//! When to renew: a pure function of the clock and the certificate's validity.
//!
//! A certificate valid from `not_before` for `lifetime` is renewed at
//! `not_before + 2/3·lifetime − jitter`, where the jitter is up to 1/10 of the lifetime but
//! never brings the time before `not_before + 1/2·lifetime` (rounded down to the second). The jitter comes from a seed
//! derived from the certificate itself ([`jitter_seed`]), so a fleet enrolled at the same
//! moment spreads its renewals, while one device keeps the same time across agent restarts.

use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

/// A fraction `num/den` of a certificate's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fraction {
    pub num: u32,
    pub den: u32,
}

impl Fraction {
    const fn new(num: u32, den: u32) -> Self {
        Self { num, den }
    }

    /// `self` of `nanos` (zero for a zero denominator).
    fn of(self, nanos: i128) -> i128 {
        if self.den == 0 {
            return 0;
        }
        nanos * i128::from(self.num) / i128::from(self.den)
    }
}

/// The renewal policy; [`Policy::default`] is the documented one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Renew at this point of the lifetime, before jitter.
    pub renew_at: Fraction,
    /// At most this much of the lifetime earlier, chosen by the seed.
    pub max_jitter: Fraction,
    /// Never earlier than this point of the lifetime.
    pub earliest: Fraction,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            renew_at: Fraction::new(2, 3),
            max_jitter: Fraction::new(1, 10),
            earliest: Fraction::new(1, 2),
        }
    }
}

/// What to do now about a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Nothing before `at`.
    NotYet { at: OffsetDateTime },
    /// Renew now; it has been due since `at`.
    Due { at: OffsetDateTime },
    /// The certificate expired at `not_after`; it can no longer authenticate a renewal.
    Expired { not_after: OffsetDateTime },
}

impl Decision {
    /// How long to wait from `now` before looking again (zero when due or expired).
    pub fn wait(&self, now: OffsetDateTime) -> std::time::Duration {
        match self {
            Decision::NotYet { at } => std::time::Duration::try_from(*at - now).unwrap_or_default(),
            Decision::Due { .. } | Decision::Expired { .. } => std::time::Duration::ZERO,
        }
    }
}

impl Policy {
    /// When a certificate valid from `not_before` to `not_after` is renewed, for `seed`.
    pub fn renewal_time(
        &self,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
        seed: u64,
    ) -> OffsetDateTime {
        let lifetime = (not_after - not_before).whole_nanoseconds().max(0);
        let max_jitter = self.max_jitter.of(lifetime).max(0);
        // seed / 2^64 of the maximum: uniform over [0, max_jitter) for uniform seeds. The
        // product only saturates for lifetimes of thousands of years, and stays in range.
        let jitter = u128::try_from(max_jitter)
            .unwrap_or(0)
            .saturating_mul(u128::from(seed))
            >> 64;
        let jitter = i128::try_from(jitter).unwrap_or(0);
        let offset = (self.renew_at.of(lifetime) - jitter).max(self.earliest.of(lifetime));
        // Whole seconds, like the certificate's own times: easier to read in `status`.
        let at = not_before + nanos(offset);
        at.replace_nanosecond(0).unwrap_or(at)
    }

    /// The decision at `now`.
    pub fn decide(
        &self,
        now: OffsetDateTime,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
        seed: u64,
    ) -> Decision {
        if now >= not_after {
            return Decision::Expired { not_after };
        }
        let at = self.renewal_time(not_before, not_after, seed);
        if now >= at {
            Decision::Due { at }
        } else {
            Decision::NotYet { at }
        }
    }
}

/// A `time::Duration` of `n` nanoseconds (saturating far beyond any certificate lifetime).
fn nanos(n: i128) -> Duration {
    const NS: i128 = 1_000_000_000;
    let secs = i64::try_from(n / NS).unwrap_or(i64::MAX);
    // |n % NS| < 10^9 always fits.
    let sub = i32::try_from(n % NS).unwrap_or(0);
    Duration::new(secs, sub)
}

/// The jitter seed of a certificate: the first 8 bytes of the SHA-256 of its DER encoding.
pub fn jitter_seed(cert_der: &[u8]) -> u64 {
    let digest = Sha256::digest(cert_der);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NB: OffsetDateTime = datetime!(2026-01-01 00:00:00 UTC);

    fn window(lifetime: Duration) -> (OffsetDateTime, OffsetDateTime) {
        (NB, NB + lifetime)
    }

    #[test]
    fn one_year_renews_between_two_thirds_minus_a_tenth_and_two_thirds() {
        let life = Duration::days(365);
        let (nb, na) = window(life);
        let p = Policy::default();
        let latest = nb + life * 2 / 3;
        let earliest = latest - life / 10;
        assert_eq!(p.renewal_time(nb, na, 0), latest, "no jitter for seed 0");
        assert_eq!(p.renewal_time(nb, na, u64::MAX), earliest);
        for seed in [1, 7, 1 << 20, 1 << 40, u64::MAX / 3, u64::MAX / 2] {
            let at = p.renewal_time(nb, na, seed);
            assert!(at >= earliest && at <= latest, "seed {seed}: {at}");
        }
        // Half the seed range is half the jitter.
        let mid = p.renewal_time(nb, na, 1 << 63);
        let half = latest - life / 20;
        let diff: Duration = mid - half;
        assert!(diff.abs() < Duration::seconds(1), "{mid} vs {half}");
    }

    #[test]
    fn five_minutes_renews_between_170_and_200_seconds() {
        let (nb, na) = window(Duration::minutes(5));
        let p = Policy::default();
        assert_eq!(p.renewal_time(nb, na, 0), nb + Duration::seconds(200));
        let at = p.renewal_time(nb, na, u64::MAX);
        assert!(
            at >= nb + Duration::seconds(170) && at < nb + Duration::seconds(171),
            "{at}"
        );
    }

    #[test]
    fn decisions_at_the_boundaries() {
        let (nb, na) = window(Duration::minutes(5));
        let p = Policy::default();
        let seed = 12_345_678_901_234;
        let at = p.renewal_time(nb, na, seed);
        let ns = Duration::nanoseconds(1);
        assert_eq!(p.decide(at - ns, nb, na, seed), Decision::NotYet { at });
        assert_eq!(p.decide(at, nb, na, seed), Decision::Due { at });
        assert_eq!(p.decide(na - ns, nb, na, seed), Decision::Due { at });
        assert_eq!(
            p.decide(na, nb, na, seed),
            Decision::Expired { not_after: na }
        );
        assert_eq!(
            p.decide(na + Duration::days(400), nb, na, seed),
            Decision::Expired { not_after: na }
        );
        assert_eq!(
            p.decide(at - Duration::seconds(10), nb, na, seed)
                .wait(at - Duration::seconds(10)),
            std::time::Duration::from_secs(10)
        );
        assert_eq!(
            p.decide(at, nb, na, seed).wait(at),
            std::time::Duration::ZERO
        );
    }

    #[test]
    fn a_clock_before_not_before_waits_for_the_renewal_time() {
        let (nb, na) = window(Duration::days(30));
        let p = Policy::default();
        let now = datetime!(1970-01-01 00:00:10 UTC);
        let at = p.renewal_time(nb, na, 99);
        assert_eq!(p.decide(now, nb, na, 99), Decision::NotYet { at });
        assert!(at > nb);
    }

    #[test]
    fn a_certificate_without_lifetime_is_due_at_once_and_expired_at_its_end() {
        let p = Policy::default();
        assert_eq!(p.decide(NB, NB, NB, 5), Decision::Expired { not_after: NB });
        let inverted_after = NB - Duration::hours(1);
        assert_eq!(
            p.decide(NB - Duration::hours(2), NB, inverted_after, 5),
            Decision::NotYet { at: NB }
        );
    }

    #[test]
    fn the_earliest_point_holds_against_a_large_jitter() {
        let p = Policy {
            max_jitter: Fraction::new(1, 2),
            ..Policy::default()
        };
        let life = Duration::days(90);
        let (nb, na) = window(life);
        assert_eq!(p.renewal_time(nb, na, u64::MAX), nb + life / 2);
        assert_eq!(p.renewal_time(nb, na, 0), nb + life * 2 / 3);
    }

    #[test]
    fn the_seed_is_stable_per_certificate() {
        assert_eq!(jitter_seed(b"cert one"), jitter_seed(b"cert one"));
        assert_ne!(jitter_seed(b"cert one"), jitter_seed(b"cert two"));
    }
}
