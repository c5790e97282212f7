//! Exponential backoff with full jitter, as a pure function of the attempt number.

use std::time::Duration;

use rand::Rng;

/// Retry policy for calls to the bridge.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    /// Give up once this much time has passed since the first attempt (zero: one attempt).
    pub give_up_after: Duration,
}

impl Backoff {
    /// The ceiling of the delay before attempt `attempt + 1` (attempt counts from 0).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// A random delay in `[ceiling/2, ceiling]`, never below a server's `Retry-After`.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let ceiling = self.ceiling(attempt);
        let half = ceiling / 2;
        let jitter =
            rand::rng().random_range(0..=half.as_millis().min(u128::from(u64::MAX)) as u64);
        let d = half + Duration::from_millis(jitter);
        retry_after.map_or(d, |r| d.max(r.min(self.max)))
    }
}

/// Calls `call` until it succeeds, fails for good, or `backoff.give_up_after` would pass.
/// `retryable` says whether an error is worth another attempt and with which server-suggested
/// delay (`Some(None)`: retry after the backoff's own delay).
pub async fn retry<T, E, F, Fut>(
    backoff: Backoff,
    retryable: impl Fn(&E) -> Option<Option<Duration>>,
    mut call: F,
) -> Result<T, E>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let start = std::time::Instant::now();
    let mut attempt = 0u32;
    loop {
        let e = match call().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let Some(retry_after) = retryable(&e) else {
            return Err(e);
        };
        let delay = backoff.delay(attempt, retry_after);
        if start.elapsed() + delay > backoff.give_up_after {
            return Err(e);
        }
        tracing::warn!(attempt = attempt + 1, delay_ms = delay.as_millis() as u64, error = %e, "bridge unavailable; retrying");
        tokio::time::sleep(delay).await;
        attempt = attempt.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_and_is_capped() {
        let b = Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            give_up_after: Duration::ZERO,
        };
        let ceilings: Vec<u64> = (0..8).map(|a| b.ceiling(a).as_secs()).collect();
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(b.ceiling(1000), Duration::from_secs(60));
        for attempt in 0..10 {
            let d = b.delay(attempt, None);
            assert!(
                d >= b.ceiling(attempt) / 2 && d <= b.ceiling(attempt),
                "attempt {attempt}: {d:?}"
            );
        }
        assert!(b.delay(0, Some(Duration::from_secs(30))) >= Duration::from_secs(30));
        assert!(b.delay(0, Some(Duration::from_secs(3600))) <= Duration::from_secs(60));
    }

    #[tokio::test]
    async fn retry_stops_on_a_final_error_and_after_the_period() {
        let b = Backoff {
            initial: Duration::from_millis(1),
            max: Duration::from_millis(2),
            give_up_after: Duration::from_millis(200),
        };
        let mut calls = 0;
        let r: Result<(), String> = retry(
            b,
            |e: &String| (e == "busy").then_some(None),
            || {
                calls += 1;
                let answer = if calls < 3 { "busy" } else { "no" };
                async move { Err(answer.to_owned()) }
            },
        )
        .await;
        assert_eq!(r, Err("no".to_owned()));
        assert_eq!(calls, 3, "retried twice, then stopped on the final error");

        let mut calls = 0;
        let r: Result<(), String> = retry(
            Backoff {
                give_up_after: Duration::ZERO,
                ..b
            },
            |_: &String| Some(None),
            || {
                calls += 1;
                async { Err("busy".to_owned()) }
            },
        )
        .await;
        assert!(r.is_err());
        assert_eq!(calls, 1, "a zero period means one attempt");
    }
}
