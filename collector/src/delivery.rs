//! Reliable delivery, collector side: what an incoming report means for the agent's sequence
//! and hash chain, decided by pure functions the store calls inside its transaction.
//!
//! - Idempotency: `(agent, sequence)` is stored once. A report whose sequence is already stored
//!   is a resend when its [`digest`] (sha256 of its canonical content,
//!   [`rounds_protocol::chain_input`]) equals the stored one, and a conflict otherwise (answered
//!   `409` with the next sequence expected).
//! - Gaps: a report beyond the next expected sequence opens a gap (the missing range); a late
//!   arrival narrows it. What the agent said it dropped (`Report.dropped`) explains parts of a
//!   gap ([`explain`]); the rest is unexplained.
//! - Hash chain (issue 11, "the agent's own journal"): the agent chains every report to the
//!   previous sequence's `hash`, the first one after enrollment to [`chain_seed`]. Each new
//!   report is checked by [`verify`]; every problem becomes an [`IntegrityProblem`] kept for
//!   good: a wrong `hash` (rewritten in transit or forged), a `prev_hash` that is not the stored
//!   predecessor's hash (a fork, or a rollback when it is the hash of an older report), a
//!   dropped sequence the agent did not announce, a resend with other content. A resend with
//!   the same content (after an outage) changes nothing and is not a problem.

use rounds_protocol::{DroppedRange, Report};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The seed of an agent's hash chain: the `prev_hash` of its first report after enrollment,
/// `hex(sha256("rounds-chain-seed:" + agent_id))` (the agent's spool uses the same rule).
pub fn chain_seed(agent_id: &str) -> String {
    hex::encode(Sha256::digest(format!("rounds-chain-seed:{agent_id}").as_bytes()))
}

/// `hex(sha256(chain_input(report)))`: the hash the agent should have put in `report.hash`, and
/// the identity of the report's content for idempotency.
pub fn digest(report: &Report) -> String {
    hex::encode(Sha256::digest(rounds_protocol::chain_input(report)))
}

/// What kind of integrity problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// The report's `hash` is not the hash of its content.
    BadHash,
    /// `prev_hash` is not the hash of the stored previous report, nor of any older one: a
    /// forged report or a fork of the history.
    Fork,
    /// `prev_hash` is the hash of an older report than the previous one: the agent's state went
    /// back (restored from an old backup) and it continued from there.
    Rollback,
    /// Sequence numbers that never arrived and that the agent did not say it dropped.
    Gap,
    /// A sequence already stored was sent again with other content.
    Rewritten,
}

impl ProblemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::BadHash => "bad_hash",
            ProblemKind::Fork => "fork",
            ProblemKind::Rollback => "rollback",
            ProblemKind::Gap => "gap",
            ProblemKind::Rewritten => "rewritten",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            ProblemKind::BadHash,
            ProblemKind::Fork,
            ProblemKind::Rollback,
            ProblemKind::Gap,
            ProblemKind::Rewritten,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// One integrity problem of an agent's delivery, with what is wrong or missing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IntegrityProblem {
    pub kind: ProblemKind,
    /// The report it was found at.
    pub sequence: u64,
    pub detail: String,
}

/// A stored report next to the incoming one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    pub sequence: u64,
    /// The hash the agent gave it (what its successor chains to), else its digest; `None` for
    /// reports from agents without a chain.
    pub hash: Option<String>,
    pub prev_hash: Option<String>,
}

/// What the store knows around an incoming, not yet stored, report.
#[derive(Debug, Clone, Default)]
pub struct ChainContext {
    /// The stored report with the previous sequence, if any.
    pub previous: Option<Neighbour>,
    /// The stored report with the next sequence, if any (the incoming one arrives late).
    pub next: Option<Neighbour>,
    /// The sequence of an older stored report whose hash is the incoming `prev_hash`, when the
    /// previous one's is not (looked up only then).
    pub older_match: Option<u64>,
}

