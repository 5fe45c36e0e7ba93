//! Collector settings: the TOML file (`--config`) and flags, in two stages.
//!
//! [`RawConfig`] mirrors the file (unknown keys are errors naming the key, file and line);
//! [`Settings`] is the validated form the rest of the collector uses.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Default address the collector listens on.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";

/// The configuration file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Directory for the database, TLS material and generated files.
    pub data_dir: Option<PathBuf>,
    /// Address and port to listen on, e.g. `0.0.0.0:8443`.
    pub listen: Option<String>,
    /// Largest request body accepted, in bytes (default 1 MiB).
    pub max_body_bytes: Option<usize>,
    /// Seconds between agent heartbeats, told to agents when they enroll (default 30).
    pub heartbeat_interval_secs: Option<u64>,
    /// Seconds without a heartbeat after which an agent counts as offline (default 90).
    pub offline_after_secs: Option<u64>,
    /// Lifetime of a dashboard session, in seconds (default 12 hours).
    pub session_ttl_secs: Option<u64>,
    /// Seconds a client may take to send its request headers before the connection is
    /// closed (default 10); protects against connections held open by slow senders.
    pub header_timeout_secs: Option<u64>,
    /// How far an agent's clock may be off the collector's, in seconds, before its
    /// observations dated in the future are stored with the receive time and the agent gets an
    /// `error`-level clock finding (default 300).
    pub max_clock_skew_secs: Option<u64>,
    /// How many changes (findings changed, agent seen, first report) the in-process change
    /// stream holds for a slow subscriber before it lags (default 1024).
    pub change_stream_capacity: Option<usize>,
    /// TLS settings; without them the collector makes its own CA in the data dir.
    pub tls: Option<RawTls>,
    // --- notification channels (notify) ---
    /// The `[smtp]` relay for e-mail channels and scheduled reports.
    pub smtp: Option<toml::Spanned<crate::notify::settings::RawSmtp>>,
    /// The `[[channel]]` tables.
    #[serde(default)]
    pub channel: Vec<toml::Spanned<crate::notify::settings::RawChannel>>,
    // --- Compliance reports (issue 14) ---
    /// The `[[report_schedule]]` tables: reports e-mailed on cron schedules.
    #[serde(default)]
    pub report_schedule: Vec<toml::Spanned<crate::reports::schedule::RawSchedule>>,
    /// The file's text, kept by [`parse`] so validation can name lines.
    #[serde(skip)]
    pub source_text: String,
    // --- Alerting (issue 12): engine timings, routing rules, silences ---
    /// The alert engine's timings and thresholds.
    pub alerting: Option<crate::alerting::config::RawAlerting>,
    /// Routing rules: which incidents go to which channels.
    #[serde(default)]
    pub route: Vec<crate::alerting::config::RawRoute>,
    /// Silences and maintenance windows.
    #[serde(default)]
    pub silence: Vec<crate::alerting::config::RawSilence>,
    // --- Security (issue 15) ---
    /// Limits on connections, request time and agent request rates.
    pub limits: Option<RawLimits>,
    /// When set, `GET /metrics` needs `Authorization: Bearer <metrics_token>`; without it
    /// `/metrics` answers 404 (fleet-wide figures are not for anyone who can reach the port).
    pub metrics_token: Option<String>,
    // --- PostgreSQL backend (issue 17) ---
    /// `postgres://user[:password]@host[:port]/database`: the store is this PostgreSQL
    /// database instead of SQLite in the data dir. Without it, `ROUNDS_DATABASE_URL`.
    pub database_url: Option<String>,
    // --- Retention (issue 17) ---
    /// How long raw observations and records are kept.
    pub retention: Option<RawRetention>,
}

/// The `[retention]` table (issue 17); every key is optional, see [`RetentionSettings`] defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    /// Days raw observations are kept; older ones are rolled up hourly, then removed (default 30).
    pub observations_days: Option<u64>,
    /// Days hourly rollups are kept; older ones become daily rollups (default 90).
    pub hourly_days: Option<u64>,
    /// Years findings and their history, incidents and their timeline, issued reports and the
    /// audit log are kept (default 6, the HIPAA minimum of 164.316(b)(2)(i)).
    pub records_years: Option<u64>,
    /// Allows `records_years` below 6 (the documentation HIPAA requires is then not kept).
    pub records_below_hipaa_minimum: Option<bool>,
    /// Minutes between retention runs (default 60).
    pub interval_minutes: Option<u64>,
}

