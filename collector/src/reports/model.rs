//! The report model: what a compliance report says, built only from history as the store
//! recorded it (findings as they stood, finding changes, stored observations, report receipts),
//! so that a report of a past period says the same whatever arrived since.
//!
//! [`Content`] is the canonical content: its JSON (serde, fields in declaration order, lists in
//! a fixed order) is what the report's SHA-256 is computed over. It holds no generation time.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use rounds_policies::{Exception, Pack, Requirement, Status};
use serde::Serialize;

use crate::store::{AgentRow, ChangeQuery, FindingChange, FindingRow, Scope, Store, StoreResult, StoredObservation};

/// A period of whole UTC days, `from` and `to` inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Period {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl Period {
    /// The first instant of the period.
    pub fn start(&self) -> DateTime<Utc> {
        self.from.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
    }

    /// The first instant after the period.
    pub fn end(&self) -> DateTime<Utc> {
        self.to
            .succ_opt()
            .unwrap_or(self.to)
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc()
    }

    fn length(&self) -> Duration {
        self.end() - self.start()
    }
}

/// The canonical content of a report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Content {
    pub practice: String,
    pub period: Period,
    /// The policy pack, e.g. `HIPAA Security Rule (45 CFR Part 164, Subpart C), version 1`.
    pub pack: String,
    pub overall: Overall,
    /// Paragraphs for a manager without IT knowledge.
    pub summary: Vec<String>,
    pub sections: Vec<Section>,
    pub incidents: Vec<Incident>,
    /// What the incident list is computed from, in words.
    pub incidents_method: String,
    pub inventory: Vec<Asset>,
    pub method: Vec<MethodRow>,
    pub method_note: String,
}

/// The overall status at the end of the period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Overall {
    /// `compliant`, `action needed` or `no data`.
    pub status: String,
    /// Passing checks in percent of judged checks (pass, fail, error) at the end of the period.
    pub score: Option<u32>,
    pub machines: u32,
    pub pass: u32,
    pub fail: u32,
    pub error: u32,
    pub not_applicable: u32,
    /// Failing or erroring checks covered by an accepted risk in force.
    pub accepted: u32,
}

/// One Security Rule section the pack gives evidence for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Section {
    /// e.g. `164.312(a)(2)(iv)`.
    pub citation: String,
    pub title: String,
    /// `required`, `addressable` or `standard`.
    pub requirement: String,
    /// `met`, `not met`, `accepted risk`, `could not be checked`, `not applicable`, `no data`.
    pub status: String,
    pub checks: Vec<SectionCheck>,
    pub accepted_risks: Vec<AcceptedRisk>,
    /// For an addressable specification not met: what was documented instead (164.306(d)(3)).
    pub documented_instead: Option<String>,
}

/// One rule of the pack, as evidence for one section.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SectionCheck {
    pub rule: String,
    pub title: String,
    /// What was checked, from the rule's description.
    pub checked: String,
    /// The rule gives evidence for part of the section only.
    pub partial: bool,
    pub rationale: String,
    pub machines: Vec<MachineStatus>,
}

/// The status of one rule on one machine over the period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MachineStatus {
    pub hostname: String,
    /// `pass`, `fail`, `error`, `not_applicable`, or `none` (not evaluated by the end).
    pub status: String,
    /// Since when it had that status.
    pub since: Option<DateTime<Utc>>,
    /// When the evidence was recorded.
    pub recorded_at: Option<DateTime<Utc>>,
    /// Time passing in percent of the time it was judged in the period.
    pub passing_pct: Option<u32>,
    /// Status changes recorded in the period.
    pub changes: u32,
    /// The evidence as recorded, `field = value`.
    pub evidence: Vec<(String, String)>,
    pub message: String,
    pub remediation: Option<String>,
    /// The accepted risk attached at the end of the period, if any.
    pub accepted: Option<AcceptedRisk>,
}

/// An accepted risk: who accepted what, why, until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AcceptedRisk {
    pub rule: String,
    pub hostname: String,
    pub reason: String,
    pub accepted_by: String,
    /// The first day it no longer holds.
    pub expires: NaiveDate,
    /// Whether it was still in force on the last day of the period.
    pub in_force: bool,
    pub source: String,
}

