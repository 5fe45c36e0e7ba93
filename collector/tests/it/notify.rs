//! Notification channels against real receivers: an aiosmtpd SMTP server (STARTTLS with a
//! generated certificate) started by the test, and an axum HTTP receiver that verifies the
//! webhook's HMAC signature and timestamp itself.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use chrono::{TimeZone, Utc};
use rounds_collector::clock::FakeClock;
use rounds_collector::config::{Overrides, Settings, load};
use rounds_collector::notify::channels::{Channels, parse_retry_after, signature};
use rounds_collector::notify::settings::{ChannelKind, ChannelSettings, HttpTarget};
use rounds_collector::notify::{
    Attachment, Mail, Notification, NotificationKind, Notifier, Severity, SmtpSettings, SmtpTls, send_mail,
};
use rounds_collector::tls::prepare;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

// ---------------------------------------------------------------- fixtures

/// A notification whose agent-supplied strings try to inject markup.
fn notification(kind: NotificationKind) -> Notification {
    let opened = Utc.with_ymd_and_hms(2026, 12, 1, 9, 30, 0).unwrap();
    Notification {
        incident_id: 42,
        dedup_key: "rounds-incident-42".into(),
        kind,
        severity: Severity::High,
        source: "ehr_endpoint".into(),
        subject: "ehr.example.net:443".into(),
        title: "EHR endpoint down at <Main> & Annex".into(),
        probable_cause: "The on-premises server <b>srv01</b> & its TCP probe fail from 3 agents".into(),
        practice: Some("Smith Family Practice".into()),
        site: Some("Main <script>alert(1)</script>".into()),
        practices_affected: Vec::new(),
        opened_at: opened,
        at: opened + chrono::Duration::seconds(30),
        url: Some("https://rounds.example.org/incidents/42".into()),
    }
}

