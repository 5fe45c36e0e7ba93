//! The `[smtp]` section and the `[[channel]]` tables of the collector's TOML: raw shapes and
//! their validation. Every problem names the file and line; all are reported at once.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::email::{DEFAULT_SMTP_TIMEOUT, SmtpSettings, SmtpTls};

/// The `[smtp]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSmtp {
    /// Relay host name (also the name its certificate must carry).
    pub host: Option<Spanned<String>>,
    /// Default 587 for `starttls`, 465 for `implicit`, 25 for `none`.
    pub port: Option<Spanned<u16>>,
    /// `starttls` (default, required), `implicit`, or `none` (tests and local relays only).
    pub tls: Option<Spanned<String>>,
    pub username: Option<Spanned<String>>,
    pub password_file: Option<Spanned<PathBuf>>,
    pub from: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<PathBuf>>,
    pub timeout_secs: Option<Spanned<u64>>,
}

/// One `[[channel]]` table as written; which keys are allowed depends on `kind`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChannel {
    pub name: Option<Spanned<String>>,
    pub kind: Option<Spanned<String>>,
    /// email: recipients.
    pub to: Option<Spanned<Vec<String>>>,
    /// webhook, slack, teams: where to POST.
    pub url: Option<Spanned<String>>,
    /// webhook: file holding the HMAC key.
    pub secret_file: Option<Spanned<PathBuf>>,
    /// pagerduty: file holding the integration's routing key.
    pub routing_key_file: Option<Spanned<PathBuf>>,
    /// pagerduty: the Events API v2 URL (default [`PAGERDUTY_EVENTS_URL`]); for tests.
    pub events_url: Option<Spanned<String>>,
    /// webhook, slack, teams, pagerduty: extra CA (PEM) for a private receiver.
    pub ca_file: Option<Spanned<PathBuf>>,
    /// webhook, slack, teams, pagerduty: request timeout (default 10 s).
    pub timeout_secs: Option<Spanned<u64>>,
}

/// PagerDuty's Events API v2 endpoint.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// Default timeout of one HTTP delivery.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// A validated channel.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelSettings {
    pub name: String,
    pub kind: ChannelKind,
}

/// What a channel is and where it delivers.
#[derive(Debug, Clone, PartialEq)]
pub enum ChannelKind {
    Email {
        to: Vec<String>,
    },
    Webhook {
        http: HttpTarget,
        secret_file: Option<PathBuf>,
    },
    Slack {
        http: HttpTarget,
    },
    Teams {
        http: HttpTarget,
    },
    PagerDuty {
        http: HttpTarget,
        routing_key_file: PathBuf,
    },
}

impl ChannelKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ChannelKind::Email { .. } => "email",
            ChannelKind::Webhook { .. } => "webhook",
            ChannelKind::Slack { .. } => "slack",
            ChannelKind::Teams { .. } => "teams",
            ChannelKind::PagerDuty { .. } => "pagerduty",
        }
    }
}

/// An HTTP destination.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpTarget {
    pub url: String,
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
}

/// The kinds a channel may have.
pub const KINDS: &[&str] = &["email", "webhook", "slack", "teams", "pagerduty"];

/// Turns byte spans into `file:line: ` prefixes.
pub struct Locator<'a> {
    pub file: Option<&'a Path>,
    pub text: &'a str,
}

impl Locator<'_> {
    /// `file:line: ` for a span (or `file: ` without a text or span).
    pub fn at(&self, span: Option<std::ops::Range<usize>>) -> String {
        match (self.file, span) {
            (Some(f), Some(s)) if !self.text.is_empty() => {
                format!("{}:{}: ", f.display(), crate::config::line_of(self.text, s.start))
            }
            (Some(f), _) => format!("{}: ", f.display()),
            (None, Some(s)) if !self.text.is_empty() => {
                format!("line {}: ", crate::config::line_of(self.text, s.start))
            }
            (None, _) => String::new(),
        }
    }
}

