//! Delivering reports: the outbox of reports not yet acknowledged, and the one task that sends them.
//!
//! Reports are delivered one at a time, in sequence order. A report leaves the [`Outbox`] only
//! when the collector acknowledged it, or rejected it for good (a 4xx other than 401, 408 and
//! 429: resending the same report cannot help). Anything else (network trouble, timeouts, 5xx,
//! 401) is retried with capped exponential backoff and jitter. The outbox is in memory and
//! bounded: when it is full the oldest report is dropped, with a warning.
//!
//! This module is the only place that sends reports, so the in-memory outbox can be replaced by
//! an on-disk spool without touching the rest of the runtime.

use std::collections::VecDeque;
use std::sync::Mutex;

use rounds_protocol::Report;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::backoff::{Backoff, RetryPolicy};
use crate::client::{CollectorClient, RequestError};

/// Reports waiting for delivery, oldest first; bounded.
#[derive(Debug)]
pub struct Outbox {
    queue: Mutex<VecDeque<Report>>,
    capacity: usize,
    ready: Notify,
}

impl Outbox {
    /// An empty outbox that holds at most `capacity` reports (at least one).
    pub fn new(capacity: usize) -> Self {
        Outbox {
            queue: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            ready: Notify::new(),
        }
    }

    /// Queues a report; returns the oldest report if it had to be dropped to make room.
    pub fn push(&self, report: Report) -> Option<Report> {
        let dropped = {
            let mut q = self.lock();
            let dropped = if q.len() >= self.capacity { q.pop_front() } else { None };
            q.push_back(report);
            dropped
        };
        self.ready.notify_one();
        dropped
    }

    /// The oldest report, without removing it.
    pub fn front(&self) -> Option<Report> {
        self.lock().front().cloned()
    }

    /// Removes the oldest report if it is `sequence` (it may have been dropped meanwhile).
    pub fn remove(&self, sequence: u64) {
        let mut q = self.lock();
        if q.front().is_some_and(|r| r.sequence == sequence) {
            q.pop_front();
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until there is a report and returns the oldest.
    pub async fn next(&self) -> Report {
        loop {
            if let Some(r) = self.front() {
                return r;
            }
            // `notify_one` leaves a permit when nobody waits, so a push between `front` and
            // here is not missed.
            self.ready.notified().await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Report>> {
        // A panic while holding this lock cannot leave the queue half-updated.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What happened to one report, for the caller to record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// Acknowledged; `stored` is false for a resend the collector already had.
    Acknowledged { sequence: u64, stored: bool },
    /// Rejected for good and dropped.
    Rejected { sequence: u64 },
}

/// Delivers reports from `outbox` in order until `stop` is cancelled; `on_delivered` is called
/// after each report leaves the outbox.
pub async fn deliver<F, Fut>(
    client: &CollectorClient,
    outbox: &Outbox,
    retry: RetryPolicy,
    stop: &CancellationToken,
    mut on_delivered: F,
) where
    F: FnMut(Delivered) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut backoff = Backoff::new(retry);
    loop {
        let report = tokio::select! {
            _ = stop.cancelled() => break,
            r = outbox.next() => r,
        };
        let sequence = report.sequence;
        let result = tokio::select! {
            _ = stop.cancelled() => break,
            r = client.report(&report) => r,
        };
        match result {
            Ok(ack) => {
                outbox.remove(sequence);
                backoff.reset();
                if ack.sequence != sequence {
                    warn!(
                        sequence,
                        acknowledged = ack.sequence,
                        "collector acknowledged another sequence"
                    );
                }
                info!(sequence, stored = ack.stored, "report delivered");
                on_delivered(Delivered::Acknowledged {
                    sequence,
                    stored: ack.stored,
                })
                .await;
            }
            Err(e) if !e.is_retryable() => {
                outbox.remove(sequence);
                backoff.reset();
                let status = match &e {
                    RequestError::Rejected { status, .. } => Some(*status),
                    _ => None,
                };
                error!(sequence, status, error = %e, "report rejected by collector, dropped");
                on_delivered(Delivered::Rejected { sequence }).await;
            }
            Err(e) => {
                let delay = backoff.next_delay();
                let retry_in_ms = delay.as_millis() as u64;
                if matches!(e, RequestError::Unauthorized { .. }) {
                    error!(sequence, retry_in_ms, error = %e, "collector refused the agent's credentials, re-enrollment is needed");
                } else {
                    warn!(sequence, retry_in_ms, error = %e, "report delivery failed, will retry");
                }
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    let undelivered = outbox.len();
    if undelivered > 0 {
        warn!(undelivered, "stopping with undelivered reports");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(sequence: u64) -> Report {
        Report {
            protocol: rounds_protocol::PROTOCOL_MAJOR,
            agent_id: "a".into(),
            sequence,
            created_at: chrono::Utc::now(),
            check: None,
            complete: false,
            prev_hash: None,
            hash: None,
            dropped: vec![],
            observations: vec![],
        }
    }

    #[test]
    fn outbox_keeps_order_and_drops_the_oldest_when_full() {
        let o = Outbox::new(2);
        assert!(o.push(report(1)).is_none());
        assert!(o.push(report(2)).is_none());
        assert_eq!(o.push(report(3)).map(|r| r.sequence), Some(1));
        assert_eq!(o.front().map(|r| r.sequence), Some(2));
        o.remove(3); // not the front: nothing happens
        assert_eq!(o.len(), 2);
        o.remove(2);
        assert_eq!(o.front().map(|r| r.sequence), Some(3));
    }

    #[tokio::test]
    async fn next_wakes_up_on_push() {
        let o = std::sync::Arc::new(Outbox::new(4));
        let o2 = o.clone();
        let waiter = tokio::spawn(async move { o2.next().await.sequence });
        tokio::task::yield_now().await;
        o.push(report(9));
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, 9);
    }
}
