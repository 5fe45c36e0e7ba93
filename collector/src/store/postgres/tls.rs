//! TLS to the PostgreSQL server, as libpq's `sslmode` and `sslrootcert` have it, with rustls on
//! ring (the provider the rest of the collector uses).
//!
//! A small [`MakeTlsConnect`] of our own rather than the `tokio-postgres-rustls` crate: that
//! crate brings an X.509 parser and still leaves `verify-ca` (a chain checked without its host
//! name) and `sslrootcert` to the caller, which are most of the work; what remains here is a
//! stream wrapper and the channel-binding hash.
//!
//! | `sslmode` | TLS | the certificate |
//! | --- | --- | --- |
//! | `disable` | never | — |
//! | `prefer` | when the server offers it, else plain | not checked |
//! | `require` | always; a server without TLS is refused | not checked, unless `sslrootcert` is given (then as `verify-ca`, like libpq) |
//! | `verify-ca` | always | signed by a CA of `sslrootcert` (else of the system bundle) |
//! | `verify-full` | always | as `verify-ca`, and it names the host of the URL |
//!
//! Without `sslmode` the mode is `prefer` when every host is local (a Unix socket, `localhost`
//! or a loopback address) and `verify-full` otherwise: a compliance product does not send its
//! database password and its machines' state over a network unchecked by default. Unix
//! sockets never use TLS (neither does libpq). The stream offers `tls-server-end-point`
//! channel binding, which SCRAM logins use when the server offers it.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::Host;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

/// libpq's `sslmode`, less `allow` (plain first, TLS if refused: never safer than `prefer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// What a database URL asks of the connection: the rest of the URL parsed by tokio-postgres,
/// and the TLS settings taken out of it.
#[derive(Debug, Clone)]
pub struct Target {
    pub config: tokio_postgres::Config,
    /// The mode in force (the default filled in).
    pub mode: SslMode,
    /// `sslmode` was not in the URL.
    pub defaulted: bool,
    /// `sslrootcert=FILE`, percent-decoded.
    pub root_cert: Option<PathBuf>,
}

impl Target {
    /// Parses `url`. Errors say what is wrong with the text as typed, never showing the
    /// password (the caller names where the URL came from).
    pub fn parse(url: &str) -> Result<Target, String> {
        let (rest, mode, root_cert) = split_tls_params(url)?;
        let mut config: tokio_postgres::Config = rest.parse().map_err(|e: tokio_postgres::Error| not_a_url(&e))?;
        let hosts = config.get_hosts();
        let all_unix = !hosts.is_empty() && hosts.iter().all(|h| !matches!(h, Host::Tcp(_)));
        let defaulted = mode.is_none();
        let mode = if all_unix {
            // TLS is not spoken over Unix sockets (libpq ignores sslmode there too).
            SslMode::Disable
        } else {
            mode.unwrap_or(if is_local(&config) {
                SslMode::Prefer
            } else {
                SslMode::VerifyFull
            })
        };
        config.ssl_mode(match mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        });
        Ok(Target {
            config,
            mode,
            defaulted,
            root_cert,
        })
    }

    /// How errors name the mode: `sslmode=verify-full (the default for a host that is not
    /// local)`.
    pub fn mode_shown(&self) -> String {
        match (self.defaulted, self.mode) {
            (false, m) => format!("sslmode={}", m.as_str()),
            (true, SslMode::VerifyFull) => {
                "sslmode=verify-full (the default for a host that is not local; set sslmode in the URL to change it)"
                    .into()
            }
            (true, m) => format!("sslmode={} (the default)", m.as_str()),
        }
    }

    /// The connector for this target: reads `sslrootcert` (or, for the verifying modes
    /// without it, the system CA bundle). Errors name the file and the URL parameter.
    pub fn connector(&self) -> Result<MakeRustls, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let algorithms = provider.signature_verification_algorithms;
        let checks_chain = matches!(self.mode, SslMode::VerifyCa | SslMode::VerifyFull)
            || (self.mode == SslMode::Require && self.root_cert.is_some());
        let (chain, roots_shown) = if checks_chain {
            let (certs, shown) = match &self.root_cert {
                Some(path) => (
                    crate::notify::roots::read_pem_certs(path).map_err(|e| format!("sslrootcert: {e}"))?,
                    format!("sslrootcert={}", path.display()),
                ),
                None => {
                    let bundle = crate::notify::roots::system_bundle();
                    let certs = crate::notify::roots::trust_anchors(None).map_err(|e| {
                        format!(
                            "{} checks the server's certificate and needs CA certificates: {e}; name the CA file with sslrootcert=FILE in the URL",
                            self.mode_shown()
                        )
                    })?;
                    let shown = match bundle {
                        Some(b) => format!("the system CA bundle {} (no sslrootcert)", b.display()),
                        None => "the system CA bundle (no sslrootcert)".into(),
                    };
                    (certs, shown)
                }
            };
            let mut roots = rustls::RootCertStore::empty();
            let (added, _ignored) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!("{shown}: no usable CA certificate"));
            }
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                .build()
                .map_err(|e| format!("cannot check certificates against {shown}: {e}"))?;
            (Some(webpki), shown)
        } else {
            (None, String::new())
        };
        let verifier = Arc::new(Verifier {
            chain,
            check_name: self.mode == SslMode::VerifyFull,
            algorithms,
        });
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| format!("cannot set up TLS: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(MakeRustls {
            config: Arc::new(config),
            mode: self.mode,
            roots_shown: Arc::from(roots_shown),
        })
    }
}