/// HIPAA 164.316(b)(2)(i): documentation is retained six years.
pub const HIPAA_RECORDS_YEARS: u64 = 6;

/// Validated retention settings (issue 17).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionSettings {
    pub observations_days: u64,
    pub hourly_days: u64,
    pub records_years: u64,
    pub interval: Duration,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            observations_days: 30,
            hourly_days: 90,
            records_years: HIPAA_RECORDS_YEARS,
            interval: Duration::from_secs(3600),
        }
    }
}

/// Validates the `[retention]` table, adding problems to `problems`.
fn validate_retention(raw: Option<RawRetention>, at: &str, problems: &mut Vec<String>) -> RetentionSettings {
    let d = RetentionSettings::default();
    let Some(RawRetention {
        observations_days,
        hourly_days,
        records_years,
        records_below_hipaa_minimum,
        interval_minutes,
    }) = raw
    else {
        return d;
    };
    let mut at_least = |name: &str, v: Option<u64>, default: u64, min: u64, max: u64| -> u64 {
        match v {
            Some(n) if n < min || n > max => {
                problems.push(format!("{at}retention.{name}: {n} must be between {min} and {max}"));
                default
            }
            Some(n) => n,
            None => default,
        }
    };
    let observations_days = at_least("observations_days", observations_days, d.observations_days, 1, 36_500);
    let hourly_days = at_least("hourly_days", hourly_days, d.hourly_days, 1, 36_500);
    let records_years = at_least("records_years", records_years, d.records_years, 1, 100);
    let interval_minutes = at_least("interval_minutes", interval_minutes, 60, 1, 7 * 24 * 60);
    if hourly_days < observations_days {
        problems.push(format!(
            "{at}retention.hourly_days: {hourly_days} is less than observations_days ({observations_days}); hourly \
             rollups are made of observations older than observations_days"
        ));
    }
    if records_years < HIPAA_RECORDS_YEARS && records_below_hipaa_minimum != Some(true) {
        problems.push(format!(
            "{at}retention.records_years: {records_years} is below the {HIPAA_RECORDS_YEARS} years HIPAA \
             164.316(b)(2)(i) requires documentation to be kept; set records_below_hipaa_minimum = true in \
             [retention] to keep records for less anyway"
        ));
    }
    RetentionSettings {
        observations_days,
        hourly_days,
        records_years,
        interval: Duration::from_secs(interval_minutes * 60),
    }
}

/// The `[limits]` table (issue 15); every key is optional, see [`LimitSettings`] defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Seconds a client may take to send its whole request body (default 30).
    pub body_timeout_secs: Option<u64>,
    /// Seconds a whole request may take, body and answer included (default 60).
    pub request_timeout_secs: Option<u64>,
    /// Connections open at once, in all (default 16384). Every agent keeps one keep-alive
    /// connection open between its heartbeats, so this must stay above the fleet's size.
    pub max_connections: Option<usize>,
    /// Connections open at once from one address (default 256: a practice's machines behind
    /// one NAT address each keep a connection).
    pub max_connections_per_address: Option<usize>,
    /// Requests an agent may make per minute, sustained (default 120).
    pub agent_requests_per_minute: Option<u32>,
    /// Requests an agent may make at once above that rate (default 60).
    pub agent_request_burst: Option<u32>,
}

/// Validated limits (issue 15).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitSettings {
    pub body_timeout: Duration,
    pub request_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    pub agent_requests_per_minute: u32,
    pub agent_request_burst: u32,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            body_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
            // Every agent keeps one keep-alive connection between heartbeats (30 s apart, under
            // its client's 90 s idle timeout): the limits count machines, not requests. 1024
            // refused the 1,025th agent of a fleet (found by the capacity bench, issue 16).
            max_connections: 16384,
            max_connections_per_address: 256,
            agent_requests_per_minute: 120,
            agent_request_burst: 60,
        }
    }
}