/// Checks a readable file at config time (never reads a secret into a message).
fn check_readable(path: &Path, what: &str) -> Result<(), String> {
    std::fs::File::open(path)
        .map(drop)
        .map_err(|e| format!("{what} {}: cannot be read: {e}", path.display()))
}

/// Checks an optional CA file parses as PEM certificates.
fn check_ca(ca: Option<&Spanned<PathBuf>>, key: &str, loc: &Locator<'_>, problems: &mut Vec<String>) {
    if let Some(ca) = ca
        && let Err(e) = super::roots::read_pem_certs(ca.get_ref())
    {
        problems.push(format!("{}{key}: {e}", loc.at(Some(ca.span()))));
    }
}

/// An optional timeout in whole seconds, at least 1.
fn timeout_of(
    secs: Option<&Spanned<u64>>,
    key: &str,
    default: Duration,
    loc: &Locator<'_>,
    problems: &mut Vec<String>,
) -> Duration {
    match secs {
        Some(t) if *t.get_ref() == 0 => {
            problems.push(format!("{}{key}: must be at least 1", loc.at(Some(t.span()))));
            default
        }
        Some(t) => Duration::from_secs(*t.get_ref()),
        None => default,
    }
}

/// Validates `[smtp]`.
pub fn validate_smtp(raw: Spanned<RawSmtp>, loc: &Locator<'_>, problems: &mut Vec<String>) -> Option<SmtpSettings> {
    let table = raw.span();
    let raw = raw.into_inner();
    let before = problems.len();
    let tls = match &raw.tls {
        None => SmtpTls::StartTls,
        Some(t) => match t.get_ref().as_str() {
            "starttls" => SmtpTls::StartTls,
            "implicit" => SmtpTls::Implicit,
            "none" => SmtpTls::None,
            other => {
                problems.push(format!(
                    "{}smtp.tls: `{other}` is not one of starttls, implicit, none (none is for tests and local relays only)",
                    loc.at(Some(t.span()))
                ));
                SmtpTls::StartTls
            }
        },
    };
    let host = match &raw.host {
        Some(h) if !h.get_ref().trim().is_empty() => h.get_ref().trim().to_string(),
        Some(h) => {
            problems.push(format!("{}smtp.host: must not be empty", loc.at(Some(h.span()))));
            String::new()
        }
        None => {
            problems.push(format!("{}smtp: `host` is missing", loc.at(Some(table.clone()))));
            String::new()
        }
    };
    let port = match &raw.port {
        Some(p) if *p.get_ref() == 0 => {
            problems.push(format!(
                "{}smtp.port: must be between 1 and 65535",
                loc.at(Some(p.span()))
            ));
            0
        }
        Some(p) => *p.get_ref(),
        None => tls.default_port(),
    };
    let from = match &raw.from {
        Some(f) => {
            if let Err(e) = f.get_ref().parse::<lettre::message::Mailbox>() {
                problems.push(format!(
                    "{}smtp.from: `{}` is not an address such as Rounds <rounds@example.org>: {e}",
                    loc.at(Some(f.span())),
                    f.get_ref()
                ));
            }
            f.get_ref().clone()
        }
        None => {
            problems.push(format!("{}smtp: `from` is missing", loc.at(Some(table.clone()))));
            String::new()
        }
    };
    match (&raw.username, &raw.password_file) {
        (Some(_), Some(p)) => {
            if let Err(e) = check_readable(p.get_ref(), "smtp.password_file") {
                problems.push(format!("{}{e}", loc.at(Some(p.span()))));
            }
        }
        (None, None) => {}
        (Some(u), None) => problems.push(format!(
            "{}smtp: `username` is set without `password_file`; set both or neither",
            loc.at(Some(u.span()))
        )),
        (None, Some(p)) => problems.push(format!(
            "{}smtp: `password_file` is set without `username`; set both or neither",
            loc.at(Some(p.span()))
        )),
    }
    check_ca(raw.ca_file.as_ref(), "smtp.ca_file", loc, problems);
    let timeout = timeout_of(
        raw.timeout_secs.as_ref(),
        "smtp.timeout_secs",
        DEFAULT_SMTP_TIMEOUT,
        loc,
        problems,
    );
    if problems.len() > before {
        return None;
    }
    Some(SmtpSettings {
        host,
        port,
        tls,
        username: raw.username.map(Spanned::into_inner),
        password_file: raw.password_file.map(Spanned::into_inner),
        from,
        ca_file: raw.ca_file.map(Spanned::into_inner),
        timeout,
    })
}