/// TLS material for 127.0.0.1/localhost, made with the collector's own generator (rcgen).
pub(crate) struct Certs {
    _dir: tempfile::TempDir,
    pub(crate) ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

pub(crate) fn certs() -> Certs {
    let dir = tempfile::tempdir().unwrap();
    prepare(
        &rounds_collector::config::TlsSettings::Generated {
            subject_alt_names: Vec::new(),
        },
        dir.path(),
    )
    .unwrap();
    Certs {
        ca: dir.path().join("ca.pem"),
        cert: dir.path().join("server.pem"),
        key: dir.path().join("server-key.pem"),
        _dir: dir,
    }
}

// ---------------------------------------------------------------- SMTP server

/// Debian's python3-aiosmtpd (installed by .ci/run), run by our handler script.
const PYTHON: &str = "/usr/bin/python3";

pub(crate) struct SmtpServer {
    child: tokio::process::Child,
    port: u16,
    out: tempfile::TempDir,
}

impl SmtpServer {
    pub(crate) async fn start(mode: &str, certs: Option<&Certs>, auth: Option<(&str, &str)>) -> SmtpServer {
        let out = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/smtp_server.py");
        let mut cmd = tokio::process::Command::new(PYTHON);
        cmd.arg(script).arg(out.path()).arg(mode);
        if let Some(c) = certs {
            cmd.arg(&c.cert).arg(&c.key);
        }
        if let Some((u, p)) = auth {
            cmd.arg(u).arg(p);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 with aiosmtpd (apt-get install python3-aiosmtpd)");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("smtp server did not start in 20 s")
            .unwrap()
            .expect("smtp server exited before listening");
        let port = line.strip_prefix("PORT ").unwrap().trim().parse().unwrap();
        SmtpServer { child, port, out }
    }

    pub(crate) fn settings(&self, tls: SmtpTls, ca: Option<&Path>) -> SmtpSettings {
        SmtpSettings {
            host: "localhost".into(),
            port: self.port,
            tls,
            username: None,
            password_file: None,
            from: "Rounds <rounds@example.org>".into(),
            ca_file: ca.map(Path::to_path_buf),
            timeout: Duration::from_secs(10),
        }
    }

    /// The messages received so far: (raw message, metadata).
    pub(crate) fn received(&self) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        for n in 1.. {
            let meta = self.out.path().join(format!("{n}.json"));
            if !meta.exists() {
                break;
            }
            let raw = std::fs::read_to_string(self.out.path().join(format!("{n}.eml"))).unwrap();
            let meta: Value = serde_json::from_str(&std::fs::read_to_string(meta).unwrap()).unwrap();
            out.push((raw, meta));
        }
        out
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// A PDF's first bytes, binary as real PDFs are (so the attachment is base64-encoded).
const PDF: &[u8] = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n% a tiny test document\n";

fn report_mail() -> Mail {
    Mail {
        to: vec!["tech@example.org".into(), "owner@example.org".into()],
        subject: "Monthly compliance report: Smith".into(),
        text: "The report is attached.".into(),
        html: Some("<p>The report is attached.</p>".into()),
        attachments: vec![Attachment {
            filename: "smith-2026-11.pdf".into(),
            content_type: "application/pdf".into(),
            bytes: PDF.to_vec(),
        }],
        thread_id: None,
    }
}

#[tokio::test]
async fn starttls_mail_with_attachment_and_auth_arrives() {
    let certs = certs();
    let server = SmtpServer::start("starttls", Some(&certs), Some(("rounds", "s3cret-pw"))).await;
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("smtp-password");
    std::fs::write(&pw, "s3cret-pw\n").unwrap();
    let mut settings = server.settings(SmtpTls::StartTls, Some(&certs.ca));
    settings.username = Some("rounds".into());
    settings.password_file = Some(pw.clone());

    send_mail(&settings, &report_mail()).await.unwrap();
    let got = server.received();
    assert_eq!(got.len(), 1);
    let (raw, meta) = &got[0];
    assert_eq!(meta["tls"], true, "STARTTLS negotiated: {meta}");
    assert_eq!(meta["login"], "rounds");
    assert_eq!(meta["mail_from"], "rounds@example.org");
    assert_eq!(
        meta["rcpt_tos"],
        serde_json::json!(["tech@example.org", "owner@example.org"])
    );
    assert!(raw.contains("Subject: Monthly compliance report: Smith"), "{raw}");
    assert!(raw.contains("The report is attached."), "{raw}");
    assert!(raw.contains("Content-Type: application/pdf"), "{raw}");
    assert!(raw.contains("filename=\"smith-2026-11.pdf\""), "{raw}");
    assert_eq!(decoded_part(raw, "filename=\"smith-2026-11.pdf\""), PDF);

    // A wrong password is refused by the server (535: permanent) and not echoed in the error.
    std::fs::write(&pw, "wrong-pw").unwrap();
    let e = send_mail(&settings, &report_mail()).await.unwrap_err();
    assert!(e.permanent, "{e:?}");
    assert!(!e.message.contains("wrong-pw"), "{e:?}");
    assert_eq!(server.received().len(), 1);
}

#[tokio::test]
async fn starttls_required_refuses_a_plain_server_and_an_untrusted_certificate() {
    // A server that offers no STARTTLS: nothing is sent.
    let plain = SmtpServer::start("plain", None, None).await;
    let e = send_mail(&plain.settings(SmtpTls::StartTls, None), &report_mail())
        .await
        .unwrap_err();
    assert!(e.message.contains("smtp relay localhost:"), "{e:?}");
    assert!(e.message.contains("starttls"), "{e:?}");
    assert!(plain.received().is_empty(), "nothing may be sent in the clear");
    // Only `tls = "none"` talks to it (tests and local relays).
    send_mail(&plain.settings(SmtpTls::None, None), &report_mail())
        .await
        .unwrap();
    let got = plain.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1["tls"], false);

    // A STARTTLS server whose CA is not trusted: refused during the handshake.
    let certs = certs();
    let other = self::certs();
    let server = SmtpServer::start("starttls", Some(&certs), None).await;
    let e = send_mail(&server.settings(SmtpTls::StartTls, Some(&other.ca)), &report_mail())
        .await
        .unwrap_err();
    assert!(!e.permanent, "{e:?}");
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn implicit_tls_and_the_email_channel_render_escaped_html() {
    let certs = certs();
    let server = SmtpServer::start("implicit", Some(&certs), None).await;
    let smtp = server.settings(SmtpTls::Implicit, Some(&certs.ca));
    let channels = Channels::new(
        Some(smtp),
        vec![ChannelSettings {
            name: "oncall-mail".into(),
            kind: ChannelKind::Email {
                to: vec!["oncall@example.org".into()],
            },
        }],
    )
    .unwrap();
    channels
        .send("oncall-mail", &notification(NotificationKind::Opened))
        .await
        .unwrap();
    let got = server.received();
    assert_eq!(got.len(), 1);
    let (raw, meta) = &got[0];
    assert_eq!(meta["tls"], true);
    assert!(raw.contains("[Rounds] [OPEN] high: EHR endpoint down"), "{raw}");
    assert!(
        raw.contains("In-Reply-To: <rounds-incident-42@rounds.incident>"),
        "{raw}"
    );
    // The HTML part is quoted-printable or base64; decode what lettre chose, then check escaping.
    let html = String::from_utf8(decoded_part(raw, "Content-Type: text/html")).unwrap();
    assert!(html.contains("Main &lt;script&gt;alert(1)&lt;/script&gt;"), "{html}");
    assert!(!html.contains("<script>"), "{html}");
    assert!(html.contains("&lt;b&gt;srv01&lt;/b&gt; &amp; its TCP probe"), "{html}");
}

/// The body of the MIME part following `marker`, decoded from its transfer encoding.
pub(crate) fn decoded_part(raw: &str, marker: &str) -> Vec<u8> {
    let at = raw.find(marker).unwrap_or_else(|| panic!("{marker} not in {raw}"));
    let rest = &raw[at..];
    let head_end = rest.find("\r\n\r\n").unwrap();
    let head = &rest[..head_end];
    let body = &rest[head_end + 4..];
    let body = &body[..body.find("\r\n--").unwrap_or(body.len())];
    if head.contains("base64") {
        use base64::Engine;
        let b64: String = body.split_whitespace().collect();
        base64::engine::general_purpose::STANDARD.decode(b64).unwrap()
    } else if head.contains("quoted-printable") {
        let joined = body.replace("=\r\n", "");
        let mut out = Vec::new();
        let mut rest = joined.as_str();
        while let Some(at) = rest.find('=') {
            out.extend_from_slice(&rest.as_bytes()[..at]);
            let code = rest.get(at + 1..at + 3).and_then(|h| u8::from_str_radix(h, 16).ok());
            match code {
                Some(v) => {
                    out.push(v);
                    rest = &rest[at + 3..];
                }
                None => {
                    out.push(b'=');
                    rest = &rest[at + 1..];
                }
            }
        }
        out.extend_from_slice(rest.as_bytes());
        out
    } else {
        body.as_bytes().to_vec()
    }
}

// ---------------------------------------------------------------- HTTP receiver

#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) path: String,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Value,
    /// The receiver's own verdict on the webhook signature, when it checks one.
    pub(crate) verified: Option<bool>,
}

/// A status code and extra response headers.
type Answer = (u16, Vec<(&'static str, &'static str)>);

/// A webhook receiver that verifies `X-Rounds-Signature` the way README tells receivers to:
/// recompute HMAC-SHA256 over "<timestamp>.<body>", compare in constant time, and refuse
/// timestamps more than 5 minutes from its own clock.
#[derive(Clone)]
pub(crate) struct Receiver {
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Answers to give, in order (status, extra headers); then 200.
    answers: Arc<Mutex<VecDeque<Answer>>>,
    secret: Option<Vec<u8>>,
}

impl Receiver {
    pub(crate) async fn start(secret: Option<&[u8]>) -> (Receiver, SocketAddr) {
        let r = Receiver {
            seen: Arc::default(),
            answers: Arc::default(),
            secret: secret.map(<[u8]>::to_vec),
        };
        let state = r.clone();
        let app = Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let state = state.clone();
            async move { state.handle(uri, headers, body) }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (r, addr)
    }

