//! The real HTTPS server in-process: TLS with the generated CA, and slow senders cut off.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rounds_collector::config::{Overrides, validate};
use rounds_collector::serve;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio_util::sync::CancellationToken;

/// A TLS stream to the collector, trusting only the CA in its data dir.
pub(crate) fn connect(port: u16, ca: &std::path::Path) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let conn = rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap()).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = validate(Default::default(), &Overrides::default(), None).unwrap();
    settings.data_dir = dir.path().to_path_buf();
    settings.header_timeout = Duration::from_secs(1);
    let listener = serve::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = listener.local_addr().unwrap().port();
    let prepared = serve::prepare(settings).await.unwrap();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve::run(prepared, listener, shutdown.clone()));
    let ca = dir.path().join("ca.pem");

    let outcome = tokio::task::spawn_blocking(move || {
        // A complete request is answered.
        let mut ok = connect(port, &ca);
        ok.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        let _ = ok.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

        // Headers that never end: the server closes the connection after about a second.
        let mut slow = connect(port, &ca);
        slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n").unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 1024];
        let read = slow.read(&mut buf);
        (started.elapsed(), read.map_err(|e| e.kind()))
    })
    .await
    .unwrap();
    let (waited, read) = outcome;
    assert!(
        !matches!(read, Err(std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "the connection was still open after {waited:?}"
    );
    assert!(waited < Duration::from_secs(8), "closed only after {waited:?}");
    shutdown.cancel();
    server.await.unwrap().unwrap();
}