/// Something that went wrong in the period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Incident {
    /// `EHR outage`, `backup failure`, `tamper event`, `agent outage`.
    pub kind: String,
    pub hostname: String,
    /// What it concerns: the EHR endpoint, the rule.
    pub subject: String,
    pub start: DateTime<Utc>,
    /// `None` while it was still going on at the end of the period.
    pub end: Option<DateTime<Utc>>,
    /// Within the period.
    pub duration_secs: i64,
    pub cause: String,
    /// For EHR outages: availability of the endpoint from this machine over the period, in
    /// hundredths of a percent.
    pub availability_bp: Option<u32>,
}

/// One machine of the technology asset inventory, as at the end of the period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Asset {
    pub hostname: String,
    pub site: String,
    pub os: String,
    pub role: String,
    pub hardware: String,
    pub enrolled_at: DateTime<Utc>,
    /// Each observed volume: `mount: encrypted (method)` or `mount: NOT encrypted`.
    pub encryption: Vec<String>,
    /// The at-rest encryption rule's status at the end of the period.
    pub encryption_status: String,
}

/// What one check reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MethodRow {
    pub check: String,
    pub linux: String,
    pub windows: String,
    pub macos: String,
}

/// The Security Rule section titles of the sections the built-in pack cites.
pub fn section_title(citation: &str) -> String {
    let title = match citation {
        "164.306(a)(1)" => "General requirements: confidentiality, integrity and availability of ePHI",
        "164.308(a)(1)(ii)(B)" => "Risk management",
        "164.308(a)(1)(ii)(D)" => "Information system activity review",
        "164.308(a)(3)(ii)(C)" => "Termination procedures",
        "164.308(a)(4)(ii)(B)" => "Access authorization",
        "164.308(a)(5)(ii)(B)" => "Protection from malicious software",
        "164.308(a)(5)(ii)(C)" => "Log-in monitoring",
        "164.308(a)(5)(ii)(D)" => "Password management",
        "164.308(a)(7)(i)" => "Contingency plan",
        "164.308(a)(7)(ii)(A)" => "Data backup plan",
        "164.308(a)(7)(ii)(B)" => "Disaster recovery plan",
        "164.308(a)(7)(ii)(D)" => "Testing and revision procedures",
        "164.310(c)" => "Workstation security",
        "164.310(d)(1)" => "Device and media controls",
        "164.310(d)(2)(iii)" => "Accountability (device and media controls)",
        "164.310(d)(2)(iv)" => "Data backup and storage",
        "164.312(a)(1)" => "Access control",
        "164.312(a)(2)(i)" => "Unique user identification",
        "164.312(a)(2)(iii)" => "Automatic logoff",
        "164.312(a)(2)(iv)" => "Encryption and decryption",
        "164.312(b)" => "Audit controls",
        "164.312(c)(1)" => "Integrity",
        "164.312(d)" => "Person or entity authentication",
        "164.312(e)(1)" => "Transmission security",
        "164.312(e)(2)(i)" => "Integrity controls (transmission)",
        "164.312(e)(2)(ii)" => "Encryption (transmission)",
        _ => return format!("Security Rule section {citation}"),
    };
    title.to_string()
}

/// Orders section ids numerically by their parts: `164.308(a)(7)(i)` before `164.308(a)(10)`.
fn section_key(citation: &str) -> Vec<String> {
    citation
        .split(['.', '(', ')'])
        .filter(|p| !p.is_empty())
        .map(|p| match p.parse::<u32>() {
            Ok(n) => format!("{n:08}"),
            Err(_) => p.to_string(),
        })
        .collect()
}

/// Everything [`build`] reads, so a caller can time or replace the store reads.
pub struct Inputs<'a> {
    pub store: &'a dyn Store,
    pub pack: &'a Pack,
    pub practice_id: i64,
    pub practice: &'a str,
    pub period: Period,
    /// What each check reads (from the README's table).
    pub method: Vec<MethodRow>,
}

/// Per machine: its row, findings at the start and end, changes in the period.
struct Machine {
    agent: AgentRow,
    start: BTreeMap<String, FindingRow>,
    end: BTreeMap<String, FindingRow>,
    changes: BTreeMap<String, Vec<FindingChange>>,
    observations: Vec<StoredObservation>,
    receipts: Vec<DateTime<Utc>>,
}

