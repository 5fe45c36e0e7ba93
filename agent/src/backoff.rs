//! Capped exponential backoff with jitter, for retrying deliveries to the collector.

use std::time::Duration;

/// How retries are spaced: the base delay starts at `initial` and doubles after every failure up
/// to `max`; each actual delay is drawn between half the base and the base ("equal jitter"), so
/// agents that failed together do not retry together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for RetryPolicy {
    /// 1 s doubling to 60 s.
    fn default() -> Self {
        RetryPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
        }
    }
}

/// The state of one retry sequence.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: RetryPolicy,
    base: Duration,
    rng: u64,
}

impl Backoff {
    pub fn new(policy: RetryPolicy) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ u64::from(std::process::id()).rotate_left(32);
        Self::with_seed(policy, seed)
    }

    /// A backoff with a fixed jitter seed, for reproducible tests.
    pub fn with_seed(policy: RetryPolicy, seed: u64) -> Self {
        let max = policy.max.max(policy.initial);
        let policy = RetryPolicy {
            initial: policy.initial,
            max,
        };
        Backoff {
            policy,
            base: policy.initial,
            rng: seed | 1,
        }
    }

    /// The delay before the next attempt; every call doubles the base, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.base;
        self.base = base.saturating_mul(2).min(self.policy.max);
        let half = base / 2;
        let spread = (base - half).as_millis() as u64;
        let jitter = if spread == 0 { 0 } else { self.random() % (spread + 1) };
        half + Duration::from_millis(jitter)
    }

    /// Starts over after a success.
    pub fn reset(&mut self) {
        self.base = self.policy.initial;
    }

    /// xorshift64*: good enough to spread retries, and no dependency.
    fn random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_within_jitter_and_stay_under_the_cap() {
        let policy = RetryPolicy::default();
        for seed in 0..200 {
            let mut b = Backoff::with_seed(policy, seed);
            let mut base = policy.initial;
            for _ in 0..20 {
                let d = b.next_delay();
                assert!(
                    d >= base / 2 && d <= base,
                    "seed {seed}: {d:?} outside [{:?}, {base:?}]",
                    base / 2
                );
                assert!(d <= policy.max);
                base = (base * 2).min(policy.max);
            }
            // Long after the cap is reached, delays are between 30 s and 60 s.
            let d = b.next_delay();
            assert!(d >= Duration::from_secs(30) && d <= Duration::from_secs(60), "{d:?}");
        }
    }

    #[test]
    fn reset_starts_over() {
        let mut b = Backoff::with_seed(RetryPolicy::default(), 7);
        for _ in 0..10 {
            b.next_delay();
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_secs(1));
    }

    #[test]
    fn jitter_varies() {
        let mut b = Backoff::with_seed(
            RetryPolicy {
                initial: Duration::from_secs(60),
                max: Duration::from_secs(60),
            },
            3,
        );
        let delays: std::collections::HashSet<_> = (0..20).map(|_| b.next_delay()).collect();
        assert!(delays.len() > 10, "{delays:?}");
    }
}
