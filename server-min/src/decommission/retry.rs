//! Retrying a step within one decommission run: exponential backoff, bounded by a time
//! budget. Only failures that may heal by themselves (a service unreachable, 5xx, 429) are
//! retried; a refusal is reported at once.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// Why a step failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StepError {
    pub message: String,
    /// The service was unreachable or busy: worth retrying.
    pub transient: bool,
}

impl StepError {
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            transient: true,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            transient: false,
        }
    }
}

/// How long a step is retried within one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// No new attempt starts after this much time since the first.
    pub budget: Duration,
    /// Pause after the first failure; doubled after each further one.
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// The CLI's default: about 30 s per step.
    pub const CLI: RetryPolicy = RetryPolicy {
        budget: Duration::from_secs(30),
        first_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(8),
    };

    /// The HTTP endpoint's: a few seconds per step, so the caller gets an answer soon.
    pub const HTTP: RetryPolicy = RetryPolicy {
        budget: Duration::from_secs(3),
        first_delay: Duration::from_millis(250),
        max_delay: Duration::from_secs(1),
    };

    /// One attempt only.
    pub const ONCE: RetryPolicy = RetryPolicy {
        budget: Duration::ZERO,
        first_delay: Duration::ZERO,
        max_delay: Duration::ZERO,
    };

    /// A policy with the CLI's pacing and `budget`.
    pub fn for_budget(budget: Duration) -> Self {
        Self {
            budget,
            ..Self::CLI
        }
    }

    /// The pause before attempt `n + 1` after `n` failures (n ≥ 1).
    pub fn delay(&self, failures: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures.saturating_sub(1));
        self.first_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// Runs `attempt` until it succeeds, fails permanently, or the budget is spent. Returns the
/// result and the number of attempts made.
pub async fn retry<T, F, Fut>(policy: &RetryPolicy, mut attempt: F) -> (Result<T, StepError>, u32)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StepError>>,
{
    let started = Instant::now();
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let err = match attempt().await {
            Ok(v) => return (Ok(v), attempts),
            Err(e) => e,
        };
        let delay = policy.delay(attempts);
        if !err.transient || started.elapsed() + delay > policy.budget {
            return (Err(err), attempts);
        }
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn delays_double_up_to_the_cap() {
        let p = RetryPolicy::CLI;
        let delays: Vec<u64> = (1..=6).map(|n| p.delay(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 8, 8]);
        assert_eq!(RetryPolicy::ONCE.delay(1), Duration::ZERO);
    }

    /// Pauses of 100, 200, 400, 400 ms: three fit in one second, a fourth would not.
    const FAST: RetryPolicy = RetryPolicy {
        budget: Duration::from_millis(1000),
        first_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(400),
    };

    #[tokio::test]
    async fn transient_failures_are_retried_within_the_budget() {
        let calls = Cell::new(0);
        let (r, n) = retry(&FAST, || {
            calls.set(calls.get() + 1);
            async { Err::<(), _>(StepError::transient("down")) }
        })
        .await;
        assert_eq!(r.unwrap_err().message, "down");
        assert_eq!((n, calls.get()), (4, 4));

        let calls = Cell::new(0);
        let (r, n) = retry(&FAST, || {
            calls.set(calls.get() + 1);
            let ok = calls.get() == 3;
            async move {
                if ok {
                    Ok(7)
                } else {
                    Err(StepError::transient("busy"))
                }
            }
        })
        .await;
        assert_eq!((r.unwrap(), n), (7, 3));
    }

    #[tokio::test]
    async fn permanent_failures_and_a_zero_budget_stop_at_once() {
        let (r, n) = retry(&FAST, || async {
            Err::<(), _>(StepError::permanent("refused"))
        })
        .await;
        assert_eq!((r.unwrap_err().transient, n), (false, 1));
        let (_, n) = retry(&RetryPolicy::ONCE, || async {
            Err::<(), _>(StepError::transient("down"))
        })
        .await;
        assert_eq!(n, 1);
    }
}
