//! Renewal of the generated server certificate (issue 15, item 4).
//!
//! The CA key lives apart in `DATA_DIR/ca/ca-key.pem` (dir 0700, file 0600); the TLS server
//! loads only `server.pem` and `server-key.pem`. A background job ([`Renewer`]) reads the
//! leaf's expiry and, [`RENEW_BEFORE_DAYS`] before it, signs a new leaf (new key, same names,
//! two years) with the CA key, writes it safely and swaps it into the running server. The CA
//! (ten years) stays, so agents, which trust only `ca.pem`, keep connecting. The log says when
//! the certificate expires and when it will be renewed. A certificate given in `[tls]`
//! (`cert_file`, `key_file`) is the operator's: it is never renewed here.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use rcgen::KeyPair;

use crate::clock::Clock;
use crate::tls::{TlsError, leaf, read_certs, read_key, server_config, write_file};

/// The dir of the CA key inside the data dir.
pub const CA_DIR: &str = "ca";
/// How long before the leaf expires it is renewed.
pub const RENEW_BEFORE_DAYS: i64 = 90;
/// How often the job looks (tokio time).
pub const CHECK_EVERY: Duration = Duration::from_secs(6 * 3600);

/// Where the CA key is kept.
pub fn ca_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join(CA_DIR).join("ca-key.pem")
}

