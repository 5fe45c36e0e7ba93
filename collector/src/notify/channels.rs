//! The configured channels: one [`Notifier`] that delivers to any of them by name.
//!
//! HTTP goes through reqwest with rustls on ring, trusting the system CA bundle plus a
//! channel's `ca_file` ([`super::roots`]), with the channel's request timeout and no redirects
//! (a signed body is not forwarded elsewhere). Error messages name the channel, its kind and
//! the destination's host only: Slack and Teams webhook URLs carry their secret in the path.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};

use super::email::{SmtpSettings, send_mail};
use super::settings::{ChannelKind, ChannelSettings, HttpTarget};
use super::{DeliveryError, Notification, NotificationKind, Notifier, render};
use crate::clock::{Clock, SystemClock};

/// The webhook's timestamp header: Unix seconds of the attempt.
pub const TIMESTAMP_HEADER: &str = "X-Rounds-Timestamp";
/// The webhook's signature header: `sha256=<hex HMAC-SHA256 over "<timestamp>.<body>">`.
pub const SIGNATURE_HEADER: &str = "X-Rounds-Signature";

/// Every configured channel, ready to deliver.
pub struct Channels {
    smtp: Option<SmtpSettings>,
    channels: Vec<Channel>,
    clock: Arc<dyn Clock>,
}

struct Channel {
    settings: ChannelSettings,
    http: Option<reqwest::Client>,
}

impl std::fmt::Debug for Channels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names and kinds only: settings hold file paths to secrets and secret-bearing URLs.
        f.debug_struct("Channels")
            .field(
                "channels",
                &self
                    .channels
                    .iter()
                    .map(|c| format!("{} ({})", c.settings.name, c.settings.kind.as_str()))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn http_client(target: &HttpTarget) -> Result<reqwest::Client, String> {
    let tls = super::roots::client_config(target.ca_file.as_deref())?;
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(target.timeout)
        .connect_timeout(target.timeout.min(Duration::from_secs(5)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("rounds-collector/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {}", super::email::error_chain(&e)))
}

impl Channels {
    /// Builds every channel's HTTP client (loading its trust anchors); an error names the channel.
    pub fn new(smtp: Option<SmtpSettings>, settings: Vec<ChannelSettings>) -> Result<Self, String> {
        Self::with_clock(smtp, settings, Arc::new(SystemClock))
    }

    /// As [`Channels::new`], with the clock that dates webhook signatures.
    pub fn with_clock(
        smtp: Option<SmtpSettings>,
        settings: Vec<ChannelSettings>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, String> {
        let mut channels = Vec::with_capacity(settings.len());
        for s in settings {
            let http = match &s.kind {
                ChannelKind::Email { .. } => None,
                ChannelKind::Webhook { http, .. }
                | ChannelKind::Slack { http }
                | ChannelKind::Teams { http }
                | ChannelKind::PagerDuty { http, .. } => {
                    Some(http_client(http).map_err(|e| format!("channel `{}`: {e}", s.name))?)
                }
            };
            channels.push(Channel { settings: s, http });
        }
        Ok(Channels { smtp, channels, clock })
    }

    /// From the validated collector settings.
    pub fn from_settings(settings: &crate::config::Settings) -> Result<Self, String> {
        Self::new(settings.smtp.clone(), settings.channels.clone())
    }

    fn get(&self, name: &str) -> Option<&Channel> {
        self.channels.iter().find(|c| c.settings.name == name)
    }

    /// The error for a name that is not configured, listing the configured ones.
    pub fn unknown_channel(&self, name: &str) -> DeliveryError {
        let names = self.channel_names();
        DeliveryError {
            message: if names.is_empty() {
                format!("no channel named `{name}`: no [[channel]] is configured")
            } else {
                format!("no channel named `{name}`; configured channels: {}", names.join(", "))
            },
            retry_after: None,
            permanent: true,
        }
    }
}

/// Reads a secret file (trailing newline dropped); the error names the file only.
fn read_secret(path: &std::path::Path, what: &str, channel: &str) -> Result<String, DeliveryError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim_end_matches(['\r', '\n']).to_string())
        .map_err(|e| DeliveryError {
            message: format!("channel `{channel}`: cannot read {what} {}: {e}", path.display()),
            retry_after: None,
            permanent: false,
        })
}

/// `sha256=<hex>` over `"<timestamp>.<body>"` with `secret`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("sha256={}", hex::encode(ctx.sign().as_ref()))
}

/// Parses `Retry-After`: delay seconds or an HTTP date (relative to `now`).
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(v).ok()?.with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// Classifies an HTTP answer: 2xx delivered; 408, 429 and 5xx retryable (with `Retry-After`);
/// any other status permanent.
pub fn classify(
    status: reqwest::StatusCode,
    headers: &HeaderMap,
    body: &str,
    now: DateTime<Utc>,
    what: &str,
) -> Result<(), DeliveryError> {
    if status.is_success() {
        return Ok(());
    }
    let retry_after = headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, now));
    let code = status.as_u16();
    let permanent = !(code == 408 || code == 429 || status.is_server_error());
    let snippet: String = body.chars().filter(|c| !c.is_control()).take(200).collect();
    Err(DeliveryError {
        message: format!(
            "{what} answered {status}{}{}",
            if snippet.is_empty() { "" } else { ": " },
            snippet
        ),
        retry_after,
        permanent,
    })
}

