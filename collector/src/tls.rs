//! TLS for the collector: TLS 1.2 and 1.3 only (rustls, ring provider).
//!
//! With no certificate configured, the first start creates a CA and a server certificate
//! signed by it in the data dir (`ca.pem`, `ca/ca-key.pem`, `server.pem`, `server-key.pem`; keys
//! mode 0600). Agents enroll with `--ca DATA_DIR/ca.pem`; the CA's SHA-256 fingerprint is
//! logged so a technician can compare it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::config::TlsSettings;

/// Errors while preparing TLS.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("cannot generate certificates: {0}")]
    Generate(String),
    #[error("invalid TLS configuration: {0}")]
    Rustls(String),
    #[error(
        "{data_dir} has some but not all of ca.pem, ca/ca-key.pem, server.pem, server-key.pem; restore the missing files or move them all away to generate new ones (agents must then re-enroll)"
    )]
    Partial { data_dir: PathBuf },
}

/// TLS material ready to serve.
#[derive(Debug, Clone)]
pub struct TlsMaterial {
    pub server_config: Arc<ServerConfig>,
    /// The CA file agents should trust (generated case), or `None` when configured by files.
    pub ca_file: Option<PathBuf>,
    /// SHA-256 fingerprint of the CA (generated case) or leaf certificate, `AA:BB:...`.
    pub fingerprint: String,
    /// True when this start generated new material.
    pub generated_now: bool,
}

/// The fingerprint as colon-separated upper-case hex.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub(crate) fn write_file(path: &Path, contents: &str, private: bool) -> Result<(), TlsError> {
    let err = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    // An exclusively created temporary file, never a planted one (issue 15).
    crate::security::files::write_atomically(path, contents.as_bytes(), private).map_err(err)
}

/// The generated CA's parameters: the same subject every time, so that a leaf signed again
/// with the CA's key (renewal) chains to the `ca.pem` agents hold.
pub(crate) fn ca_params(now: chrono::DateTime<chrono::Utc>) -> Result<CertificateParams, TlsError> {
    let g = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(g)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name.push(DnType::CommonName, "Rounds collector CA");
    ca.distinguished_name.push(DnType::OrganizationName, "Rounds");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut ca, 10, now);
    Ok(ca)
}

fn generate(data_dir: &Path, extra_names: &[String]) -> Result<(), TlsError> {
    let g = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let ca_key = KeyPair::generate().map_err(g)?;
    let ca_cert = ca_params(chrono::Utc::now())?.self_signed(&ca_key).map_err(g)?;
    let (server_cert, server_key) = leaf(extra_names, &ca_cert, &ca_key, chrono::Utc::now())?;

    std::fs::create_dir_all(data_dir).map_err(|source| TlsError::Write {
        path: data_dir.to_path_buf(),
        source,
    })?;
    // The CA key apart, in its own 0700 dir: the server's TLS needs only the leaf (issue 15).
    let ca_key_path = crate::security::renew::ca_key_path(data_dir);
    crate::security::renew::ensure_ca_dir(data_dir)?;
    write_file(&ca_key_path, &ca_key.serialize_pem(), true)?;
    write_file(&data_dir.join("server-key.pem"), &server_key.serialize_pem(), true)?;
    write_file(
        &data_dir.join("server.pem"),
        &(server_cert.pem() + &ca_cert.pem()),
        false,
    )?;
    // ca.pem last: its presence marks a complete set.
    write_file(&data_dir.join("ca.pem"), &ca_cert.pem(), false)?;
    Ok(())
}

/// A server certificate for `extra_names` (and this host's names), valid two years from
/// `now`, signed by the CA.
pub(crate) fn leaf(
    extra_names: &[String],
    ca_cert: &rcgen::Certificate,
    ca_key: &KeyPair,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(rcgen::Certificate, KeyPair), TlsError> {
    let g = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let mut names = vec!["localhost".to_string()];
    if let Ok(h) = std::fs::read_to_string("/etc/hostname") {
        let h = h.trim();
        if !h.is_empty() && h != "localhost" {
            names.push(h.to_string());
        }
    }
    names.extend(extra_names.iter().cloned());
    let mut server = CertificateParams::new(Vec::<String>::new()).map_err(g)?;
    server.distinguished_name.push(DnType::CommonName, "Rounds collector");
    for n in &names {
        match n.parse::<std::net::IpAddr>() {
            Ok(ip) => server.subject_alt_names.push(SanType::IpAddress(ip)),
            Err(_) => server
                .subject_alt_names
                .push(SanType::DnsName(n.clone().try_into().map_err(g)?)),
        }
    }
    for ip in ["127.0.0.1", "::1"] {
        if let Ok(ip) = ip.parse() {
            server.subject_alt_names.push(SanType::IpAddress(ip));
        }
    }
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    server.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut server, 2, now);
    let server_key = KeyPair::generate().map_err(g)?;
    let server_cert = server.signed_by(&server_key, ca_cert, ca_key).map_err(g)?;
    Ok((server_cert, server_key))
}

