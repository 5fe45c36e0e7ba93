//! Compliance reports (issue 14) from a seeded store: PDF text through poppler's `pdftotext`,
//! first pages rendered with `pdftoppm`, tenant isolation, past periods unchanged by newer
//! data, `report verify`, the CLI's errors, CSV quoting, HTML escaping.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use rounds_collector::reports::{self, Format, Period, ReportService, Verification};
use rounds_policies::Pack;

use crate::report_seed::{self, EHR, Machine, Trouble};
use crate::support::TestApp;

pub const SMITH: &str = "Smith Family Practice";
pub const JONES: &str = "Jones Dental";
const BACKUP_ERROR: &str = "seeded-repo-locked-7431";
const EHR_CAUSE: &str = "seeded-timeout-5512";
const JONES_BACKUP_ERROR: &str = "jones-only-error-9911";
/// The accepted risk's reason: a comma, quotes and a newline, for CSV quoting.
const REASON: &str = "Imaging archive, \"legacy\" disk\nencryption scheduled for Q1";

pub fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

pub fn november() -> Period {
    Period {
        from: NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
        to: NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
    }
}

fn machine(id: &str, host: &str, trouble: Trouble) -> Machine {
    Machine {
        agent_id: id.into(),
        hostname: host.into(),
        trouble,
    }
}

pub fn smith_machines() -> Vec<Machine> {
    vec![
        machine(
            "smith-a1",
            "smith-srv-01",
            Trouble {
                backup_fails: vec![3, 4],
                backup_error: BACKUP_ERROR.into(),
                ..Default::default()
            },
        ),
        machine(
            "smith-a2",
            "smith-srv-02",
            Trouble {
                ehr_down: vec![5],
                ehr_cause: EHR_CAUSE.into(),
                tamper_day: Some(7),
                unencrypted_data: true,
                silent: vec![12, 13],
                ..Default::default()
            },
        ),
        machine("smith-a3", "smith-ws-03<script>", Trouble::default()),
    ]
}

fn jones_machines() -> Vec<Machine> {
    vec![machine(
        "jones-a1",
        "jones-ws-01",
        Trouble {
            backup_fails: vec![2],
            backup_error: JONES_BACKUP_ERROR.into(),
            ehr_down: vec![6],
            ehr_cause: "jones-cause-1234".into(),
            ..Default::default()
        },
    )]
}

/// A collector with November 2026 of history for Smith (3 machines, an accepted risk) and
/// Jones (1 machine). Seeded once per test binary into a template data dir (evaluating a
/// month of reports is the slow part), then copied for each test.
pub async fn seeded() -> TestApp {
    static TEMPLATE: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let template = TEMPLATE.get_or_init(|| {
        std::thread::spawn(|| {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let app = seed_fresh().await;
                // Move the seeded files out of the app's temp dir, closing the store first.
                let TestApp { state, clock, _dir } = app;
                drop(state);
                drop(clock);
                _dir
            })
        })
        .join()
        .unwrap()
    });
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(template.path()).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
    }
    TestApp::in_dir(dir, at("2026-12-01T08:00:00Z"))
}

async fn seed_fresh() -> TestApp {
    let app = TestApp::new();
    let start = at("2026-11-01T00:00:00Z");
    let enrolled = at("2026-10-31T12:00:00Z");
    let smith = smith_machines();
    let jones = jones_machines();
    report_seed::enroll(app.store(), SMITH, "Main Street", &smith, enrolled).await;
    report_seed::enroll(app.store(), JONES, "Harbour", &jones, enrolled).await;
    let overrides = format!(
        "[[accept]]\nrule = \"hipaa.encryption.at_rest\"\nreason = {}\naccepted_by = \"Dr. Ann Smith\"\nexpires = 2027-03-31\n",
        toml_string(REASON)
    );
    app.store()
        .set_policy_settings(SMITH, None, None, Some(&overrides), "cli", enrolled)
        .await
        .unwrap();
    report_seed::history(&app.state.evaluator, &app.clock, &smith, start, 30, 1).await;
    report_seed::history(&app.state.evaluator, &app.clock, &jones, start, 30, 1).await;
    app
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

pub fn service(app: &TestApp) -> ReportService {
    ReportService::new(
        Arc::clone(&app.state.store),
        Arc::new(Pack::builtin().unwrap()),
        app.state.clock.clone(),
    )
}

/// Where test artefacts (PDFs, PNG pages) go.
fn artefacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-artefacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn tool(name: &str) -> Command {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "`{name}` is missing: install Debian's poppler-utils (.ci/run does)"
    );
    Command::new(name)
}

