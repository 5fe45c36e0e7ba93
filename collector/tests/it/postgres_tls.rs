//! TLS to PostgreSQL (`sslmode`, `sslrootcert`): which modes encrypt, which certificates each
//! accepts, and that every refusal names what was typed. Cases that need a server return after
//! saying loudly that they were skipped when `ROUNDS_TEST_POSTGRES_URL` is unset (or the server
//! runs without TLS).

use std::path::PathBuf;
use std::sync::Arc;

use rounds_collector::config::{Overrides, parse, validate};
use rounds_collector::store::postgres::PgStore;
use rounds_collector::store::postgres::codec::redact_url;
use rounds_collector::store::postgres::pool::Pool;
use rounds_collector::store::postgres::tls::Target;
use rounds_collector::store::{DbErrorKind, StoreError};
use rustls::pki_types::pem::PemObject;

use crate::support::{pg_schema, pg_url};

/// `url` with `params` added to its query string.
fn with(url: &str, params: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{params}")
}

/// A pool of one connection to `url`, as the store makes it.
fn pool(url: &str) -> Result<Arc<Pool>, String> {
    let target = Target::parse(url)?;
    let tls = target.connector()?;
    Ok(Pool::new(target, tls, redact_url(url), 1))
}

/// Whether the session of a connection to `url` is encrypted, or the error connecting.
async fn encrypted(url: &str) -> Result<bool, StoreError> {
    let pool = pool(url).map_err(|e| StoreError::message(DbErrorKind::Unavailable, "test", e))?;
    let conn = pool.get().await?;
    let row = conn
        .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
        .await
        .unwrap();
    Ok(row.get(0))
}

/// The test server's URL and the file of its certificate, when it has TLS on; otherwise `None`
/// after saying so loudly.
async fn tls_server() -> Option<(String, PathBuf)> {
    let url = pg_url()?;
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    let task = tokio::spawn(conn);
    let ssl: String = client.query_one("SHOW ssl", &[]).await.unwrap().get(0);
    let cert: String = client.query_one("SHOW ssl_cert_file", &[]).await.unwrap().get(0);
    drop(client);
    let _ = task.await;
    if ssl != "on" {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "\n*** the PostgreSQL test server runs without ssl = on: the TLS tests are SKIPPED ***\n"
        );
        return None;
    }
    Some((url, PathBuf::from(cert)))
}

#[tokio::test]
async fn postgres_tls_require_encrypts_the_session_and_disable_does_not() {
    let Some((url, _)) = tls_server().await else {
        return;
    };
    assert!(encrypted(&with(&url, "sslmode=require")).await.unwrap());
    assert!(!encrypted(&with(&url, "sslmode=disable")).await.unwrap());
    // Without sslmode a local host is `prefer`: TLS, since the server offers it.
    assert!(Target::parse(&url).unwrap().defaulted);
    assert!(encrypted(&url).await.unwrap(), "prefer takes the TLS the server offers");
}

#[tokio::test]
async fn postgres_tls_verify_ca_trusts_the_certificate_of_sslrootcert_and_the_store_opens() {
    let Some((_, cert)) = tls_server().await else {
        return;
    };
    let url = pg_schema().await.unwrap();
    let url = with(&url, &format!("sslmode=verify-ca&sslrootcert={}", cert.display()));
    assert!(encrypted(&url).await.unwrap());
    // The whole store over it: migrations run through the same verified connection.
    let store = PgStore::open(&url).await.unwrap();
    assert_eq!(
        store.schema_version().await.unwrap() as usize,
        rounds_collector::store::postgres::schema_version()
    );
    // Export's own connection beside the store takes the same mode and CA file.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.jsonl");
    use rounds_collector::store::transfer::{self, Location};
    transfer::export(&Location::Postgres(url.clone()), &file, chrono::Utc::now())
        .await
        .unwrap();
    assert!(std::fs::metadata(&file).unwrap().len() > 0);
}

#[tokio::test]
async fn postgres_tls_verify_full_accepts_exactly_the_host_names_the_certificate_holds() {
    let Some((url, cert)) = tls_server().await else {
        return;
    };
    let Some(rest) = url
        .split_once("@127.0.0.1")
        .map(|(a, b)| (a.to_string(), b.to_string()))
    else {
        panic!("these cases connect to 127.0.0.1 and localhost: ROUNDS_TEST_POSTGRES_URL should name 127.0.0.1");
    };
    let pem = std::fs::read(&cert).unwrap();
    let der = rustls::pki_types::CertificateDer::from_pem_slice(&pem).unwrap();
    let parsed = rustls::server::ParsedCertificate::try_from(&der).unwrap();
    for host in ["127.0.0.1", "localhost"] {
        let names_it =
            rustls::client::verify_server_name(&parsed, &rustls::pki_types::ServerName::try_from(host).unwrap())
                .is_ok();
        let url = with(
            &format!("{}@{host}{}", rest.0, rest.1),
            &format!("sslmode=verify-full&sslrootcert={}", cert.display()),
        );
        match encrypted(&url).await {
            Ok(ssl) => {
                assert!(
                    names_it,
                    "verify-full accepted {host}, which the certificate does not name"
                );
                assert!(ssl);
            }
            Err(e) => {
                assert!(
                    !names_it,
                    "verify-full refused {host}, which the certificate names: {e}"
                );
                let e = e.to_string();
                assert!(
                    e.contains(&format!("the server's certificate does not name the host `{host}`")),
                    "{e}"
                );
                assert!(e.contains("sslmode=verify-full") && e.contains("verify-ca"), "{e}");
            }
        }
        // verify-ca checks the chain only: every host name goes.
        let url = with(
            &format!("{}@{host}{}", rest.0, rest.1),
            &format!("sslmode=verify-ca&sslrootcert={}", cert.display()),
        );
        assert!(encrypted(&url).await.unwrap(), "verify-ca to {host}");
    }
}

