//! The CSV of a report's findings: one row per rule and machine, with every citation of the
//! rule, the status at the end of the period and the evidence as recorded. RFC 4180 quoting:
//! a field with a comma, quote, CR or LF is quoted, quotes doubled; lines end in CRLF. Every
//! row carries the report id and content SHA-256, so the file stays plain CSV.

use std::collections::BTreeMap;

use super::Report;
use super::document::time;

/// One field, quoted when it must be.
pub fn field(value: &str) -> String {
    if value.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

fn line(out: &mut String, fields: &[&str]) {
    let quoted: Vec<String> = fields.iter().map(|f| field(f)).collect();
    out.push_str(&quoted.join(","));
    out.push_str("\r\n");
}

/// Renders the findings of a report as CSV.
pub fn render(report: &Report) -> Vec<u8> {
    let c = &report.content;
    let mut out = String::new();
    line(
        &mut out,
        &[
            "report_id",
            "content_sha256",
            "practice",
            "period_from",
            "period_to",
            "machine",
            "rule",
            "title",
            "citations",
            "status",
            "status_since",
            "recorded_at",
            "passing_pct",
            "evidence",
            "message",
            "accepted_by",
            "accepted_reason",
            "accepted_expires",
        ],
    );
    // (rule, machine) -> citations, in the order sections list them.
    let mut rows: BTreeMap<(String, String), (Vec<String>, &super::model::SectionCheck, usize)> = BTreeMap::new();
    for s in &c.sections {
        for check in &s.checks {
            for (i, m) in check.machines.iter().enumerate() {
                rows.entry((check.rule.clone(), m.hostname.clone()))
                    .or_insert_with(|| (Vec::new(), check, i))
                    .0
                    .push(s.citation.clone());
            }
        }
    }
    let (from, to) = (c.period.from.to_string(), c.period.to.to_string());
    for ((rule, host), (citations, check, i)) in rows {
        let m = &check.machines[i];
        let evidence: Vec<String> = m.evidence.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        let accepted = m.accepted.as_ref();
        line(
            &mut out,
            &[
                &report.issue.report_id,
                &report.issue.content_sha256,
                &c.practice,
                &from,
                &to,
                &host,
                &rule,
                &check.title,
                &citations.join(" "),
                &m.status,
                &m.since.map(time).unwrap_or_default(),
                &m.recorded_at.map(time).unwrap_or_default(),
                &m.passing_pct.map(|p| p.to_string()).unwrap_or_default(),
                &evidence.join(" | "),
                &m.message,
                accepted.map(|a| a.accepted_by.as_str()).unwrap_or_default(),
                accepted.map(|a| a.reason.as_str()).unwrap_or_default(),
                &accepted.map(|a| a.expires.to_string()).unwrap_or_default(),
            ],
        );
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn quoting() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("two\nlines"), "\"two\nlines\"");
        assert_eq!(field("cr\r"), "\"cr\r\"");
        assert_eq!(field(""), "");
    }
}