fn pdftotext(pdf: &Path) -> String {
    let out = tool("pdftotext").arg(pdf).arg("-").output().unwrap();
    assert!(
        out.status.success(),
        "pdftotext: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Whitespace collapsed, so a wrapped line does not hide a phrase.
fn flat(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

async fn issue(app: &TestApp, practice: &str, format: Format) -> reports::Issued {
    let s = service(app);
    let p = s.practice(practice).await.unwrap();
    s.issue(&p, november(), format, "test", "report.issue").await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pdf_has_every_section_citation_and_seeded_evidence() {
    let app = seeded().await;
    let issued = issue(&app, SMITH, Format::Pdf).await;
    assert!(issued.bytes.starts_with(b"%PDF-"));
    let dir = artefacts();
    let pdf = dir.join("smith-november.pdf");
    std::fs::write(&pdf, &issued.bytes).unwrap();
    let text = pdftotext(&pdf);
    let flat = flat(&text);

    for section in [
        "HIPAA Security Rule compliance report",
        "Summary",
        "Safeguards",
        "Incidents",
        "Technology asset inventory",
        "Method and data sources",
        "Verification",
    ] {
        assert!(flat.contains(section), "section `{section}` missing from the PDF text");
    }
    let pack = Pack::builtin().unwrap();
    let mut citations: Vec<String> = pack
        .rules
        .iter()
        .flat_map(|r| r.citations.iter().map(|c| c.reference.clone()))
        .collect();
    citations.sort();
    citations.dedup();
    assert!(citations.len() > 20);
    for c in &citations {
        let heading = format!("{c} {}", reports::model::section_title(c));
        assert!(
            flat.contains(&heading),
            "safeguard `{heading}` missing from the PDF text"
        );
    }
    for value in [
        SMITH,
        "2026-11-01 to 2026-11-30",
        &issued.record.report_id,
        &issued.record.content_sha256,
        "smith-srv-01",
        "smith-srv-02",
        BACKUP_ERROR,
        EHR_CAUSE,
        EHR,
        "/srv/restic",
        "Dr. Ann Smith",
        "2027-03-31",
        "Imaging archive, \"legacy\" disk encryption scheduled for Q1",
        "/data: NOT encrypted",
        "Debian GNU/Linux 12",
        "PowerEdge T150",
        "EHR outage",
        "backup failure",
        "tamper event",
        "agent outage",
        "Documented instead",
        "No patient data is collected",
        "rounds-collector 0.1.0",
    ] {
        assert!(flat.contains(value), "`{value}` missing from the PDF text");
    }
    // The EHR was down 3 hours of the 720 in November: 99.58 % availability.
    assert!(flat.contains("99.58 %"), "availability missing");
    assert!(flat.contains("3 h 0 min"), "outage duration missing");

    // The first pages as PNG, for a person to look at.
    let out = tool("pdftoppm")
        .args(["-png", "-r", "60", "-f", "1", "-l", "3"])
        .arg(&pdf)
        .arg(dir.join("smith-page"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pdftoppm: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pngs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("smith-page"))
        .collect();
    assert_eq!(pngs.len(), 3, "{pngs:?}");
    for p in pngs {
        let bytes = std::fs::read(&p).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "{} is not a PNG", p.display());
        assert!(bytes.len() > 5_000, "{} looks blank", p.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_of_one_practice_holds_nothing_of_another() {
    let app = seeded().await;
    let pdf = issue(&app, SMITH, Format::Pdf).await;
    let path = artefacts().join("smith-isolation.pdf");
    std::fs::write(&path, &pdf.bytes).unwrap();
    let texts = [
        ("pdf", pdftotext(&path)),
        (
            "html",
            String::from_utf8(issue(&app, SMITH, Format::Html).await.bytes).unwrap(),
        ),
        (
            "csv",
            String::from_utf8(issue(&app, SMITH, Format::Csv).await.bytes).unwrap(),
        ),
    ];
    for (format, text) in &texts {
        for foreign in [
            JONES,
            "Harbour",
            "jones-ws-01",
            "jones-a1",
            JONES_BACKUP_ERROR,
            "jones-cause-1234",
        ] {
            assert!(
                !text.contains(foreign),
                "the {format} report of Smith mentions `{foreign}`"
            );
        }
        assert!(text.contains("smith-srv-01"), "{format}");
    }
    // And Jones's report has Jones's own incidents and none of Smith's.
    let jones = issue(&app, JONES, Format::Html).await;
    let jones = String::from_utf8(jones.bytes).unwrap();
    assert!(jones.contains(JONES_BACKUP_ERROR));
    for foreign in ["smith-srv", BACKUP_ERROR, SMITH, "Dr. Ann Smith"] {
        assert!(!jones.contains(foreign), "the report of Jones mentions `{foreign}`");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_period_content_is_byte_for_byte_the_same_after_newer_reports() {
    let app = seeded().await;
    let s = service(&app);
    let smith = s.practice(SMITH).await.unwrap();
    let before = reports::canonical(&s.content(&smith, november()).await.unwrap());
    let first = s
        .issue(&smith, november(), Format::Pdf, "test", "report.issue")
        .await
        .unwrap();

    // December: everything changes. Backups fail everywhere, the EHR is down, a new machine
    // joins, the accepted risk is withdrawn.
    let mut december = smith_machines();
    for m in &mut december {
        m.trouble = Trouble {
            backup_fails: vec![0, 1],
            backup_error: "december-error".into(),
            ehr_down: vec![0],
            ehr_cause: "december-cause".into(),
            unencrypted_data: true,
            ..Default::default()
        };
    }
    let newcomer = vec![machine("smith-a4", "smith-new-04", Trouble::default())];
    report_seed::enroll(app.store(), SMITH, "Main Street", &newcomer, at("2026-12-01T00:30:00Z")).await;
    app.store()
        .set_policy_settings(SMITH, None, None, None, "cli", at("2026-12-01T00:40:00Z"))
        .await
        .unwrap();
    report_seed::history(
        &app.state.evaluator,
        &app.clock,
        &december,
        at("2026-12-01T00:00:00Z"),
        2,
        1000,
    )
    .await;
    report_seed::history(
        &app.state.evaluator,
        &app.clock,
        &newcomer,
        at("2026-12-01T00:00:00Z"),
        2,
        1,
    )
    .await;
    app.clock.set(at("2026-12-03T08:00:00Z"));

    let after = reports::canonical(&s.content(&smith, november()).await.unwrap());
    assert_eq!(
        String::from_utf8_lossy(&before),
        String::from_utf8_lossy(&after),
        "the November report changed when December's reports arrived"
    );
    let second = s
        .issue(&smith, november(), Format::Pdf, "test", "report.issue")
        .await
        .unwrap();
    assert_eq!(first.record.content_sha256, second.record.content_sha256);
    let text = String::from_utf8(before).unwrap();
    assert!(!text.contains("december") && !text.contains("smith-new-04"));

    // A report of December does see December.
    let dec = Period {
        from: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
        to: NaiveDate::from_ymd_opt(2026, 12, 2).unwrap(),
    };
    let dec = String::from_utf8(reports::canonical(&s.content(&smith, dec).await.unwrap())).unwrap();
    assert!(dec.contains("december-error") && dec.contains("smith-new-04"));
}

fn cli(data_dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rounds-collector"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_issues_and_verify_accepts_issued_files_and_rejects_a_changed_byte() {
    let app = seeded().await;
    let data = app._dir.path();
    let out_dir = tempfile::tempdir().unwrap();
    for format in ["pdf", "html", "csv"] {
        let file = out_dir.path().join(format!("smith.{format}"));
        let file_s = file.to_str().unwrap();
        let out = cli(
            data,
            &[
                "report",
                "--practice",
                SMITH,
                "--from",
                "2026-11-01",
                "--to",
                "2026-11-30",
                "--format",
                format,
                "--out",
                file_s,
            ],
        );
        assert!(
            out.status.success(),
            "{format}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains("written to"), "{said}");

        let ok = cli(data, &["report", "verify", file_s]);
        let said = String::from_utf8_lossy(&ok.stdout);
        assert!(ok.status.success(), "{format}: {said}");
        assert!(said.contains("issued by this collector and unchanged"), "{said}");
        assert!(said.contains(SMITH));

        let mut bytes = std::fs::read(&file).unwrap();
        let i = bytes.len() * 2 / 3;
        bytes[i] ^= 0x01;
        let changed = out_dir.path().join(format!("changed.{format}"));
        std::fs::write(&changed, &bytes).unwrap();
        let bad = cli(data, &["report", "verify", changed.to_str().unwrap()]);
        let said = String::from_utf8_lossy(&bad.stdout);
        assert_eq!(bad.status.code(), Some(1), "{format}: {said}");
        assert!(said.contains("NOT VALID"), "{said}");
    }
    // Every issued report is recorded and in the audit log.
    let smith = service(&app).practice(SMITH).await.unwrap();
    let issued = app.store().issued_reports_of_practice(smith.id).await.unwrap();
    assert_eq!(
        issued.iter().map(|r| r.format.as_str()).collect::<Vec<_>>(),
        vec!["pdf", "html", "csv"]
    );
    assert!(
        issued
            .iter()
            .all(|r| r.issued_by == "cli" && r.period_from == november().from)
    );
    let audit = app.store().audit_entries(50).await.unwrap();
    assert_eq!(audit.iter().filter(|e| e.action == "report.issue").count(), 3);

    // A file the collector never issued.
    let foreign = out_dir.path().join("foreign.pdf");
    std::fs::write(&foreign, b"%PDF-1.7 not ours").unwrap();
    let out = cli(data, &["report", "verify", foreign.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("not a report issued by this collector"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_tells_altered_from_unknown() {
    let app = seeded().await;
    let s = service(&app);
    let issued = issue(&app, SMITH, Format::Html).await;
    assert!(matches!(s.verify(&issued.bytes).await.unwrap(), Verification::Issued(r) if r == issued.record));
    let mut changed = issued.bytes.clone();
    let pos = changed.len() - 200;
    changed[pos] ^= 0x20;
    assert!(
        matches!(s.verify(&changed).await.unwrap(), Verification::Altered(r) if r.report_id == issued.record.report_id)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_errors_name_what_the_user_typed() {
    let app = seeded().await;
    let data = app._dir.path();
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("r.pdf");
    let f = file.to_str().unwrap();
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--practice", "Nobody", "--from", "2026-11-01", "--to", "2026-11-30"],
            &["unknown practice `Nobody`", "`Jones Dental`", "`Smith Family Practice`"],
        ),
        (
            &["--practice", SMITH, "--from", "2026-11-31", "--to", "2026-12-30"],
            &["--from `2026-11-31` is not a date"],
        ),
        (
            &["--practice", SMITH, "--from", "2026-11-01", "--to", "30.11.2026"],
            &["--to `30.11.2026` is not a date"],
        ),
        (
            &["--practice", SMITH, "--from", "2026-12-01", "--to", "2026-11-30"],
            &["--from 2026-12-01 is after --to 2026-11-30"],
        ),
        (
            &[
                "--practice",
                SMITH,
                "--from",
                "2026-11-01",
                "--to",
                "2026-11-30",
                "--format",
                "docx",
            ],
            &["unknown report format `docx`"],
        ),
    ];
    for (args, expect) in cases {
        let mut all = vec!["report"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--out", f]);
        let o = cli(data, &all);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(64), "{args:?}: {err}");
        for e in *expect {
            assert!(err.contains(e), "{args:?}: `{e}` not in {err}");
        }
        assert!(!file.exists(), "{args:?} left a file");
    }
}

/// A minimal RFC 4180 reader for the test.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_quotes_commas_quotes_and_newlines_and_html_escapes() {
    let app = seeded().await;
    let csv = String::from_utf8(issue(&app, SMITH, Format::Csv).await.bytes).unwrap();
    let rows = parse_csv(&csv);
    let header = &rows[0];
    assert!(rows.iter().all(|r| r.len() == header.len()), "ragged rows");
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let accepted: Vec<&Vec<String>> = rows
        .iter()
        .filter(|r| r[col("rule")] == "hipaa.encryption.at_rest" && r[col("machine")] == "smith-srv-02")
        .collect();
    assert_eq!(accepted.len(), 1);
    let row = accepted[0];
    assert_eq!(row[col("accepted_reason")], REASON, "the reason does not round-trip");
    assert_eq!(row[col("accepted_by")], "Dr. Ann Smith");
    assert_eq!(row[col("status")], "fail");
    assert!(row[col("citations")].contains("164.312(a)(2)(iv)"));
    assert!(csv.contains("\"Imaging archive, \"\"legacy\"\" disk\nencryption scheduled for Q1\""));
    let backup = rows
        .iter()
        .find(|r| r[col("rule")] == "hipaa.backup.succeeded" && r[col("machine")] == "smith-srv-01")
        .unwrap();
    assert_eq!(backup[col("status")], "pass", "the last backup of November succeeded");

    let html = String::from_utf8(issue(&app, SMITH, Format::Html).await.bytes).unwrap();
    assert!(
        html.contains("smith-ws-03&lt;script&gt;") || html.contains("smith-ws-03&#60;script&#62;"),
        "hostname not escaped"
    );
    assert!(!html.contains("<script>"));
    assert!(html.contains("@media print"));
    assert!(html.contains("name=\"rounds-content-sha256\""));
}

async fn get(app: &TestApp, uri: &str, key: Option<&str>) -> axum::http::Response<axum::body::Body> {
    let mut req = axum::http::Request::get(uri);
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    app.send(req.body(axum::body::Body::empty()).unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_download_scoped_to_the_managers_practice_and_audited() {
    use rounds_collector::store::Role;
    let app = seeded().await;
    let s = service(&app);
    let smith = s.practice(SMITH).await.unwrap().id;
    let jones = s.practice(JONES).await.unwrap().id;
    let manager = rounds_collector::admin::apikey_create(app.store(), Role::PracticeManager, Some(SMITH), "smith-pm")
        .await
        .unwrap();
    let tech = rounds_collector::admin::apikey_create(app.store(), Role::Technician, None, "tech")
        .await
        .unwrap();
    let q = "from=2026-11-01&to=2026-11-30";

    let resp = get(
        &app,
        &format!("/api/v1/practices/{smith}/report?{q}&format=pdf"),
        Some(&manager),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/pdf");
    let disposition = resp.headers()["content-disposition"].to_str().unwrap().to_string();
    assert!(
        disposition.contains("rounds-report-smith-family-practice-2026-11-01-2026-11-30.pdf"),
        "{disposition}"
    );
    let bytes = axum::body::to_bytes(resp.into_body(), 64 << 20).await.unwrap();
    assert!(matches!(s.verify(&bytes).await.unwrap(), Verification::Issued(r) if r.issued_by == "api-key"));

    // The manager of Smith cannot get Jones's report: the same answer as an unknown practice.
    let resp = get(&app, &format!("/api/v1/practices/{jones}/report?{q}"), Some(&manager)).await;
    assert_eq!(resp.status(), 404);
    let resp = get(&app, &format!("/api/v1/practices/9999/report?{q}"), Some(&manager)).await;
    assert_eq!(resp.status(), 404);
    // A technician sees every practice; CSV comes as CSV.
    let resp = get(
        &app,
        &format!("/api/v1/practices/{jones}/report?{q}&format=csv"),
        Some(&tech),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    // No credentials; bad input named.
    assert_eq!(
        get(&app, &format!("/api/v1/practices/{smith}/report?{q}"), None)
            .await
            .status(),
        401
    );
    let resp = get(
        &app,
        &format!("/api/v1/practices/{smith}/report?from=2026-11-31&to=2026-11-30"),
        Some(&tech),
    )
    .await;
    assert_eq!(resp.status(), 400);
    assert!(
        crate::support::body_text(resp)
            .await
            .contains("`2026-11-31` is not a date")
    );
    let resp = get(
        &app,
        &format!("/api/v1/practices/{smith}/report?{q}&format=xls"),
        Some(&tech),
    )
    .await;
    assert_eq!(resp.status(), 400);

    let audit = app.store().audit_entries(100).await.unwrap();
    let downloads: Vec<_> = audit.iter().filter(|e| e.action == "report.download").collect();
    assert_eq!(downloads.len(), 2, "{audit:?}");
    assert!(
        downloads
            .iter()
            .any(|e| e.detail.contains(SMITH) && e.detail.contains("pdf"))
    );
    assert!(
        downloads
            .iter()
            .any(|e| e.detail.contains(JONES) && e.detail.contains("csv"))
    );
}

/// The base64 body of the MIME part whose headers name `content_type`, decoded.
fn attachment(raw: &str, content_type: &str) -> Vec<u8> {
    use base64::Engine;
    let raw = raw.replace("\r\n", "\n");
    let start = raw
        .find(&format!("Content-Type: {content_type}"))
        .unwrap_or_else(|| panic!("no {content_type} part in:\n{}", &raw[..raw.len().min(2000)]));
    let part = &raw[start..];
    let body_start = part.find("\n\n").unwrap() + 2;
    let body: String = part[body_start..]
        .lines()
        .take_while(|l| !l.starts_with("--") && !l.is_empty())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_report_arrives_at_a_real_smtp_server_with_the_pdf_attached() {
    use rounds_collector::notify::SmtpTls;
    use rounds_collector::reports::schedule::{ReportScheduler, parse_cron};
    let app = seeded().await;
    let server = crate::notify::SmtpServer::start("plain", None, None).await;
    let schedule = rounds_collector::reports::schedule::Schedule {
        name: "smith-monthly".into(),
        practice: SMITH.into(),
        cron_text: "0 7 1 * *".into(),
        cron: parse_cron("0 7 1 * *").unwrap(),
        period: reports::RelativePeriod::PreviousMonth,
        format: Format::Pdf,
        recipients: vec!["manager@smith.example".into(), "auditor@smith.example".into()],
    };
    app.clock.set(at("2026-12-01T06:59:00Z"));
    let scheduler = ReportScheduler::new(
        service(&app),
        Arc::clone(&app.state.store),
        Some(server.settings(SmtpTls::None, None)),
        app.state.clock.clone(),
        vec![schedule],
    );
    assert!(scheduler.tick().await.is_empty(), "nothing is due before 07:00");
    app.clock.set(at("2026-12-01T07:00:20Z"));
    let runs = scheduler.tick().await;
    assert_eq!(runs.len(), 1);
    assert!(runs[0].delivered, "{:?}", runs[0]);
    assert!(scheduler.tick().await.is_empty(), "sent once");

    let received = server.received();
    assert_eq!(received.len(), 1);
    let (raw, meta) = &received[0];
    let rcpts = meta.to_string();
    assert!(
        rcpts.contains("manager@smith.example") && rcpts.contains("auditor@smith.example"),
        "{rcpts}"
    );
    assert!(raw.contains("Compliance report: Smith Family Practice, 2026-11-01 to 2026-11-30"));
    assert!(raw.contains("rounds-report-smith-family-pr"), "attachment file name");
    let pdf = attachment(raw, "application/pdf");
    assert!(pdf.starts_with(b"%PDF-"));
    let s = service(&app);
    match s.verify(&pdf).await.unwrap() {
        Verification::Issued(r) => {
            assert_eq!(r.issued_by, "schedule:smith-monthly");
            assert_eq!((r.period_from, r.period_to), (november().from, november().to));
            assert_eq!(Some(r.report_id.clone()), runs[0].report_id);
        }
        other => panic!("the attached PDF does not verify: {other:?}"),
    }
    let path = artefacts().join("scheduled.pdf");
    std::fs::write(&path, &pdf).unwrap();
    assert!(flat(&pdftotext(&path)).contains(BACKUP_ERROR));

    let deliveries = app.store().report_deliveries("smith-monthly").await.unwrap();
    assert_eq!(deliveries.len(), 1);
    assert!(deliveries[0].delivered);
    assert_eq!(
        deliveries[0].recipients,
        vec!["manager@smith.example", "auditor@smith.example"]
    );
    assert_eq!(deliveries[0].attempted_at, at("2026-12-01T07:00:20Z"));
    let audit = app.store().audit_entries(50).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.action == "report.delivered" && e.actor == "schedule:smith-monthly")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_session_of_a_practice_manager_downloads_only_their_practice() {
    use rounds_collector::store::Role;
    let app = seeded().await;
    let s = service(&app);
    let (smith, jones) = (s.practice(SMITH).await.unwrap().id, s.practice(JONES).await.unwrap().id);
    rounds_collector::admin::user_add(
        app.store(),
        "pm-smith",
        Role::PracticeManager,
        Some(SMITH),
        Some(crate::web::PASSWORD.to_string()),
    )
    .await
    .unwrap();
    let token = crate::web::session(&app, "pm-smith").await;
    let with_cookie = |uri: String| {
        axum::http::Request::get(uri)
            .header("cookie", format!("rounds_session={token}"))
            .body(axum::body::Body::empty())
            .unwrap()
    };
    let q = "from=2026-11-01&to=2026-11-30&format=html";
    let resp = app
        .send(with_cookie(format!("/api/v1/practices/{smith}/report?{q}")))
        .await;
    assert_eq!(resp.status(), 200);
    let html = crate::support::body_text(resp).await;
    assert!(html.contains(SMITH) && !html.contains(JONES));
    let resp = app
        .send(with_cookie(format!("/api/v1/practices/{jones}/report?{q}")))
        .await;
    assert_eq!(resp.status(), 404);
    let audit = app.store().audit_entries(100).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.action == "report.download" && e.actor == "pm-smith")
    );
}

/// The dashboard's practice page and the compliance report say the same score for the same
/// findings, accepted risks included (one definition, `rounds_collector::score`): before, the
/// dashboard counted an accepted risk as passing and the report did not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_report_give_one_score_with_an_accepted_risk_in_force() {
    use rounds_collector::store::Role;
    let app = seeded().await;
    let s = service(&app);
    let smith = s.practice(SMITH).await.unwrap();
    // The state at the end of November is the current state: the seed's last report is in it.
    let content = s.content(&smith, november()).await.unwrap();
    let o = &content.overall;
    assert!(o.accepted > 0, "Smith's accepted risk is in force: {o:?}");
    let score = o.score.expect("a score");
    let with_accepted_as_pass = (o.pass + o.accepted) * 100 / (o.pass + o.fail + o.error);
    assert_ne!(
        score, with_accepted_as_pass,
        "the seed tells the two definitions apart: {o:?}"
    );
    rounds_collector::admin::user_add(
        app.store(),
        "tech",
        Role::Technician,
        None,
        Some(crate::web::PASSWORD.to_string()),
    )
    .await
    .unwrap();
    let token = crate::web::session(&app, "tech").await;
    let resp = app
        .send(
            axum::http::Request::get(format!("/practices/{}", smith.id))
                .header("cookie", format!("rounds_session={token}"))
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let html = crate::support::body_text(resp).await;
    assert!(
        html.contains(&format!("compliance {score} %")),
        "the practice page shows the report's score {score} %: {}",
        html.lines()
            .find(|l| l.contains("compliance "))
            .unwrap_or("(no score line)")
    );
}
