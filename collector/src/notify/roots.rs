//! Trust anchors for the channels' TLS: the machine's CA bundle plus an optional extra CA file.
//!
//! The lean choice: no compiled-in root list (no `webpki-roots` crate); the collector trusts the
//! system bundle that the distribution's `ca-certificates` package keeps current
//! (`$SSL_CERT_FILE`, else `/etc/ssl/certs/ca-certificates.crt`, else
//! `/etc/pki/tls/certs/ca-bundle.crt`). A private relay or receiver adds its CA with `ca_file`.

use std::path::{Path, PathBuf};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The system bundles tried in order when `SSL_CERT_FILE` is not set.
pub const SYSTEM_BUNDLES: &[&str] = &["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"];

/// The system CA bundle's path, if there is one.
pub fn system_bundle() -> Option<PathBuf> {
    if let Some(f) = std::env::var_os("SSL_CERT_FILE") {
        return Some(PathBuf::from(f));
    }
    SYSTEM_BUNDLES.iter().map(PathBuf::from).find(|p| p.is_file())
}

/// Every certificate in a PEM file; errors name the file.
pub fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("CA file {} is not PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("CA file {} holds no certificate", path.display()));
    }
    Ok(certs)
}

/// The system bundle (when present) plus `extra`. At least one certificate, or an error.
pub fn trust_anchors(extra: Option<&Path>) -> Result<Vec<CertificateDer<'static>>, String> {
    let mut certs = Vec::new();
    if let Some(bundle) = system_bundle() {
        match read_pem_certs(&bundle) {
            Ok(c) => certs.extend(c),
            // An explicit extra CA still works on a machine with a broken bundle.
            Err(e) if extra.is_some() => tracing::warn!("{e}; trusting only the configured ca_file"),
            Err(e) => return Err(e),
        }
    }
    if let Some(extra) = extra {
        certs.extend(read_pem_certs(extra)?);
    }
    if certs.is_empty() {
        return Err("no CA certificates: the system has no CA bundle (install ca-certificates or set ca_file)".into());
    }
    Ok(certs)
}

/// A rustls client configuration (ring, TLS 1.2 and 1.3) trusting [`trust_anchors`].
pub fn client_config(extra: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    let (_added, _ignored) = roots.add_parsable_certificates(trust_anchors(extra)?);
    if roots.is_empty() {
        return Err("no usable CA certificate in the system bundle or ca_file".into());
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
