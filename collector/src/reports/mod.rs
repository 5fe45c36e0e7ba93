//! Compliance reports for practice managers (issue 14): one practice, one period, built from
//! history as recorded ([`model`]), laid out once ([`document`]) and rendered as PDF
//! ([`pdf`]), HTML ([`html`]) or CSV of findings ([`csv`]); recorded when issued and
//! verifiable afterwards; e-mailed on schedules ([`schedule`]).
//!
//! Verification: every file carries its report id and the SHA-256 of the report's canonical
//! content (the JSON of [`model::Content`]); the collector records, per issued file, who asked,
//! when, the practice, the period, the format, the content SHA-256 and the SHA-256 of the exact
//! bytes handed out. `report verify FILE` hashes the file and looks the hash up: found means
//! issued by this collector and unchanged; not found but carrying a known report id means
//! changed since it was issued; otherwise not issued here.
//!
//! The [`ReportService`] owns report generation: the CLI, the HTTP endpoint and the scheduler
//! all call it.

pub mod csv;
pub mod document;
pub mod html;
pub mod http;
pub mod model;
pub mod pdf;
pub mod schedule;

use std::sync::Arc;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use rounds_policies::Pack;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::clock::Clock;
use crate::store::{IssuedReport, PracticeRow, Role, Scope, Store, StoreError};

pub use model::{Content, MethodRow, Period};

/// The collector's version, printed on every report.
pub const COLLECTOR_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Report formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Pdf,
    Html,
    Csv,
}

impl Format {
    pub fn parse(s: &str) -> Result<Format, ReportError> {
        match s {
            "pdf" => Ok(Format::Pdf),
            "html" => Ok(Format::Html),
            "csv" => Ok(Format::Csv),
            other => Err(ReportError::Usage(format!(
                "unknown report format `{other}`; use pdf, html or csv"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Pdf => "pdf",
            Format::Html => "html",
            Format::Csv => "csv",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Pdf => "application/pdf",
            Format::Html => "text/html; charset=utf-8",
            Format::Csv => "text/csv; charset=utf-8",
        }
    }
}

/// Errors of report generation and verification.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// What the user asked for is wrong (unknown practice, bad dates, bad format).
    #[error("{0}")]
    Usage(String),
    /// The user may not see that practice.
    #[error("not allowed to see the reports of practice `{0}`")]
    Forbidden(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("rendering the PDF failed: {0}")]
    Pdf(#[from] pdf::PdfError),
    #[error("rendering the HTML failed: {0}")]
    Html(#[from] askama::Error),
}

impl ReportError {
    /// Whether the caller asked for something wrong (exit 64) rather than something failing.
    pub fn is_usage(&self) -> bool {
        matches!(self, ReportError::Usage(_) | ReportError::Forbidden(_))
    }
}

/// Parses a `--from`/`--to` pair (`YYYY-MM-DD`, both days inclusive).
pub fn parse_period(from: &str, to: &str) -> Result<Period, ReportError> {
    let day = |flag: &str, text: &str| {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
            ReportError::Usage(format!(
                "{flag} `{text}` is not a date; use YYYY-MM-DD, e.g. 2026-11-01"
            ))
        })
    };
    let period = Period {
        from: day("--from", from)?,
        to: day("--to", to)?,
    };
    if period.from > period.to {
        return Err(ReportError::Usage(format!(
            "--from {} is after --to {}; the period must start before it ends",
            period.from, period.to
        )));
    }
    Ok(period)
}

/// A named period relative to a day: the calendar month, quarter or year before `today`, or
/// the last `n` days up to yesterday. Used by schedules (`period = "previous_month"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelativePeriod {
    PreviousMonth,
    PreviousQuarter,
    PreviousYear,
    LastDays(u32),
}

impl RelativePeriod {
    pub fn parse(s: &str) -> Option<RelativePeriod> {
        match s {
            "previous_month" | "month" => Some(RelativePeriod::PreviousMonth),
            "previous_quarter" | "quarter" => Some(RelativePeriod::PreviousQuarter),
            "previous_year" | "year" => Some(RelativePeriod::PreviousYear),
            other => other
                .strip_prefix("last_")
                .and_then(|d| d.strip_suffix("_days"))
                .and_then(|n| n.parse().ok())
                .filter(|n| (1..=3660).contains(n))
                .map(RelativePeriod::LastDays),
        }
    }

