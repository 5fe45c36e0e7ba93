//! `[[endpoint]]` and `[probes]`: the EHR and other endpoints the agent probes, and the probe
//! defaults and network baseline (owned by the probes).
//!
//! ```toml
//! [probes]
//! interval_secs = 30          # default for every endpoint, 5 to 86400
//! timeout_secs = 10
//! summary_interval_secs = 300 # compact summary per endpoint, 5 to 86400
//! baseline = true             # gateway, DNS resolvers, reference endpoints
//! references = ["https://status.example.net/"]
//!
//! [[endpoint]]
//! name = "EHR"
//! kind = "fhir"               # https | fhir | tcp | dns
//! url = "https://ehr.example.com/fhir/r4"
//! ca_file = "/etc/rounds/ehr-ca.pem"   # trust this CA instead of the system roots
//!
//! [[endpoint]]
//! name = "Portal"
//! kind = "https"
//! url = "https://portal.example.com/login"
//! method = "HEAD"             # GET (default) or HEAD
//! expect_status = [200, 399]  # inclusive range; default 200 to 399
//! body_contains = "Sign in"   # GET only: the first 64 KiB must contain this
//!
//! [[endpoint]]
//! name = "EHR DNS"
//! kind = "dns"
//! target = "ehr.example.com"
//! expect_address = "203.0.113.10"
//! ```

use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::Problem;

/// Default seconds between probes of one endpoint.
pub const DEFAULT_PROBE_INTERVAL_SECS: u64 = 30;
/// Shortest allowed probe interval.
pub const MIN_PROBE_INTERVAL_SECS: u64 = 5;
/// Default probe timeout.
pub const DEFAULT_PROBE_TIMEOUT_SECS: u64 = 10;
/// Default seconds between probe summaries.
pub const DEFAULT_SUMMARY_INTERVAL_SECS: u64 = 300;
/// Shortest allowed summary interval.
pub const MIN_SUMMARY_INTERVAL_SECS: u64 = 5;
/// HTTP statuses that count as up when `expect_status` is not given.
pub const DEFAULT_EXPECT_STATUS: RangeInclusive<u16> = 200..=399;

/// One endpoint as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEndpoint {
    /// Name of the endpoint, unique among `[[endpoint]]` tables; the subject of its observations.
    pub name: Spanned<String>,
    /// `https`, `fhir`, `tcp` or `dns`.
    pub kind: Spanned<String>,
    /// URL (https, fhir: the FHIR base, `/metadata` is appended).
    #[serde(default)]
    pub url: Option<Spanned<String>>,
    /// `host:port` (tcp) or a DNS name (dns).
    #[serde(default)]
    pub target: Option<Spanned<String>>,
    /// PEM file of a CA to trust for this endpoint instead of the system roots.
    #[serde(default)]
    pub ca_file: Option<Spanned<String>>,
    /// Seconds between probes; default `[probes] interval_secs`.
    #[serde(default)]
    pub interval_secs: Option<Spanned<i64>>,
    /// Seconds a probe may take; default `[probes] timeout_secs`.
    #[serde(default)]
    pub timeout_secs: Option<Spanned<i64>>,
    /// `GET` (default) or `HEAD` (https only).
    #[serde(default)]
    pub method: Option<Spanned<String>>,
    /// Inclusive range of HTTP statuses that count as up, `[min, max]` (https only); default
    /// `[200, 399]`.
    #[serde(default)]
    pub expect_status: Option<Spanned<Vec<i64>>>,
    /// Text the start of the response body must contain (https with GET only).
    #[serde(default)]
    pub body_contains: Option<Spanned<String>>,
    /// An IP address the name must resolve to (dns only).
    #[serde(default)]
    pub expect_address: Option<Spanned<String>>,
}

/// `[probes]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProbes {
    /// Default seconds between probes, 5 to 86400; default 30.
    #[serde(default)]
    pub interval_secs: Option<Spanned<i64>>,
    /// Default probe timeout in seconds, 1 to 300; default 10.
    #[serde(default)]
    pub timeout_secs: Option<Spanned<i64>>,
    /// Seconds between compact summaries per endpoint, 5 to 86400; default 300.
    #[serde(default)]
    pub summary_interval_secs: Option<Spanned<i64>>,
    /// Probe the network baseline (gateway, resolvers, references); default true.
    #[serde(default)]
    pub baseline: Option<bool>,
    /// Reference endpoints outside the practice (URLs), besides the collector.
    #[serde(default)]
    pub references: Vec<Spanned<String>>,
}

