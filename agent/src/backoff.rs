//! Capped exponential backoff with full jitter, for retrying deliveries to the collector.
//!
//! Full jitter (each delay uniform between zero and the base) spreads a thousand agents that
//! lost the collector together over the whole window when it comes back, instead of letting
//! them return in waves.

use std::time::Duration;

/// How retries are spaced: the base delay starts at `initial` and doubles after every failure up
/// to `max`; each actual delay is drawn uniformly between zero and the base ("full jitter"), so
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
        let spread = base.as_millis() as u64;
        Duration::from_millis(if spread == 0 { 0 } else { self.random() % (spread + 1) })
    }

    /// The delay when the collector asked for `retry_after` (429, 503): at least that, plus up
    /// to a quarter more at random, so agents told the same do not come back together. Counts
    /// as a failure for the base.
    pub fn after(&mut self, retry_after: Duration) -> Duration {
        self.base = self.base.saturating_mul(2).min(self.policy.max);
        let spread = (retry_after / 4).as_millis() as u64;
        retry_after + Duration::from_millis(if spread == 0 { 0 } else { self.random() % (spread + 1) })
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
                assert!(d <= base, "seed {seed}: {d:?} outside [0, {base:?}]");
                assert!(d <= policy.max);
                base = (base * 2).min(policy.max);
            }
            // Long after the cap is reached, delays are at most 60 s.
            let d = b.next_delay();
            assert!(d <= Duration::from_secs(60), "{d:?}");
        }
    }

    #[test]
    fn full_jitter_spreads_agents_over_the_whole_window() {
        // 1000 agents at the cap: their delays cover the window evenly, not its upper half.
        let policy = RetryPolicy::default();
        let mut buckets = [0u32; 6];
        for seed in 0..1000 {
            let mut b = Backoff::with_seed(policy, seed * 7919 + 1);
            for _ in 0..10 {
                b.next_delay();
            }
            let d = b.next_delay();
            buckets[(d.as_secs() / 10).min(5) as usize] += 1;
        }
        for (i, n) in buckets.iter().enumerate() {
            assert!((100..=250).contains(n), "bucket {i}: {n} of 1000 ({buckets:?})");
        }
    }

    #[test]
    fn retry_after_is_honoured_with_a_little_jitter() {
        let mut b = Backoff::with_seed(RetryPolicy::default(), 11);
        for _ in 0..50 {
            let d = b.after(Duration::from_secs(20));
            assert!(d >= Duration::from_secs(20) && d <= Duration::from_secs(25), "{d:?}");
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