/// Is `url` https, or http to this machine (tests and local receivers)?
pub fn check_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    let local = matches!(
        parsed.host_str(),
        Some("localhost") | Some("127.0.0.1") | Some("[::1]") | Some("::1")
    );
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if local => Ok(()),
        "http" => Err(format!(
            "`{url}` is not https (plain http is accepted only for localhost and 127.0.0.1, for tests)"
        )),
        other => Err(format!("`{url}`: scheme `{other}` is not https")),
    }
}

/// Validates every `[[channel]]`; `smtp_present` says whether `[smtp]` is configured.
pub fn validate_channels(
    raw: Vec<Spanned<RawChannel>>,
    smtp_present: bool,
    loc: &Locator<'_>,
    problems: &mut Vec<String>,
) -> Vec<ChannelSettings> {
    let mut out: Vec<ChannelSettings> = Vec::new();
    let mut seen: Vec<(String, usize)> = Vec::new();
    for (index, table) in raw.into_iter().enumerate() {
        let table_span = table.span();
        let c = table.into_inner();
        let before = problems.len();
        let at_table = loc.at(Some(table_span.clone()));
        let label = match &c.name {
            Some(n) => format!("channel `{}`", n.get_ref()),
            None => format!("channel #{}", index + 1),
        };
        let name = match &c.name {
            None => {
                problems.push(format!("{at_table}{label}: `name` is missing"));
                None
            }
            Some(n) => {
                let v = n.get_ref().trim().to_string();
                let at = loc.at(Some(n.span()));
                if v.is_empty() || !v.chars().all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch)) {
                    problems.push(format!(
                        "{at}channel name `{v}` must be letters, digits, `-`, `_` or `.` (it is typed on the command line)"
                    ));
                } else if let Some((_, first)) = seen.iter().find(|(s, _)| *s == v) {
                    problems.push(format!("{at}channel name `{v}` is used twice (first at line {first})"));
                } else {
                    seen.push((v.clone(), crate::config::line_of(loc.text, n.span().start)));
                }
                Some(v)
            }
        };
        let Some(kind) = &c.kind else {
            problems.push(format!(
                "{at_table}{label}: `kind` is missing (one of {})",
                KINDS.join(", ")
            ));
            continue;
        };
        let kind_at = loc.at(Some(kind.span()));
        let kind_name = kind.get_ref().as_str();
        if !KINDS.contains(&kind_name) {
            problems.push(format!(
                "{kind_at}{label}: kind `{kind_name}` is not one of {}",
                KINDS.join(", ")
            ));
            continue;
        }
        // Keys that do not belong to this kind.
        let allowed: &[&str] = match kind_name {
            "email" => &["to"],
            "webhook" => &["url", "secret_file", "ca_file", "timeout_secs"],
            "slack" | "teams" => &["url", "ca_file", "timeout_secs"],
            _ => &["routing_key_file", "events_url", "ca_file", "timeout_secs"],
        };
        let present: [(&str, Option<std::ops::Range<usize>>); 7] = [
            ("to", c.to.as_ref().map(Spanned::span)),
            ("url", c.url.as_ref().map(Spanned::span)),
            ("secret_file", c.secret_file.as_ref().map(Spanned::span)),
            ("routing_key_file", c.routing_key_file.as_ref().map(Spanned::span)),
            ("events_url", c.events_url.as_ref().map(Spanned::span)),
            ("ca_file", c.ca_file.as_ref().map(Spanned::span)),
            ("timeout_secs", c.timeout_secs.as_ref().map(Spanned::span)),
        ];
        for (key, span) in present {
            if let Some(span) = span
                && !allowed.contains(&key)
            {
                problems.push(format!(
                    "{}{label}: `{key}` is not a setting of a {kind_name} channel (it takes {})",
                    loc.at(Some(span)),
                    allowed.join(", ")
                ));
            }
        }
        let http = |url: Option<&Spanned<String>>, default: Option<&str>, key: &str, problems: &mut Vec<String>| {
            let url = match (url, default) {
                (Some(u), _) => {
                    if let Err(e) = check_url(u.get_ref()) {
                        problems.push(format!("{}{label}: {key}: {e}", loc.at(Some(u.span()))));
                    }
                    u.get_ref().clone()
                }
                (None, Some(d)) => d.to_string(),
                (None, None) => {
                    problems.push(format!("{at_table}{label}: `{key}` is missing"));
                    String::new()
                }
            };
            check_ca(c.ca_file.as_ref(), &format!("{label}: ca_file"), loc, problems);
            let timeout = timeout_of(
                c.timeout_secs.as_ref(),
                &format!("{label}: timeout_secs"),
                DEFAULT_HTTP_TIMEOUT,
                loc,
                problems,
            );
            HttpTarget {
                url,
                ca_file: c.ca_file.as_ref().map(|s| s.get_ref().clone()),
                timeout,
            }
        };
        let secret = |file: Option<&Spanned<PathBuf>>, key: &str, problems: &mut Vec<String>| -> Option<PathBuf> {
            let f = file?;
            if let Err(e) = check_readable(f.get_ref(), key) {
                problems.push(format!("{}{label}: {e}", loc.at(Some(f.span()))));
            }
            Some(f.get_ref().clone())
        };
        let kind = match kind_name {
            "email" => {
                if !smtp_present {
                    problems.push(format!(
                        "{kind_at}{label}: an email channel needs the [smtp] section (host, from)"
                    ));
                }
                match &c.to {
                    None => {
                        problems.push(format!("{at_table}{label}: `to` is missing (a list of addresses)"));
                        ChannelKind::Email { to: Vec::new() }
                    }
                    Some(to) => {
                        if to.get_ref().is_empty() {
                            problems.push(format!("{}{label}: `to` is empty", loc.at(Some(to.span()))));
                        }
                        for addr in to.get_ref() {
                            if let Err(e) = addr.parse::<lettre::Address>() {
                                problems.push(format!(
                                    "{}{label}: `{addr}` is not an e-mail address: {e}",
                                    loc.at(Some(to.span()))
                                ));
                            }
                        }
                        ChannelKind::Email {
                            to: to.get_ref().clone(),
                        }
                    }
                }
            }
            "webhook" => ChannelKind::Webhook {
                http: http(c.url.as_ref(), None, "url", problems),
                secret_file: secret(c.secret_file.as_ref(), "secret_file", problems),
            },
            "slack" => ChannelKind::Slack {
                http: http(c.url.as_ref(), None, "url", problems),
            },
            "teams" => ChannelKind::Teams {
                http: http(c.url.as_ref(), None, "url", problems),
            },
            _ => {
                let http = http(
                    c.events_url.as_ref(),
                    Some(PAGERDUTY_EVENTS_URL),
                    "events_url",
                    problems,
                );
                let key = secret(c.routing_key_file.as_ref(), "routing_key_file", problems);
                if key.is_none() {
                    problems.push(format!("{at_table}{label}: `routing_key_file` is missing"));
                }
                ChannelKind::PagerDuty {
                    http,
                    routing_key_file: key.unwrap_or_default(),
                }
            }
        };
        if problems.len() == before
            && let Some(name) = name
        {
            out.push(ChannelSettings { name, kind });
        }
    }
    out
}