/// A validity window from the day before `now` (tolerating small clock skew) for `years` years.
fn validity(params: &mut CertificateParams, years: i32, now: chrono::DateTime<chrono::Utc>) {
    use chrono::Datelike;
    let start = (now - chrono::Duration::days(1)).date_naive();
    let (m, d) = (start.month() as u8, start.day().min(28) as u8);
    params.not_before = rcgen::date_time_ymd(start.year(), m, d);
    params.not_after = rcgen::date_time_ymd(start.year() + years, m, d);
}

pub(crate) fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_path_buf(),
            message: "no certificate found".into(),
        });
    }
    Ok(certs)
}

pub(crate) fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::Pem {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Builds a server config from a certificate chain and key: TLS 1.2 and 1.3, HTTP/1.1.
pub fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Loads the configured certificate, or the generated one (creating it on first start).
pub fn prepare(settings: &TlsSettings, data_dir: &Path) -> Result<TlsMaterial, TlsError> {
    match settings {
        TlsSettings::Files { cert_file, key_file } => {
            let certs = read_certs(cert_file)?;
            let fp = fingerprint(certs[0].as_ref());
            Ok(TlsMaterial {
                server_config: server_config(certs, read_key(key_file)?)?,
                ca_file: None,
                fingerprint: fp,
                generated_now: false,
            })
        }
        TlsSettings::Generated { subject_alt_names } => {
            // A CA key of an older version, beside the server's files, goes into the CA dir.
            crate::security::renew::move_ca_key(data_dir)?;
            let files = [
                data_dir.join("ca.pem"),
                crate::security::renew::ca_key_path(data_dir),
                data_dir.join("server.pem"),
                data_dir.join("server-key.pem"),
            ];
            let present = files.iter().filter(|f| f.exists()).count();
            let generated_now = present == 0;
            if generated_now {
                generate(data_dir, subject_alt_names)?;
            } else if present != files.len() {
                return Err(TlsError::Partial {
                    data_dir: data_dir.to_path_buf(),
                });
            }
            for key in [&files[1], &files[3]] {
                crate::security::files::keep_private(key, false).map_err(|source| TlsError::Write {
                    path: key.clone(),
                    source,
                })?;
            }
            let ca = read_certs(&files[0])?;
            let certs = read_certs(&files[2])?;
            Ok(TlsMaterial {
                server_config: server_config(certs, read_key(&files[3])?)?,
                ca_file: Some(files[0].clone()),
                fingerprint: fingerprint(ca[0].as_ref()),
                generated_now,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_start_generates_and_second_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let s = TlsSettings::Generated {
            subject_alt_names: vec!["collector.example".into(), "10.0.0.5".into()],
        };
        let a = prepare(&s, dir.path()).unwrap();
        assert!(a.generated_now);
        assert_eq!(a.ca_file.as_deref(), Some(dir.path().join("ca.pem").as_path()));
        assert_eq!(a.fingerprint.len(), 32 * 3 - 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("ca/ca-key.pem"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let b = prepare(&s, dir.path()).unwrap();
        assert!(!b.generated_now);
        assert_eq!(a.fingerprint, b.fingerprint);
    }

    #[test]
    fn partial_material_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = TlsSettings::Generated {
            subject_alt_names: vec![],
        };
        prepare(&s, dir.path()).unwrap();
        std::fs::remove_file(dir.path().join("server-key.pem")).unwrap();
        let err = prepare(&s, dir.path()).unwrap_err().to_string();
        assert!(err.contains("some but not all"), "{err}");
    }

    #[test]
    fn garbage_certificate_file_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("c.pem");
        std::fs::write(&cert, "not a certificate").unwrap();
        let s = TlsSettings::Files {
            cert_file: cert.clone(),
            key_file: dir.path().join("k.pem"),
        };
        let err = prepare(&s, dir.path()).unwrap_err().to_string();
        assert!(err.contains("c.pem"), "{err}");
    }
}