/// The URL without `sslmode` and `sslrootcert`, and their values. Client certificates
/// (`sslcert`, `sslkey`) are refused by name rather than by tokio-postgres's "unknown option".
fn split_tls_params(url: &str) -> Result<(String, Option<SslMode>, Option<PathBuf>), String> {
    let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
    if !is_url {
        return split_key_value(url);
    }
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), None, None));
    };
    let (mut mode, mut root_cert, mut kept) = (None, None, Vec::new());
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => {
                let value = percent_decode(value)?;
                mode = Some(SslMode::parse(&value).ok_or_else(|| {
                    format!("sslmode={value} is not a mode: use disable, prefer, require, verify-ca or verify-full")
                })?);
            }
            "sslrootcert" => {
                let value = percent_decode(value)?;
                if value.is_empty() {
                    return Err("sslrootcert is empty: name a PEM file of CA certificates".into());
                }
                root_cert = Some(PathBuf::from(value));
            }
            "sslcert" | "sslkey" | "sslpassword" | "sslcrl" => {
                return Err(format!(
                    "{key} is not supported (client certificates and CRLs); remove it from the URL"
                ));
            }
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, mode, root_cert))
}

/// [`split_tls_params`] for a key-value string (`host=db sslmode=verify-full ...`): unquoted
/// `sslmode=` and `sslrootcert=` are cut out of the text, the rest is kept as it was.
fn split_key_value(text: &str) -> Result<(String, Option<SslMode>, Option<PathBuf>), String> {
    let (mut mode, mut root_cert, mut rest, mut kept_to) = (None, None, String::new(), 0);
    for token in text.split_whitespace() {
        let start = token.as_ptr() as usize - text.as_ptr() as usize;
        match token.split_once('=') {
            Some(("sslmode", v)) => {
                mode = Some(SslMode::parse(v).ok_or_else(|| {
                    format!("sslmode={v} is not a mode: use disable, prefer, require, verify-ca or verify-full")
                })?)
            }
            Some(("sslrootcert", v)) if !v.is_empty() => root_cert = Some(PathBuf::from(v)),
            _ => continue,
        }
        rest.push_str(&text[kept_to..start]);
        kept_to = start + token.len();
    }
    rest.push_str(&text[kept_to..]);
    Ok((rest, mode, root_cert))
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok());
            let Some(b) = hex else {
                return Err(format!("`{s}` has a bad percent escape"));
            };
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("`{s}` is not UTF-8 once decoded"))
}

fn not_a_url(e: &tokio_postgres::Error) -> String {
    // tokio-postgres's own words are its cause ("invalid value for option `port`").
    let cause = std::error::Error::source(e).map(|c| c.to_string());
    super::codec::redact_url(&match cause {
        Some(c) => format!("not a PostgreSQL URL: {e}: {c}"),
        None => format!("not a PostgreSQL URL: {e}"),
    })
}