    fn handle(&self, uri: Uri, headers: HeaderMap, body: Bytes) -> axum::response::Response {
        let mut verified = None;
        // Only the generic webhook is signed: its tests post under /signed.
        if let Some(secret) = self.secret.as_ref().filter(|_| uri.path().starts_with("/signed")) {
            let ok = verify(secret, &headers, &body, Utc::now().timestamp());
            verified = Some(ok);
        }
        self.seen.lock().unwrap().push(Seen {
            path: uri.path().to_string(),
            headers,
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            verified,
        });
        if verified == Some(false) {
            return (StatusCode::UNAUTHORIZED, "bad signature or stale timestamp").into_response();
        }
        match self.answers.lock().unwrap().pop_front() {
            Some((code, extra)) => {
                let mut resp = (StatusCode::from_u16(code).unwrap(), "answer").into_response();
                for (k, v) in extra {
                    resp.headers_mut().insert(k, v.parse().unwrap());
                }
                resp
            }
            None => (StatusCode::OK, "ok").into_response(),
        }
    }

    fn answer(&self, code: u16, headers: Vec<(&'static str, &'static str)>) {
        self.answers.lock().unwrap().push_back((code, headers));
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// The receiver side of the signature, written independently of the sender's code.
fn verify(secret: &[u8], headers: &HeaderMap, body: &[u8], now: i64) -> bool {
    let Some(ts) = headers.get("x-rounds-timestamp").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Ok(t) = ts.parse::<i64>() else { return false };
    if (now - t).abs() > 300 {
        return false;
    }
    let Some(sig) = headers
        .get("x-rounds-signature")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("sha256="))
        .and_then(|h| hex::decode(h).ok())
    else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut signed = ts.as_bytes().to_vec();
    signed.push(b'.');
    signed.extend_from_slice(body);
    ring::hmac::verify(&key, &signed, &sig).is_ok()
}

pub(crate) fn http(addr: SocketAddr, path: &str) -> HttpTarget {
    HttpTarget {
        url: format!("http://127.0.0.1:{}{path}", addr.port()),
        ca_file: None,
        timeout: Duration::from_secs(5),
    }
}

pub(crate) fn secret_file(dir: &Path, name: &str, value: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("{value}\n")).unwrap();
    p
}

#[tokio::test]
async fn webhook_is_signed_and_the_receiver_rejects_stale_or_forged_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let (rx, addr) = Receiver::start(Some(b"hook-secret")).await;
    let good = secret_file(dir.path(), "good", "hook-secret");
    let bad = secret_file(dir.path(), "bad", "another-secret");
    let hook = |name: &str, file: &Path| ChannelSettings {
        name: name.into(),
        kind: ChannelKind::Webhook {
            http: http(addr, "/signed/rounds"),
            secret_file: Some(file.to_path_buf()),
        },
    };
    let channels = Channels::new(None, vec![hook("hook", &good), hook("forged", &bad)]).unwrap();
    let n = notification(NotificationKind::Opened);
    channels.send("hook", &n).await.unwrap();
    let seen = rx.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].verified, Some(true));
    assert_eq!(seen[0].path, "/signed/rounds");
    let b = &seen[0].body;
    assert_eq!(b["schema_version"], 1);
    assert_eq!(b["kind"], "opened");
    assert_eq!(b["incident_id"], 42);
    assert_eq!(b["dedup_key"], "rounds-incident-42");
    assert_eq!(b["severity"], "high");
    assert_eq!(b["source"], "ehr_endpoint");
    assert_eq!(
        b["site"], "Main <script>alert(1)</script>",
        "JSON carries values verbatim"
    );
    assert_eq!(b["opened_at"], "2026-12-01T09:30:00Z");

    // The wrong key: the receiver refuses (401), which is permanent for the sender.
    let e = channels.send("forged", &n).await.unwrap_err();
    assert!(e.permanent, "{e:?}");
    assert!(e.message.contains("channel `forged` (webhook) at 127.0.0.1:"), "{e:?}");
    assert!(e.message.contains("401"), "{e:?}");

    // A body signed ten minutes ago (a replay): the receiver refuses its timestamp.
    let clock = Arc::new(FakeClock::new(Utc::now() - chrono::Duration::minutes(10)));
    let late = Channels::with_clock(None, vec![hook("hook", &good)], clock).unwrap();
    let e = late.send("hook", &n).await.unwrap_err();
    assert!(e.permanent && e.message.contains("401"), "{e:?}");
    let seen = rx.seen();
    assert_eq!(
        seen.iter().map(|s| s.verified).collect::<Vec<_>>(),
        [Some(true), Some(false), Some(false)]
    );
    // The signature is over "<timestamp>.<body>" exactly: a known answer computed with
    // Python's hmac module (hmac.new(b"k", b"1700000000.{}", hashlib.sha256)).
    assert_eq!(
        signature(b"k", 1700000000, b"{}"),
        "sha256=c6ef4734033cee2367414a0939385eca0397754aa7a59716da7463a9298b5146"
    );
}

