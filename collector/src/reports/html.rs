//! The HTML view of a report: the same blocks as the PDF, through an askama template (every
//! value escaped), with print styles (page breaks before parts, table headers repeated).

use askama::Template;

use super::Report;
use super::document::{Block, layout};

/// A cell as the template shows it.
pub struct HtmlCell {
    pub text: String,
    pub tone: &'static str,
}

/// A block as the template shows it.
pub struct HtmlBlock {
    pub kind: &'static str,
    pub level: u8,
    pub text: String,
    pub anchor: String,
    pub tone: &'static str,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<HtmlCell>>,
}

#[derive(Template)]
#[template(path = "report.html")]
struct ReportPage {
    title: String,
    report_id: String,
    content_sha256: String,
    footer: String,
    blocks: Vec<HtmlBlock>,
}

fn block(b: Block) -> HtmlBlock {
    let mut out = HtmlBlock {
        kind: "",
        level: 0,
        text: String::new(),
        anchor: String::new(),
        tone: "plain",
        headers: Vec::new(),
        rows: Vec::new(),
    };
    let cell = |c: super::document::Cell| HtmlCell {
        tone: c.tone.class(),
        text: c.text,
    };
    match b {
        Block::Title(text) => {
            out.kind = "title";
            out.text = text;
        }
        Block::Heading { level, text, anchor } => {
            out.kind = "heading";
            out.level = level;
            out.text = text;
            out.anchor = anchor;
        }
        Block::Para { text, tone } => {
            out.kind = "para";
            out.text = text;
            out.tone = tone.class();
        }
        Block::Note(text) => {
            out.kind = "note";
            out.text = text;
        }
        Block::KeyValues(pairs) => {
            out.kind = "kv";
            out.rows = pairs
                .into_iter()
                .map(|(k, v)| vec![HtmlCell { text: k, tone: "plain" }, cell(v)])
                .collect();
        }
        Block::Table {
            headers,
            widths: _,
            rows,
        } => {
            out.kind = "table";
            out.headers = headers;
            out.rows = rows.into_iter().map(|r| r.into_iter().map(cell).collect()).collect();
        }
        Block::PageBreak => out.kind = "pagebreak",
    }
    out
}

/// Renders a report as one self-contained HTML page.
pub fn render(report: &Report) -> Result<Vec<u8>, askama::Error> {
    let c = &report.content;
    let page = ReportPage {
        title: format!(
            "HIPAA Security Rule compliance report: {}, {} to {}",
            c.practice, c.period.from, c.period.to
        ),
        report_id: report.issue.report_id.clone(),
        content_sha256: report.issue.content_sha256.clone(),
        footer: format!(
            "Report {} · content SHA-256 {} · rounds-collector {}",
            report.issue.report_id, report.issue.content_sha256, report.issue.collector_version
        ),
        blocks: layout(report).into_iter().map(block).collect(),
    };
    page.render().map(String::into_bytes)
}