/// [`digest`] of a report whose payloads' stored texts (`payloads`, one per observation in
/// order: [`crate::store::codec::payload_text`]) are already made: the canonical JSON is written
/// around those texts instead of serialising every payload a second time (core, issue 7: the
/// payloads were the larger part of the digest's cost). The bytes are `serde_json`'s for the
/// report with `hash` left out, field by field in the declared order and with the same
/// omissions; the destructuring below stops the build when a field is added to `Report` or
/// `Observation`, and a test holds the two digests equal over every optional field.
pub fn digest_with_payloads(report: &Report, payloads: &[String]) -> String {
    let Report {
        protocol,
        agent_id,
        sequence,
        created_at,
        check,
        complete,
        prev_hash,
        hash: _,
        dropped,
        observations,
    } = report;
    debug_assert_eq!(observations.len(), payloads.len(), "one payload text per observation");
    let size: usize = payloads.iter().map(|p| p.len() + 160).sum();
    let mut out = Vec::with_capacity(size + 256);
    out.push(b'{');
    field(&mut out, "protocol", protocol);
    field(&mut out, "agent_id", agent_id);
    field(&mut out, "sequence", sequence);
    field(&mut out, "created_at", created_at);
    if let Some(check) = check {
        field(&mut out, "check", check);
    }
    field(&mut out, "complete", complete);
    if let Some(prev_hash) = prev_hash {
        field(&mut out, "prev_hash", prev_hash);
    }
    if !dropped.is_empty() {
        field(&mut out, "dropped", dropped);
    }
    out.extend_from_slice(b",\"observations\":[");
    for (i, (o, payload)) in observations.iter().zip(payloads).enumerate() {
        let rounds_protocol::Observation {
            kind,
            subject,
            observed_at,
            status,
            data: _,
            error,
        } = o;
        if i > 0 {
            out.push(b',');
        }
        out.push(b'{');
        field(&mut out, "kind", kind);
        field(&mut out, "subject", subject);
        field(&mut out, "observed_at", observed_at);
        field(&mut out, "status", status);
        field(&mut out, "data", &Verbatim(payload));
        if let Some(error) = error {
            field(&mut out, "error", error);
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    hex::encode(Sha256::digest(out))
}

/// A field of a JSON object being written into `out`: a comma unless it is the object's first,
/// the name (a plain identifier, nothing to escape) and the value as `serde_json` writes it.
fn field(out: &mut Vec<u8>, name: &str, value: &dyn Put) {
    if out.last() != Some(&b'{') {
        out.push(b',');
    }
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
    value.put(out);
}

/// A JSON value appended to a buffer.
trait Put {
    fn put(&self, out: &mut Vec<u8>);
}

impl<T: Serialize + ?Sized> Put for T {
    fn put(&self, out: &mut Vec<u8>) {
        // Into a Vec, a string, number, time or plain struct cannot fail.
        let _ = serde_json::to_writer(out, self);
    }
}

/// JSON text already written (a payload's stored text), appended as it is.
struct Verbatim<'a>(&'a str);

impl Put for Verbatim<'_> {
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.0.as_bytes());
    }
}

/// The chain problems of a new report (not the gap: see [`unexplained`]).
pub fn verify(agent_id: &str, report: &Report, ctx: &ChainContext) -> Vec<IntegrityProblem> {
    verify_digested(agent_id, report, &digest(report), ctx)
}

/// [`verify`] with the report's [`digest`] already computed (the store computes it once per
/// report for idempotency; hashing the canonical content of 50 observations twice was a
/// measurable share of ingest).
pub fn verify_digested(agent_id: &str, report: &Report, actual: &str, ctx: &ChainContext) -> Vec<IntegrityProblem> {
    let mut problems = Vec::new();
    let seq = report.sequence;
    if let Some(claimed) = &report.hash
        && claimed != actual
    {
        problems.push(IntegrityProblem {
            kind: ProblemKind::BadHash,
            sequence: seq,
            detail: format!(
                "report {seq} claims hash {} but its content hashes to {}: it was altered after the agent chained it, or forged",
                short(claimed),
                short(actual)
            ),
        });
    }
    // A report from an agent without a chain is not checked.
    let Some(prev_hash) = &report.prev_hash else {
        return problems;
    };
    let expected = if seq == 1 {
        Some(chain_seed(agent_id))
    } else {
        ctx.previous
            .as_ref()
            .filter(|p| p.sequence + 1 == seq)
            .and_then(|p| p.hash.clone())
    };
    if let Some(expected) = expected
        && *prev_hash != expected
    {
        problems.push(match ctx.older_match {
            Some(older) => IntegrityProblem {
                kind: ProblemKind::Rollback,
                sequence: seq,
                detail: format!(
                    "report {seq} continues the chain from report {older}, not from report {}: the agent's state went back (restored from an old backup?) and reports {}..{} of its history were replaced",
                    seq - 1,
                    older + 1,
                    seq - 1
                ),
            },
            None => IntegrityProblem {
                kind: ProblemKind::Fork,
                sequence: seq,
                detail: if seq == 1 {
                    format!(
                        "report 1 does not start from the enrollment seed (prev_hash {}): forged, or from another enrollment",
                        short(prev_hash)
                    )
                } else {
                    format!(
                        "report {seq} does not extend the chain: its prev_hash {} is not the hash {} of report {} nor of any stored report (forged, or a fork of the agent's history)",
                        short(prev_hash),
                        short(&expected),
                        seq - 1
                    )
                },
            },
        });
    }
    if let Some(next) = &ctx.next
        && next.sequence == seq + 1
        && let Some(next_prev) = &next.prev_hash
        && let Some(own) = report.hash.as_deref().or(Some(actual))
        && next_prev != own
    {
        problems.push(IntegrityProblem {
            kind: ProblemKind::Fork,
            sequence: seq,
            detail: format!(
                "report {seq} arrived after report {} which does not chain to it (prev_hash {}, this report's hash {})",
                next.sequence,
                short(next_prev),
                short(own)
            ),
        });
    }
    problems
}

