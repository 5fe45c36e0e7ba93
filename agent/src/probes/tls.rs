//! TLS for the probes: the roots in use, and a certificate verifier that records what it found
//! (chain verified, hostname match, expiry of the leaf and of the verified chain) instead of
//! only failing, so a probe can say *why* a certificate is bad and still report the TLS version
//! and cipher suite the server negotiated.
//!
//! Invariant: a probe whose certificate did not verify never sends its HTTP request; the
//! handshake is completed only to learn the protocol parameters.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::x509;

/// Where the host's CA bundle is, by distribution, under the host root.
pub const SYSTEM_BUNDLES: &[&str] = &[
    "etc/ssl/certs/ca-certificates.crt",
    "etc/pki/tls/certs/ca-bundle.crt",
    "etc/ssl/cert.pem",
];

/// Trust anchors and where they came from (`system` or a CA file's path).
#[derive(Debug)]
pub struct Roots {
    pub source: String,
    pub anchors: Vec<TrustAnchor<'static>>,
}

/// Why a set of roots cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum RootsError {
    #[error("cannot read CA file {path}: {detail}")]
    Read { path: PathBuf, detail: String },
    #[error("CA file {0} holds no usable certificate")]
    Empty(PathBuf),
}

impl Roots {
    /// The certificates of a PEM file as trust anchors.
    pub fn from_pem_file(path: &Path, source: String) -> Result<Roots, RootsError> {
        let iter = CertificateDer::pem_file_iter(path).map_err(|e| RootsError::Read {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        let anchors: Vec<TrustAnchor<'static>> = iter
            .filter_map(Result::ok)
            .filter_map(|der| webpki::anchor_from_trusted_cert(&der).ok().map(|a| a.to_owned()))
            .collect();
        if anchors.is_empty() {
            return Err(RootsError::Empty(path.to_path_buf()));
        }
        Ok(Roots { source, anchors })
    }

    /// The host's CA bundle under `root`; empty (every chain untrusted) when there is none.
    pub fn system(root: &Path) -> Roots {
        SYSTEM_BUNDLES
            .iter()
            .map(|b| root.join(b))
            .find(|p| p.is_file())
            .and_then(|p| Roots::from_pem_file(&p, "system".into()).ok())
            .unwrap_or(Roots {
                source: "system".into(),
                anchors: Vec::new(),
            })
    }
}

/// What the verifier found about the server's certificate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CertOutcome {
    /// The chain verifies against the roots in use.
    pub chain_verified: bool,
    /// Why it does not: `cert_expired` or `cert_untrusted`, with the verifier's words.
    pub chain_error: Option<(&'static str, String)>,
    pub hostname_match: bool,
    pub leaf_not_after: Option<DateTime<Utc>>,
    /// Earliest `notAfter` of the leaf and the intermediates of the verified path (the trust
    /// anchor is not part of it); the leaf's when the chain did not verify.
    pub chain_not_after: Option<DateTime<Utc>>,
}

/// A verifier that records its outcome and lets the handshake finish.
#[derive(Debug)]
pub struct RecordingVerifier {
    roots: Arc<Roots>,
    provider: Arc<CryptoProvider>,
    outcome: Mutex<Option<CertOutcome>>,
}

impl RecordingVerifier {
    pub fn new(roots: Arc<Roots>, provider: Arc<CryptoProvider>) -> Self {
        RecordingVerifier {
            roots,
            provider,
            outcome: Mutex::new(None),
        }
    }

    /// What verification found; `None` when the server sent no certificate.
    pub fn outcome(&self) -> Option<CertOutcome> {
        self.outcome.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Verifies `end_entity` with `intermediates` for `server_name` against `roots` at `now`.
pub fn verify(
    roots: &Roots,
    provider: &CryptoProvider,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    server_name: &ServerName<'_>,
    now: UnixTime,
) -> CertOutcome {
    let leaf_not_after = x509::not_after(end_entity);
    let mut out = CertOutcome {
        leaf_not_after,
        chain_not_after: leaf_not_after,
        ..CertOutcome::default()
    };
    let ee = match webpki::EndEntityCert::try_from(end_entity) {
        Ok(ee) => ee,
        Err(e) => {
            out.chain_error = Some(("cert_untrusted", format!("unreadable certificate: {e}")));
            return out;
        }
    };
    out.hostname_match = ee.verify_is_valid_for_subject_name(server_name).is_ok();
    match ee.verify_for_usage(
        provider.signature_verification_algorithms.all,
        &roots.anchors,
        intermediates,
        now,
        webpki::KeyUsage::server_auth(),
        None,
        None,
    ) {
        Ok(path) => {
            out.chain_verified = true;
            out.chain_not_after = path
                .intermediate_certificates()
                .filter_map(|c| x509::not_after(&c.der()))
                .chain(leaf_not_after)
                .min();
        }
        Err(e) => {
            let reason = match e {
                webpki::Error::CertExpired { .. } | webpki::Error::CertNotValidYet { .. } => "cert_expired",
                _ => "cert_untrusted",
            };
            let words = match &e {
                webpki::Error::UnknownIssuer => {
                    format!("certificate issuer is not trusted by the {} roots", roots.source)
                }
                webpki::Error::CertExpired { .. } => "certificate in the chain has expired".to_string(),
                webpki::Error::CertNotValidYet { .. } => "certificate in the chain is not valid yet".to_string(),
                other => format!("certificate chain does not verify: {other:?}"),
            };
            out.chain_error = Some((reason, words));
        }
    }
    out
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let outcome = verify(&self.roots, &self.provider, end_entity, intermediates, server_name, now);
        *self.outcome.lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome);
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// `TLSv1.2`, `TLSv1.3` (the names the transmission rules compare with).
pub fn version_name(v: rustls::ProtocolVersion) -> String {
    match v {
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".into(),
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".into(),
        other => format!("{other:?}"),
    }
}