/// Every host (and host address) is on this machine.
fn is_local(config: &tokio_postgres::Config) -> bool {
    let host_local = |h: &Host| match h {
        Host::Tcp(name) => {
            name.eq_ignore_ascii_case("localhost")
                || name
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        #[cfg(unix)]
        Host::Unix(_) => true,
    };
    config.get_hosts().iter().all(host_local) && config.get_hostaddrs().iter().all(|a| a.is_loopback())
}

/// The server's certificate as the mode checks it: under `verify-full` the chain to a trusted
/// CA and the host name, under `verify-ca` the chain only (rustls checks the chain before the
/// name, so a name error means the chain was good), under `prefer` and `require` nothing, as
/// libpq has them. The handshake's signature is always checked against the certificate sent.
#[derive(Debug)]
struct Verifier {
    chain: Option<Arc<WebPkiServerVerifier>>,
    check_name: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The connector handed to tokio-postgres.
#[derive(Clone)]
pub struct MakeRustls {
    config: Arc<rustls::ClientConfig>,
    mode: SslMode,
    /// Where the trusted CAs came from, for errors.
    roots_shown: Arc<str>,
}

impl std::fmt::Debug for MakeRustls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MakeRustls")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = HandshakeError;

    /// The name is checked at the handshake, not here: tokio-postgres makes a connector before
    /// it knows whether the server will speak TLS at all (under `prefer` it may not).
    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, HandshakeError> {
        Ok(RustlsConnect {
            make: self.clone(),
            host: domain.to_string(),
        })
    }
}

/// One handshake's connector.
pub struct RustlsConnect {
    make: MakeRustls,
    host: String,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = HandshakeError;
    type Future = Pin<Box<dyn Future<Output = Result<RustlsStream<S>, HandshakeError>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        let connector = tokio_rustls::TlsConnector::from(Arc::clone(&self.make.config));
        Box::pin(async move {
            let host = &self.host;
            let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']'))
                .map_err(|e| HandshakeError(format!("`{host}` is not a host name TLS can check: {e}")))?
                .to_owned();
            match connector.connect(name, stream).await {
                Ok(s) => Ok(RustlsStream(s)),
                Err(e) => Err(HandshakeError(explain(&e, &self.host, &self.make))),
            }
        })
    }
}

/// What went wrong in a handshake, in words that name the mode, the host and the CA file.
fn explain(e: &io::Error, host: &str, make: &MakeRustls) -> String {
    let mode = make.mode.as_str();
    let roots = &make.roots_shown;
    match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(
            c @ (CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }),
        )) => format!(
            "certificate verification failed: the server's certificate does not name the host `{host}` \
             (sslmode={mode} checks the host name; connect by a name the certificate holds, or use \
             sslmode=verify-ca to check only the CA): {c}"
        ),
        Some(rustls::Error::InvalidCertificate(c)) => format!(
            "certificate verification failed (sslmode={mode}): the server's certificate at `{host}` \
             is not trusted by {roots}: {c:?}"
        ),
        Some(other) => format!("TLS handshake with `{host}` failed (sslmode={mode}): {other}"),
        None => format!("TLS handshake with `{host}` failed (sslmode={mode}): {e}"),
    }
}

/// A handshake's failure, explained.
#[derive(Debug)]
pub struct HandshakeError(String);

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HandshakeError {}

/// An encrypted connection to the server.
pub struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        let (_, session) = self.0.get_ref();
        match session
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(|c| end_point_hash(c))
        {
            Some(hash) => ChannelBinding::tls_server_end_point(hash),
            None => ChannelBinding::none(),
        }
    }
}

/// RFC 5929 `tls-server-end-point`: the certificate's hash, by the hash of its signature
/// algorithm (SHA-256 for MD5 and SHA-1). `None` for an algorithm it does not define (Ed25519,
/// RSA-PSS, whose hash is in the parameters): SCRAM then runs without channel binding.
pub fn end_point_hash(cert_der: &[u8]) -> Option<Vec<u8>> {
    // Certificate ::= SEQUENCE { tbsCertificate SEQUENCE, signatureAlgorithm SEQUENCE { OID, .. }, .. }
    let (cert, _) = der_tlv(cert_der, 0x30)?;
    let (_tbs, rest) = der_tlv(cert, 0x30)?;
    let (algorithm, _) = der_tlv(rest, 0x30)?;
    let (oid, _) = der_tlv(algorithm, 0x06)?;
    const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01]; // 1.2.840.113549.1.1
    const ECDSA_SHA2: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03]; // 1.2.840.10045.4.3
    const ECDSA_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01]; // 1.2.840.10045.4.1
    let digest = match oid {
        [p @ .., 4 | 5 | 11] if p == RSA => &ring::digest::SHA256, // md5, sha1, sha256
        [p @ .., 12] if p == RSA => &ring::digest::SHA384,
        [p @ .., 13] if p == RSA => &ring::digest::SHA512,
        o if o == ECDSA_SHA1 => &ring::digest::SHA256,
        [p @ .., 2] if p == ECDSA_SHA2 => &ring::digest::SHA256,
        [p @ .., 3] if p == ECDSA_SHA2 => &ring::digest::SHA384,
        [p @ .., 4] if p == ECDSA_SHA2 => &ring::digest::SHA512,
        _ => return None,
    };
    Some(ring::digest::digest(digest, cert_der).as_ref().to_vec())
}