/// What kind of probe an endpoint gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointKind {
    Https,
    Fhir,
    Tcp,
    Dns,
}

impl EndpointKind {
    /// Every kind with its name in the file.
    pub const ALL: &[(EndpointKind, &str)] = &[
        (EndpointKind::Https, "https"),
        (EndpointKind::Fhir, "fhir"),
        (EndpointKind::Tcp, "tcp"),
        (EndpointKind::Dns, "dns"),
    ];

    pub fn as_str(self) -> &'static str {
        Self::ALL.iter().find(|(k, _)| *k == self).map_or("", |(_, n)| n)
    }
}

/// The HTTP request method of an `https` probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    Get,
    Head,
}

impl HttpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Head => "HEAD",
        }
    }
}

/// A validated endpoint.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub name: String,
    pub kind: EndpointKind,
    /// URL (https, fhir), `host:port` (tcp) or DNS name (dns).
    pub target: String,
    pub ca_file: Option<PathBuf>,
    pub interval: Duration,
    pub timeout: Duration,
    /// Request method (https; fhir always GETs `/metadata`).
    pub method: HttpMethod,
    /// Statuses that count as up (https; fhir needs 200).
    pub expect_status: RangeInclusive<u16>,
    /// Text the body must contain (https GET).
    pub body_contains: Option<String>,
    /// Address the name must resolve to (dns).
    pub expect_address: Option<IpAddr>,
}

impl Endpoint {
    /// An endpoint of `kind` at `target` with the defaults of `settings` (the network baseline
    /// builds its reference endpoints this way).
    pub fn new(
        name: impl Into<String>,
        kind: EndpointKind,
        target: impl Into<String>,
        settings: &ProbeSettings,
    ) -> Self {
        Endpoint {
            name: name.into(),
            kind,
            target: target.into(),
            ca_file: None,
            interval: settings.interval,
            timeout: settings.timeout,
            method: HttpMethod::Get,
            expect_status: DEFAULT_EXPECT_STATUS,
            body_contains: None,
            expect_address: None,
        }
    }
}

/// Validated `[probes]`.
#[derive(Debug, Clone)]
pub struct ProbeSettings {
    pub interval: Duration,
    pub timeout: Duration,
    pub summary_interval: Duration,
    pub baseline: bool,
    pub references: Vec<String>,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        ProbeSettings {
            interval: Duration::from_secs(DEFAULT_PROBE_INTERVAL_SECS),
            timeout: Duration::from_secs(DEFAULT_PROBE_TIMEOUT_SECS),
            summary_interval: Duration::from_secs(DEFAULT_SUMMARY_INTERVAL_SECS),
            baseline: true,
            references: Vec::new(),
        }
    }
}

pub(crate) fn validate_probes(
    raw: Option<Spanned<RawProbes>>,
    text: &str,
    problems: &mut Vec<Problem>,
) -> ProbeSettings {
    let mut s = ProbeSettings::default();
    let Some(raw) = raw else { return s };
    let RawProbes {
        interval_secs,
        timeout_secs,
        summary_interval_secs,
        baseline,
        references,
    } = raw.into_inner();
    if let Some(v) = interval_secs
        && let Some(d) = crate::secs_in(
            &v,
            MIN_PROBE_INTERVAL_SECS..=86_400,
            "probes.interval_secs",
            text,
            problems,
        )
    {
        s.interval = d;
    }
    if let Some(v) = timeout_secs
        && let Some(d) = crate::secs_in(&v, 1..=300, "probes.timeout_secs", text, problems)
    {
        s.timeout = d;
    }
    if let Some(v) = summary_interval_secs
        && let Some(d) = crate::secs_in(
            &v,
            MIN_SUMMARY_INTERVAL_SECS..=86_400,
            "probes.summary_interval_secs",
            text,
            problems,
        )
    {
        s.summary_interval = d;
    }
    if let Some(b) = baseline {
        s.baseline = b;
    }
    for r in references {
        if !r.get_ref().starts_with("https://") {
            problems.push(Problem::at(
                text,
                r.span().start,
                "probes.references",
                format!("`{}` must be an https:// URL", r.get_ref()),
            ));
        } else {
            s.references.push(r.into_inner());
        }
    }
    s
}

