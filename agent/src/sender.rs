//! Delivering reports from the spool: the one task that sends them, in sequence order.
//!
//! When one report waits it goes to `POST /api/v1/agent/reports`; when the agent is behind, up
//! to [`MAX_BATCH_REPORTS`] (and [`MAX_BATCH_BYTES`]) go together to
//! `POST /api/v1/agent/reports/batch`. The first batch after a start or a failure holds at most
//! [`FIRST_BATCH_REPORTS`], and a failed batch is followed by one report on its own. A collector
//! that answers 404 for the batch path does not have it yet: the sender falls back to one report
//! per request and tries the batch path again after [`BATCH_RETRY_AFTER`].
//!
//! Only an acknowledgement removes a report from the spool. What happens on other answers:
//! - network trouble, timeouts, 5xx, 401, 404, 408, an answer that cannot be read or that does
//!   not acknowledge what was sent: the report stays, retried with capped exponential backoff
//!   and full jitter; `429` and `503` wait at least their `Retry-After`;
//! - `409` with a [`SequenceConflict`](rounds_protocol::SequenceConflict) body: the collector
//!   already holds these sequence numbers with other content (the state dir was restored from
//!   an old backup); everything undelivered is renumbered from `next_expected`, with a warning;
//! - `400`, `413`, `422` to a single report: refused for good; resending cannot help and it must
//!   not block the queue. It is dropped with reason `rejected`, logged as an error, recorded in
//!   the status, and announced in the `dropped` ranges of the next report. The same answers to
//!   a batch make the sender send that batch's reports one by one, to find the one refused.

use std::sync::Arc;
use std::time::Duration;

use rounds_protocol::{PROTOCOL_MAJOR, ReportBatch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::backoff::{Backoff, RetryPolicy};
use crate::client::{CollectorClient, RequestError};
use crate::spool::{Pending, Spool, SpoolError};

/// Most reports in one batch.
pub const MAX_BATCH_REPORTS: usize = 100;
/// Most bytes of reports in one batch (below the collector's default 1 MiB body limit).
pub const MAX_BATCH_BYTES: u64 = 768 * 1024;
/// How long to send singly after a collector said it has no batch path.
pub const BATCH_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// Most reports in the first batch after a start or a failure: small enough to be written
/// whole before a collector without the batch path answers 404 and closes the connection.
pub const FIRST_BATCH_REPORTS: usize = 8;

/// What happened, for the caller to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    /// Every report up to `through` was acknowledged; `count` in this exchange.
    Acknowledged { through: u64, count: usize },
    /// Report `sequence` was refused for good and dropped.
    Rejected {
        sequence: u64,
        status: u16,
        message: String,
    },
    /// The collector expected `next_expected`: `count` reports were renumbered from there.
    Renumbered { next_expected: u64, count: usize },
    /// A delivery attempt failed and will be retried.
    Failed { error: String },
    /// The collector revoked the agent's credentials: delivery stopped (issue 15).
    Revoked { error: String },
}

/// Runs a blocking spool operation off the async threads.
async fn on_spool<T: Send + 'static>(
    spool: &Arc<Spool>,
    f: impl FnOnce(&Spool) -> Result<T, SpoolError> + Send + 'static,
) -> Result<T, SpoolError> {
    let s = spool.clone();
    tokio::task::spawn_blocking(move || f(&s)).await.unwrap_or_else(|e| {
        Err(SpoolError::Read {
            path: spool.path().to_path_buf(),
            detail: format!("spool task failed: {e}"),
        })
    })
}

/// What one exchange with the collector came to.
enum Outcome {
    Acked {
        through: u64,
        count: usize,
    },
    Retry(RequestError),
    /// The batch path is missing (404): send singly.
    NoBatchPath,
    /// The batch was refused as a whole (400/413/422): send its reports singly.
    BatchRefused,
    /// `409`: the next sequence the collector expects, and its chain head when it said.
    Conflict(u64, Option<String>),
    Rejected {
        sequence: u64,
        status: u16,
        message: String,
    },
}