/// Validates the `[limits]` table, adding problems to `problems`.
fn validate_limits(raw: Option<RawLimits>, at: &str, problems: &mut Vec<String>) -> LimitSettings {
    let d = LimitSettings::default();
    let Some(r) = raw else { return d };
    let mut positive = |name: &str, v: Option<u64>, default: u64| -> u64 {
        match v {
            Some(0) => {
                problems.push(format!("{at}limits.{name}: must be at least 1"));
                default
            }
            Some(n) => n,
            None => default,
        }
    };
    let body = positive("body_timeout_secs", r.body_timeout_secs, d.body_timeout.as_secs());
    let request = positive(
        "request_timeout_secs",
        r.request_timeout_secs,
        d.request_timeout.as_secs(),
    );
    let max = positive(
        "max_connections",
        r.max_connections.map(|n| n as u64),
        d.max_connections as u64,
    );
    let per = positive(
        "max_connections_per_address",
        r.max_connections_per_address.map(|n| n as u64),
        d.max_connections_per_address as u64,
    );
    let rate = positive(
        "agent_requests_per_minute",
        r.agent_requests_per_minute.map(u64::from),
        u64::from(d.agent_requests_per_minute),
    );
    let burst = positive(
        "agent_request_burst",
        r.agent_request_burst.map(u64::from),
        u64::from(d.agent_request_burst),
    );
    if per > max {
        problems.push(format!(
            "{at}limits.max_connections_per_address: {per} is more than max_connections ({max})"
        ));
    }
    LimitSettings {
        body_timeout: Duration::from_secs(body),
        request_timeout: Duration::from_secs(request),
        max_connections: max as usize,
        max_connections_per_address: per as usize,
        agent_requests_per_minute: rate.min(u64::from(u32::MAX)) as u32,
        agent_request_burst: burst.min(u64::from(u32::MAX)) as u32,
    }
}

/// The `[tls]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM file with the server certificate chain. Set together with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM file with the server's private key.
    pub key_file: Option<PathBuf>,
    /// Extra DNS names or IP addresses for the generated server certificate.
    #[serde(default)]
    pub subject_alt_names: Vec<String>,
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    pub heartbeat_interval: Duration,
    pub offline_after: Duration,
    pub session_ttl: Duration,
    pub header_timeout: Duration,
    pub max_clock_skew: Duration,
    pub change_stream_capacity: usize,
    pub tls: TlsSettings,
    // --- notification channels (notify) ---
    pub smtp: Option<crate::notify::SmtpSettings>,
    pub channels: Vec<crate::notify::settings::ChannelSettings>,
    // --- Alerting (issue 12) ---
    pub alerting: crate::alerting::config::AlertSettings,
    // --- Security (issue 15) ---
    pub limits: LimitSettings,
    /// The bearer token `/metrics` needs; `None`: `/metrics` is not served.
    pub metrics_token: Option<String>,
    // --- Compliance reports (issue 14) ---
    pub report_schedules: Vec<crate::reports::schedule::Schedule>,
    // --- PostgreSQL backend (issue 17) ---
    /// The PostgreSQL database the store is in; `None`: SQLite in the data dir.
    pub database_url: Option<DatabaseUrl>,
    // --- Retention (issue 17) ---
    pub retention: RetentionSettings,
}

/// Where the server's certificate comes from.
#[derive(Debug, Clone)]
pub enum TlsSettings {
    /// Generated on first start into the data dir (CA + server certificate).
    Generated { subject_alt_names: Vec<String> },
    /// Given by the operator.
    Files { cert_file: PathBuf, key_file: PathBuf },
}

/// Every problem found in the configuration.
#[derive(Debug, thiserror::Error)]
#[error("{}", .problems.join("\n"))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl ConfigError {
    fn one(p: String) -> Self {
        ConfigError { problems: vec![p] }
    }
}

/// Flags that override the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<String>,
}

/// Line (1-based) of a byte offset in `text`.
pub fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|b| *b == b'\n').count() + 1
}