/// The problem of a resend with other content at a stored sequence.
pub fn rewritten(sequence: u64, stored_digest: Option<&str>, new_digest: &str) -> IntegrityProblem {
    IntegrityProblem {
        kind: ProblemKind::Rewritten,
        sequence,
        detail: format!(
            "report {sequence} was sent again with other content (stored {}, now {}): the agent's sequence went back (state restored from an old backup) or the report was rewritten",
            stored_digest.map_or_else(|| "without digest".to_string(), short),
            short(new_digest)
        ),
    }
}

/// A missing range of sequences, and why when the agent said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GapPiece {
    pub first: u64,
    pub last: u64,
    /// The agent's reason (`spool_full`, `too_old`, `rejected`); `None`: unexplained.
    pub reason: Option<String>,
}

/// The gap a new report at `sequence` opens after `last_sequence` (the highest stored).
pub fn opens_gap(last_sequence: u64, sequence: u64) -> Option<(u64, u64)> {
    (sequence > last_sequence + 1).then(|| (last_sequence + 1, sequence - 1))
}

/// Splits the gap `first..=last` by the ranges the agent said it dropped: the explained pieces
/// carry the reason, the rest has none. In sequence order.
pub fn explain(first: u64, last: u64, dropped: &[DroppedRange]) -> Vec<GapPiece> {
    let mut ranges: Vec<&DroppedRange> = dropped.iter().filter(|d| d.last >= first && d.first <= last).collect();
    ranges.sort_by_key(|d| d.first);
    let mut out = Vec::new();
    let mut at = first;
    for d in ranges {
        let (a, b) = (d.first.max(at), d.last.min(last));
        if b < a {
            continue;
        }
        if a > at {
            out.push(GapPiece {
                first: at,
                last: a - 1,
                reason: None,
            });
        }
        match out.last_mut() {
            Some(p) if p.reason.as_deref() == Some(d.reason.as_str()) && p.last + 1 == a => p.last = b,
            _ => out.push(GapPiece {
                first: a,
                last: b,
                reason: Some(d.reason.clone()),
            }),
        }
        at = b + 1;
        if at > last {
            return out;
        }
    }
    if at <= last {
        out.push(GapPiece {
            first: at,
            last,
            reason: None,
        });
    }
    out
}

/// The unexplained pieces of a gap, as integrity problems found at report `sequence`.
pub fn unexplained(sequence: u64, pieces: &[GapPiece]) -> Vec<IntegrityProblem> {
    pieces
        .iter()
        .filter(|p| p.reason.is_none())
        .map(|p| IntegrityProblem {
            kind: ProblemKind::Gap,
            sequence,
            detail: if p.first == p.last {
                format!(
                    "report {} is missing: report {sequence} arrived without it and the agent did not say it dropped it",
                    p.first
                )
            } else {
                format!(
                    "reports {}..{} are missing: report {sequence} arrived without them and the agent did not say it dropped them",
                    p.first, p.last
                )
            },
        })
        .collect()
}