/// Observation kinds the report reads directly (inventory, encryption, EHR probes).
const KINDS: &[&str] = &["inventory", "os_release", "encryption.volume", "ehr.probe"];

/// Without a report for this long, an agent counts as out (reports are sent at least daily).
const AGENT_OUTAGE_AFTER_HOURS: i64 = 26;

/// Builds the content of a practice's report for a period.
pub async fn build(inputs: Inputs<'_>) -> StoreResult<Content> {
    let Inputs {
        store,
        pack,
        practice_id,
        practice,
        period,
        method,
    } = inputs;
    let admin = Scope {
        role: crate::store::Role::Admin,
        practice_id: None,
    };
    let start = period.start();
    let end = period.end();
    let before_start = start - Duration::milliseconds(1);
    let last_instant = end - Duration::milliseconds(1);

    let mut agents: Vec<AgentRow> = store
        .agents(&admin)
        .await?
        .into_iter()
        .filter(|a| a.practice_id == practice_id && a.enrolled_at < end)
        .collect();
    agents.sort_by(|a, b| (&a.hostname, &a.agent_id).cmp(&(&b.hostname, &b.agent_id)));

    let all_changes = store
        .finding_changes(
            &admin,
            &ChangeQuery {
                agent_id: None,
                practice_id: Some(practice_id),
                from: start,
                to: end,
            },
        )
        .await?;
    let mut machines = Vec::with_capacity(agents.len());
    for agent in agents {
        let by_rule = |rows: Vec<FindingRow>| rows.into_iter().map(|f| (f.rule.clone(), f)).collect();
        let start_findings = by_rule(store.findings_at(&admin, &agent.agent_id, before_start).await?);
        let end_findings = by_rule(store.findings_at(&admin, &agent.agent_id, last_instant).await?);
        let mut changes: BTreeMap<String, Vec<FindingChange>> = BTreeMap::new();
        for c in all_changes.iter().filter(|c| c.agent_id == agent.agent_id) {
            changes.entry(c.rule.clone()).or_default().push(c.clone());
        }
        let observations = store
            .agent_observation_history(&agent.agent_id, KINDS, start, end)
            .await?;
        let receipts = store.report_receipts(&agent.agent_id, start, end).await?;
        machines.push(Machine {
            agent,
            start: start_findings,
            end: end_findings,
            changes,
            observations,
            receipts,
        });
    }

    let sections = sections(pack, &machines, period);
    let overall = overall(&machines, period);
    let incidents = incidents(&machines, period);
    let inventory = inventory(&machines);
    let summary = summary(practice, period, &overall, &sections, &incidents);
    Ok(Content {
        practice: practice.to_string(),
        period,
        pack: format!("{}, version {}", pack.title, pack.version),
        overall,
        summary,
        sections,
        incidents,
        incidents_method: format!(
            "EHR outages are computed from the EHR probe observations each machine recorded (down from the \
             first failed probe to the next successful one; probable cause: the probe's own reason for the \
             first failure); backup failures and tamper events from the recorded history of the backup and \
             audit-log integrity findings; agent outages are periods of more than {AGENT_OUTAGE_AFTER_HOURS} hours \
             in which the collector received no report from the machine."
        ),
        inventory,
        method,
        method_note: "No patient data is collected. The Rounds agent reads configuration and metadata only. It \
                      never reads, stores or sends patient data (PHI): no file contents, no record, no log line leaves the machine; logs are \
                      followed by size, times and hashes of their content. The collector stores what the \
                      agent sent and the verdicts of the policy rules, with their history."
            .to_string(),
    })
}

fn active(e: &Exception, day: NaiveDate) -> bool {
    e.is_active(day)
}

fn accepted_risk(rule: &str, hostname: &str, e: &Exception, period: Period) -> AcceptedRisk {
    AcceptedRisk {
        rule: rule.to_string(),
        hostname: hostname.to_string(),
        reason: e.reason.clone(),
        accepted_by: e.accepted_by.clone(),
        expires: e.expires,
        in_force: active(e, period.to),
        source: e.source.clone(),
    }
}