/// Parses the file's text; errors name the file and line.
pub fn parse(text: &str, file: &Path) -> Result<RawConfig, ConfigError> {
    let raw = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start));
        let msg = e.message().trim().to_string();
        ConfigError::one(match line {
            Some(l) => format!("{}:{l}: {msg}", file.display()),
            None => format!("{}: {msg}", file.display()),
        })
    });
    // Alerting (issue 12): lines of the [[route]] and [[silence]] tables, for their errors.
    raw.map(|mut raw: RawConfig| {
        crate::alerting::config::number_lines(text, &mut raw.route, &mut raw.silence);
        // notify: the text, so [smtp] and [[channel]] errors name their lines.
        raw.source_text = text.to_string();
        raw
    })
}

/// Reads and validates the configuration.
pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Settings, ConfigError> {
    let raw = match file {
        Some(f) => {
            let text = std::fs::read_to_string(f)
                .map_err(|e| ConfigError::one(format!("cannot read config file {}: {e}", f.display())))?;
            parse(&text, f)?
        }
        None => RawConfig::default(),
    };
    validate(raw, overrides, file)
}

/// The default data dir: `/var/lib/rounds-collector` for root, else under the user's state dir.
pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("ROUNDS_DATA_DIR") {
        return PathBuf::from(d);
    }
    let is_root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    if is_root {
        return PathBuf::from("/var/lib/rounds-collector");
    }
    match (std::env::var_os("XDG_STATE_HOME"), std::env::var_os("HOME")) {
        (Some(x), _) => PathBuf::from(x).join("rounds-collector"),
        (None, Some(h)) => PathBuf::from(h).join(".local/state/rounds-collector"),
        (None, None) => PathBuf::from("rounds-collector-data"),
    }
}

