//! A report laid out as a list of neutral blocks (headings, paragraphs, key-value lists,
//! tables), the one layout the PDF and HTML renderers both draw, so both formats say the
//! same in the same order.

use chrono::{DateTime, Utc};

use super::Report;
use super::model::{Incident, MachineStatus};

/// A tone for status text: renderers colour it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Plain,
    Good,
    Bad,
    Warn,
}

impl Tone {
    /// The CSS class of the tone.
    pub fn class(self) -> &'static str {
        match self {
            Tone::Plain => "plain",
            Tone::Good => "good",
            Tone::Bad => "bad",
            Tone::Warn => "warn",
        }
    }

    /// The tone of a status word.
    pub fn of(status: &str) -> Tone {
        match status {
            "pass" | "met" | "compliant" => Tone::Good,
            "fail" | "not met" | "action needed" | "NOT encrypted" => Tone::Bad,
            "error" | "could not be checked" | "accepted risk" | "none" | "no data" => Tone::Warn,
            _ => Tone::Plain,
        }
    }
}

/// One cell of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    pub text: String,
    pub tone: Tone,
}

impl Cell {
    fn plain(text: impl Into<String>) -> Self {
        Cell {
            text: text.into(),
            tone: Tone::Plain,
        }
    }

    fn status(text: impl Into<String>) -> Self {
        let text = text.into();
        Cell {
            tone: Tone::of(&text),
            text,
        }
    }
}

/// A piece of the laid-out report.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    /// The report's title (once, on the cover).
    Title(String),
    /// A heading: level 1 (part), 2 (safeguard), 3 (check).
    Heading {
        level: u8,
        text: String,
        anchor: String,
    },
    Para {
        text: String,
        tone: Tone,
    },
    /// Small print (notes, rationale).
    Note(String),
    KeyValues(Vec<(String, Cell)>),
    /// Column headers, relative column widths, rows.
    Table {
        headers: Vec<String>,
        widths: Vec<f32>,
        rows: Vec<Vec<Cell>>,
    },
    /// Start the next block on a new page (PDF only).
    PageBreak,
}

/// A time as printed in reports: UTC, to the minute.
pub fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn duration(secs: i64) -> String {
    let (d, h, m) = (secs / 86_400, (secs % 86_400) / 3600, (secs % 3600) / 60);
    match (d, h) {
        (0, 0) => format!("{m} min"),
        (0, _) => format!("{h} h {m} min"),
        _ => format!("{d} d {h} h {m} min"),
    }
}

fn percent_bp(bp: u32) -> String {
    format!("{}.{:02} %", bp / 100, bp % 100)
}