/// Creates the CA dir, mode 0700.
pub fn ensure_ca_dir(data_dir: &Path) -> Result<(), TlsError> {
    let dir = data_dir.join(CA_DIR);
    let err = |source| TlsError::Write {
        path: dir.clone(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    Ok(())
}

/// Moves a CA key an older version left beside the server's files into the CA dir.
pub fn move_ca_key(data_dir: &Path) -> Result<(), TlsError> {
    let old = data_dir.join("ca-key.pem");
    let new = ca_key_path(data_dir);
    if old.is_file() && !new.exists() {
        ensure_ca_dir(data_dir)?;
        std::fs::rename(&old, &new).map_err(|source| TlsError::Write {
            path: new.clone(),
            source,
        })?;
        tracing::warn!(from = %old.display(), to = %new.display(), "CA key moved apart from the server's certificate");
    }
    Ok(())
}

/// The `notAfter` of the first certificate in a PEM file.
pub fn not_after(pem: &Path) -> Result<DateTime<Utc>, TlsError> {
    let certs = read_certs(pem)?;
    der_not_after(certs[0].as_ref()).ok_or_else(|| TlsError::Pem {
        path: pem.to_path_buf(),
        message: "cannot read the certificate's expiry".into(),
    })
}

/// One DER element: tag, content, what follows.
fn tlv(d: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = d.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        (rest[..n].iter().fold(0usize, |a, b| (a << 8) | *b as usize), &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// `notAfter` of a DER certificate: Certificate → TBSCertificate → (version?, serial,
/// signature, issuer, validity{notBefore, notAfter}).
pub fn der_not_after(der: &[u8]) -> Option<DateTime<Utc>> {
    let (_, cert, _) = tlv(der)?;
    let (_, tbs, _) = tlv(cert)?;
    let mut rest = tbs;
    let (tag, _, r) = tlv(rest)?;
    if tag == 0xA0 {
        rest = r;
    }
    for _ in 0..3 {
        rest = tlv(rest)?.2; // serial, signature algorithm, issuer
    }
    let (_, validity, _) = tlv(rest)?;
    let (_, _, after) = tlv(validity)?;
    let (tag, time, _) = tlv(after)?;
    let text = std::str::from_utf8(time).ok()?.trim_end_matches('Z');
    let parsed = match tag {
        0x17 => NaiveDateTime::parse_from_str(text, "%y%m%d%H%M%S").ok()?,
        0x18 => NaiveDateTime::parse_from_str(text, "%Y%m%d%H%M%S").ok()?,
        _ => return None,
    };
    Some(parsed.and_utc())
}

/// What a renewal check came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertState {
    /// When the leaf in use expires.
    pub not_after: DateTime<Utc>,
    /// When it is (or was) due for renewal.
    pub renew_at: DateTime<Utc>,
    /// Whether this check renewed it.
    pub renewed: bool,
}

/// Renews the leaf in `data_dir` when it is due at `now`; returns the state and, when
/// renewed, the new server configuration.
pub fn renew_if_due(
    data_dir: &Path,
    names: &[String],
    now: DateTime<Utc>,
) -> Result<(CertState, Option<Arc<rustls::ServerConfig>>), TlsError> {
    let server_pem = data_dir.join("server.pem");
    let expires = not_after(&server_pem)?;
    let renew_at = expires - chrono::Duration::days(RENEW_BEFORE_DAYS);
    if now < renew_at {
        return Ok((
            CertState {
                not_after: expires,
                renew_at,
                renewed: false,
            },
            None,
        ));
    }
    let g = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let key_path = ca_key_path(data_dir);
    let key_pem = std::fs::read_to_string(&key_path).map_err(|source| TlsError::Read {
        path: key_path.clone(),
        source,
    })?;
    let ca_key = KeyPair::from_pem(&key_pem).map_err(g)?;
    // The same subject and key as the CA agents hold: the new leaf chains to their ca.pem.
    let ca_cert = crate::tls::ca_params(now)?.self_signed(&ca_key).map_err(g)?;
    let ca_pem = std::fs::read_to_string(data_dir.join("ca.pem")).map_err(|source| TlsError::Read {
        path: data_dir.join("ca.pem"),
        source,
    })?;
    let (cert, key) = leaf(names, &ca_cert, &ca_key, now)?;
    let chain = cert.pem() + &ca_pem;
    // Check before writing: nothing is half-replaced.
    let certs = rustls::pki_types::pem::PemObject::pem_slice_iter(chain.as_bytes())
        .collect::<Result<Vec<rustls::pki_types::CertificateDer<'static>>, _>>()
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    let new_expiry = der_not_after(certs[0].as_ref())
        .ok_or_else(|| TlsError::Generate("the new certificate has no readable expiry".into()))?;
    write_file(&data_dir.join("server-key.pem"), &key.serialize_pem(), true)?;
    write_file(&server_pem, &chain, false)?;
    let config = server_config(read_certs(&server_pem)?, read_key(&data_dir.join("server-key.pem"))?)?;
    let next = new_expiry - chrono::Duration::days(RENEW_BEFORE_DAYS);
    tracing::info!(
        old_not_after = %expires.to_rfc3339(),
        not_after = %new_expiry.to_rfc3339(),
        next_renewal = %next.to_rfc3339(),
        "server certificate renewed from the collector's CA"
    );
    Ok((
        CertState {
            not_after: new_expiry,
            renew_at: next,
            renewed: true,
        },
        Some(config),
    ))
}

/// The background job: checks at start and every [`CHECK_EVERY`], renews when due and swaps
/// the new certificate into the running server.
pub struct Renewer {
    pub data_dir: PathBuf,
    pub names: Vec<String>,
    pub clock: Arc<dyn Clock>,
    pub config: axum_server::tls_rustls::RustlsConfig,
}

impl Renewer {
    /// One check (also what the job runs each time).
    pub fn check(&self) -> Result<CertState, TlsError> {
        let (state, config) = renew_if_due(&self.data_dir, &self.names, self.clock.now())?;
        if let Some(c) = config {
            self.config.reload_from_config(c);
        }
        Ok(state)
    }

    /// Runs until `stop` is cancelled.
    pub async fn run(self, stop: tokio_util::sync::CancellationToken) {
        loop {
            match self.check() {
                Ok(s) if !s.renewed => tracing::info!(
                    not_after = %s.not_after.to_rfc3339(),
                    renew_at = %s.renew_at.to_rfc3339(),
                    "server certificate valid; renewal scheduled"
                ),
                Ok(_) => {}
                Err(error) => tracing::error!(%error, "server certificate renewal failed; will retry"),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(CHECK_EVERY) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_ca_key_beside_the_server_files_is_moved_apart_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let settings = crate::config::TlsSettings::Generated {
            subject_alt_names: vec![],
        };
        let first = crate::tls::prepare(&settings, dir.path()).unwrap();
        // As an older collector left it.
        std::fs::rename(super::ca_key_path(dir.path()), dir.path().join("ca-key.pem")).unwrap();
        let again = crate::tls::prepare(&settings, dir.path()).unwrap();
        assert!(!dir.path().join("ca-key.pem").exists());
        assert!(super::ca_key_path(dir.path()).is_file());
        assert_eq!(first.fingerprint, again.fingerprint, "the same CA");
    }

    #[test]
    fn reads_the_expiry_of_a_generated_certificate() {
        let dir = tempfile::tempdir().unwrap();
        crate::tls::prepare(
            &crate::config::TlsSettings::Generated {
                subject_alt_names: vec![],
            },
            dir.path(),
        )
        .unwrap();
        let t = super::not_after(&dir.path().join("server.pem")).unwrap();
        let years = (t - chrono::Utc::now()).num_days() / 365;
        assert!((1..=2).contains(&years), "{t}");
    }
}