/// Time in each status (by name) of one rule on one machine within the period.
fn timeline(m: &Machine, rule: &str, period: Period) -> (BTreeMap<&'static str, i64>, u32) {
    let mut spent: BTreeMap<&'static str, i64> = BTreeMap::new();
    let mut status: Option<Status> = m.start.get(rule).map(|f| f.status);
    let mut since = period.start();
    let mut count = 0;
    for c in m.changes.get(rule).map(Vec::as_slice).unwrap_or_default() {
        if let Some(s) = status {
            *spent.entry(s.as_str()).or_default() += (c.at - since).num_milliseconds();
        }
        if c.old_status != c.new_status {
            count += 1;
        }
        status = c.new_status;
        since = c.at;
    }
    if let Some(s) = status {
        *spent.entry(s.as_str()).or_default() += (period.end() - since).num_milliseconds();
    }
    (spent, count)
}

fn evidence_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "unknown".to_string(),
        other => other.to_string(),
    }
}

/// The evidence of a finding as `(what, values)` pairs: one per observation the rule judged
/// (its subject, verdict and time, then its evidence fields), then the rule's parameters and
/// what was missing.
fn evidence_pairs(evidence: &serde_json::Value) -> Vec<(String, String)> {
    let fields = |map: &serde_json::Map<String, serde_json::Value>| {
        map.iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| format!("{k} = {}", evidence_text(v)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match evidence {
        serde_json::Value::Object(map) if map.contains_key("observations") => {
            let mut out = Vec::new();
            for o in map.get("observations").and_then(|v| v.as_array()).into_iter().flatten() {
                let subject = o.get("subject").map(evidence_text).unwrap_or_default();
                let result = o.get("result").map(evidence_text).unwrap_or_default();
                let observed = o.get("observed_at").map(evidence_text).unwrap_or_default();
                let values = o
                    .get("values")
                    .and_then(|v| v.as_object())
                    .map(fields)
                    .unwrap_or_default();
                out.push((format!("{subject} [{result}, observed {observed}]"), values));
            }
            for (k, v) in map.iter().filter(|(k, _)| k.as_str() != "observations") {
                let text = match v {
                    serde_json::Value::Object(m) if m.is_empty() => continue,
                    serde_json::Value::Array(a) if a.is_empty() => continue,
                    serde_json::Value::Object(m) => fields(m),
                    serde_json::Value::Array(a) => a.iter().map(evidence_text).collect::<Vec<_>>().join(", "),
                    other => evidence_text(other),
                };
                out.push((k.clone(), text));
            }
            out
        }
        serde_json::Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), evidence_text(v))).collect(),
        serde_json::Value::Null => Vec::new(),
        other => vec![("value".to_string(), evidence_text(other))],
    }
}

