//! Enrollment by CA fingerprint: fetch the collector's CA over TLS and keep it only if its
//! SHA-256 is the one the technician was given (as `kubeadm join
//! --discovery-token-ca-cert-hash` does).
//!
//! How (see ARCHITECTURE.md, fingerprint enrollment): one TLS handshake with the collector whose
//! certificate verifier records the chain the server presents instead of judging it (the
//! handshake signature is still checked, so the server holds the leaf's key). Nothing is sent
//! over that connection; it is closed after the handshake. The certificate of the chain whose
//! SHA-256 equals the pinned fingerprint becomes the CA. Enrollment then proceeds exactly as
//! with `--ca FILE`: a new connection that verifies the server's chain and host name against that
//! CA alone. The collector serves its CA in its chain (the generated `server.pem` is leaf + CA),
//! so no extra endpoint is needed, and a TLS-passthrough proxy in front changes nothing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

/// How long fetching the chain may take (TCP connect and handshake).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// A SHA-256 fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// Parses `sha256:HEX`, `SHA256:HEX`, or bare hex, with or without colons, any case.
    pub fn parse(text: &str) -> Result<Self, PinError> {
        let bad = |detail: &str| PinError::BadFingerprint {
            given: text.chars().take(120).collect(),
            detail: detail.into(),
        };
        let t = text.trim();
        let t = match t.split_once(':') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("sha256") || scheme.eq_ignore_ascii_case("sha-256") => {
                rest
            }
            _ => t,
        };
        let hex_digits: String = t.chars().filter(|c| *c != ':').collect();
        if hex_digits.len() != 64 {
            return Err(bad(&format!(
                "a SHA-256 fingerprint has 64 hex digits, this has {}",
                hex_digits.len()
            )));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(&hex_digits, &mut out).map_err(|e| bad(&e.to_string()))?;
        Ok(Fingerprint(out))
    }

    /// The fingerprint of a DER certificate.
    pub fn of(der: &[u8]) -> Self {
        Fingerprint(Sha256::digest(der).into())
    }
}

impl std::fmt::Display for Fingerprint {
    /// `sha256:` and lower-case hex, the form `rounds-collector token create` prints.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

/// Why the CA could not be fetched or was refused.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("--ca-fingerprint `{given}` is not a SHA-256 fingerprint: {detail}")]
    BadFingerprint { given: String, detail: String },
    #[error("invalid collector URL {url:?}: {detail}")]
    BadUrl { url: String, detail: String },
    #[error("cannot connect to {addr}: {detail}")]
    Connect { addr: String, detail: String },
    #[error("TLS handshake with {addr} failed: {detail}")]
    Handshake { addr: String, detail: String },
    #[error("fetching the CA from {addr} timed out after {FETCH_TIMEOUT:?}")]
    Timeout { addr: String },
    #[error(
        "the collector at {addr} presented no certificate with the expected fingerprint; nothing was stored. \
         expected {expected}, presented {}",
        presented_list(presented)
    )]
    Mismatch {
        addr: String,
        expected: Fingerprint,
        /// Fingerprints of the presented chain, leaf first (the CA is usually last).
        presented: Vec<Fingerprint>,
    },
    #[error(
        "the certificate with fingerprint {fingerprint} is not a CA certificate the collector's chain can be checked against: {detail}"
    )]
    NotUsable { fingerprint: Fingerprint, detail: String },
}

fn presented_list(presented: &[Fingerprint]) -> String {
    if presented.is_empty() {
        return "no certificate".into();
    }
    let n = presented.len();
    presented
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let role = if i == 0 {
                "server"
            } else if i + 1 == n {
                "CA"
            } else {
                "intermediate"
            };
            format!("{f} ({role})")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Connects to the collector at `base_url`, records the chain it presents and returns the
/// certificate whose SHA-256 is `expected`, as PEM.
pub async fn fetch_ca(base_url: &str, expected: Fingerprint) -> Result<Vec<u8>, PinError> {
    let bad = |detail: &str| PinError::BadUrl {
        url: base_url.into(),
        detail: detail.into(),
    };
    let url = reqwest::Url::parse(base_url).map_err(|e| bad(&e.to_string()))?;
    if url.scheme() != "https" {
        return Err(bad("the collector is reached over https only"));
    }
    let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| bad("no host"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let port = url.port_or_known_default().unwrap_or(443);
    let addr = format!("{host}:{port}");
    let server_name = ServerName::try_from(host.clone()).map_err(|e| bad(&e.to_string()))?;
    let chain = tokio::time::timeout(FETCH_TIMEOUT, presented_chain(&addr, server_name))
        .await
        .map_err(|_| PinError::Timeout { addr: addr.clone() })??;
    let presented: Vec<Fingerprint> = chain.iter().map(|c| Fingerprint::of(c)).collect();
    let Some(ca) = chain.iter().find(|c| Fingerprint::of(c) == expected) else {
        return Err(PinError::Mismatch {
            addr,
            expected,
            presented,
        });
    };
    // A trust anchor must parse; the real verification comes with the next connection.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).map_err(|e| PinError::NotUsable {
        fingerprint: expected,
        detail: e.to_string(),
    })?;
    Ok(pem(ca))
}