fn permanently_refused(status: u16) -> bool {
    matches!(status, 400 | 413 | 422)
}

async fn send(client: &CollectorClient, agent_id: &str, pending: Vec<Pending>) -> Outcome {
    let sequences: Vec<u64> = pending.iter().map(|p| p.report.sequence).collect();
    if pending.len() == 1 {
        let report = &pending[0].report;
        return match client.report(report).await {
            Ok(ack) if ack.sequence == report.sequence => Outcome::Acked {
                through: report.sequence,
                count: 1,
            },
            Ok(ack) => Outcome::Retry(RequestError::BadResponse {
                url: client.url(rounds_protocol::paths::REPORTS),
                detail: format!("acknowledged sequence {} for {}", ack.sequence, report.sequence),
            }),
            Err(RequestError::Conflict {
                next_expected,
                chain_hash,
                ..
            }) => Outcome::Conflict(next_expected, chain_hash),
            Err(RequestError::Rejected { status, message, .. }) if permanently_refused(status) => Outcome::Rejected {
                sequence: report.sequence,
                status,
                message,
            },
            Err(e) => Outcome::Retry(e),
        };
    }
    let batch = ReportBatch {
        protocol: PROTOCOL_MAJOR,
        agent_id: agent_id.to_string(),
        reports: pending.into_iter().map(|p| p.report).collect(),
    };
    match client.report_batch(&batch).await {
        Ok(ack) => {
            // The acknowledged prefix of what was sent.
            let count = ack
                .acks
                .iter()
                .zip(&sequences)
                .take_while(|(a, s)| a.sequence == **s)
                .count();
            if count == 0 {
                return Outcome::Retry(RequestError::BadResponse {
                    url: client.url(rounds_protocol::paths::REPORT_BATCH),
                    detail: "the batch answer acknowledges none of the reports sent".into(),
                });
            }
            Outcome::Acked {
                through: sequences[count - 1],
                count,
            }
        }
        Err(RequestError::Rejected { status: 404 | 405, .. }) => Outcome::NoBatchPath,
        Err(RequestError::Rejected { status, .. }) if permanently_refused(status) => Outcome::BatchRefused,
        Err(RequestError::Conflict {
            next_expected,
            chain_hash,
            ..
        }) => Outcome::Conflict(next_expected, chain_hash),
        Err(e) => Outcome::Retry(e),
    }
}

