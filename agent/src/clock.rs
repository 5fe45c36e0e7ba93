//! The agent's clock, a parameter of the run loop and the spool so tests control time.
//!
//! [`SystemClock`] reads the system clock. [`TokioClock`] is wall time anchored at a start
//! moment and advanced by tokio's clock, so under `tokio::time::pause()` schedules, heartbeats,
//! backoff and spool ages all move with `tokio::time::advance` instead of real seconds.

use std::fmt::Debug;

use chrono::{DateTime, Utc};

/// What time it is, as the agent sees it.
pub trait Clock: Send + Sync + Debug {
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Wall time that starts at `anchor` and advances with tokio's clock (paused or not).
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    anchor: DateTime<Utc>,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// A clock reading `anchor` now. Call it inside a runtime.
    pub fn starting_at(anchor: DateTime<Utc>) -> Self {
        TokioClock {
            anchor,
            start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = tokio::time::Instant::now().saturating_duration_since(self.start);
        self.anchor + chrono::Duration::from_std(elapsed).unwrap_or(chrono::Duration::zero())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_moves_with_paused_time() {
        let anchor = DateTime::parse_from_rfc3339("2026-11-24T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let clock = TokioClock::starting_at(anchor);
        assert_eq!(clock.now(), anchor);
        tokio::time::advance(std::time::Duration::from_secs(90)).await;
        assert_eq!(clock.now(), anchor + chrono::Duration::seconds(90));
    }
}