fn sections(pack: &Pack, machines: &[Machine], period: Period) -> Vec<Section> {
    let mut cited: BTreeMap<Vec<String>, String> = BTreeMap::new();
    for rule in &pack.rules {
        for c in &rule.citations {
            cited.insert(section_key(&c.reference), c.reference.clone());
        }
    }
    let mut out = Vec::new();
    for citation in cited.into_values() {
        let requirement = pack
            .sections
            .as_ref()
            .and_then(|s| s.current.get(&citation).copied())
            .or_else(|| {
                pack.rules
                    .iter()
                    .flat_map(|r| r.citations.iter())
                    .find(|c| c.reference == citation)
                    .map(|c| c.requirement)
            })
            .unwrap_or(Requirement::Required);
        let mut checks = Vec::new();
        let mut accepted_risks = Vec::new();
        let (mut pass, mut fail, mut error, mut na, mut covered) = (0u32, 0u32, 0u32, 0u32, 0u32);
        for rule in pack
            .rules
            .iter()
            .filter(|r| r.citations.iter().any(|c| c.reference == citation))
        {
            let Some(cite) = rule.citations.iter().find(|c| c.reference == citation) else {
                continue;
            };
            let mut rows = Vec::new();
            for m in machines {
                let (spent, changes) = timeline(m, &rule.id, period);
                let judged: i64 = ["pass", "fail", "error"].iter().filter_map(|s| spent.get(s)).sum();
                let passing_pct = (judged > 0).then(|| {
                    let p = spent.get("pass").copied().unwrap_or(0);
                    u32::try_from((p * 100 + judged / 2) / judged).unwrap_or(0)
                });
                let f = m.end.get(&rule.id);
                let accepted = f
                    .and_then(|f| f.exception.as_ref())
                    .map(|e| accepted_risk(&rule.id, &m.agent.hostname, e, period));
                if let Some(f) = f {
                    let is_covered = accepted.as_ref().is_some_and(|a| a.in_force);
                    match f.status {
                        Status::Pass => pass += 1,
                        Status::Fail => fail += 1,
                        Status::Error => error += 1,
                        Status::NotApplicable => na += 1,
                    }
                    if is_covered && matches!(f.status, Status::Fail | Status::Error) {
                        covered += 1;
                    }
                }
                if let Some(a) = &accepted {
                    accepted_risks.push(a.clone());
                }
                rows.push(MachineStatus {
                    hostname: m.agent.hostname.clone(),
                    status: f.map(|f| f.status.as_str()).unwrap_or("none").to_string(),
                    since: f.map(|f| f.status_since),
                    recorded_at: f.map(|f| f.evaluated_at),
                    passing_pct,
                    changes,
                    evidence: f.map(|f| evidence_pairs(&f.evidence)).unwrap_or_default(),
                    message: f.map(|f| f.message.clone()).unwrap_or_default(),
                    remediation: f
                        .filter(|f| matches!(f.status, Status::Fail | Status::Error))
                        .and_then(|f| f.remediation.clone()),
                    accepted,
                });
            }
            checks.push(SectionCheck {
                rule: rule.id.clone(),
                title: rule.title.clone(),
                checked: rule.description.split_whitespace().collect::<Vec<_>>().join(" "),
                partial: cite.partial,
                rationale: cite.rationale.clone(),
                machines: rows,
            });
        }
        let unresolved = fail + error - covered;
        let status = if fail > covered {
            "not met"
        } else if error > 0 && unresolved > 0 {
            "could not be checked"
        } else if covered > 0 {
            "accepted risk"
        } else if pass > 0 {
            "met"
        } else if na > 0 {
            "not applicable"
        } else {
            "no data"
        };
        let documented_instead = (requirement == Requirement::Addressable
            && matches!(status, "not met" | "accepted risk" | "could not be checked"))
        .then(|| {
            let in_force: Vec<&AcceptedRisk> = accepted_risks.iter().filter(|a| a.in_force).collect();
            if in_force.is_empty() {
                "Nothing was documented in Rounds for this addressable specification: no accepted risk or \
                 alternative measure is recorded. Under 45 CFR 164.306(d)(3) the practice must either \
                 implement it, or document why it is not reasonable and appropriate and implement an \
                 equivalent alternative measure."
                    .to_string()
            } else {
                let mut text = String::from(
                    "Instead of meeting this addressable specification on every machine, the practice \
                     documented (45 CFR 164.306(d)(3)): ",
                );
                let parts: Vec<String> = in_force
                    .iter()
                    .map(|a| {
                        format!(
                            "{} on {}: \"{}\" (accepted by {}, until {})",
                            a.rule, a.hostname, a.reason, a.accepted_by, a.expires
                        )
                    })
                    .collect();
                text.push_str(&parts.join("; "));
                text.push('.');
                if fail + error > covered {
                    text.push_str(" Failures not covered by these remain undocumented.");
                }
                text
            }
        });
        out.push(Section {
            title: section_title(&citation),
            citation,
            requirement: requirement.as_str().to_string(),
            status: status.to_string(),
            checks,
            accepted_risks,
            documented_instead,
        });
    }
    out
}