/// Delivers reports from `spool` in order until `stop` is cancelled; `on_delivered` is told
/// what happened after each exchange.
pub async fn deliver<F, Fut>(
    client: &CollectorClient,
    spool: &Arc<Spool>,
    agent_id: &str,
    retry: RetryPolicy,
    stop: &CancellationToken,
    mut on_delivered: F,
) where
    F: FnMut(Delivered) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut backoff = Backoff::new(retry);
    let mut batch_again_at: Option<tokio::time::Instant> = None;
    let mut singly_once = false;
    let mut batch_limit = FIRST_BATCH_REPORTS;
    let mut failures: u64 = 0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            () = spool.wait_for_entries() => {}
        }
        let use_batch = !singly_once && batch_again_at.is_none_or(|t| tokio::time::Instant::now() >= t);
        singly_once = false;
        let max = if use_batch { batch_limit } else { 1 };
        let pending = match on_spool(spool, move |s| {
            s.expire()?;
            s.pending(max, MAX_BATCH_BYTES)
        })
        .await
        {
            Ok(p) if p.is_empty() => continue,
            Ok(p) => p,
            Err(e) => {
                error!(error = %e, "cannot read the spool");
                on_delivered(Delivered::Failed { error: e.to_string() }).await;
                let delay = backoff.next_delay();
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
                continue;
            }
        };
        let first = pending[0].report.sequence;
        let batched = pending.len() > 1;
        let outcome = tokio::select! {
            _ = stop.cancelled() => break,
            o = send(client, agent_id, pending) => o,
        };
        match outcome {
            Outcome::Acked { through, count } => {
                if let Err(e) = on_spool(spool, move |s| s.ack_through(through)).await {
                    // The reports stay and are sent again; the collector acknowledges a resend
                    // without storing it twice.
                    warn!(error = %e, "cannot record the acknowledgement in the spool");
                }
                backoff.reset();
                if batched {
                    batch_limit = MAX_BATCH_REPORTS;
                }
                if failures > 0 {
                    info!(failures, "report delivery works again");
                }
                failures = 0;
                info!(first, through, count, "reports delivered");
                on_delivered(Delivered::Acknowledged { through, count }).await;
            }
            Outcome::NoBatchPath => {
                info!("the collector has no batch path, sending reports one by one");
                batch_again_at = Some(tokio::time::Instant::now() + BATCH_RETRY_AFTER);
            }
            Outcome::BatchRefused => {
                warn!(first, "collector refused a batch, sending its reports one by one");
                singly_once = true;
            }
            Outcome::Conflict(next_expected, chain_hash) if next_expected != first => {
                warn!(
                    first,
                    next_expected,
                    "collector already holds other reports with these sequence numbers (state restored from an old backup?), renumbering undelivered reports"
                );
                match on_spool(spool, move |s| s.renumber_from(next_expected, chain_hash.as_deref())).await {
                    Ok(count) => on_delivered(Delivered::Renumbered { next_expected, count }).await,
                    Err(e) => {
                        error!(error = %e, "cannot renumber the spool");
                        on_delivered(Delivered::Failed { error: e.to_string() }).await;
                        let delay = backoff.next_delay();
                        tokio::select! {
                            _ = stop.cancelled() => break,
                            _ = tokio::time::sleep(delay) => {}
                        }
                    }
                }
            }
            Outcome::Rejected {
                sequence,
                status,
                message,
            } => {
                error!(sequence, status, error = %message, "collector refused the report for good, dropped from the spool");
                if let Err(e) = on_spool(spool, move |s| s.drop_entry(sequence, "rejected")).await {
                    error!(error = %e, "cannot drop the refused report from the spool");
                }
                on_delivered(Delivered::Rejected {
                    sequence,
                    status,
                    message,
                })
                .await;
            }
            Outcome::Retry(e @ RequestError::Revoked { .. }) => {
                on_delivered(Delivered::Revoked { error: e.to_string() }).await;
                break;
            }
            Outcome::Conflict(..) | Outcome::Retry(_) => {
                let e = match outcome {
                    Outcome::Retry(e) => e,
                    _ => RequestError::BadResponse {
                        url: client.url(rounds_protocol::paths::REPORTS),
                        detail: format!("conflict at sequence {first} while the collector expects it next"),
                    },
                };
                failures += 1;
                if batched {
                    // Start small again, and try one report on its own first: a failure that
                    // is about the batch (a collector that closed the connection on it) does
                    // not hold up delivery.
                    batch_limit = FIRST_BATCH_REPORTS;
                    singly_once = true;
                }
                let delay = match e.retry_after() {
                    Some(after) => backoff.after(after),
                    None => backoff.next_delay(),
                };
                let retry_in_ms = delay.as_millis() as u64;
                let loud = failures == 1 || failures.is_multiple_of(10);
                match (&e, loud) {
                    (RequestError::Unauthorized { .. }, true) => {
                        error!(first, retry_in_ms, failures, error = %e, "collector refused the agent's credentials, re-enrollment is needed");
                    }
                    (_, true) => warn!(first, retry_in_ms, failures, error = %e, "report delivery failed, will retry"),
                    (_, false) => {
                        debug!(first, retry_in_ms, failures, error = %e, "report delivery failed, will retry")
                    }
                }
                on_delivered(Delivered::Failed { error: e.to_string() }).await;
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    let undelivered = spool.summary().depth;
    if undelivered > 0 {
        info!(undelivered, "stopping; undelivered reports stay in the spool");
    }
}