#[tokio::test]
async fn status_codes_map_to_permanent_or_retryable_with_retry_after() {
    let (rx, addr) = Receiver::start(None).await;
    let channels = Channels::new(
        None,
        vec![ChannelSettings {
            name: "hook".into(),
            kind: ChannelKind::Webhook {
                http: http(addr, "/"),
                secret_file: None,
            },
        }],
    )
    .unwrap();
    let n = notification(NotificationKind::Opened);
    rx.answer(500, vec![]);
    rx.answer(503, vec![("retry-after", "7")]);
    rx.answer(429, vec![("retry-after", "120")]);
    rx.answer(408, vec![]);
    rx.answer(404, vec![]);
    rx.answer(400, vec![]);
    let e = channels.send("hook", &n).await.unwrap_err();
    assert!(
        !e.permanent && e.retry_after.is_none() && e.message.contains("500"),
        "{e:?}"
    );
    let e = channels.send("hook", &n).await.unwrap_err();
    assert_eq!((e.permanent, e.retry_after), (false, Some(Duration::from_secs(7))));
    let e = channels.send("hook", &n).await.unwrap_err();
    assert_eq!((e.permanent, e.retry_after), (false, Some(Duration::from_secs(120))));
    let e = channels.send("hook", &n).await.unwrap_err();
    assert!(!e.permanent, "408 is retryable: {e:?}");
    let e = channels.send("hook", &n).await.unwrap_err();
    assert!(e.permanent && e.message.contains("404"), "{e:?}");
    let e = channels.send("hook", &n).await.unwrap_err();
    assert!(e.permanent, "{e:?}");
    channels.send("hook", &n).await.unwrap();
    // Without a secret the body is still timestamped, but not signed.
    let last = rx.seen().pop().unwrap();
    assert!(last.headers.contains_key("x-rounds-timestamp"));
    assert!(!last.headers.contains_key("x-rounds-signature"));

    // Retry-After as an HTTP date.
    let now = Utc.with_ymd_and_hms(2015, 10, 21, 7, 27, 0).unwrap();
    assert_eq!(
        parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
        Some(Duration::from_secs(60))
    );
    assert_eq!(parse_retry_after("soon", now), None);

    // Nobody listening: retryable, naming the channel and host, never the URL's path.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let dead = Channels::new(
        None,
        vec![ChannelSettings {
            name: "slack-ops".into(),
            kind: ChannelKind::Slack {
                http: HttpTarget {
                    url: format!("http://127.0.0.1:{port}/services/T000/B000/SECRETPATH"),
                    ca_file: None,
                    timeout: Duration::from_secs(5),
                },
            },
        }],
    )
    .unwrap();
    let e = dead.send("slack-ops", &n).await.unwrap_err();
    assert!(!e.permanent, "{e:?}");
    assert!(e.message.contains("channel `slack-ops` (slack)"), "{e:?}");
    assert!(!e.message.contains("SECRETPATH"), "{e:?}");
    // An unknown channel names the configured ones.
    let e = dead.send("nope", &n).await.unwrap_err();
    assert!(
        e.permanent && e.message.contains("configured channels: slack-ops"),
        "{e:?}"
    );
}