fn overall(machines: &[Machine], period: Period) -> Overall {
    let mut o = Overall {
        status: String::new(),
        score: None,
        machines: u32::try_from(machines.len()).unwrap_or(u32::MAX),
        pass: 0,
        fail: 0,
        error: 0,
        not_applicable: 0,
        accepted: 0,
    };
    for m in machines {
        for f in m.end.values() {
            match f.status {
                Status::Pass => o.pass += 1,
                Status::Fail => o.fail += 1,
                Status::Error => o.error += 1,
                Status::NotApplicable => o.not_applicable += 1,
            }
            if matches!(f.status, Status::Fail | Status::Error)
                && f.exception.as_ref().is_some_and(|e| active(e, period.to))
            {
                o.accepted += 1;
            }
        }
    }
    let judged = o.pass + o.fail + o.error;
    o.score = crate::score::compliance_score(o.pass, judged).map(u32::from);
    o.status = if judged == 0 {
        "no data"
    } else if o.fail + o.error > o.accepted {
        "action needed"
    } else {
        "compliant"
    }
    .to_string();
    o
}

fn field<'a>(o: &'a StoredObservation, name: &str) -> Option<&'a serde_json::Value> {
    o.observation.data.get(name)
}

fn field_str(o: &StoredObservation, name: &str) -> Option<String> {
    field(o, name).and_then(|v| v.as_str()).map(str::to_string)
}

fn incidents(machines: &[Machine], period: Period) -> Vec<Incident> {
    let mut out = Vec::new();
    let start = period.start();
    let end = period.end();
    for m in machines {
        let host = &m.agent.hostname;
        // EHR outages from the probe observations, per endpoint.
        let mut by_target: BTreeMap<String, Vec<&StoredObservation>> = BTreeMap::new();
        for o in m.observations.iter().filter(|o| o.observation.kind == "ehr.probe") {
            by_target.entry(o.observation.subject.clone()).or_default().push(o);
        }
        for (target, probes) in by_target {
            let mut outages: Vec<(DateTime<Utc>, Option<DateTime<Utc>>, String)> = Vec::new();
            let mut down: Option<(DateTime<Utc>, String)> = None;
            for o in probes {
                let up = field(o, "up").and_then(|v| v.as_bool()).unwrap_or(false)
                    && o.observation.status == rounds_protocol::ObservationStatus::Ok;
                let at = o.observation.observed_at.max(start);
                match (&down, up) {
                    (None, false) => {
                        let cause = field_str(o, "failure")
                            .or_else(|| field_str(o, "reason"))
                            .or_else(|| o.observation.error.clone())
                            .unwrap_or_else(|| "unknown".to_string());
                        down = Some((at, cause));
                    }
                    (Some((since, cause)), true) => {
                        outages.push((*since, Some(at), cause.clone()));
                        down = None;
                    }
                    _ => {}
                }
            }
            if let Some((since, cause)) = down {
                outages.push((since, None, cause));
            }
            let downtime: i64 = outages
                .iter()
                .map(|(s, e, _)| (e.unwrap_or(end) - *s).num_milliseconds())
                .sum();
            let total = period.length().num_milliseconds().max(1);
            let availability = u32::try_from(((total - downtime) * 10_000) / total).unwrap_or(0);
            for (s, e, cause) in outages {
                out.push(Incident {
                    kind: "EHR outage".to_string(),
                    hostname: host.clone(),
                    subject: target.clone(),
                    start: s,
                    end: e,
                    duration_secs: (e.unwrap_or(end) - s).num_seconds(),
                    cause,
                    availability_bp: Some(availability),
                });
            }
        }
        // Backup failures and tamper events from the finding history.
        let rules: BTreeSet<&String> = m.start.keys().chain(m.changes.keys()).collect();
        for rule in rules {
            let kind = if rule.starts_with("hipaa.backup.") {
                "backup failure"
            } else if rule == "hipaa.audit.log_integrity" {
                "tamper event"
            } else {
                continue;
            };
            let mut open: Option<(DateTime<Utc>, String)> = m
                .start
                .get(rule)
                .filter(|f| f.status == Status::Fail)
                .map(|f| (start, f.message.clone()));
            let mut push = |s: DateTime<Utc>, e: Option<DateTime<Utc>>, cause: String| {
                out.push(Incident {
                    kind: kind.to_string(),
                    hostname: host.clone(),
                    subject: rule.clone(),
                    start: s,
                    end: e,
                    duration_secs: (e.unwrap_or(end) - s).num_seconds(),
                    cause,
                    availability_bp: None,
                })
            };
            for c in m.changes.get(rule).map(Vec::as_slice).unwrap_or_default() {
                let failing = c.new_status == Some(Status::Fail);
                match (&open, failing) {
                    (None, true) => open = Some((c.at, c.message.clone())),
                    (Some((s, cause)), false) => {
                        push(*s, Some(c.at), cause.clone());
                        open = None;
                    }
                    _ => {}
                }
            }
            if let Some((s, cause)) = open {
                push(s, None, cause);
            }
        }
        // Agent outages: long stretches without a report.
        let limit = Duration::hours(AGENT_OUTAGE_AFTER_HOURS);
        let mut last = m.agent.enrolled_at.max(start);
        let mut points = m.receipts.clone();
        points.push(end);
        for (i, at) in points.iter().enumerate() {
            if *at - last > limit {
                let ongoing = i == points.len() - 1;
                out.push(Incident {
                    kind: "agent outage".to_string(),
                    hostname: host.clone(),
                    subject: "reports".to_string(),
                    start: last,
                    end: (!ongoing).then_some(*at),
                    duration_secs: (*at - last).num_seconds(),
                    cause: format!(
                        "no report received for more than {AGENT_OUTAGE_AFTER_HOURS} hours (machine off, agent \
                         stopped or network cut)"
                    ),
                    availability_bp: None,
                });
            }
            last = *at;
        }
    }
    out.sort_by(|a, b| (a.start, &a.kind, &a.hostname, &a.subject).cmp(&(b.start, &b.kind, &b.hostname, &b.subject)));
    out
}