/// Validates every `[[endpoint]]` table; problems go to `problems`.
pub(crate) fn validate(
    raw: Vec<Spanned<RawEndpoint>>,
    defaults: &ProbeSettings,
    text: &str,
    problems: &mut Vec<Problem>,
) -> Vec<Endpoint> {
    crate::duplicate_names(
        raw.iter()
            .map(|e| (e.get_ref().name.get_ref().as_str(), e.get_ref().name.span().start)),
        "endpoint",
        text,
        problems,
    );
    let mut out = Vec::new();
    for table in raw {
        let at = table.span().start;
        let RawEndpoint {
            name,
            kind,
            url,
            target,
            ca_file,
            interval_secs,
            timeout_secs,
            method,
            expect_status,
            body_contains,
            expect_address,
        } = table.into_inner();
        let before = problems.len();
        if name.get_ref().trim().is_empty() {
            problems.push(Problem::at(
                text,
                name.span().start,
                "endpoint.name",
                "must not be empty",
            ));
        }
        let Some(kind_v) = EndpointKind::ALL
            .iter()
            .find(|(_, n)| n == kind.get_ref())
            .map(|(k, _)| *k)
        else {
            let known: Vec<&str> = EndpointKind::ALL.iter().map(|(_, n)| *n).collect();
            problems.push(Problem::at(
                text,
                kind.span().start,
                "endpoint.kind",
                format!(
                    "unknown endpoint kind `{}`; known kinds: {}",
                    kind.get_ref(),
                    known.join(", ")
                ),
            ));
            continue;
        };
        let target = match (kind_v, url, target) {
            (EndpointKind::Https | EndpointKind::Fhir, Some(u), None) => {
                if !u.get_ref().starts_with("https://") && !u.get_ref().starts_with("http://") {
                    problems.push(Problem::at(
                        text,
                        u.span().start,
                        "endpoint.url",
                        format!("`{}` is not an http:// or https:// URL", u.get_ref()),
                    ));
                }
                u.into_inner()
            }
            (EndpointKind::Tcp | EndpointKind::Dns, None, Some(t)) => {
                if kind_v == EndpointKind::Tcp
                    && !t
                        .get_ref()
                        .rsplit_once(':')
                        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
                {
                    problems.push(Problem::at(
                        text,
                        t.span().start,
                        "endpoint.target",
                        format!("`{}` is not host:port", t.get_ref()),
                    ));
                }
                t.into_inner()
            }
            (k, _, _) => {
                let (want, other) = match k {
                    EndpointKind::Https | EndpointKind::Fhir => ("url", "target"),
                    EndpointKind::Tcp | EndpointKind::Dns => ("target", "url"),
                };
                problems.push(Problem::at(
                    text,
                    at,
                    format!("endpoint.{want}"),
                    format!("a `{}` endpoint needs `{want}` (and no `{other}`)", k.as_str()),
                ));
                continue;
            }
        };
        let interval = interval_secs
            .and_then(|v| {
                crate::secs_in(
                    &v,
                    MIN_PROBE_INTERVAL_SECS..=86_400,
                    "endpoint.interval_secs",
                    text,
                    problems,
                )
            })
            .unwrap_or(defaults.interval);
        let timeout = timeout_secs
            .and_then(|v| crate::secs_in(&v, 1..=300, "endpoint.timeout_secs", text, problems))
            .unwrap_or(defaults.timeout);
        let only = |present: bool, key: &str, allowed: &[EndpointKind], problems: &mut Vec<Problem>| {
            if present && !allowed.contains(&kind_v) {
                let names: Vec<&str> = allowed.iter().map(|k| k.as_str()).collect();
                problems.push(Problem::at(
                    text,
                    at,
                    format!("endpoint.{key}"),
                    format!("`{key}` applies only to {} endpoints", names.join(", ")),
                ));
            }
        };
        only(method.is_some(), "method", &[EndpointKind::Https], problems);
        only(
            expect_status.is_some(),
            "expect_status",
            &[EndpointKind::Https],
            problems,
        );
        only(
            body_contains.is_some(),
            "body_contains",
            &[EndpointKind::Https],
            problems,
        );
        only(
            expect_address.is_some(),
            "expect_address",
            &[EndpointKind::Dns],
            problems,
        );
        only(
            ca_file.is_some(),
            "ca_file",
            &[EndpointKind::Https, EndpointKind::Fhir],
            problems,
        );
        let method = match method {
            None => HttpMethod::Get,
            Some(m) => match m.get_ref().to_ascii_uppercase().as_str() {
                "GET" => HttpMethod::Get,
                "HEAD" => HttpMethod::Head,
                other => {
                    problems.push(Problem::at(
                        text,
                        m.span().start,
                        "endpoint.method",
                        format!("`{other}` is not GET or HEAD"),
                    ));
                    HttpMethod::Get
                }
            },
        };
        if method == HttpMethod::Head
            && let Some(b) = &body_contains
        {
            problems.push(Problem::at(
                text,
                b.span().start,
                "endpoint.body_contains",
                "a HEAD request has no body to search; use GET",
            ));
        }
        let expect_status = match expect_status {
            None => DEFAULT_EXPECT_STATUS,
            Some(r) => match r.get_ref().as_slice() {
                [lo, hi] if (100..=599).contains(lo) && (100..=599).contains(hi) && lo <= hi => {
                    (*lo as u16)..=(*hi as u16)
                }
                _ => {
                    problems.push(Problem::at(
                        text,
                        r.span().start,
                        "endpoint.expect_status",
                        "must be [min, max] with 100 <= min <= max <= 599",
                    ));
                    DEFAULT_EXPECT_STATUS
                }
            },
        };
        let expect_address = expect_address.and_then(|a| match a.get_ref().parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                problems.push(Problem::at(
                    text,
                    a.span().start,
                    "endpoint.expect_address",
                    format!("`{}` is not an IP address", a.get_ref()),
                ));
                None
            }
        });
        if problems.len() == before {
            out.push(Endpoint {
                name: name.into_inner(),
                kind: kind_v,
                target,
                ca_file: ca_file.map(|f| PathBuf::from(f.into_inner())),
                interval,
                timeout,
                method,
                expect_status,
                body_contains: body_contains.map(Spanned::into_inner),
                expect_address,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn https_options_are_read() {
        let text = "[[endpoint]]\nname = \"Portal\"\nkind = \"https\"\nurl = \"https://p.example/\"\nmethod = \"head\"\nexpect_status = [200, 204]\n\n[[endpoint]]\nname = \"N\"\nkind = \"dns\"\ntarget = \"p.example\"\nexpect_address = \"192.0.2.1\"\n";
        let c = crate::parse(text, Path::new("agent.toml")).unwrap();
        assert_eq!(c.endpoints[0].method, HttpMethod::Head);
        assert_eq!(c.endpoints[0].expect_status, 200..=204);
        assert_eq!(c.endpoints[1].expect_address, Some("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn misplaced_and_bad_options_name_key_and_line() {
        let text = "[[endpoint]]\nname = \"Db\"\nkind = \"tcp\"\ntarget = \"db:5432\"\nbody_contains = \"x\"\n\n[[endpoint]]\nname = \"P\"\nkind = \"https\"\nurl = \"https://p.example/\"\nexpect_status = [500, 200]\n";
        let err = crate::parse(text, Path::new("agent.toml")).unwrap_err();
        let keys: Vec<(Option<&str>, Option<usize>)> =
            err.problems().iter().map(|p| (p.key.as_deref(), p.line)).collect();
        assert_eq!(
            keys,
            [
                (Some("endpoint.body_contains"), Some(1)),
                (Some("endpoint.expect_status"), Some(11))
            ],
            "{err}"
        );
    }
}