#[tokio::test]
async fn slack_teams_and_pagerduty_bodies_have_their_documented_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let (rx, addr) = Receiver::start(None).await;
    let key = secret_file(dir.path(), "pd-key", "R0UT1NGKEY0123456789abcdef012345");
    let channels = Channels::new(
        None,
        vec![
            ChannelSettings {
                name: "slack".into(),
                kind: ChannelKind::Slack {
                    http: http(addr, "/slack"),
                },
            },
            ChannelSettings {
                name: "teams".into(),
                kind: ChannelKind::Teams {
                    http: http(addr, "/teams"),
                },
            },
            ChannelSettings {
                name: "pd".into(),
                kind: ChannelKind::PagerDuty {
                    http: http(addr, "/v2/enqueue"),
                    routing_key_file: key,
                },
            },
        ],
    )
    .unwrap();
    assert_eq!(channels.channel_names(), ["slack", "teams", "pd"]);
    let opened = notification(NotificationKind::Opened);
    channels.send("slack", &opened).await.unwrap();
    channels.send("teams", &opened).await.unwrap();
    for kind in [
        NotificationKind::Opened,
        NotificationKind::Acknowledged,
        NotificationKind::Resolved,
    ] {
        channels.send("pd", &notification(kind)).await.unwrap();
    }
    let seen = rx.seen();
    assert_eq!(seen.len(), 5);

    // Slack: `text` fallback plus `blocks`, mrkdwn escaped.
    let slack = &seen[0];
    assert_eq!(slack.path, "/slack");
    assert_eq!(slack.headers["content-type"], "application/json");
    let text = slack.body["text"].as_str().unwrap();
    assert!(text.contains("EHR endpoint down at &lt;Main&gt; &amp; Annex"), "{text}");
    let blocks = slack.body["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(blocks[0]["text"]["type"], "plain_text");
    assert_eq!(blocks[1]["type"], "section");
    assert_eq!(blocks[1]["text"]["type"], "mrkdwn");
    let all = serde_json::to_string(&slack.body).unwrap();
    assert!(!all.contains("<script>"), "{all}");
    assert!(all.contains("Main &lt;script&gt;"), "{all}");
    let fields = blocks[2]["fields"].as_array().unwrap();
    assert!(fields.len() <= 10 && !fields.is_empty());
    assert!(
        blocks
            .iter()
            .any(|b| b["type"] == "actions" && b["elements"][0]["url"] == "https://rounds.example.org/incidents/42")
    );

    // Teams Workflows: a message with one Adaptive Card attachment (not a MessageCard).
    let teams = &seen[1].body;
    assert_eq!(teams["type"], "message");
    assert!(teams.get("@type").is_none(), "no Office 365 connector MessageCard");
    let att = &teams["attachments"][0];
    assert_eq!(att["contentType"], "application/vnd.microsoft.card.adaptive");
    let card = &att["content"];
    assert_eq!(card["type"], "AdaptiveCard");
    assert_eq!(card["version"], "1.4");
    assert_eq!(card["$schema"], "http://adaptivecards.io/schemas/adaptive-card.json");
    assert_eq!(card["body"][0]["type"], "RichTextBlock");
    assert_eq!(card["body"][0]["inlines"][0]["type"], "TextRun");
    assert_eq!(
        card["body"][1]["inlines"][1]["text"], "The on-premises server <b>srv01</b> & its TCP probe fail from 3 agents",
        "TextRun text is plain, never markdown or HTML"
    );
    assert_eq!(card["body"][2]["type"], "FactSet");
    assert_eq!(card["actions"][0]["type"], "Action.OpenUrl");

    // PagerDuty Events API v2: trigger → acknowledge → resolve on one dedup_key.
    let pd: Vec<&Value> = seen[2..].iter().map(|s| &s.body).collect();
    assert!(seen[2..].iter().all(|s| s.path == "/v2/enqueue"));
    assert_eq!(
        pd.iter()
            .map(|b| b["event_action"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["trigger", "acknowledge", "resolve"]
    );
    assert!(pd.iter().all(|b| b["dedup_key"] == "rounds-incident-42"));
    assert!(
        pd.iter()
            .all(|b| b["routing_key"] == "R0UT1NGKEY0123456789abcdef012345")
    );
    let payload = &pd[0]["payload"];
    assert_eq!(payload["severity"], "error", "high maps to PagerDuty error");
    assert_eq!(payload["source"], "Main <script>alert(1)</script>");
    assert!(
        payload["summary"]
            .as_str()
            .unwrap()
            .starts_with("[OPEN] high: EHR endpoint down")
    );
    assert!(pd[2].get("payload").is_none(), "resolve carries no payload");
}

// ---------------------------------------------------------------- configuration and CLI

fn load_file(dir: &Path, text: &str) -> Result<Settings, String> {
    let f = dir.join("collector.toml");
    std::fs::write(&f, text).unwrap();
    load(Some(&f), &Overrides::default()).map_err(|e| e.to_string())
}

#[test]
fn channel_and_smtp_configuration_errors_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let key = secret_file(dir.path(), "pd", "k");
    let good = format!(
        r#"
[smtp]
host = "mail.example.org"
from = "Rounds <rounds@example.org>"

[[channel]]
name = "mail"
kind = "email"
to = ["oncall@example.org"]

[[channel]]
name = "pd"
kind = "pagerduty"
routing_key_file = "{}"
"#,
        key.display()
    );
    let s = load_file(dir.path(), &good).unwrap();
    let smtp = s.smtp.unwrap();
    assert_eq!((smtp.port, smtp.tls), (587, SmtpTls::StartTls));
    assert_eq!(s.channels.len(), 2);
    match &s.channels[1].kind {
        ChannelKind::PagerDuty { http, .. } => assert_eq!(http.url, "https://events.pagerduty.com/v2/enqueue"),
        other => panic!("{other:?}"),
    }

    let bad = r#"[smtp]
host = "mail.example.org"
tls = "ssl"
username = "rounds"
from = "not an address"

[[channel]]
name = "ops"
kind = "sms"

[[channel]]
name = "hook"
kind = "webhook"
url = "http://hooks.example.org/x"

[[channel]]
name = "hook"
kind = "slack"
url = "https://hooks.slack.com/services/x"
to = ["a@example.org"]

[[channel]]
kind = "teams"

[[channel]]
name = "pd"
kind = "pagerduty"
"#;
    let err = load_file(dir.path(), bad).unwrap_err();
    let f = dir.path().join("collector.toml").display().to_string();
    for want in [
        format!("{f}:3: smtp.tls: `ssl` is not one of starttls, implicit, none"),
        format!("{f}:4: smtp: `username` is set without `password_file`"),
        format!("{f}:5: smtp.from: `not an address` is not an address"),
        format!("{f}:9: channel `ops`: kind `sms` is not one of email, webhook, slack, teams, pagerduty"),
        format!("{f}:14: channel `hook`: url: `http://hooks.example.org/x` is not https"),
        format!("{f}:17: channel name `hook` is used twice (first at line 12)"),
        format!("{f}:20: channel `hook`: `to` is not a setting of a slack channel"),
        format!("{f}:22: channel #4: `name` is missing"),
        format!("{f}:25: channel `pd`: `routing_key_file` is missing"),
    ] {
        assert!(err.contains(&want), "missing `{want}` in:\n{err}");
    }
    // An unknown key is a parse error with its line, as for every other table.
    let err = load_file(
        dir.path(),
        "[[channel]]\nname = \"x\"\nkind = \"slack\"\nurll = \"https://x\"\n",
    )
    .unwrap_err();
    assert!(err.contains(":4:") && err.contains("urll"), "{err}");
    // A route naming a channel that is not configured.
    let err = load_file(
        dir.path(),
        "[[channel]]\nname = \"ops\"\nkind = \"slack\"\nurl = \"https://hooks.slack.com/x\"\n\n[[route]]\nchannels = [\"ops\", \"pager\"]\n",
    )
    .unwrap_err();
    assert!(
        err.contains(":6: route: channel `pager` is not a configured [[channel]] (configured: ops)"),
        "{err}"
    );
    // An email channel without [smtp].
    let err = load_file(
        dir.path(),
        "[[channel]]\nname = \"m\"\nkind = \"email\"\nto = [\"a@example.org\"]\n",
    )
    .unwrap_err();
    assert!(
        err.contains(":3: channel `m`: an email channel needs the [smtp] section"),
        "{err}"
    );
}

async fn cli(config: &Path, args: &[&str]) -> (i32, String, String) {
    let data = config.parent().unwrap().join("data");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_rounds-collector"))
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(&data)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn alert_test_cli_delivers_through_the_configured_channels() {
    let dir = tempfile::tempdir().unwrap();
    let (rx, addr) = Receiver::start(Some(b"cli-secret")).await;
    let certs = certs();
    let smtp = SmtpServer::start("starttls", Some(&certs), None).await;
    let secret = secret_file(dir.path(), "hook-secret", "cli-secret");
    let key = secret_file(dir.path(), "pd-key", "PDKEY");
    let config = dir.path().join("collector.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[smtp]
host = "localhost"
port = {smtp_port}
from = "rounds@example.org"
ca_file = "{ca}"

[[channel]]
name = "mail"
kind = "email"
to = ["oncall@example.org"]

[[channel]]
name = "hook"
kind = "webhook"
url = "http://127.0.0.1:{port}/signed/hook"
secret_file = "{secret}"

[[channel]]
name = "pd"
kind = "pagerduty"
routing_key_file = "{key}"
events_url = "http://127.0.0.1:{port}/v2/enqueue"

[[channel]]
name = "teams-down"
kind = "teams"
url = "http://127.0.0.1:{port}/teams"
"#,
            smtp_port = smtp.port,
            ca = certs.ca.display(),
            port = addr.port(),
            secret = secret.display(),
            key = key.display(),
        ),
    )
    .unwrap();
    let (code, out, err) = cli(&config, &["alert", "test", "--channel", "hook"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("delivered: test notification to channel `hook` (webhook)"),
        "{out}"
    );
    let (code, out, err) = cli(&config, &["alert", "test", "--channel", "mail"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let mails = smtp.received();
    assert_eq!(mails.len(), 1);
    assert!(
        mails[0]
            .0
            .contains("[Rounds] [TEST] low: Test notification for channel mail"),
        "{}",
        mails[0].0
    );
    let (code, out, err) = cli(&config, &["alert", "test", "--channel", "pd"]).await;
    assert_eq!(code, 0, "{out}{err}");

    let seen = rx.seen();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[0].verified, Some(true));
    assert_eq!(seen[0].body["kind"], "test");
    // A PagerDuty test triggers and resolves the same dedup_key, leaving nothing open.
    assert_eq!(seen[1].body["event_action"], "trigger");
    assert_eq!(seen[2].body["event_action"], "resolve");
    assert_eq!(seen[1].body["dedup_key"], seen[2].body["dedup_key"]);

    rx.answer(500, vec![]);
    let (code, out, err) = cli(&config, &["alert", "test", "--channel", "teams-down"]).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("not delivered: channel `teams-down` (teams) at 127.0.0.1:"),
        "{err}"
    );
    assert!(err.contains("500"), "{err}");

    let (code, _, err) = cli(&config, &["alert", "test", "--channel", "pager"]).await;
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("no channel named `pager`; configured channels: mail, hook, pd, teams-down"),
        "{err}"
    );
}

// ---------------------------------------------------------------- the engine through the channels

#[tokio::test]
async fn the_alert_engine_delivers_through_real_channels_once_each_and_resolves_once() {
    use crate::alerting::Lab;
    use rounds_collector::alerting::Engine;
    use rounds_collector::alerting::config::AlertSettings;

    let dir = tempfile::tempdir().unwrap();
    let certs = certs();
    let smtp = SmtpServer::start("starttls", Some(&certs), None).await;
    let (rx, addr) = Receiver::start(Some(b"engine-secret")).await;
    let (pd_rx, pd_addr) = Receiver::start(None).await;
    // The webhook fails twice before it takes the notification.
    rx.answer(500, vec![]);
    rx.answer(500, vec![]);
    let channels = Channels::new(
        Some(smtp.settings(SmtpTls::StartTls, Some(&certs.ca))),
        vec![
            ChannelSettings {
                name: "mail".into(),
                kind: ChannelKind::Email {
                    to: vec!["oncall@example.org".into()],
                },
            },
            ChannelSettings {
                name: "hook".into(),
                kind: ChannelKind::Webhook {
                    http: http(addr, "/signed/hook"),
                    secret_file: Some(secret_file(dir.path(), "hook", "engine-secret")),
                },
            },
            ChannelSettings {
                name: "pd".into(),
                kind: ChannelKind::PagerDuty {
                    http: http(pd_addr, "/v2/enqueue"),
                    routing_key_file: secret_file(dir.path(), "pd", "PDKEY"),
                },
            },
        ],
    )
    .unwrap();
    let mut lab = Lab::new(AlertSettings::default(), &[]).await;
    lab.engine = Arc::new(Engine::new(
        Arc::clone(&lab.store),
        lab.clock.clone(),
        lab.settings.clone(),
        Arc::new(channels),
    ));
    let a = lab.agent("Smith", "main", "frontdesk").await;
    lab.agent("Smith", "main", "xray").await;
    lab.run(60).await;
    lab.alive.remove(&a);
    lab.run(180).await;

    let hook = rx.seen();
    assert_eq!(hook.len(), 3, "two 500s, then delivered on the third try: {hook:?}");
    assert!(hook.iter().all(|s| s.verified == Some(true)));
    assert!(
        hook.iter()
            .all(|s| s.body["kind"] == "opened" && s.body["source"] == "agent_offline")
    );
    let mails = smtp.received();
    assert_eq!(mails.len(), 1, "one opened mail");
    assert!(mails[0].0.contains("[OPEN]"), "{}", mails[0].0);
    assert_eq!(mails[0].1["tls"], true);

    lab.alive.insert(a);
    lab.run(120).await;
    let hook = rx.seen();
    assert_eq!(
        hook.iter()
            .map(|s| s.body["kind"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["opened", "opened", "opened", "resolved"]
    );
    let pd = pd_rx.seen();
    assert_eq!(
        pd.iter()
            .map(|s| s.body["event_action"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["trigger", "resolve"]
    );
    assert_eq!(
        pd[0].body["dedup_key"], pd[1].body["dedup_key"],
        "one dedup_key per incident"
    );
    assert_eq!(pd[0].body["dedup_key"], hook[0].body["dedup_key"]);
    let mails = smtp.received();
    assert_eq!(mails.len(), 2);
    assert!(mails[1].0.contains("[RESOLVED]"), "{}", mails[1].0);
    // Both mails thread on the incident.
    let thread = |raw: &str| raw.lines().find(|l| l.starts_with("In-Reply-To:")).map(str::to_string);
    assert_eq!(thread(&mails[0].0), thread(&mails[1].0));
    assert!(thread(&mails[0].0).is_some());
}

/// `serve` wires the configured channels into the engine: a collector started from a TOML
/// file with a webhook channel signs and sends the offline notification of an agent that
/// enrolled and then went silent (real server, real time, short intervals).
#[tokio::test(flavor = "multi_thread")]
async fn serve_delivers_incidents_through_the_configured_channels() {
    use rounds_collector::{admin, serve};
    let dir = tempfile::tempdir().unwrap();
    let (rx, addr) = Receiver::start(Some(b"serve-secret")).await;
    let secret = secret_file(dir.path(), "hook", "serve-secret");
    let config = dir.path().join("collector.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{data}\"\nheartbeat_interval_secs = 1\noffline_after_secs = 2\n\n[alerting]\ntick_secs = 1\n\n\
             [[channel]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{port}/signed/serve\"\nsecret_file = \"{secret}\"\n",
            data = dir.path().join("data").display(),
            port = addr.port(),
            secret = secret.display()
        ),
    )
    .unwrap();
    let settings = load(Some(&config), &Overrides::default()).unwrap();
    let listener = serve::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = listener.local_addr().unwrap().port();
    let prepared = serve::prepare(settings).await.unwrap();
    let token = admin::token_create(prepared.store.as_ref(), "Smith", "Main", Duration::from_secs(600))
        .await
        .unwrap();
    let ca = dir.path().join("data/ca.pem");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(serve::run(prepared, listener, shutdown.clone()));

    let tls = rounds_collector::notify::roots::client_config(Some(&ca)).unwrap();
    let client = reqwest::Client::builder().use_preconfigured_tls(tls).build().unwrap();
    let enrolled = client
        .post(format!("https://localhost:{port}/api/v1/agent/enroll"))
        .json(&crate::api::enroll_body(&token, "frontdesk"))
        .send()
        .await
        .unwrap();
    assert_eq!(enrolled.status(), 200);
    let e: Value = enrolled.json().await.unwrap();
    let agent_id = e["agent_id"].as_str().unwrap();
    let beat = client
        .post(format!("https://localhost:{port}/api/v1/agent/heartbeat"))
        .basic_auth(agent_id, e["agent_secret"].as_str())
        .json(&serde_json::json!({"protocol": 1, "agent_id": agent_id, "sent_at": Utc::now(), "agent_version": "0.1.0", "agent_uptime_secs": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(beat.status(), 200);

    // The agent beats once and never again: within a few seconds the engine opens an incident and the
    // webhook gets it, signed.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let got = loop {
        if let Some(s) = rx.seen().into_iter().find(|s| s.body["kind"] == "opened") {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no notification in 20 s: {:?}",
            rx.seen()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(got.verified, Some(true));
    assert_eq!(got.path, "/signed/serve");
    assert_eq!(got.body["practice"], "Smith");
    assert!(
        ["agent_offline", "site_offline"].contains(&got.body["source"].as_str().unwrap()),
        "{}",
        got.body
    );
    shutdown.cancel();
    server.await.unwrap().unwrap();
}