fn inventory(machines: &[Machine]) -> Vec<Asset> {
    machines
        .iter()
        .map(|m| {
            // The newest observation per (kind, subject) made before the end of the period.
            let mut latest: BTreeMap<(&str, &str), &StoredObservation> = BTreeMap::new();
            for o in &m.observations {
                latest.insert((o.observation.kind.as_str(), o.observation.subject.as_str()), o);
            }
            let inv = latest.iter().find(|((k, _), _)| *k == "inventory").map(|(_, o)| *o);
            let os = inv
                .map(|o| {
                    let name = field_str(o, "os_name").unwrap_or_else(|| m.agent.os.clone());
                    match field_str(o, "os_version") {
                        Some(v) => format!("{name} {v}"),
                        None => name,
                    }
                })
                .unwrap_or_else(|| format!("{} (no inventory recorded)", m.agent.os));
            let role = inv
                .and_then(|o| field_str(o, "role"))
                .unwrap_or_else(|| "unknown".to_string());
            let hardware = inv
                .map(|o| {
                    let parts: Vec<String> = ["hardware_vendor", "hardware_model"]
                        .iter()
                        .filter_map(|f| field_str(o, f))
                        .collect();
                    if parts.is_empty() {
                        "unknown".to_string()
                    } else {
                        parts.join(" ")
                    }
                })
                .unwrap_or_else(|| "unknown".to_string());
            let encryption = latest
                .iter()
                .filter(|((k, _), _)| *k == "encryption.volume")
                .map(|((_, subject), o)| {
                    let encrypted = field(o, "encrypted").and_then(|v| v.as_bool()).unwrap_or(false);
                    let method = field_str(o, "method").unwrap_or_else(|| "none".to_string());
                    if encrypted {
                        format!("{subject}: encrypted ({method})")
                    } else {
                        format!("{subject}: NOT encrypted")
                    }
                })
                .collect();
            Asset {
                hostname: m.agent.hostname.clone(),
                site: m.agent.site.clone(),
                os,
                role,
                hardware,
                enrolled_at: m.agent.enrolled_at,
                encryption,
                encryption_status: m
                    .end
                    .get("hipaa.encryption.at_rest")
                    .map(|f| f.status.as_str())
                    .unwrap_or("none")
                    .to_string(),
            }
        })
        .collect()
}

fn hours(secs: i64) -> String {
    format!("{:.1}", secs as f64 / 3600.0)
}