/// Turns the raw file and flags into settings, collecting every problem.
pub fn validate(raw: RawConfig, overrides: &Overrides, file: Option<&Path>) -> Result<Settings, ConfigError> {
    let RawConfig {
        data_dir,
        listen,
        max_body_bytes,
        heartbeat_interval_secs,
        offline_after_secs,
        session_ttl_secs,
        header_timeout_secs,
        max_clock_skew_secs,
        change_stream_capacity,
        tls,
        smtp,
        channel,
        report_schedule,
        source_text,
        alerting,
        route,
        silence,
        limits,
        metrics_token,
        database_url,
        retention,
    } = raw;
    let at = file.map(|f| format!("{}: ", f.display())).unwrap_or_default();
    let mut problems = Vec::new();
    let listen_text = overrides
        .listen
        .clone()
        .or(listen)
        .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
    let listen = match listen_text.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            problems.push(format!(
                "{at}listen: `{listen_text}` is not an address:port such as 0.0.0.0:8443"
            ));
            None
        }
    };
    let max_body_bytes = max_body_bytes.unwrap_or(rounds_protocol::DEFAULT_MAX_BODY_BYTES);
    if max_body_bytes < 1024 {
        problems.push(format!(
            "{at}max_body_bytes: {max_body_bytes} is too small (at least 1024)"
        ));
    }
    let heartbeat = heartbeat_interval_secs.unwrap_or(30);
    if heartbeat == 0 {
        problems.push(format!("{at}heartbeat_interval_secs: must be at least 1"));
    }
    let offline = offline_after_secs.unwrap_or(heartbeat.saturating_mul(3));
    if heartbeat > 0 && offline <= heartbeat {
        problems.push(format!(
            "{at}offline_after_secs: {offline} must be longer than heartbeat_interval_secs ({heartbeat})"
        ));
    }
    let session_ttl = session_ttl_secs.unwrap_or(12 * 3600);
    if session_ttl == 0 {
        problems.push(format!("{at}session_ttl_secs: must be at least 1"));
    }
    let header_timeout = header_timeout_secs.unwrap_or(10);
    if header_timeout == 0 {
        problems.push(format!("{at}header_timeout_secs: must be at least 1"));
    }
    let max_clock_skew = max_clock_skew_secs.unwrap_or(300);
    if max_clock_skew == 0 {
        problems.push(format!("{at}max_clock_skew_secs: must be at least 1"));
    }
    let change_stream_capacity = change_stream_capacity.unwrap_or(1024);
    if !(1..=1_000_000).contains(&change_stream_capacity) {
        problems.push(format!(
            "{at}change_stream_capacity: {change_stream_capacity} must be between 1 and 1000000"
        ));
    }
    let tls = match tls {
        None => TlsSettings::Generated {
            subject_alt_names: Vec::new(),
        },
        Some(RawTls {
            cert_file,
            key_file,
            subject_alt_names,
        }) => match (cert_file, key_file) {
            (Some(cert_file), Some(key_file)) => TlsSettings::Files { cert_file, key_file },
            (None, None) => TlsSettings::Generated { subject_alt_names },
            _ => {
                problems.push(format!("{at}tls: set both cert_file and key_file, or neither"));
                TlsSettings::Generated { subject_alt_names }
            }
        },
    };
    // --- notification channels (notify) ---
    let locator = crate::notify::settings::Locator {
        file,
        text: &source_text,
    };
    let smtp_present = smtp.is_some();
    let smtp = smtp.and_then(|s| crate::notify::settings::validate_smtp(s, &locator, &mut problems));
    let channels = crate::notify::settings::validate_channels(channel, smtp_present, &locator, &mut problems);
    // Every channel a [[route]] names (or escalates to) must be a configured [[channel]].
    crate::notify::settings::check_route_channels(
        route.iter().map(|r| (r.line, r.channels.iter().chain(&r.escalate_to))),
        &channels,
        &locator,
        &mut problems,
    );
    // Alerting (issue 12).
    let alerting = crate::alerting::config::validate(
        alerting,
        route,
        silence,
        Duration::from_secs(heartbeat),
        Duration::from_secs(offline),
        &at,
        &mut problems,
    );
    let limits = validate_limits(limits, &at, &mut problems);
    if let Some(t) = &metrics_token
        && t.trim().len() < 16
    {
        problems.push(format!("{at}metrics_token: use at least 16 characters"));
    }
    // --- Compliance reports (issue 14) ---
    let report_schedules = crate::reports::schedule::validate(report_schedule, smtp_present, &locator, &mut problems);
    // --- PostgreSQL backend (issue 17): the file's, else ROUNDS_DATABASE_URL (as ROUNDS_DATA_DIR) ---
    let database_url = database_url_setting(database_url, &at, &mut problems);
    // --- Retention (issue 17) ---
    let retention = validate_retention(retention, &at, &mut problems);
    if !problems.is_empty() {
        return Err(ConfigError { problems });
    }
    Ok(Settings {
        data_dir: overrides.data_dir.clone().or(data_dir).unwrap_or_else(default_data_dir),
        listen: listen.unwrap_or_else(|| {
            DEFAULT_LISTEN
                .parse()
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8443)))
        }),
        max_body_bytes,
        heartbeat_interval: Duration::from_secs(heartbeat),
        offline_after: Duration::from_secs(offline),
        session_ttl: Duration::from_secs(session_ttl),
        header_timeout: Duration::from_secs(header_timeout),
        max_clock_skew: Duration::from_secs(max_clock_skew),
        change_stream_capacity,
        tls,
        smtp,
        channels,
        alerting,
        limits,
        metrics_token: metrics_token.map(|t| t.trim().to_string()),
        report_schedules,
        database_url,
        retention,
    })
}

/// The environment variable that selects PostgreSQL when the file does not (issue 17).
pub const DATABASE_URL_ENV: &str = "ROUNDS_DATABASE_URL";

/// `database_url` from the file, else from `ROUNDS_DATABASE_URL`; a problem (with the password
/// hidden) when it is not a PostgreSQL URL.
fn database_url_setting(file: Option<String>, at: &str, problems: &mut Vec<String>) -> Option<DatabaseUrl> {
    let (url, from) = match file {
        Some(u) => (u, format!("{at}database_url")),
        None => match std::env::var(DATABASE_URL_ENV) {
            Ok(u) if !u.trim().is_empty() => (u, DATABASE_URL_ENV.to_string()),
            _ => return None,
        },
    };
    let url = url.trim().to_string();
    let shown = crate::store::postgres::codec::redact_url(&url);
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        problems.push(format!(
            "{from}: `{shown}` is not a PostgreSQL URL (postgres://user@host:5432/database)"
        ));
        return None;
    }
    // The URL, its TLS settings and the CA file they name (`sslrootcert`) are checked here, so
    // that a typo is named with where it was typed before anything connects.
    let checked = crate::store::postgres::tls::Target::parse(&url).and_then(|t| t.connector());
    if let Err(e) = checked {
        problems.push(format!("{from}: `{shown}`: {e}"));
        return None;
    }
    Some(DatabaseUrl(url))
}

