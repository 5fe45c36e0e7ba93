//! Windows event logs: the events that say the audit trail was cut, read with
//! `wevtutil qe <log> /q:<XPath> /c:N /rd:true /f:xml` (no patient data: event ids, times,
//! record ids and the account that acted), and the EventLog service's state (`sc query`).
//!
//! | log | event | what |
//! | --- | --- | --- |
//! | Security | 1102 | the audit log was cleared |
//! | System | 104 | an event log was cleared |
//! | Security | 1101 | audit events were dropped by the transport |
//! | Security | 4719 | the system audit policy was changed |

use chrono::{DateTime, Utc};
use rounds_protocol::obs::LogEvent;

/// The query for each log: its name and the XPath of its events of interest.
pub const QUERIES: &[(&str, &str)] = &[
    ("Security", "*[System[(EventID=1102 or EventID=1101 or EventID=4719)]]"),
    ("System", "*[System[(EventID=104)]]"),
];

/// What an event id means.
pub fn meaning(event_id: u32) -> Option<&'static str> {
    match event_id {
        1102 | 104 => Some("log_cleared"),
        1101 => Some("events_dropped"),
        4719 => Some("audit_policy_changed"),
        _ => None,
    }
}

/// The text between `<tag ...>` and `</tag>` in `xml`.
fn element<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = xml.find(&format!("<{tag}"))?;
    let after = &xml[open + tag.len() + 1..];
    if !after.starts_with(['>', ' ']) {
        return element(after, tag);
    }
    let start = after.find('>')? + 1;
    let end = after.find(&format!("</{tag}>"))?;
    after.get(start..end)
}

/// The value of attribute `attr` of the first `<tag .../>` in `xml`.
fn attribute<'a>(xml: &'a str, tag: &str, attr: &str) -> Option<&'a str> {
    let open = xml.find(&format!("<{tag} "))?;
    let el = &xml[open..open + xml[open..].find('>')?];
    let at = el.find(&format!("{attr}="))? + attr.len() + 1;
    let quote = el[at..].chars().next()?;
    let rest = &el[at + 1..];
    rest.get(..rest.find(quote)?)
}

/// The events of `wevtutil qe ... /f:xml` output whose id is one of interest, newest first as
/// printed. Only English is not required: XML field names do not depend on the language.
pub fn parse_wevtutil_xml(text: &str) -> Result<Vec<LogEvent>, String> {
    let trimmed = text.trim();
    if !trimmed.is_empty() && !trimmed.starts_with("<Event") {
        return Err(format!(
            "unrecognised wevtutil output: {}",
            trimmed.lines().next().unwrap_or("")
        ));
    }
    let mut out = Vec::new();
    for chunk in text.split("</Event>") {
        let Some(start) = chunk.find("<Event") else { continue };
        let ev = &chunk[start..];
        let Some(id) = element(ev, "EventID").and_then(|v| v.trim().parse::<u32>().ok()) else {
            return Err("unrecognised wevtutil output: an event without EventID".to_string());
        };
        let Some(what) = meaning(id) else { continue };
        let at = attribute(ev, "TimeCreated", "SystemTime")
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        let account = element(ev, "SubjectUserName")
            .or_else(|| {
                let i = ev
                    .find("Name='SubjectUserName'")
                    .or_else(|| ev.find("Name=\"SubjectUserName\""))?;
                let rest = &ev[i..];
                rest.get(rest.find('>')? + 1..rest.find("</Data>")?)
            })
            .map(str::to_string)
            .filter(|a| !a.is_empty() && a != "-");
        out.push(LogEvent {
            log: element(ev, "Channel").unwrap_or("").to_string(),
            event_id: id,
            what: what.to_string(),
            at,
            account,
            record_id: element(ev, "EventRecordID").and_then(|v| v.trim().parse().ok()),
        });
    }
    Ok(out)
}

/// `STATE : 4 RUNNING` of `sc query` (and `START_TYPE : 2 AUTO_START` of `sc qc`): the word.
pub fn sc_field(text: &str, field: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == field).then(|| v.split_whitespace().nth(1).unwrap_or("").to_string())
    })
}