#[tokio::test]
async fn postgres_tls_verify_ca_refuses_a_server_not_signed_by_sslrootcert() {
    let Some((url, _)) = tls_server().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let other_ca = dir.path().join("other-ca.pem");
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "not the server's CA");
    std::fs::write(&other_ca, params.self_signed(&key).unwrap().pem()).unwrap();
    for mode in ["verify-ca", "verify-full", "require"] {
        let e = encrypted(&with(
            &url,
            &format!("sslmode={mode}&sslrootcert={}", other_ca.display()),
        ))
        .await
        .unwrap_err();
        assert_eq!(e.kind(), Some(DbErrorKind::Unavailable), "{e}");
        let e = e.to_string();
        assert!(e.contains("certificate verification failed"), "{mode}: {e}");
        assert!(
            e.contains(&format!("not trusted by sslrootcert={}", other_ca.display())),
            "{mode}: {e}"
        );
    }
}

#[tokio::test]
async fn postgres_tls_a_missing_sslrootcert_is_named_with_the_url_without_its_password() {
    // Nothing connects: the file is read before.
    let url =
        "postgres://rounds:s3cret-pw@db.example:5432/rounds?sslmode=verify-full&sslrootcert=/nonexistent/rounds-ca.pem";
    let e = PgStore::open(url).await.unwrap_err().to_string();
    assert!(
        e.contains("opening postgres://rounds:***@db.example:5432/rounds?sslmode=verify-full&sslrootcert=/nonexistent/rounds-ca.pem"),
        "{e}"
    );
    assert!(
        e.contains("sslrootcert: cannot read CA file /nonexistent/rounds-ca.pem"),
        "{e}"
    );
    assert!(!e.contains("s3cret"), "{e}");

    // In the configuration file the problem names the file and the key.
    let file = std::path::Path::new("/etc/rounds/collector.toml");
    let raw = parse(&format!("database_url = \"{url}\"\n"), file).unwrap();
    let e = validate(raw, &Overrides::default(), Some(file))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("/etc/rounds/collector.toml: database_url: `postgres://rounds:***@db.example"),
        "{e}"
    );
    assert!(
        e.contains("sslrootcert: cannot read CA file /nonexistent/rounds-ca.pem"),
        "{e}"
    );
    assert!(!e.contains("s3cret"), "{e}");

    // An unknown mode is named too.
    let raw = parse("database_url = \"postgres://r@db/r?sslmode=verify_full\"\n", file).unwrap();
    let e = validate(raw, &Overrides::default(), Some(file))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("database_url: `postgres://r@db/r?sslmode=verify_full`: sslmode=verify_full is not a mode"),
        "{e}"
    );
}

#[tokio::test]
async fn postgres_tls_require_names_a_server_that_refuses_tls() {
    // A server that answers the TLS request with 'N', as PostgreSQL with ssl = off does.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut s, _) = listener.accept().await.unwrap();
        let mut request = [0u8; 8];
        s.read_exact(&mut request).await.unwrap();
        // Length 8, code 80877103: SSLRequest.
        assert_eq!(request, [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
        s.write_all(b"N").await.unwrap();
        request
    });
    let url = format!("postgres://rounds:s3cret-pw@127.0.0.1:{port}/rounds?sslmode=require");
    let e = PgStore::open(&url).await.unwrap_err();
    assert_eq!(e.kind(), Some(DbErrorKind::Unavailable), "{e}");
    let e = e.to_string();
    assert!(e.contains("the server refused TLS"), "{e}");
    assert!(e.contains("sslmode=require needs it"), "{e}");
    assert!(e.contains(&format!("postgres://rounds:***@127.0.0.1:{port}")), "{e}");
    assert!(!e.contains("s3cret"), "{e}");
    server.await.unwrap();
}

#[tokio::test]
async fn postgres_tls_the_cluster_relay_connects_with_the_store_s_mode() {
    use rounds_collector::cluster::Relay;
    use rounds_collector::events::Metrics;
    use rounds_collector::ingest::ChangeStream;
    let Some((_, cert)) = tls_server().await else {
        return;
    };
    let url = pg_schema().await.unwrap();
    PgStore::open(&url).await.unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let changes = ChangeStream::new(16, Arc::new(Metrics::default()));
    let verified = with(&url, &format!("sslmode=verify-ca&sslrootcert={}", cert.display()));
    let relay = Relay::start(&verified, changes, stop.clone()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(15), relay.listening(1))
        .await
        .expect("the relay listens");
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    let task = tokio::spawn(conn);
    let ssl: bool = client
        .query_one(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = $1",
            &[&relay.application_name()],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl, "the relay's LISTEN connection is encrypted");
    stop.cancel();
    drop(client);
    let _ = task.await;

    // A CA file it cannot read is refused when it starts, named.
    let Err(e) = Relay::start(
        &with(&url, "sslmode=verify-full&sslrootcert=/nonexistent/ca.pem"),
        ChangeStream::new(16, Arc::new(Metrics::default())),
        tokio_util::sync::CancellationToken::new(),
    ) else {
        panic!("a missing CA file is refused");
    };
    assert!(
        e.contains("sslrootcert: cannot read CA file /nonexistent/ca.pem"),
        "{e}"
    );
}