/// A PostgreSQL URL that shows (`Debug`, `Display`) with its password replaced by `***`, so
/// that logging the settings never logs the password (issue 17).
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// The URL as given, password included: only for connecting.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DatabaseUrl({})", crate::store::postgres::codec::redact_url(&self.0))
    }
}

impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::store::postgres::codec::redact_url(&self.0))
    }
}

/// Parses a duration such as `90s`, `30m`, `24h`, `7d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 90s, 30m, 24h or 7d"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("`{text}` has an unknown unit; use s, m, h or d")),
    };
    if secs == 0 {
        return Err(format!("`{text}` must be longer than zero"));
    }
    Ok(Duration::from_secs(secs))
}

/// What to tell the operator when `header_timeout_secs` is no longer than the time clients
/// keep an idle connection ([`rounds_protocol::CLIENT_IDLE_SECS`]): then the collector may close
/// a keep-alive connection at the instant an agent sends on it, and that request fails.
pub fn idle_race_warning(settings: &Settings) -> Option<String> {
    let secs = settings.header_timeout.as_secs();
    (secs <= rounds_protocol::CLIENT_IDLE_SECS).then(|| {
        format!(
            "header_timeout_secs = {secs} is not longer than the {} s agents keep an idle connection: \
             an agent's request can meet the collector closing its connection and fail; set it above {}",
            rounds_protocol::CLIENT_IDLE_SECS,
            rounds_protocol::CLIENT_IDLE_SECS
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<Settings, ConfigError> {
        let f = Path::new("collector.toml");
        validate(parse(text, f)?, &Overrides::default(), Some(f))
    }

    #[test]
    fn unknown_key_names_key_file_and_line() {
        let err = load_text("listen = \"127.0.0.1:9000\"\n\n[tls]\ncert_fil = \"x.pem\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("collector.toml:4"), "{err}");
        assert!(err.contains("cert_fil"), "{err}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let err = load_text("listen = \"nowhere\"\nheartbeat_interval_secs = 0\nmax_body_bytes = 5\n").unwrap_err();
        assert_eq!(err.problems.len(), 3, "{err}");
        assert!(err.to_string().contains("listen: `nowhere`"));
    }

    #[test]
    fn defaults_and_overrides() {
        let s = load_text("").unwrap();
        assert_eq!(s.max_body_bytes, 1024 * 1024);
        assert_eq!(s.heartbeat_interval, Duration::from_secs(30));
        assert_eq!(s.offline_after, Duration::from_secs(90));
        let o = Overrides {
            listen: Some("127.0.0.1:0".into()),
            data_dir: Some("/tmp/x".into()),
        };
        let s = validate(parse("listen = \"0.0.0.0:1\"", Path::new("c.toml")).unwrap(), &o, None).unwrap();
        assert_eq!(s.listen.port(), 0);
        assert_eq!(s.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn the_default_header_timeout_outlasts_the_clients_idle_connections() {
        // The header-read timeout also closes idle keep-alive connections; agents and the
        // simulator drop theirs after CLIENT_IDLE_SECS, so that they never send on a
        // connection at the instant the collector closes it (issue 16's transport error).
        let s = load_text("").unwrap();
        assert!(
            s.header_timeout > Duration::from_secs(rounds_protocol::CLIENT_IDLE_SECS),
            "{:?}",
            s.header_timeout
        );
        assert!(idle_race_warning(&s).is_none());
        let s = load_text("header_timeout_secs = 5").unwrap();
        let warning = idle_race_warning(&s).expect("a warning at 5 s");
        assert!(warning.contains("header_timeout_secs = 5"), "{warning}");
    }

    #[test]
    fn half_configured_tls_is_an_error() {
        let err = load_text("[tls]\ncert_file = \"a.pem\"\n").unwrap_err().to_string();
        assert!(err.contains("set both cert_file and key_file"), "{err}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(7 * 86_400));
        assert!(parse_duration("24").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("0h").is_err());
    }
}