/// A certificate as PEM text.
pub fn pem(der: &[u8]) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out.into_bytes()
}

async fn presented_chain(addr: &str, name: ServerName<'static>) -> Result<Vec<CertificateDer<'static>>, PinError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let recorder = Arc::new(Recorder {
        seen: Mutex::new(Vec::new()),
        algorithms: provider.signature_verification_algorithms,
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| PinError::Handshake {
            addr: addr.into(),
            detail: e.to_string(),
        })?
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| PinError::Connect {
            addr: addr.into(),
            detail: e.to_string(),
        })?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let stream = connector.connect(name, tcp).await.map_err(|e| PinError::Handshake {
        addr: addr.into(),
        detail: e.to_string(),
    })?;
    drop(stream);
    let seen = recorder.seen.lock().map(|s| s.clone()).unwrap_or_default();
    Ok(seen)
}

/// A verifier that accepts any chain and records it; the handshake signatures are checked
/// with the provider's algorithms.
#[derive(Debug)]
struct Recorder {
    seen: Mutex<Vec<CertificateDer<'static>>>,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut seen) = self.seen.lock() {
            seen.clear();
            seen.push(end_entity.clone().into_owned());
            seen.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        }
        Ok(ServerCertVerified::assertion())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_accepted_spelling_parses_to_the_same_fingerprint() {
        let hex = "0123456789abcdef".repeat(4);
        let colons = hex
            .as_bytes()
            .chunks(2)
            .map(|c| String::from_utf8_lossy(c).to_uppercase())
            .collect::<Vec<_>>()
            .join(":");
        let want = Fingerprint::parse(&hex).unwrap();
        for s in [
            format!("sha256:{hex}"),
            format!("SHA256:{colons}"),
            format!("sha-256:{hex}"),
            colons.clone(),
            hex.to_uppercase(),
            format!("  {hex}\n"),
        ] {
            assert_eq!(Fingerprint::parse(&s).unwrap(), want, "{s}");
        }
        assert_eq!(want.to_string(), format!("sha256:{hex}"));
    }

    #[test]
    fn a_wrong_length_or_digit_names_what_was_typed() {
        let e = Fingerprint::parse("sha256:abcd").unwrap_err().to_string();
        assert!(
            e.contains("`sha256:abcd`") && e.contains("64 hex digits, this has 4"),
            "{e}"
        );
        let e = Fingerprint::parse(&"zz".repeat(32)).unwrap_err().to_string();
        assert!(e.contains("not a SHA-256 fingerprint"), "{e}");
    }

    #[test]
    fn pem_round_trips_through_the_pem_parser() {
        use rustls::pki_types::pem::PemObject;
        let der: Vec<u8> = (0..=255u8).cycle().take(700).collect();
        let text = pem(&der);
        let back: Vec<_> = CertificateDer::pem_slice_iter(&text).collect::<Result<_, _>>().unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].as_ref(), der.as_slice());
    }

    #[test]
    fn the_mismatch_message_shows_both_fingerprints() {
        let e = PinError::Mismatch {
            addr: "localhost:8443".into(),
            expected: Fingerprint([1; 32]),
            presented: vec![Fingerprint([2; 32]), Fingerprint([3; 32])],
        }
        .to_string();
        assert!(e.contains(&format!("expected sha256:{}", "01".repeat(32))), "{e}");
        assert!(e.contains(&format!("sha256:{} (CA)", "03".repeat(32))), "{e}");
        assert!(e.contains("nothing was stored"), "{e}");
    }
}
