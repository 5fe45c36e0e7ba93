//! The machine page's delivery and integrity card: last sequence stored, reports stored, gaps
//! with the agent's reasons, the chain's integrity problems, and what the agent said in its
//! last heartbeat about its configuration and spool ("configuration refused: <reason>").

use crate::store::DeliveryStatus;

/// What the card shows, as text ready for the template (escaped there).
#[derive(Debug, Default)]
pub struct DeliveryCard {
    pub last_sequence: u64,
    pub reports_stored: u64,
    /// `3..7 (dropped by the agent: spool_full)`, `9 (missing, unexplained)`.
    pub gaps: Vec<String>,
    pub integrity_problems: u64,
    /// `report 12: fork: ...`, newest first.
    pub integrity: Vec<String>,
    pub config_version: Option<String>,
    /// `configuration refused: <reason>`.
    pub config_refused: Option<String>,
    pub spool_depth: Option<u64>,
    pub spool_error: Option<String>,
}

impl DeliveryCard {
    pub fn new(status: DeliveryStatus) -> Self {
        let DeliveryStatus {
            last_sequence,
            reports_stored,
            chain_sequence: _,
            chain_hash: _,
            gaps,
            integrity_problems,
            integrity,
            reported,
        } = status;
        let range = |a: u64, b: u64| if a == b { a.to_string() } else { format!("{a}..{b}") };
        DeliveryCard {
            last_sequence,
            reports_stored,
            gaps: gaps
                .iter()
                .map(|g| match &g.reason {
                    Some(r) => format!("{} (dropped by the agent: {r})", range(g.first, g.last)),
                    None => format!("{} (missing, unexplained)", range(g.first, g.last)),
                })
                .collect(),
            integrity_problems,
            integrity: integrity
                .iter()
                .map(|e| format!("report {}: {}: {}", e.sequence, e.kind, e.detail))
                .collect(),
            config_version: reported.config_version,
            config_refused: reported.config_error.map(|r| format!("configuration refused: {r}")),
            spool_depth: reported.spool_depth,
            spool_error: reported.spool_error,
        }
    }
}
