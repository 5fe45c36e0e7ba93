//! Report schedules: `[[report_schedule]]` tables in the collector's TOML (practice, cron
//! expression in UTC, relative period, format, recipients), validated with file and line, and
//! the [`ReportScheduler`] that, on the collector's [`Clock`], issues each due report through
//! the [`ReportService`], e-mails it with the file attached through the `[smtp]` relay
//! ([`crate::notify::send_mail`]) and records every delivery attempt in the store.
//!
//! ```toml
//! [[report_schedule]]
//! name = "smith-monthly"
//! practice = "Smith Family Practice"
//! cron = "0 7 1 * *"            # 07:00 UTC on the 1st (5 fields; 6 with seconds also work)
//! period = "previous_month"     # previous_quarter, previous_year, last_N_days
//! format = "pdf"                # html, csv
//! recipients = ["manager@smith.example"]
//! ```

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use toml::Spanned;

use super::{Format, RelativePeriod, ReportService};
use crate::clock::Clock;
use crate::notify::settings::Locator;
use crate::notify::{Attachment, Mail, SmtpSettings, send_mail};
use crate::store::{ReportDelivery, Store};

/// A `[[report_schedule]]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchedule {
    /// Unique name, used in delivery records and logs.
    pub name: Option<Spanned<String>>,
    /// The practice's name, as in `rounds-collector report --practice`.
    pub practice: Option<Spanned<String>>,
    /// When to send, a cron expression in UTC (5 fields, or 6 with seconds first).
    pub cron: Option<Spanned<String>>,
    /// Which period each report covers: `previous_month`, `previous_quarter`, `previous_year`
    /// or `last_N_days`. Default `previous_month`.
    pub period: Option<Spanned<String>>,
    /// `pdf` (default), `html` or `csv`.
    pub format: Option<Spanned<String>>,
    /// E-mail addresses the report is sent to.
    pub recipients: Option<Spanned<Vec<String>>>,
}

/// A validated schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub name: String,
    pub practice: String,
    pub cron_text: String,
    pub cron: cron::Schedule,
    pub period: RelativePeriod,
    pub format: Format,
    pub recipients: Vec<String>,
}

/// Validates every `[[report_schedule]]`, pushing each problem with its file and line.
pub fn validate(
    raw: Vec<Spanned<RawSchedule>>,
    smtp_present: bool,
    loc: &Locator<'_>,
    problems: &mut Vec<String>,
) -> Vec<Schedule> {
    let mut out: Vec<Schedule> = Vec::new();
    for (index, table) in raw.into_iter().enumerate() {
        let at_table = loc.at(Some(table.span()));
        let before = problems.len();
        let RawSchedule {
            name,
            practice,
            cron,
            period,
            format,
            recipients,
        } = table.into_inner();
        let label = match &name {
            Some(n) => format!("report_schedule `{}`", n.get_ref()),
            None => format!("report_schedule #{}", index + 1),
        };
        let need = |what: &str| format!("{at_table}{label}: `{what}` is missing");
        let name = match name {
            Some(n) if out.iter().any(|s| s.name == *n.get_ref()) => {
                problems.push(format!(
                    "{}{label}: the name is used by another report_schedule",
                    loc.at(Some(n.span()))
                ));
                None
            }
            Some(n) if n.get_ref().trim().is_empty() => {
                problems.push(format!("{}{label}: `name` is empty", loc.at(Some(n.span()))));
                None
            }
            Some(n) => Some(n.into_inner()),
            None => {
                problems.push(need("name"));
                None
            }
        };
        let practice = match practice {
            Some(p) => Some(p.into_inner()),
            None => {
                problems.push(need("practice"));
                None
            }
        };
        let parsed_cron = match &cron {
            Some(c) => match parse_cron(c.get_ref()) {
                Ok(s) => Some((c.get_ref().clone(), s)),
                Err(e) => {
                    problems.push(format!(
                        "{}{label}: cron `{}` is not a cron expression: {e}",
                        loc.at(Some(c.span())),
                        c.get_ref()
                    ));
                    None
                }
            },
            None => {
                problems.push(need("cron"));
                None
            }
        };
        let period = match &period {
            None => Some(RelativePeriod::PreviousMonth),
            Some(p) => {
                let parsed = RelativePeriod::parse(p.get_ref());
                if parsed.is_none() {
                    problems.push(format!(
                        "{}{label}: period `{}` is not one of previous_month, previous_quarter, previous_year, last_N_days",
                        loc.at(Some(p.span())),
                        p.get_ref()
                    ));
                }
                parsed
            }
        };
        let format = match &format {
            None => Some(Format::Pdf),
            Some(f) => match Format::parse(f.get_ref()) {
                Ok(f) => Some(f),
                Err(e) => {
                    problems.push(format!("{}{label}: {e}", loc.at(Some(f.span()))));
                    None
                }
            },
        };
        let recipients = match recipients {
            None => {
                problems.push(need("recipients"));
                None
            }
            Some(r) => {
                let at = loc.at(Some(r.span()));
                let list = r.into_inner();
                if list.is_empty() {
                    problems.push(format!("{at}{label}: `recipients` is empty"));
                }
                for addr in &list {
                    if addr.parse::<lettre::Address>().is_err() {
                        problems.push(format!("{at}{label}: recipient `{addr}` is not an e-mail address"));
                    }
                }
                Some(list)
            }
        };
        if !smtp_present {
            problems.push(format!(
                "{at_table}{label}: scheduled reports are e-mailed, but there is no [smtp] section"
            ));
        }
        if problems.len() > before {
            continue;
        }
        if let (Some(name), Some(practice), Some((cron_text, cron)), Some(period), Some(format), Some(recipients)) =
            (name, practice, parsed_cron, period, format, recipients)
        {
            out.push(Schedule {
                name,
                practice,
                cron_text,
                cron,
                period,
                format,
                recipients,
            });
        }
    }
    out
}