    /// The period this names, seen on `today`.
    pub fn resolve(self, today: NaiveDate) -> Period {
        let first_of = |y: i32, m: u32| NaiveDate::from_ymd_opt(y, m, 1).unwrap_or(today);
        let yesterday = today.pred_opt().unwrap_or(today);
        match self {
            RelativePeriod::PreviousMonth => {
                let this = first_of(today.year(), today.month());
                let to = this.pred_opt().unwrap_or(this);
                Period {
                    from: first_of(to.year(), to.month()),
                    to,
                }
            }
            RelativePeriod::PreviousQuarter => {
                let q_start_month = (today.month() - 1) / 3 * 3 + 1;
                let this = first_of(today.year(), q_start_month);
                let to = this.pred_opt().unwrap_or(this);
                let from_month = (to.month() - 1) / 3 * 3 + 1;
                Period {
                    from: first_of(to.year(), from_month),
                    to,
                }
            }
            RelativePeriod::PreviousYear => Period {
                from: first_of(today.year() - 1, 1),
                to: NaiveDate::from_ymd_opt(today.year() - 1, 12, 31).unwrap_or(today),
            },
            RelativePeriod::LastDays(n) => Period {
                from: today - chrono::Duration::days(i64::from(n)),
                to: yesterday,
            },
        }
    }
}

/// Who issued a report and when: not part of the canonical content.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Issue {
    pub report_id: String,
    pub generated_at: DateTime<Utc>,
    pub generated_by: String,
    pub collector_version: String,
    pub content_sha256: String,
}

/// A report: its canonical content and its issue.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub issue: Issue,
    pub content: Content,
}

/// The canonical bytes of a report's content: its JSON.
pub fn canonical(content: &Content) -> Vec<u8> {
    // Serializing plain data (strings, numbers, dates) cannot fail.
    serde_json::to_vec(content).unwrap_or_default()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// An issued file with its record.
#[derive(Debug, Clone)]
pub struct Issued {
    pub record: IssuedReport,
    pub bytes: Vec<u8>,
    pub format: Format,
}

impl Issued {
    /// A file name for downloads and attachments.
    pub fn file_name(&self) -> String {
        let slug: String = self
            .record
            .practice
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        format!(
            "rounds-report-{slug}-{}-{}.{}",
            self.record.period_from,
            self.record.period_to,
            self.format.as_str()
        )
    }
}

/// What `report verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// The collector issued exactly these bytes.
    Issued(IssuedReport),
    /// The file names a report the collector issued, but its bytes differ from what was issued.
    Altered(IssuedReport),
    /// Neither the bytes nor a report id in them are known here.
    Unknown { claimed_id: Option<String> },
}

/// What each check reads, from the README's table "What the agent reads".
pub fn method_rows() -> Vec<MethodRow> {
    static README: &str = include_str!("../../../README.md");
    let Some(start) = README.find("## What the agent reads") else {
        return Vec::new();
    };
    let clean = |s: &str| s.replace('`', "").replace("\\|", "|").trim().to_string();
    README[start..]
        .lines()
        .skip(1)
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter(|l| l.starts_with("| `"))
        .filter_map(|l| {
            let cells: Vec<String> = l
                .replace("\\|", "\u{1}")
                .trim_matches('|')
                .split(" | ")
                .map(|c| clean(&c.replace('\u{1}', "|")))
                .collect();
            (cells.len() >= 4).then(|| MethodRow {
                check: cells[0].clone(),
                linux: cells[1].clone(),
                windows: cells[2].clone(),
                macos: cells[3].clone(),
            })
        })
        .collect()
}

