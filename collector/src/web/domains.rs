//! The dashboard's domains and compliance score.
//!
//! Every rule belongs to one domain, decided by the section of its id (`hipaa.<section>.<name>`,
//! the pack's rule files `policies/packs/hipaa/rules/<section>.toml`): `backup` is Backups,
//! `encryption` Encryption, `audit` Audit logs, `availability.ehr_reachable` and `transmission`
//! EHR connectivity, the collector's own clock finding Audit logs (a wrong clock breaks audit
//! timestamps), everything else Host hygiene. "Agents online" is the sixth domain, from
//! heartbeats, not from rules.
//!
//! The compliance score of a set of findings is [`crate::score::compliance_score`], the one
//! definition the compliance reports use too: the share of judged findings that pass (accepted
//! risks count against it and are shown beside it).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rounds_policies::Status;

use crate::store::FindingBrief;

/// One column of the overview.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Domain {
    Agents,
    Ehr,
    Backups,
    Encryption,
    Audit,
    Hygiene,
}

impl Domain {
    /// Every domain, in the overview's column order.
    pub const ALL: [Domain; 6] = [
        Domain::Agents,
        Domain::Ehr,
        Domain::Backups,
        Domain::Encryption,
        Domain::Audit,
        Domain::Hygiene,
    ];

    /// The name in URLs (`?domain=backups`).
    pub fn key(self) -> &'static str {
        match self {
            Domain::Agents => "agents",
            Domain::Ehr => "ehr",
            Domain::Backups => "backups",
            Domain::Encryption => "encryption",
            Domain::Audit => "audit",
            Domain::Hygiene => "hygiene",
        }
    }

    /// The column heading.
    pub fn label(self) -> &'static str {
        match self {
            Domain::Agents => "Agents online",
            Domain::Ehr => "EHR connectivity",
            Domain::Backups => "Backups",
            Domain::Encryption => "Encryption",
            Domain::Audit => "Audit logs",
            Domain::Hygiene => "Host hygiene",
        }
    }

    pub fn parse(s: &str) -> Option<Domain> {
        Domain::ALL.into_iter().find(|d| d.key() == s)
    }

    /// The domain of a rule, from its id.
    pub fn of_rule(rule: &str) -> Domain {
        if rule == crate::ingest::CLOCK_RULE {
            return Domain::Audit;
        }
        let section = rule.strip_prefix("hipaa.").unwrap_or(rule);
        let (section, name) = section.split_once('.').unwrap_or((section, ""));
        match (section, name) {
            ("backup", _) => Domain::Backups,
            ("encryption", _) => Domain::Encryption,
            ("audit", _) => Domain::Audit,
            ("transmission", _) | ("availability", "ehr_reachable") => Domain::Ehr,
            _ => Domain::Hygiene,
        }
    }
}

/// A domain's state, worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Fail,
    Warn,
    Ok,
    NoData,
}

impl Level {
    pub fn key(self) -> &'static str {
        match self {
            Level::Fail => "fail",
            Level::Warn => "warn",
            Level::Ok => "ok",
            Level::NoData => "nodata",
        }
    }

    /// The badge class (the words and icon carry the meaning; the colour repeats it).
    pub fn class(self) -> &'static str {
        match self {
            Level::Fail => "fail",
            Level::Warn => "warn",
            Level::Ok => "pass",
            Level::NoData => "na",
        }
    }

    /// An icon that tells the state without colour.
    pub fn icon(self) -> &'static str {
        match self {
            Level::Fail => "✖",
            Level::Warn => "▲",
            Level::Ok => "✔",
            Level::NoData => "–",
        }
    }

    pub fn parse(s: &str) -> Option<Level> {
        [Level::Fail, Level::Warn, Level::Ok, Level::NoData]
            .into_iter()
            .find(|l| l.key() == s)
    }
}

/// One domain of one practice (or one agent): its level, words, and since when it has been bad.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainStatus {
    pub domain: Domain,
    pub level: Level,
    pub text: String,
    /// When the oldest failing (or erroring) finding of the domain took that status.
    pub since: Option<DateTime<Utc>>,
}

/// Counts of findings by outcome, for one domain or for a score.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub pass: u32,
    pub fail: u32,
    pub error: u32,
    /// Failing or erroring with an accepted risk (not counted in `fail`/`error`).
    pub accepted: u32,
    pub since: Option<DateTime<Utc>>,
}

impl Tally {
    pub fn add(&mut self, status: Status, accepted: bool, since: DateTime<Utc>) {
        match (status, accepted) {
            (Status::Pass, _) => self.pass += 1,
            (Status::NotApplicable, _) => {}
            (Status::Fail | Status::Error, true) => self.accepted += 1,
            (Status::Fail, false) => {
                self.fail += 1;
                self.since = Some(self.since.map_or(since, |s| s.min(since)));
            }
            (Status::Error, false) => {
                self.error += 1;
                self.since = Some(self.since.map_or(since, |s| s.min(since)));
            }
        }
    }