/// Parses a cron expression; a 5-field one gets a leading `0` for seconds.
pub fn parse_cron(text: &str) -> Result<cron::Schedule, String> {
    let fields = text.split_whitespace().count();
    let full = if fields == 5 {
        format!("0 {text}")
    } else {
        text.to_string()
    };
    cron::Schedule::from_str(&full).map_err(|e| e.to_string())
}

/// What one run of a schedule came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub schedule: String,
    pub due_at: DateTime<Utc>,
    pub report_id: Option<String>,
    pub delivered: bool,
    pub detail: String,
}

/// Runs the schedules on the collector's clock. A domain service: it holds the report service,
/// the store, the relay settings and the clock; `serve` runs [`run`](Self::run) as a background
/// task, tests call [`tick`](Self::tick).
pub struct ReportScheduler {
    service: ReportService,
    store: Arc<dyn Store>,
    smtp: Option<SmtpSettings>,
    clock: Arc<dyn Clock>,
    schedules: Vec<Schedule>,
    /// Runs due after this time are still to do.
    since: std::sync::Mutex<DateTime<Utc>>,
    /// Who claims due runs in the store (issue 17: one of several collectors runs each).
    holder: String,
}

/// How long the claim of a due run is kept: past it, no collector still looks at that run
/// (each looks only at runs due since its previous tick), and retention removes it a week later.
const CLAIM_KEPT_DAYS: i64 = 1;

impl ReportScheduler {
    /// A scheduler that runs what falls due after the clock's time now.
    pub fn new(
        service: ReportService,
        store: Arc<dyn Store>,
        smtp: Option<SmtpSettings>,
        clock: Arc<dyn Clock>,
        schedules: Vec<Schedule>,
    ) -> Self {
        let now = clock.now();
        ReportScheduler {
            service,
            store,
            smtp,
            clock,
            schedules,
            since: std::sync::Mutex::new(now),
            holder: format!("{}-{:08x}", std::process::id(), rand::random::<u32>()),
        }
    }

    /// Claims the run of `s` due at `due_at` for this scheduler, in the store: of several
    /// collectors on one database, the first to claim it runs it and the others skip it
    /// (issue 17), so a scheduled report is e-mailed once. A claim the store cannot record
    /// is not run (better a report late than twice).
    async fn claim(&self, s: &Schedule, due_at: DateTime<Utc>) -> bool {
        let name = format!("report-schedule:{}:{}", s.name, due_at.timestamp_millis());
        match self
            .store
            .claim_lease(
                &name,
                &self.holder,
                due_at + chrono::Duration::days(CLAIM_KEPT_DAYS),
                self.clock.now(),
            )
            .await
        {
            Ok(true) => true,
            Ok(false) => {
                tracing::info!(schedule = %s.name, %due_at, "scheduled report run by another collector");
                false
            }
            Err(e) => {
                tracing::error!(schedule = %s.name, error = %e, "scheduled report not claimed; not run");
                false
            }
        }
    }

    /// Whether there is anything to run.
    pub fn is_empty(&self) -> bool {
        self.schedules.is_empty()
    }

    /// Runs every schedule run that fell due since the last tick, up to the clock's now.
    pub async fn tick(&self) -> Vec<Run> {
        let now = self.clock.now();
        let since = {
            let mut guard = self.since.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::replace(&mut *guard, now)
        };
        let mut runs = Vec::new();
        for s in &self.schedules {
            // At most one run per schedule per tick: a collector that slept through several
            // fire times sends the newest report once, not a backlog.
            let due = s.cron.after(&since).take_while(|t| *t <= now).last();
            if let Some(due_at) = due
                && self.claim(s, due_at).await
            {
                runs.push(self.run_one(s, due_at).await);
            }
        }
        runs
    }