fn summary(practice: &str, period: Period, o: &Overall, sections: &[Section], incidents: &[Incident]) -> Vec<String> {
    let mut out = Vec::new();
    out.push(format!(
        "This report covers {practice} from {} to {}. Rounds checked {} machine{} against {} safeguards of \
         the HIPAA Security Rule.",
        period.from,
        period.to,
        o.machines,
        if o.machines == 1 { "" } else { "s" },
        sections.len()
    ));
    match o.score {
        Some(score) => out.push(format!(
            "At the end of the period {} of {} checks passed: a score of {score} out of 100. Overall: {}.",
            o.pass,
            o.pass + o.fail + o.error,
            o.status
        )),
        None => out.push("No machine had been checked by the end of the period, so there is no score.".to_string()),
    }
    let open: Vec<String> = sections
        .iter()
        .filter(|s| matches!(s.status.as_str(), "not met" | "could not be checked"))
        .map(|s| format!("{} ({})", s.title, s.citation))
        .collect();
    if open.is_empty() {
        out.push("No safeguard needs attention.".to_string());
    } else {
        out.push(format!(
            "{} safeguard{} need{} attention: {}. Each section below says which machine is affected and \
             what to do.",
            open.len(),
            if open.len() == 1 { "" } else { "s" },
            if open.len() == 1 { "s" } else { "" },
            open.join("; ")
        ));
    }
    if o.accepted > 0 {
        out.push(format!(
            "{} failing check{} {} covered by a risk the practice accepted in writing, with a reason and an \
             expiry date.",
            o.accepted,
            if o.accepted == 1 { "" } else { "s" },
            if o.accepted == 1 { "is" } else { "are" }
        ));
    }
    let count = |kind: &str| incidents.iter().filter(|i| i.kind == kind).count();
    let ehr_secs: i64 = incidents
        .iter()
        .filter(|i| i.kind == "EHR outage")
        .map(|i| i.duration_secs)
        .sum();
    out.push(format!(
        "Incidents in the period: {} EHR outage{} ({} hours in total), {} backup failure{}, {} tamper event{}, \
         {} agent outage{}.",
        count("EHR outage"),
        if count("EHR outage") == 1 { "" } else { "s" },
        hours(ehr_secs),
        count("backup failure"),
        if count("backup failure") == 1 { "" } else { "s" },
        count("tamper event"),
        if count("tamper event") == 1 { "" } else { "s" },
        count("agent outage"),
        if count("agent outage") == 1 { "" } else { "s" },
    ));
    out.push(
        "A passing check is evidence for a safeguard, not proof of compliance with it: written policies, \
         training and reviews are also required and cannot be observed on a machine."
            .to_string(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_sort_numerically() {
        let mut ids = vec![
            "164.308(a)(7)(i)",
            "164.308(a)(10)",
            "164.308(a)(1)(ii)(B)",
            "164.306(a)(1)",
        ];
        ids.sort_by_key(|c| section_key(c));
        assert_eq!(
            ids,
            vec![
                "164.306(a)(1)",
                "164.308(a)(1)(ii)(B)",
                "164.308(a)(7)(i)",
                "164.308(a)(10)"
            ]
        );
    }

    #[test]
    fn every_citation_of_the_builtin_pack_has_a_title() {
        let pack = Pack::builtin().unwrap();
        for rule in &pack.rules {
            for c in &rule.citations {
                assert!(
                    !section_title(&c.reference).starts_with("Security Rule section"),
                    "{} has no title",
                    c.reference
                );
            }
        }
    }

    #[test]
    fn evidence_names_each_observation_and_the_parameters() {
        let v = serde_json::json!({"a": "x", "b": 3, "c": null});
        assert_eq!(
            evidence_pairs(&v),
            vec![
                ("a".to_string(), "x".to_string()),
                ("b".to_string(), "3".to_string()),
                ("c".to_string(), "unknown".to_string())
            ]
        );
        let v = serde_json::json!({
            "observations": [{"subject": "/", "result": "fail", "observed_at": "T",
                              "values": {"encrypted": false, "method": "none", "x": null}}],
            "params": {"max_age": "72h"},
            "missing": []
        });
        assert_eq!(
            evidence_pairs(&v),
            vec![
                (
                    "/ [fail, observed T]".to_string(),
                    "encrypted = false, method = none".to_string()
                ),
                ("params".to_string(), "max_age = 72h".to_string())
            ]
        );
    }
}