/// The built-in pack, loaded once per process.
pub fn builtin_pack() -> Result<Arc<Pack>, ReportError> {
    static PACK: std::sync::OnceLock<Result<Arc<Pack>, String>> = std::sync::OnceLock::new();
    PACK.get_or_init(|| Pack::builtin().map(Arc::new).map_err(|e| e.to_string()))
        .clone()
        .map_err(|e| ReportError::Usage(format!("the built-in policy pack does not load: {e}")))
}

/// Generates, records and verifies reports. Holds handles only; cheap to clone.
#[derive(Clone)]
pub struct ReportService {
    store: Arc<dyn Store>,
    pack: Arc<Pack>,
    clock: Arc<dyn Clock>,
    method: Arc<Vec<MethodRow>>,
}

impl std::fmt::Debug for ReportService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReportService").field("pack", &self.pack.name).finish()
    }
}

impl ReportService {
    pub fn new(store: Arc<dyn Store>, pack: Arc<Pack>, clock: Arc<dyn Clock>) -> Self {
        ReportService {
            store,
            pack,
            clock,
            method: Arc::new(method_rows()),
        }
    }

    /// The service over an app's store and clock, with the built-in pack (loaded once).
    pub fn for_app(state: &crate::app::AppState) -> Result<Self, ReportError> {
        Ok(Self::new(
            Arc::clone(&state.store),
            builtin_pack()?,
            Arc::clone(&state.clock),
        ))
    }

    /// The practice called `name`; the error lists the known ones.
    pub async fn practice(&self, name: &str) -> Result<PracticeRow, ReportError> {
        let all = self
            .store
            .practices(&Scope {
                role: Role::Admin,
                practice_id: None,
            })
            .await?;
        if let Some(p) = all.iter().find(|p| p.name == name) {
            return Ok(p.clone());
        }
        let known: Vec<String> = all.iter().map(|p| format!("`{}`", p.name)).collect();
        Err(ReportError::Usage(if known.is_empty() {
            format!("unknown practice `{name}`: no practice exists yet")
        } else {
            format!("unknown practice `{name}`; known practices: {}", known.join(", "))
        }))
    }

    /// The practice with id `id`, if `scope` may see it.
    pub async fn practice_by_id(&self, scope: &Scope, id: i64) -> Result<PracticeRow, ReportError> {
        if !scope.sees(id) {
            return Err(ReportError::Forbidden(id.to_string()));
        }
        let all = self.store.practices(scope).await?;
        all.into_iter()
            .find(|p| p.id == id)
            .ok_or_else(|| ReportError::Usage(format!("unknown practice id {id}")))
    }

    /// The canonical content of a practice's report for a period.
    pub async fn content(&self, practice: &PracticeRow, period: Period) -> Result<Content, ReportError> {
        Ok(model::build(model::Inputs {
            store: self.store.as_ref(),
            pack: &self.pack,
            practice_id: practice.id,
            practice: &practice.name,
            period,
            method: self.method.as_ref().clone(),
        })
        .await?)
    }

    /// Renders a report in a format.
    pub fn render(report: &Report, format: Format) -> Result<Vec<u8>, ReportError> {
        Ok(match format {
            Format::Pdf => pdf::render(report)?,
            Format::Html => html::render(report)?,
            Format::Csv => csv::render(report),
        })
    }

