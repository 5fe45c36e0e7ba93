//! E-mail over SMTP (lettre, rustls with ring): the `email` channel and scheduled reports.
//!
//! STARTTLS is required by default: a server that does not offer it, or whose certificate does
//! not verify, gets nothing (not even the credentials). `tls = "implicit"` speaks TLS from the
//! first byte (port 465); `tls = "none"` sends in the clear and is meant only for tests and a
//! relay on the same machine. The password is read from `password_file` at each send (so a
//! rotated password needs no restart) and never logged; errors name the relay and the file,
//! never the secret.

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Attachment as LettreAttachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::DeliveryError;

/// How the connection to the relay is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS; refused if the server does not offer it.
    StartTls,
    /// TLS from the first byte (SMTPS, port 465).
    Implicit,
    /// No encryption at all: only for tests and a relay on the same machine.
    None,
}

impl SmtpTls {
    pub fn as_str(self) -> &'static str {
        match self {
            SmtpTls::StartTls => "starttls",
            SmtpTls::Implicit => "implicit",
            SmtpTls::None => "none",
        }
    }

    /// The usual port for this mode: 587, 465 or 25.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::StartTls => 587,
            SmtpTls::Implicit => 465,
            SmtpTls::None => 25,
        }
    }
}

/// The validated `[smtp]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    /// AUTH user; set together with `password_file`.
    pub username: Option<String>,
    /// File holding the AUTH password (trailing newline ignored).
    pub password_file: Option<PathBuf>,
    /// The sender, `Name <addr@example.org>` or `addr@example.org`.
    pub from: String,
    /// Extra CA (PEM) trusted besides the system bundle, for a private relay.
    pub ca_file: Option<PathBuf>,
    /// Whole-conversation timeout for one message.
    pub timeout: Duration,
}

/// Default timeout of one SMTP conversation.
pub const DEFAULT_SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// One file attached to a mail (a report's PDF).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Attachment {
    pub filename: String,
    /// A MIME type such as `application/pdf`.
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// One message to one or more recipients.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mail {
    pub to: Vec<String>,
    pub subject: String,
    /// The plain-text body (always sent).
    pub text: String,
    /// An HTML alternative; the caller escapes every agent-supplied value in it.
    pub html: Option<String>,
    pub attachments: Vec<Attachment>,
    /// Threads every mail about one incident together (`References`/`In-Reply-To`): the
    /// notification's `dedup_key`. `None` for a standalone mail.
    pub thread_id: Option<String>,
}

fn permanent(message: String) -> DeliveryError {
    DeliveryError {
        message,
        retry_after: None,
        permanent: true,
    }
}

fn transient(message: String) -> DeliveryError {
    DeliveryError {
        message,
        retry_after: None,
        permanent: false,
    }
}

/// The whole chain of an error's causes on one line.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        source = s.source();
    }
    out
}

/// Builds the MIME message (no network).
pub fn build_message(from: &str, mail: &Mail) -> Result<Message, DeliveryError> {
    let from: Mailbox = from
        .parse()
        .map_err(|e| permanent(format!("smtp from `{from}` is not an address: {e}")))?;
    if mail.to.is_empty() {
        return Err(permanent("mail has no recipient".into()));
    }
    let mut builder = Message::builder().from(from).subject(mail.subject.clone());
    for to in &mail.to {
        let mbox: Mailbox = to
            .parse()
            .map_err(|e| permanent(format!("recipient `{to}` is not an address: {e}")))?;
        builder = builder.to(mbox);
    }
    if let Some(thread) = &mail.thread_id {
        // An id in angle brackets, made only of safe characters, so the header stays valid.
        let clean: String = thread
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.:".contains(c) {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let id = format!("<{clean}@rounds.incident>");
        builder = builder.in_reply_to(id.clone()).references(id);
    }
    let text = mail.text.clone();
    let message = match (&mail.html, mail.attachments.is_empty()) {
        (None, true) => builder.singlepart(SinglePart::plain(text)),
        (Some(html), true) => builder.multipart(MultiPart::alternative_plain_html(text, html.clone())),
        (html, false) => {
            let mut mixed = match html {
                Some(html) => MultiPart::mixed().multipart(MultiPart::alternative_plain_html(text, html.clone())),
                None => MultiPart::mixed().singlepart(SinglePart::plain(text)),
            };
            for a in &mail.attachments {
                let ct = ContentType::parse(&a.content_type).map_err(|e| {
                    permanent(format!(
                        "attachment {}: content type `{}` is not valid: {e}",
                        a.filename, a.content_type
                    ))
                })?;
                mixed = mixed.singlepart(LettreAttachment::new(a.filename.clone()).body(a.bytes.clone(), ct));
            }
            builder.multipart(mixed)
        }
    };
    message.map_err(|e| permanent(format!("cannot build mail: {e}")))
}