/// One DER element of tag `tag` at the start of `input`: its contents and what follows it.
fn der_tlv(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&t, rest) = input.split_first()?;
    if t != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |l, &b| (l << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// Whether `e` (from connecting) is a TLS failure, and its explanation: the handshake's, or
/// the server's refusal under a mode that needs TLS.
pub fn failure(e: &tokio_postgres::Error, target: &Target) -> Option<String> {
    if e.to_string() != "error performing TLS handshake" {
        return None;
    }
    let cause = std::error::Error::source(e)?;
    if cause.is::<HandshakeError>() {
        return Some(cause.to_string());
    }
    let cause = cause.to_string();
    if cause == "server does not support TLS" {
        return Some(format!(
            "the server refused TLS (it runs without ssl = on), and {} needs it: turn TLS on in the server, or set sslmode=prefer or sslmode=disable in the URL to allow a plain connection",
            target.mode_shown()
        ));
    }
    Some(format!("TLS ({}): {cause}", target.mode_shown()))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn target(url: &str) -> Target {
        Target::parse(url).unwrap()
    }

    #[test]
    fn sslmode_defaults_to_prefer_locally_and_verify_full_elsewhere() {
        for local in [
            "postgres://u@127.0.0.1/db",
            "postgres://u@localhost:5433/db",
            "postgres://u@[::1]/db",
        ] {
            let t = target(local);
            assert_eq!((t.mode, t.defaulted), (SslMode::Prefer, true), "{local}");
        }
        let t = target("postgres://u:pw@db.example/db");
        assert_eq!((t.mode, t.defaulted), (SslMode::VerifyFull, true));
        assert!(t.mode_shown().contains("the default for a host that is not local"));
        assert_eq!(target("postgres://u@10.0.0.5/db").mode, SslMode::VerifyFull);
        // A Unix socket never speaks TLS.
        assert_eq!(target("postgres://u@%2Frun%2Fpostgresql/db").mode, SslMode::Disable);
    }

    #[test]
    fn sslmode_and_sslrootcert_are_taken_out_and_the_rest_kept() {
        let t = target("postgres://u@db.example/db?sslmode=verify-ca&application_name=x&sslrootcert=%2Fetc%2Fca.pem");
        assert_eq!((t.mode, t.defaulted), (SslMode::VerifyCa, false));
        assert_eq!(t.root_cert.as_deref(), Some(Path::new("/etc/ca.pem")));
        assert_eq!(t.config.get_application_name(), Some("x"));
        assert_eq!(t.config.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
        let t = target("postgres://u@db.example/db?sslmode=disable");
        assert_eq!(t.config.get_ssl_mode(), tokio_postgres::config::SslMode::Disable);
        let t = target("postgres://u@127.0.0.1/db?sslmode=require");
        assert_eq!(t.mode_shown(), "sslmode=require");
    }

    #[test]
    fn a_key_value_string_keeps_its_sslmode() {
        let t = target("host=db.example user=u sslmode=require password='a  b'");
        assert_eq!((t.mode, t.defaulted), (SslMode::Require, false));
        assert_eq!(t.config.get_password(), Some(&b"a  b"[..]), "the rest kept as written");
        let t = target("host=db.example sslmode=verify-ca sslrootcert=/etc/ca.pem user=u");
        assert_eq!(t.mode, SslMode::VerifyCa);
        assert_eq!(t.root_cert.as_deref(), Some(Path::new("/etc/ca.pem")));
        assert_eq!(t.config.get_user(), Some("u"));
        assert_eq!(target("host=db.example user=u").mode, SslMode::VerifyFull);
    }

    #[test]
    fn bad_tls_parameters_are_named() {
        let e = Target::parse("postgres://u:s3cret@db/db?sslmode=verify").unwrap_err();
        assert!(e.contains("sslmode=verify is not a mode"), "{e}");
        let e = Target::parse("postgres://u@db/db?sslcert=/c.pem").unwrap_err();
        assert!(e.contains("sslcert is not supported"), "{e}");
        let e = Target::parse("postgres://u@db/db?sslrootcert=").unwrap_err();
        assert!(e.contains("sslrootcert is empty"), "{e}");
        let e = Target::parse("postgres://u:s3cret@db:notaport/db").unwrap_err();
        assert!(!e.contains("s3cret"), "{e}");
    }

    #[test]
    fn a_missing_root_cert_names_the_file_and_the_parameter() {
        let t = target("postgres://u@db.example/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem");
        let e = t.connector().unwrap_err();
        assert!(
            e.starts_with("sslrootcert: cannot read CA file /nonexistent/ca.pem"),
            "{e}"
        );
    }

    #[test]
    fn the_end_point_hash_follows_the_signature_algorithm() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["db.example".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = cert.der();
        assert_eq!(
            end_point_hash(der),
            Some(ring::digest::digest(&ring::digest::SHA256, der).as_ref().to_vec())
        );
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["db.example".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert_eq!(end_point_hash(cert.der()).map(|h| h.len()), Some(48));
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["db.example".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert_eq!(end_point_hash(cert.der()), None, "Ed25519 has no end-point hash");
        assert_eq!(end_point_hash(b"\x30\x03\x02\x01"), None, "cut short");
    }
}