    /// Generates a report, records it as issued by `actor` and audits it (`action`, e.g.
    /// `report.issue`, `report.download`), in one unit of work.
    pub async fn issue(
        &self,
        practice: &PracticeRow,
        period: Period,
        format: Format,
        actor: &str,
        action: &str,
    ) -> Result<Issued, ReportError> {
        let content = self.content(practice, period).await?;
        let content_sha256 = sha256_hex(&canonical(&content));
        let now = self.clock.now();
        let report_id = format!("RR-{}", &sha256_hex(&rand::random::<[u8; 16]>())[..16]);
        let report = Report {
            issue: Issue {
                report_id: report_id.clone(),
                generated_at: now,
                generated_by: actor.to_string(),
                collector_version: COLLECTOR_VERSION.to_string(),
                content_sha256: content_sha256.clone(),
            },
            content,
        };
        let bytes = Self::render(&report, format)?;
        let record = IssuedReport {
            report_id,
            practice_id: practice.id,
            practice: practice.name.clone(),
            period_from: period.from,
            period_to: period.to,
            format: format.as_str().to_string(),
            content_sha256,
            file_sha256: sha256_hex(&bytes),
            size_bytes: bytes.len() as u64,
            issued_at: now,
            issued_by: actor.to_string(),
            collector_version: COLLECTOR_VERSION.to_string(),
        };
        let mut tx = self.store.begin().await?;
        tx.record_issued_report(&record).await?;
        tx.audit(
            actor,
            action,
            &format!(
                "{} {} {} to {} ({}, sha256 {})",
                record.report_id,
                record.practice,
                record.period_from,
                record.period_to,
                record.format,
                record.file_sha256
            ),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(Issued { record, bytes, format })
    }

    /// Whether `bytes` are a file this collector issued, unchanged.
    pub async fn verify(&self, bytes: &[u8]) -> Result<Verification, ReportError> {
        let hash = sha256_hex(bytes);
        if let Some(found) = self.store.issued_reports_by_file_hash(&hash).await?.into_iter().next() {
            return Ok(Verification::Issued(found));
        }
        let claimed_id = find_report_id(bytes);
        if let Some(id) = &claimed_id
            && let Some(found) = self.store.issued_report(id).await?
        {
            return Ok(Verification::Altered(found));
        }
        Ok(Verification::Unknown { claimed_id })
    }
}

/// The first `RR-` followed by 16 lowercase hex digits in `bytes`.
fn find_report_id(bytes: &[u8]) -> Option<String> {
    bytes.windows(19).find_map(|w| {
        (w.starts_with(b"RR-") && w[3..].iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)))
            .then(|| String::from_utf8_lossy(w).into_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn periods_parse_and_errors_name_the_input() {
        let p = parse_period("2026-11-01", "2026-11-30").unwrap();
        assert_eq!((p.from, p.to), (d("2026-11-01"), d("2026-11-30")));
        assert_eq!(p.end() - p.start(), chrono::Duration::days(30));
        let e = parse_period("2026-13-01", "2026-11-30").unwrap_err().to_string();
        assert!(e.contains("--from `2026-13-01`"), "{e}");
        let e = parse_period("2026-11-02", "2026-11-01").unwrap_err().to_string();
        assert!(e.contains("after --to 2026-11-01"), "{e}");
    }

    #[test]
    fn relative_periods() {
        let today = d("2026-12-01");
        let m = RelativePeriod::PreviousMonth.resolve(today);
        assert_eq!((m.from, m.to), (d("2026-11-01"), d("2026-11-30")));
        let q = RelativePeriod::PreviousQuarter.resolve(d("2026-11-15"));
        assert_eq!((q.from, q.to), (d("2026-07-01"), d("2026-09-30")));
        let q = RelativePeriod::PreviousQuarter.resolve(d("2026-01-15"));
        assert_eq!((q.from, q.to), (d("2025-10-01"), d("2025-12-31")));
        let y = RelativePeriod::PreviousYear.resolve(today);
        assert_eq!((y.from, y.to), (d("2025-01-01"), d("2025-12-31")));
        let l = RelativePeriod::parse("last_7_days").unwrap().resolve(today);
        assert_eq!((l.from, l.to), (d("2026-11-24"), d("2026-11-30")));
        assert!(RelativePeriod::parse("fortnight").is_none());
    }

    #[test]
    fn method_rows_come_from_the_readme() {
        let rows = method_rows();
        assert!(rows.iter().any(|r| r.check.starts_with("inventory")), "{rows:?}");
        assert!(rows.iter().any(|r| r.check.starts_with("backup")));
        assert!(rows.iter().all(|r| !r.linux.is_empty()));
    }

    #[test]
    fn report_ids_are_found_in_files() {
        assert_eq!(
            find_report_id(b"xx RR-0123456789abcdef yy").as_deref(),
            Some("RR-0123456789abcdef")
        );
        assert_eq!(find_report_id(b"RR-notanid"), None);
    }
}