impl Channel {
    fn what(&self, url: &str) -> String {
        let host = reqwest::Url::parse(url)
            .ok()
            .and_then(|u| {
                u.host_str()
                    .map(|h| format!("{h}{}", u.port().map(|p| format!(":{p}")).unwrap_or_default()))
            })
            .unwrap_or_else(|| "?".into());
        format!(
            "channel `{}` ({}) at {host}",
            self.settings.name,
            self.settings.kind.as_str()
        )
    }

    async fn post(&self, url: &str, body: Vec<u8>, extra: HeaderMap, clock: &dyn Clock) -> Result<(), DeliveryError> {
        let what = self.what(url);
        let Some(client) = &self.http else {
            return Err(DeliveryError {
                message: format!("{what}: no HTTP client"),
                retry_after: None,
                permanent: true,
            });
        };
        let response = client
            .post(url)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .headers(extra)
            .body(body)
            .send()
            .await
            .map_err(|e| DeliveryError {
                // `without_url`: the URL of a Slack or Teams webhook is its secret.
                message: format!("{what}: {}", super::email::error_chain(&e.without_url())),
                retry_after: None,
                permanent: false,
            })?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        classify(status, &headers, &text, clock.now(), &what)
    }
}

fn json_bytes(v: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

#[async_trait::async_trait]
impl Notifier for Channels {
    fn channel_names(&self) -> Vec<String> {
        self.channels.iter().map(|c| c.settings.name.clone()).collect()
    }

    async fn send(&self, channel: &str, n: &Notification) -> Result<(), DeliveryError> {
        let Some(c) = self.get(channel) else {
            return Err(self.unknown_channel(channel));
        };
        let name = &c.settings.name;
        match &c.settings.kind {
            ChannelKind::Email { to } => {
                let Some(smtp) = &self.smtp else {
                    return Err(DeliveryError {
                        message: format!("channel `{name}` (email): no [smtp] section is configured"),
                        retry_after: None,
                        permanent: true,
                    });
                };
                send_mail(smtp, &render::email(n, to)).await.map_err(|e| DeliveryError {
                    message: format!("channel `{name}` (email): {}", e.message),
                    ..e
                })
            }
            ChannelKind::Webhook { http, secret_file } => {
                let body = json_bytes(&render::webhook_body(n));
                let timestamp = self.clock.now().timestamp();
                let mut headers = HeaderMap::new();
                headers.insert(TIMESTAMP_HEADER, HeaderValue::from(timestamp));
                if let Some(file) = secret_file {
                    let secret = read_secret(file, "secret_file", name)?;
                    let sig = signature(secret.as_bytes(), timestamp, &body);
                    if let Ok(v) = HeaderValue::from_str(&sig) {
                        headers.insert(SIGNATURE_HEADER, v);
                    }
                }
                c.post(&http.url, body, headers, self.clock.as_ref()).await
            }
            ChannelKind::Slack { http } | ChannelKind::Teams { http } => {
                let body = match &c.settings.kind {
                    ChannelKind::Slack { .. } => render::slack(n),
                    _ => render::teams(n),
                };
                c.post(&http.url, json_bytes(&body), HeaderMap::new(), self.clock.as_ref())
                    .await
            }
            ChannelKind::PagerDuty { http, routing_key_file } => {
                let key = read_secret(routing_key_file, "routing_key_file", name)?;
                let action = render::pagerduty_action(n.kind);
                let event = render::pagerduty(n, &key, action);
                c.post(&http.url, json_bytes(&event), HeaderMap::new(), self.clock.as_ref())
                    .await?;
                if n.kind == NotificationKind::Test {
                    // A test leaves no open incident behind: resolve what it triggered.
                    let event = render::pagerduty(n, &key, "resolve");
                    c.post(&http.url, json_bytes(&event), HeaderMap::new(), self.clock.as_ref())
                        .await?;
                }
                Ok(())
            }
        }
    }
}

/// The notification `rounds-collector alert test` sends.
pub fn test_notification(channel: &str, at: DateTime<Utc>) -> Notification {
    Notification {
        incident_id: 0,
        dedup_key: format!("rounds-test-{channel}-{}", at.timestamp()),
        kind: NotificationKind::Test,
        severity: super::Severity::Low,
        source: "test".into(),
        subject: channel.into(),
        title: format!("Test notification for channel {channel}"),
        probable_cause: "None: this is a test sent with `rounds-collector alert test`.".into(),
        practice: None,
        site: None,
        practices_affected: Vec::new(),
        opened_at: at,
        at,
        url: None,
    }
}

/// Why `alert test` failed.
#[derive(Debug, thiserror::Error)]
pub enum AlertTestError {
    /// The channel name is not configured (a usage error: the message lists the names).
    #[error("{0}")]
    UnknownChannel(String),
    /// A channel could not be set up (its CA file, its client).
    #[error("{0}")]
    Setup(String),
    /// The delivery attempt failed.
    #[error("{0}")]
    Delivery(DeliveryError),
}

/// `rounds-collector alert test --channel NAME`: one test notification through the same
/// [`Channels`] the engine uses; the `Ok` text says where it was delivered.
pub async fn alert_test(settings: &crate::config::Settings, channel: &str) -> Result<String, AlertTestError> {
    let channels = Channels::from_settings(settings).map_err(AlertTestError::Setup)?;
    let Some(c) = channels.get(channel) else {
        return Err(AlertTestError::UnknownChannel(
            channels.unknown_channel(channel).message,
        ));
    };
    let kind = c.settings.kind.as_str();
    let n = test_notification(channel, channels.clock.now());
    channels.send(channel, &n).await.map_err(AlertTestError::Delivery)?;
    Ok(format!("delivered: test notification to channel `{channel}` ({kind})"))
}