    async fn run_one(&self, s: &Schedule, due_at: DateTime<Utc>) -> Run {
        let actor = format!("schedule:{}", s.name);
        let mut run = Run {
            schedule: s.name.clone(),
            due_at,
            report_id: None,
            delivered: false,
            detail: String::new(),
        };
        let period = s.period.resolve(due_at.date_naive());
        let practice = match self.service.practice(&s.practice).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(schedule = %s.name, error = %e, "scheduled report not issued");
                run.detail = e.to_string();
                return run;
            }
        };
        let issued = match self
            .service
            .issue(&practice, period, s.format, &actor, "report.schedule")
            .await
        {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(schedule = %s.name, error = %e, "scheduled report not issued");
                run.detail = e.to_string();
                return run;
            }
        };
        run.report_id = Some(issued.record.report_id.clone());
        let result = match &self.smtp {
            None => Err("no [smtp] relay is configured".to_string()),
            Some(smtp) => {
                let mail = Mail {
                    to: s.recipients.clone(),
                    subject: format!("Compliance report: {}, {} to {}", practice.name, period.from, period.to),
                    text: format!(
                        "The HIPAA Security Rule compliance report of {} for {} to {} is attached ({}).\n\n\
                         Report {}; content SHA-256 {}.\n\
                         `rounds-collector report verify FILE` tells whether a file is this report, unchanged.\n\n\
                         Sent by the report schedule `{}` of the Rounds collector.\n",
                        practice.name,
                        period.from,
                        period.to,
                        issued.file_name(),
                        issued.record.report_id,
                        issued.record.content_sha256,
                        s.name
                    ),
                    html: None,
                    attachments: vec![Attachment {
                        filename: issued.file_name(),
                        content_type: s.format.content_type().to_string(),
                        bytes: issued.bytes.clone(),
                    }],
                    thread_id: None,
                };
                send_mail(smtp, &mail).await.map_err(|e| e.to_string())
            }
        };
        match result {
            Ok(()) => {
                run.delivered = true;
                run.detail = format!("sent to {}", s.recipients.join(", "));
                tracing::info!(schedule = %s.name, report = %issued.record.report_id, "scheduled report sent");
            }
            Err(e) => {
                run.detail = e;
                tracing::warn!(schedule = %s.name, error = %run.detail, "scheduled report not delivered");
            }
        }
        let delivery = ReportDelivery {
            report_id: issued.record.report_id.clone(),
            schedule: s.name.clone(),
            recipients: s.recipients.clone(),
            attempted_at: self.clock.now(),
            delivered: run.delivered,
            detail: run.detail.clone(),
        };
        let recorded = async {
            let mut tx = self.store.begin().await?;
            tx.record_report_delivery(&delivery).await?;
            tx.audit(
                &actor,
                if run.delivered {
                    "report.delivered"
                } else {
                    "report.delivery_failed"
                },
                &format!(
                    "{} to {}: {}",
                    delivery.report_id,
                    delivery.recipients.join(", "),
                    delivery.detail
                ),
                delivery.attempted_at,
            )
            .await?;
            tx.commit().await
        };
        if let Err(e) = recorded.await {
            tracing::error!(schedule = %s.name, error = %e, "report delivery not recorded");
        }
        run
    }

    /// Ticks every `every` until cancelled (the collector's background task).
    pub async fn run(self: Arc<Self>, every: Duration, shutdown: tokio_util::sync::CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            self.tick().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> (Vec<Schedule>, Vec<String>) {
        #[derive(Deserialize)]
        struct File {
            #[serde(default)]
            report_schedule: Vec<Spanned<RawSchedule>>,
        }
        let f: File = toml::from_str(text).unwrap();
        let mut problems = Vec::new();
        let loc = Locator {
            file: Some(std::path::Path::new("collector.toml")),
            text,
        };
        (validate(f.report_schedule, true, &loc, &mut problems), problems)
    }

    #[test]
    fn a_good_schedule_validates() {
        let (s, p) = check(
            "[[report_schedule]]\nname = \"m\"\npractice = \"Smith\"\ncron = \"0 7 1 * *\"\nperiod = \"previous_quarter\"\nrecipients = [\"a@example.org\"]\n",
        );
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(s[0].period, RelativePeriod::PreviousQuarter);
        assert_eq!(s[0].format, Format::Pdf);
    }

    #[test]
    fn problems_name_the_file_and_line() {
        let (s, p) = check(
            "[[report_schedule]]\nname = \"m\"\npractice = \"Smith\"\ncron = \"every monday\"\nperiod = \"fortnight\"\nformat = \"docx\"\nrecipients = [\"not-an-address\"]\n",
        );
        assert!(s.is_empty());
        let all = p.join("\n");
        assert!(
            all.contains("collector.toml:4: report_schedule `m`: cron `every monday`"),
            "{all}"
        );
        assert!(
            all.contains("collector.toml:5: report_schedule `m`: period `fortnight`"),
            "{all}"
        );
        assert!(
            all.contains("collector.toml:6: report_schedule `m`: unknown report format `docx`"),
            "{all}"
        );
        assert!(
            all.contains("collector.toml:7: report_schedule `m`: recipient `not-an-address`"),
            "{all}"
        );
        let (_, p) = check("[[report_schedule]]\nname = \"m\"\n");
        let all = p.join("\n");
        assert!(
            all.contains("collector.toml:1: report_schedule `m`: `practice` is missing"),
            "{all}"
        );
        assert!(
            all.contains("`cron` is missing") && all.contains("`recipients` is missing"),
            "{all}"
        );
    }
}