    pub fn merge(&mut self, o: &Tally) {
        self.pass += o.pass;
        self.fail += o.fail;
        self.error += o.error;
        self.accepted += o.accepted;
        self.since = match (self.since, o.since) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    /// The score in whole percent ([`crate::score::compliance_score`]), `None` when nothing
    /// applies.
    pub fn score(&self) -> Option<u8> {
        crate::score::compliance_score(self.pass, self.pass + self.fail + self.error + self.accepted)
    }

    /// The domain's status from its findings.
    pub fn status(&self, domain: Domain) -> DomainStatus {
        let (level, text) = if self.fail > 0 {
            (Level::Fail, format!("{} failing", self.fail))
        } else if self.error > 0 {
            (Level::Warn, format!("{} cannot check", self.error))
        } else if self.pass > 0 || self.accepted > 0 {
            let text = if self.accepted > 0 {
                format!("OK ({} accepted)", self.accepted)
            } else {
                "OK".to_string()
            };
            (Level::Ok, text)
        } else {
            (Level::NoData, "no data".to_string())
        };
        DomainStatus {
            domain,
            level,
            text,
            since: self.since,
        }
    }
}

impl From<&crate::store::RuleTally> for Tally {
    fn from(t: &crate::store::RuleTally) -> Self {
        Tally {
            pass: t.pass,
            fail: t.fail,
            error: t.error,
            accepted: t.accepted,
            since: t.bad_since,
        }
    }
}

/// Findings of each agent tallied per domain.
pub fn tally_by_agent(briefs: &[FindingBrief]) -> HashMap<&str, HashMap<Domain, Tally>> {
    let mut out: HashMap<&str, HashMap<Domain, Tally>> = HashMap::new();
    for b in briefs {
        out.entry(b.agent_id.as_str())
            .or_default()
            .entry(Domain::of_rule(&b.rule))
            .or_default()
            .add(b.status, b.accepted, b.status_since);
    }
    out
}

/// The "agents online" domain from counts.
pub fn agents_status(online: usize, total: usize, offline_since: Option<DateTime<Utc>>) -> DomainStatus {
    let (level, text) = match (online, total) {
        (_, 0) => (Level::NoData, "no machines".to_string()),
        (o, t) if o == t => (Level::Ok, format!("{o} of {t} online")),
        (0, t) => (Level::Fail, format!("all {t} offline")),
        (o, t) => (Level::Fail, format!("{} of {t} offline", t - o)),
    };
    DomainStatus {
        domain: Domain::Agents,
        level,
        text,
        since: offline_since.filter(|_| level == Level::Fail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_fall_into_their_domains() {
        for (rule, domain) in [
            ("hipaa.backup.recent", Domain::Backups),
            ("hipaa.backup.restore_tested", Domain::Backups),
            ("hipaa.encryption.at_rest", Domain::Encryption),
            ("hipaa.audit.log_integrity", Domain::Audit),
            ("collector.agent_clock", Domain::Audit),
            ("hipaa.availability.ehr_reachable", Domain::Ehr),
            ("hipaa.transmission.certificate", Domain::Ehr),
            ("hipaa.availability.disk_space", Domain::Hygiene),
            ("hipaa.updates.security_patches", Domain::Hygiene),
            ("hipaa.access.mfa", Domain::Hygiene),
            ("custom", Domain::Hygiene),
        ] {
            assert_eq!(Domain::of_rule(rule), domain, "{rule}");
        }
    }

    #[test]
    fn scores_and_statuses() {
        let t0 = DateTime::parse_from_rfc3339("2026-11-24T12:00:00Z").unwrap().to_utc();
        let t1 = t0 + chrono::Duration::hours(1);
        let mut t = Tally::default();
        assert_eq!(t.score(), None);
        assert_eq!(t.status(Domain::Backups).level, Level::NoData);
        t.add(Status::Pass, false, t0);
        t.add(Status::NotApplicable, false, t0);
        assert_eq!(t.score(), Some(100));
        t.add(Status::Fail, true, t0);
        assert_eq!(t.status(Domain::Backups).text, "OK (1 accepted)");
        t.add(Status::Fail, false, t1);
        t.add(Status::Error, false, t0);
        assert_eq!(
            t.score(),
            Some(25),
            "1 pass of 4 judged: the accepted risk is not a pass"
        );
        let s = t.status(Domain::Backups);
        assert_eq!(
            (s.level, s.text.as_str(), s.since),
            (Level::Fail, "1 failing", Some(t0))
        );
        assert_eq!(agents_status(3, 3, None).text, "3 of 3 online");
        assert_eq!(agents_status(1, 3, Some(t0)).text, "2 of 3 offline");
        assert_eq!(agents_status(0, 2, None).level, Level::Fail);
        assert_eq!(agents_status(0, 0, None).level, Level::NoData);
    }
}