fn tls_parameters(settings: &SmtpSettings) -> Result<TlsParameters, DeliveryError> {
    let anchors = super::roots::trust_anchors(settings.ca_file.as_deref()).map_err(transient)?;
    let mut builder = TlsParameters::builder(settings.host.clone()).certificate_store(CertificateStore::None);
    for cert in anchors {
        // Skip what rustls cannot use as a trust anchor instead of failing the whole bundle.
        if rustls::RootCertStore::empty().add(cert.clone()).is_err() {
            continue;
        }
        let cert = Certificate::from_der(cert.to_vec()).map_err(|e| transient(format!("bad CA certificate: {e}")))?;
        builder = builder.add_root_certificate(cert);
    }
    builder
        .build_rustls()
        .map_err(|e| transient(format!("cannot set up TLS for {}: {}", settings.host, error_chain(&e))))
}

/// Reads the AUTH password; the error names the file, never its content.
fn read_password(path: &std::path::Path) -> Result<String, DeliveryError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| transient(format!("cannot read smtp password_file {}: {e}", path.display())))?;
    Ok(text.trim_end_matches(['\r', '\n']).to_string())
}

/// Sends one mail through the configured relay: one attempt; the caller retries.
///
/// `permanent` is set for what a retry cannot fix: a bad address, a 5xx reply from the relay.
/// Connection, TLS and 4xx replies are retryable.
pub async fn send_mail(settings: &SmtpSettings, mail: &Mail) -> Result<(), DeliveryError> {
    let message = build_message(&settings.from, mail)?;
    let relay = format!("{}:{}", settings.host, settings.port);
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(settings.host.clone())
        .port(settings.port)
        .timeout(Some(settings.timeout))
        .hello_name(ClientId::Domain("rounds-collector".into()));
    builder = match settings.tls {
        SmtpTls::StartTls => builder.tls(Tls::Required(tls_parameters(settings)?)),
        SmtpTls::Implicit => builder.tls(Tls::Wrapper(tls_parameters(settings)?)),
        SmtpTls::None => builder.tls(Tls::None),
    };
    if let (Some(user), Some(file)) = (&settings.username, &settings.password_file) {
        builder = builder.credentials(Credentials::new(user.clone(), read_password(file)?));
    }
    let transport = builder.build();
    match transport.send(message).await {
        Ok(_) => Ok(()),
        Err(e) => {
            let what = format!("smtp relay {relay} ({}): {}", settings.tls.as_str(), error_chain(&e));
            if e.is_permanent() {
                Err(permanent(what))
            } else {
                Err(transient(what))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_has_alternative_and_attachment() {
        let mail = Mail {
            to: vec!["tech@example.org".into()],
            subject: "Report".into(),
            text: "plain".into(),
            html: Some("<p>html</p>".into()),
            attachments: vec![Attachment {
                filename: "r.pdf".into(),
                content_type: "application/pdf".into(),
                bytes: b"%PDF-1.4".to_vec(),
            }],
            thread_id: Some("inc 7".into()),
        };
        let m = build_message("Rounds <rounds@example.org>", &mail).unwrap();
        let raw = String::from_utf8(m.formatted()).unwrap();
        assert!(raw.contains("multipart/mixed"), "{raw}");
        assert!(raw.contains("multipart/alternative"), "{raw}");
        assert!(raw.contains("filename=\"r.pdf\""), "{raw}");
        assert!(raw.contains("In-Reply-To: <inc-7@rounds.incident>"), "{raw}");
    }

    #[test]
    fn bad_addresses_are_permanent() {
        let mail = Mail {
            to: vec!["not an address".into()],
            subject: "x".into(),
            text: "x".into(),
            ..Mail::default()
        };
        let e = build_message("rounds@example.org", &mail).unwrap_err();
        assert!(e.permanent && e.message.contains("not an address"), "{e:?}");
        let e = build_message("rounds@example.org", &Mail::default()).unwrap_err();
        assert!(e.permanent, "{e:?}");
    }
}