fn short(hash: &str) -> String {
    hash.chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dropped(first: u64, last: u64, reason: &str) -> DroppedRange {
        DroppedRange {
            first,
            last,
            reason: reason.into(),
        }
    }

    fn report(agent: &str, sequence: u64, prev: &str) -> Report {
        let mut r = Report {
            protocol: 1,
            agent_id: agent.into(),
            sequence,
            created_at: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            check: Some("inventory".into()),
            complete: true,
            prev_hash: Some(prev.into()),
            hash: None,
            dropped: vec![],
            observations: vec![],
        };
        r.hash = Some(digest(&r));
        r
    }

    fn stored(r: &Report) -> Neighbour {
        Neighbour {
            sequence: r.sequence,
            hash: r.hash.clone(),
            prev_hash: r.prev_hash.clone(),
        }
    }

    #[test]
    fn the_digest_around_stored_payload_texts_is_the_digest_of_the_report() {
        use rounds_protocol::{Observation, ObservationStatus};
        let texts = |r: &Report| -> Vec<String> {
            r.observations
                .iter()
                .map(|o| crate::store::codec::payload_text(&o.data))
                .collect()
        };
        let mut r = report("a", 3, &chain_seed("a"));
        r.observations.push(Observation {
            kind: "firewall".into(),
            subject: "C:\\ \"quoted\" \u{1} é \u{2028}".into(),
            observed_at: r.created_at,
            status: ObservationStatus::Ok,
            data: serde_json::json!({"enabled": true, "zones": ["a", "b"], "n": 1.5, "z": null, "\n": -3}),
            error: None,
        });
        r.observations.push(Observation {
            kind: "backup.job".into(),
            subject: "nightly".into(),
            observed_at: r.created_at + chrono::Duration::milliseconds(1),
            status: ObservationStatus::Error,
            data: serde_json::Value::Null,
            error: Some("restic: \"repository\" not found\n".into()),
        });
        let mut variants = vec![r.clone()];
        let mut bare = r.clone();
        bare.check = None;
        bare.prev_hash = None;
        bare.hash = None;
        bare.observations.clear();
        variants.push(bare);
        let mut full = r.clone();
        full.check = Some("encryption".into());
        full.complete = true;
        full.dropped = vec![
            DroppedRange {
                first: 1,
                last: 2,
                reason: "spool_full".into(),
            },
            DroppedRange {
                first: 5,
                last: 5,
                reason: "rejected".into(),
            },
        ];
        variants.push(full);
        for v in &variants {
            assert_eq!(digest_with_payloads(v, &texts(v)), digest(v), "{v:?}");
        }
        // The payload texts are what is hashed: another text is another digest.
        let mut other = texts(&r);
        other[0] = "{}".into();
        assert_ne!(digest_with_payloads(&r, &other), digest(&r));
    }

    #[test]
    fn the_seed_matches_the_agents_rule() {
        assert_eq!(
            chain_seed("a1"),
            hex::encode(Sha256::digest(b"rounds-chain-seed:a1")),
            "same rule as agent/src/spool.rs chain_seed"
        );
    }

    #[test]
    fn a_chained_report_has_no_problem_and_a_broken_one_each_kind() {
        let r1 = report("a", 1, &chain_seed("a"));
        assert!(verify("a", &r1, &ChainContext::default()).is_empty());
        let r2 = report("a", 2, r1.hash.as_ref().unwrap());
        let ctx = ChainContext {
            previous: Some(stored(&r1)),
            ..Default::default()
        };
        assert!(verify("a", &r2, &ctx).is_empty());

        let mut forged = r2.clone();
        forged.observations.clear();
        forged.check = Some("firewall".into());
        let p = verify("a", &forged, &ctx);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].kind, ProblemKind::BadHash);

        let fork = report("a", 2, "0000");
        let p = verify("a", &fork, &ctx);
        assert_eq!(p[0].kind, ProblemKind::Fork, "{p:?}");
        let rollback = ChainContext {
            older_match: Some(0),
            ..ctx.clone()
        };
        assert_eq!(verify("a", &fork, &rollback)[0].kind, ProblemKind::Rollback);

        let wrong_seed = report("a", 1, &chain_seed("b"));
        assert_eq!(
            verify("a", &wrong_seed, &ChainContext::default())[0].kind,
            ProblemKind::Fork
        );
    }

    #[test]
    fn gaps_are_explained_piece_by_piece() {
        assert_eq!(opens_gap(4, 5), None);
        assert_eq!(opens_gap(4, 9), Some((5, 8)));
        let pieces = explain(
            5,
            12,
            &[
                dropped(6, 7, "spool_full"),
                dropped(8, 8, "spool_full"),
                dropped(11, 20, "too_old"),
            ],
        );
        let show: Vec<(u64, u64, Option<&str>)> =
            pieces.iter().map(|p| (p.first, p.last, p.reason.as_deref())).collect();
        assert_eq!(
            show,
            vec![
                (5, 5, None),
                (6, 8, Some("spool_full")),
                (9, 10, None),
                (11, 12, Some("too_old"))
            ]
        );
        let problems = unexplained(13, &pieces);
        assert_eq!(problems.len(), 2);
        assert!(problems[1].detail.contains("reports 9..10 are missing"), "{problems:?}");
        assert!(unexplained(13, &explain(5, 8, &[dropped(1, 100, "rejected")])).is_empty());
    }
}