fn machine_row(m: &MachineStatus) -> Vec<Cell> {
    let evidence = if m.evidence.is_empty() {
        "none recorded".to_string()
    } else {
        m.evidence
            .iter()
            .map(|(k, v)| if v.is_empty() { k.clone() } else { format!("{k}: {v}") })
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let evidence = match m.recorded_at {
        Some(t) => format!("{evidence} (recorded {})", time(t)),
        None => evidence,
    };
    vec![
        Cell::plain(&m.hostname),
        Cell::status(&m.status),
        Cell::plain(m.since.map(time).unwrap_or_else(|| "-".to_string())),
        Cell::plain(
            m.passing_pct
                .map(|p| format!("{p} % ({} change{})", m.changes, if m.changes == 1 { "" } else { "s" }))
                .unwrap_or_else(|| "-".to_string()),
        ),
        Cell::plain(evidence),
    ]
}

fn incident_row(i: &Incident) -> Vec<Cell> {
    vec![
        Cell::status(&i.kind),
        Cell::plain(&i.hostname),
        Cell::plain(&i.subject),
        Cell::plain(time(i.start)),
        Cell::plain(i.end.map(time).unwrap_or_else(|| "ongoing at period end".to_string())),
        Cell::plain(duration(i.duration_secs)),
        Cell::plain(&i.cause),
        Cell::plain(i.availability_bp.map(percent_bp).unwrap_or_else(|| "-".to_string())),
    ]
}

/// Lays out a report.
pub fn layout(report: &Report) -> Vec<Block> {
    let c = &report.content;
    let issue = &report.issue;
    let mut out = vec![
        Block::Title("HIPAA Security Rule compliance report".to_string()),
        Block::KeyValues(vec![
            ("Practice".to_string(), Cell::plain(&c.practice)),
            (
                "Period".to_string(),
                Cell::plain(format!("{} to {} (UTC days, inclusive)", c.period.from, c.period.to)),
            ),
            ("Overall status".to_string(), Cell::status(&c.overall.status)),
            (
                "Score".to_string(),
                Cell::plain(
                    c.overall
                        .score
                        .map(|s| format!("{s} / 100"))
                        .unwrap_or_else(|| "no data".to_string()),
                ),
            ),
            (
                "Checks at period end".to_string(),
                Cell::plain(format!(
                    "{} pass, {} fail, {} could not run, {} not applicable, {} covered by accepted risks, on {} machines",
                    c.overall.pass,
                    c.overall.fail,
                    c.overall.error,
                    c.overall.not_applicable,
                    c.overall.accepted,
                    c.overall.machines
                )),
            ),
            ("Policy pack".to_string(), Cell::plain(&c.pack)),
            ("Generated".to_string(), Cell::plain(time(issue.generated_at))),
            ("Generated by".to_string(), Cell::plain(&issue.generated_by)),
            (
                "Collector version".to_string(),
                Cell::plain(format!("rounds-collector {}", issue.collector_version)),
            ),
            ("Report id".to_string(), Cell::plain(&issue.report_id)),
            ("Content SHA-256".to_string(), Cell::plain(&issue.content_sha256)),
        ]),
        Block::Heading {
            level: 1,
            text: "Summary".to_string(),
            anchor: "summary".to_string(),
        },
    ];
    for p in &c.summary {
        out.push(Block::Para {
            text: p.clone(),
            tone: Tone::Plain,
        });
    }

    out.push(Block::PageBreak);
    out.push(Block::Heading {
        level: 1,
        text: "Safeguards".to_string(),
        anchor: "safeguards".to_string(),
    });
    out.push(Block::Note(
        "One section per Security Rule section the policy pack gives evidence for. Status per machine is the \
         status at the end of the period, with the share of the period it passed and the evidence as recorded."
            .to_string(),
    ));
    for s in &c.sections {
        out.push(Block::Heading {
            level: 2,
            text: format!("{} {}", s.citation, s.title),
            anchor: format!("s-{}", s.citation),
        });
        out.push(Block::KeyValues(vec![
            ("Designation".to_string(), Cell::plain(&s.requirement)),
            ("Status".to_string(), Cell::status(&s.status)),
        ]));
        for check in &s.checks {
            out.push(Block::Heading {
                level: 3,
                text: format!("{} ({})", check.title, check.rule),
                anchor: format!("s-{}-{}", s.citation, check.rule),
            });
            out.push(Block::Para {
                text: format!("What was checked: {}", check.checked),
                tone: Tone::Plain,
            });
            out.push(Block::Note(format!(
                "Why it is evidence{}: {}",
                if check.partial { " (partial evidence)" } else { "" },
                check.rationale
            )));
            if check.machines.is_empty() {
                out.push(Block::Para {
                    text: "No machine of the practice was enrolled in the period.".to_string(),
                    tone: Tone::Warn,
                });
            } else {
                out.push(Block::Table {
                    headers: ["Machine", "Status", "Since", "Passing", "Evidence"]
                        .map(str::to_string)
                        .to_vec(),
                    widths: vec![1.3, 0.8, 1.3, 1.0, 3.6],
                    rows: check.machines.iter().map(machine_row).collect(),
                });
            }
            for m in check.machines.iter().filter(|m| m.remediation.is_some()) {
                out.push(Block::Para {
                    text: format!(
                        "Remediation on {}: {}",
                        m.hostname,
                        m.remediation.as_deref().unwrap_or_default()
                    ),
                    tone: Tone::Plain,
                });
            }
        }
        if !s.accepted_risks.is_empty() {
            out.push(Block::Table {
                headers: ["Accepted risk", "Machine", "Reason", "Accepted by", "Expires"]
                    .map(str::to_string)
                    .to_vec(),
                widths: vec![1.6, 1.2, 3.0, 1.2, 1.0],
                rows: s
                    .accepted_risks
                    .iter()
                    .map(|a| {
                        vec![
                            Cell::plain(&a.rule),
                            Cell::plain(&a.hostname),
                            Cell::plain(&a.reason),
                            Cell::plain(&a.accepted_by),
                            Cell::plain(format!("{}{}", a.expires, if a.in_force { "" } else { " (expired)" })),
                        ]
                    })
                    .collect(),
            });
        }
        if let Some(text) = &s.documented_instead {
            out.push(Block::Para {
                text: format!("Documented instead: {text}"),
                tone: Tone::Warn,
            });
        }
    }

    out.push(Block::PageBreak);
    out.push(Block::Heading {
        level: 1,
        text: "Incidents".to_string(),
        anchor: "incidents".to_string(),
    });
    out.push(Block::Note(c.incidents_method.clone()));
    if c.incidents.is_empty() {
        out.push(Block::Para {
            text: "No incident was recorded in the period.".to_string(),
            tone: Tone::Good,
        });
    } else {
        out.push(Block::Table {
            headers: [
                "Kind",
                "Machine",
                "Subject",
                "Start",
                "End",
                "Duration",
                "Probable cause",
                "Availability",
            ]
            .map(str::to_string)
            .to_vec(),
            widths: vec![1.0, 1.0, 1.5, 1.1, 1.1, 0.9, 2.0, 0.9],
            rows: c.incidents.iter().map(incident_row).collect(),
        });
    }

    out.push(Block::Heading {
        level: 1,
        text: "Technology asset inventory".to_string(),
        anchor: "inventory".to_string(),
    });
    out.push(Block::Note(
        "Every machine enrolled by the end of the period, as its last inventory before the end described it."
            .to_string(),
    ));
    out.push(Block::Table {
        headers: [
            "Machine",
            "Site",
            "Operating system",
            "Role",
            "Hardware",
            "Encryption",
            "At rest",
        ]
        .map(str::to_string)
        .to_vec(),
        widths: vec![1.2, 0.9, 1.5, 0.8, 1.2, 2.2, 0.7],
        rows: c
            .inventory
            .iter()
            .map(|a| {
                vec![
                    Cell::plain(&a.hostname),
                    Cell::plain(&a.site),
                    Cell::plain(&a.os),
                    Cell::plain(&a.role),
                    Cell::plain(&a.hardware),
                    Cell::plain(if a.encryption.is_empty() {
                        "no volume observed".to_string()
                    } else {
                        a.encryption.join("; ")
                    }),
                    Cell::status(&a.encryption_status),
                ]
            })
            .collect(),
    });

    out.push(Block::PageBreak);
    out.push(Block::Heading {
        level: 1,
        text: "Method and data sources".to_string(),
        anchor: "method".to_string(),
    });
    out.push(Block::Para {
        text: c.method_note.clone(),
        tone: Tone::Plain,
    });
    out.push(Block::Table {
        headers: ["Check", "Linux reads", "Windows runs", "macOS runs"]
            .map(str::to_string)
            .to_vec(),
        widths: vec![1.2, 3.0, 2.2, 1.6],
        rows: c
            .method
            .iter()
            .map(|m| {
                vec![
                    Cell::plain(&m.check),
                    Cell::plain(&m.linux),
                    Cell::plain(&m.windows),
                    Cell::plain(&m.macos),
                ]
            })
            .collect(),
    });
    out.push(Block::Heading {
        level: 1,
        text: "Verification".to_string(),
        anchor: "verification".to_string(),
    });
    out.push(Block::Para {
        text: format!(
            "The collector recorded this report ({}) when it issued it, with the SHA-256 of the file. \
             `rounds-collector report verify FILE` tells whether a file is one the collector issued and \
             unchanged. The content SHA-256 above is computed over the report's canonical content (the same \
             for the PDF, HTML and CSV of the same practice and period) and does not change when newer data \
             arrives.",
            issue.report_id
        ),
        tone: Tone::Plain,
    });
    out
}
