//! What each channel sends for a [`Notification`]: pure functions, no network.
//!
//! Every string in a notification may come from an agent (machine, site and endpoint names), so
//! each renderer escapes for its target: HTML entities in the e-mail's HTML part, `&`, `<`, `>`
//! in Slack mrkdwn (which would otherwise make links and mentions), JSON encoding everywhere.
//! Adaptive Card `TextBlock`s are sent with their text JSON-encoded; the card's markdown subset
//! cannot make mentions, and links in it are the receiver's to render.

use serde_json::{Value, json};

use super::email::Mail;
use super::{Notification, NotificationKind, Severity};

/// The version of the generic webhook body ([`webhook_body`]); bumped on an incompatible change.
pub const WEBHOOK_SCHEMA_VERSION: u32 = 1;

/// The Adaptive Card version sent to Teams (Workflows accept up to 1.5; 1.4 renders everywhere).
pub const ADAPTIVE_CARD_VERSION: &str = "1.4";

/// Escapes text for an HTML element or attribute value.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes text for Slack mrkdwn: the three characters Slack's docs say to escape.
pub fn escape_slack(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A short label for the kind, as the first word of a subject.
pub fn kind_label(kind: NotificationKind) -> &'static str {
    match kind {
        NotificationKind::Opened => "OPEN",
        NotificationKind::Updated => "UPDATED",
        NotificationKind::Reminder => "STILL OPEN",
        NotificationKind::Escalated => "ESCALATED",
        NotificationKind::Acknowledged => "ACKNOWLEDGED",
        NotificationKind::Resolved => "RESOLVED",
        NotificationKind::Test => "TEST",
    }
}

/// The facts every renderer lists, in order: (label, value).
pub fn facts(n: &Notification) -> Vec<(&'static str, String)> {
    let mut f = vec![
        ("Severity", n.severity.as_str().to_string()),
        ("Source", n.source.clone()),
        ("Subject", n.subject.clone()),
    ];
    if let Some(p) = &n.practice {
        f.push(("Practice", p.clone()));
    }
    if let Some(s) = &n.site {
        f.push(("Site", s.clone()));
    }
    if !n.practices_affected.is_empty() {
        f.push(("Practices affected", n.practices_affected.join(", ")));
    }
    f.push(("Opened", n.opened_at.to_rfc3339()));
    f.push(("Incident", format!("#{}", n.incident_id)));
    f
}

/// One line: `[RESOLVED] high: title`.
pub fn headline(n: &Notification) -> String {
    format!("[{}] {}: {}", kind_label(n.kind), n.severity.as_str(), n.title)
}

/// The mail for an `email` channel: plain text plus an escaped HTML alternative, threaded by
/// the incident's `dedup_key`.
pub fn email(n: &Notification, to: &[String]) -> Mail {
    let facts = facts(n);
    let mut text = format!("{}\n\nProbable cause: {}\n\n", n.title, n.probable_cause);
    for (k, v) in &facts {
        text.push_str(&format!("{k}: {v}\n"));
    }
    if let Some(url) = &n.url {
        text.push_str(&format!("\n{url}\n"));
    }
    text.push_str("\nSent by Rounds. No patient data is included in notifications.\n");
    let mut html = format!(
        "<!doctype html><html><body><h2>{}</h2><p><strong>Probable cause:</strong> {}</p><table>",
        escape_html(&headline(n)),
        escape_html(&n.probable_cause)
    );
    for (k, v) in &facts {
        html.push_str(&format!(
            "<tr><th align=\"left\">{k}</th><td>{}</td></tr>",
            escape_html(v)
        ));
    }
    html.push_str("</table>");
    if let Some(url) = &n.url {
        let u = escape_html(url);
        html.push_str(&format!("<p><a href=\"{u}\">{u}</a></p>"));
    }
    html.push_str("<p><small>Sent by Rounds. No patient data is included in notifications.</small></p></body></html>");
    Mail {
        to: to.to_vec(),
        subject: format!("[Rounds] {}", headline(n)),
        text,
        html: Some(html),
        attachments: Vec::new(),
        thread_id: Some(n.dedup_key.clone()),
    }
}

/// The generic webhook body, schema version [`WEBHOOK_SCHEMA_VERSION`] (README: "Webhook
/// body"): the notification's fields at the top level plus `schema_version`.
pub fn webhook_body(n: &Notification) -> Value {
    let mut v = serde_json::to_value(n).unwrap_or_else(|_| json!({}));
    if let Value::Object(map) = &mut v {
        map.insert("schema_version".into(), json!(WEBHOOK_SCHEMA_VERSION));
    }
    v
}

fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let mut t: String = text.chars().take(max_chars.saturating_sub(1)).collect();
    t.push('…');
    t
}

/// A Slack incoming-webhook body: `text` (the notification fallback) plus `blocks`.
pub fn slack(n: &Notification) -> Value {
    let fields: Vec<Value> = facts(n)
        .into_iter()
        .take(10) // Slack allows at most 10 fields in a section.
        .map(|(k, v)| json!({"type": "mrkdwn", "text": format!("*{k}*\n{}", escape_slack(&v))}))
        .collect();
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": truncate(&headline(n), 150), "emoji": false}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(&format!("*Probable cause:* {}", escape_slack(&n.probable_cause)), 3000)}}),
        json!({"type": "section", "fields": fields}),
    ];
    if let Some(url) = &n.url {
        blocks.push(json!({"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": "Open incident"}, "url": url}
        ]}));
    }
    blocks.push(json!({"type": "context", "elements": [
        {"type": "mrkdwn", "text": "Rounds · no patient data is included in notifications"}
    ]}));
    json!({"text": escape_slack(&headline(n)), "blocks": blocks})
}

/// A Microsoft Teams Workflows ("Post to a channel when a webhook request is received") body:
/// a message whose `attachments` hold one Adaptive Card.
pub fn teams(n: &Notification) -> Value {
    let color = match (n.kind, n.severity) {
        (NotificationKind::Resolved, _) => "Good",
        (_, Severity::Critical | Severity::High) => "Attention",
        (_, Severity::Medium) => "Warning",
        _ => "Default",
    };
    let facts: Vec<Value> = facts(n)
        .into_iter()
        .map(|(k, v)| json!({"title": k, "value": v}))
        .collect();
    let mut card = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": ADAPTIVE_CARD_VERSION,
        "body": [
            {"type": "TextBlock", "text": headline(n), "weight": "Bolder", "size": "Medium", "wrap": true, "color": color},
            {"type": "TextBlock", "text": format!("Probable cause: {}", n.probable_cause), "wrap": true},
            {"type": "FactSet", "facts": facts},
            {"type": "TextBlock", "text": "Rounds · no patient data is included in notifications", "isSubtle": true, "size": "Small", "wrap": true}
        ]
    });
    if let Some(url) = &n.url {
        card["actions"] = json!([{"type": "Action.OpenUrl", "title": "Open incident", "url": url}]);
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card
        }]
    })
}

/// PagerDuty's `event_action` for a notification kind.
pub fn pagerduty_action(kind: NotificationKind) -> &'static str {
    match kind {
        NotificationKind::Acknowledged => "acknowledge",
        NotificationKind::Resolved => "resolve",
        NotificationKind::Opened
        | NotificationKind::Updated
        | NotificationKind::Reminder
        | NotificationKind::Escalated
        | NotificationKind::Test => "trigger",
    }
}

/// PagerDuty's `payload.severity` for a Rounds severity.
pub fn pagerduty_severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "critical",
        Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low => "info",
    }
}

/// A PagerDuty Events API v2 event. `trigger` carries the payload; `acknowledge` and `resolve`
/// carry only the routing key, action and the incident's stable `dedup_key`, as the API asks.
pub fn pagerduty(n: &Notification, routing_key: &str, action: &str) -> Value {
    let mut event = json!({
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": n.dedup_key,
    });
    if action == "trigger" {
        let source = n.site.clone().unwrap_or_else(|| n.subject.clone());
        event["payload"] = json!({
            "summary": truncate(&headline(n), 1024),
            "source": source,
            "severity": pagerduty_severity(n.severity),
            "timestamp": n.opened_at.to_rfc3339(),
            "component": n.subject,
            "group": n.practice.clone().unwrap_or_default(),
            "class": n.source,
            "custom_details": {
                "probable_cause": n.probable_cause,
                "kind": n.kind.as_str(),
                "practice": n.practice,
                "site": n.site,
                "practices_affected": n.practices_affected,
                "incident_id": n.incident_id,
            }
        });
        event["client"] = json!("Rounds");
        if let Some(url) = &n.url {
            event["client_url"] = json!(url);
        }
    }
    event
}
