//! EHR probes against real servers on 127.0.0.1:0: rustls servers with certificates made here
//! with rcgen, a server that accepts and never answers, a closed port, fake DNS servers over UDP,
//! and the probe engine's state changes and summaries. Results are also judged by the HIPAA
//! pack's probe rules.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{Datelike, Utc};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};
use rounds_agent::probes::{self, EngineSettings, Prepared, ProbeContext, ProbeSink, Role, SystemClock, Target};
use rounds_agent_config::endpoint::{Endpoint, EndpointKind, HttpMethod, ProbeSettings};
use rounds_policies::{EvalContext, Os, Pack, Policy, Status};
use rounds_protocol::Observation;
use rounds_protocol::obs::{EhrProbe, ProbeSummary};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

/// Sets a certificate's validity from `from` to `to` days relative to today.
fn valid(params: &mut CertificateParams, from: i64, to: i64) {
    let day = |n: i64| {
        let d = (Utc::now() + chrono::Duration::days(n)).date_naive();
        rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8)
    };
    params.not_before = day(from);
    params.not_after = day(to);
}

/// A certificate authority (root or intermediate) of the tests.
struct Issuer {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Issuer {
    /// A self-signed root valid until `days` from now.
    fn root(name: &str, days: i64) -> Issuer {
        let key = KeyPair::generate().unwrap();
        let cert = ca_params(name, days).self_signed(&key).unwrap();
        Issuer { cert, key }
    }

    /// An intermediate CA under `self` valid until `days` from now.
    fn intermediate(&self, name: &str, days: i64) -> Issuer {
        let key = KeyPair::generate().unwrap();
        let cert = ca_params(name, days).signed_by(&key, &self.cert, &self.key).unwrap();
        Issuer { cert, key }
    }

    /// A server certificate for `names` (an IP address or DNS names), valid from `from` to `to`
    /// days relative to today.
    fn leaf(&self, names: &[&str], from: i64, to: i64) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        for n in names {
            params.subject_alt_names.push(match n.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*n).try_into().unwrap()),
            });
        }
        params.distinguished_name.push(DnType::CommonName, "ehr test server");
        valid(&mut params, from, to);
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (
            cert.der().clone(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
    }

    fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    /// The root as a PEM file (the endpoint's `ca_file`).
    fn pem_file(&self, dir: &tempfile::TempDir) -> PathBuf {
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, self.cert.pem()).unwrap();
        path
    }
}

fn ca_params(name: &str, days: i64) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    valid(&mut params, -1, days);
    params
}

/// A server task on 127.0.0.1:0, stopped when dropped.
struct Server {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const TLS12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
const TLS13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

fn http_response(content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A TLS server presenting `chain` that answers every request with `response`.
async fn tls_server(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    versions: &[&'static rustls::SupportedProtocolVersion],
    response: Vec<u8>,
) -> Server {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(versions)
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let response = Arc::new(response);
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let (acceptor, response) = (acceptor.clone(), response.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = vec![0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tls.write_all(&response).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    Server { addr, task }
}

/// A server that accepts connections and never sends a byte.
async fn silent_server() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    Server { addr, task }
}

/// A port nothing listens on.
async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

fn context(resolvers: Vec<SocketAddr>) -> ProbeContext {
    ProbeContext {
        resolvers,
        hosts: "127.0.0.1 ehr.test\n".into(),
        ..ProbeContext::load(std::path::Path::new("/"))
    }
}

fn endpoint(kind: EndpointKind, target: &str, ca_file: Option<PathBuf>, timeout: Duration) -> Endpoint {
    let mut e = Endpoint::new("EHR", kind, target, &ProbeSettings::default());
    e.ca_file = ca_file;
    e.timeout = timeout;
    e
}

async fn probe(ep: Endpoint, ctx: &ProbeContext) -> EhrProbe {
    probes::probe_once(&Prepared::new(ep, ctx), ctx, Utc::now()).await
}

/// Probes `path` on `server` by its address, with a 5 s timeout.
async fn probe_at(
    server: &Server,
    path: &str,
    kind: EndpointKind,
    ca_file: Option<PathBuf>,
    ctx: &ProbeContext,
) -> EhrProbe {
    let url = format!("https://127.0.0.1:{}{path}", server.addr.port());
    probe(endpoint(kind, &url, ca_file, Duration::from_secs(5)), ctx).await
}

/// The status of `rule` for `result` under the built-in HIPAA pack.
fn judge(rule: &str, result: &EhrProbe) -> (Status, String) {
    let pack = Pack::builtin().unwrap();
    let policy = Policy::new(&pack, None, &[]).unwrap();
    let now = Utc::now();
    let obs = vec![Observation::ok("EHR", now, result)];
    let ctx = EvalContext {
        now,
        os: Os::Linux,
        role: Some(rounds_policies::Role::Server),
    };
    let f = rounds_policies::evaluate(&obs, &policy, &ctx)
        .into_iter()
        .find(|f| f.rule == rule)
        .unwrap();
    (f.status, f.message)
}

/// A valid server: root CA, certificate for 127.0.0.1 valid 90 more days, answering `response`.
async fn valid_server(versions: &[&'static rustls::SupportedProtocolVersion], response: Vec<u8>) -> (Server, Issuer) {
    let ca = Issuer::root("rounds test ca", 3650);
    let (leaf, key) = ca.leaf(&["127.0.0.1", "ehr.test"], -1, 90);
    (tls_server(vec![leaf], key, versions, response).await, ca)
}

#[tokio::test]
async fn a_valid_certificate_from_the_test_ca_passes() {
    let (server, ca) = valid_server(TLS13, http_response("text/html", "<p>EHR login</p>")).await;
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(vec![]);
    let r = probe_at(&server, "/login", EndpointKind::Https, Some(ca.pem_file(&dir)), &ctx).await;
    assert!(r.up, "{r:?}");
    assert_eq!(r.reason, None);
    assert_eq!(r.http_status, Some(200));
    assert_eq!(r.address.as_deref(), Some(server.addr.to_string().as_str()));
    assert_eq!(
        (r.chain_verified, r.hostname_match, r.certificate_valid),
        (Some(true), Some(true), Some(true))
    );
    assert!(matches!(r.leaf_expires_in_days, Some(88..=90)), "{r:?}");
    assert_eq!(r.chain_expires_in_days, r.leaf_expires_in_days);
    assert!(
        r.tls_cipher.as_deref().is_some_and(|c| c.starts_with("TLS13_")),
        "{r:?}"
    );
    for t in [r.dns_ms, r.connect_ms, r.tls_ms, r.first_byte_ms, r.latency_ms] {
        assert!(t.is_some_and(|ms| ms >= 0.0), "{r:?}");
    }
    assert_eq!(r.roots.as_deref(), Some(dir.path().join("ca.pem").to_str().unwrap()));
    for rule in [
        "hipaa.availability.ehr_reachable",
        "hipaa.transmission.tls_version",
        "hipaa.transmission.certificate",
    ] {
        assert_eq!(judge(rule, &r).0, Status::Pass, "{rule}: {:?}", judge(rule, &r));
    }

    // The same server by a name from the hosts file.
    let url = format!("https://ehr.test:{}/", server.addr.port());
    let r = probe(
        endpoint(
            EndpointKind::Https,
            &url,
            Some(ca.pem_file(&dir)),
            Duration::from_secs(5),
        ),
        &ctx,
    )
    .await;
    assert!(r.up && r.hostname_match == Some(true), "{r:?}");
}

#[tokio::test]
async fn expired_wrong_host_and_unknown_ca_fail_with_their_reason() {
    let ca = Issuer::root("rounds test ca", 3650);
    let dir = tempfile::tempdir().unwrap();
    let ca_file = ca.pem_file(&dir);
    let ctx = context(vec![]);
    let page = http_response("text/html", "ok");

    let (leaf, key) = ca.leaf(&["127.0.0.1"], -400, -35);
    let expired = tls_server(vec![leaf], key, TLS13, page.clone()).await;
    let (leaf, key) = ca.leaf(&["other.example"], -1, 90);
    let wrong_host = tls_server(vec![leaf], key, TLS13, page.clone()).await;
    let stranger = Issuer::root("someone else's ca", 3650);
    let (leaf, key) = stranger.leaf(&["127.0.0.1"], -1, 90);
    let unknown_ca = tls_server(vec![leaf], key, TLS13, page).await;

    for (server, reason) in [
        (&expired, "cert_expired"),
        (&wrong_host, "cert_hostname"),
        (&unknown_ca, "cert_untrusted"),
    ] {
        let r = probe_at(server, "/", EndpointKind::Https, Some(ca_file.clone()), &ctx).await;
        assert!(!r.up, "{reason}: {r:?}");
        assert_eq!(r.reason.as_deref(), Some(reason), "{r:?}");
        assert_eq!(r.http_status, None, "no request is sent over an unverified connection");
        assert_eq!(
            r.tls_version.as_deref(),
            Some("TLSv1.3"),
            "the handshake is still described"
        );
        assert_eq!(r.certificate_valid, Some(false));
        let (status, message) = judge("hipaa.transmission.certificate", &r);
        assert_eq!(status, Status::Fail, "{reason}: {message}");
        let (status, message) = judge("hipaa.availability.ehr_reachable", &r);
        assert_eq!(status, Status::Fail, "{reason}: {message}");
        assert!(message.contains(reason), "the finding names the reason: {message}");
    }
    let r = probe_at(&expired, "/", EndpointKind::Https, Some(ca_file.clone()), &ctx).await;
    assert!(matches!(r.leaf_expires_in_days, Some(-36..=-34)), "{r:?}");

    // Without a ca_file the system roots are used, and they do not know the test CA.
    let (server, _ca) = valid_server(TLS13, http_response("text/html", "ok")).await;
    let r = probe_at(&server, "/", EndpointKind::Https, None, &ctx).await;
    assert_eq!(
        (r.reason.as_deref(), r.roots.as_deref()),
        (Some("cert_untrusted"), Some("system")),
        "{r:?}"
    );
    assert!(
        r.failure.as_deref().is_some_and(|f| f.contains("system roots")),
        "{r:?}"
    );
}

#[tokio::test]
async fn tls_versions_are_reported_as_negotiated() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(vec![]);
    for (versions, name, cipher) in [(TLS12, "TLSv1.2", "TLS_ECDHE_"), (TLS13, "TLSv1.3", "TLS13_")] {
        let (server, ca) = valid_server(versions, http_response("text/plain", "ok")).await;
        let r = probe_at(&server, "/", EndpointKind::Https, Some(ca.pem_file(&dir)), &ctx).await;
        assert!(r.up, "{r:?}");
        assert_eq!(r.tls_version.as_deref(), Some(name));
        assert!(r.tls_cipher.as_deref().is_some_and(|c| c.starts_with(cipher)), "{r:?}");
        assert_eq!(judge("hipaa.transmission.tls_version", &r).0, Status::Pass);
    }
}

#[tokio::test]
async fn a_server_that_never_answers_is_down_within_the_timeout_plus_ten_percent() {
    let server = silent_server().await;
    let ctx = context(vec![]);
    let timeout = Duration::from_secs(1);
    for kind in [EndpointKind::Https, EndpointKind::Fhir] {
        let url = format!("https://127.0.0.1:{}/", server.addr.port());
        let start = Instant::now();
        let r = probe(endpoint(kind, &url, None, timeout), &ctx).await;
        let took = start.elapsed();
        assert_eq!(r.reason.as_deref(), Some("timeout"), "{r:?}");
        assert!(!r.up);
        assert!(took >= timeout && took <= timeout.mul_f64(1.1), "took {took:?}");
        assert!(
            r.connect_ms.is_some() && r.tls_ms.is_none(),
            "connected, then no handshake: {r:?}"
        );
    }
}

#[tokio::test]
async fn a_closed_port_is_tcp_refused() {
    let addr = closed_port().await;
    let ctx = context(vec![]);
    let r = probe(
        endpoint(EndpointKind::Tcp, &addr.to_string(), None, Duration::from_secs(5)),
        &ctx,
    )
    .await;
    assert_eq!(r.reason.as_deref(), Some("tcp_refused"), "{r:?}");
    assert_eq!(r.address.as_deref(), Some(addr.to_string().as_str()));
    let url = format!("https://127.0.0.1:{}/fhir", addr.port());
    let r = probe(endpoint(EndpointKind::Fhir, &url, None, Duration::from_secs(5)), &ctx).await;
    assert_eq!(r.reason.as_deref(), Some("tcp_refused"), "{r:?}");
    // Not reached TLS: the transmission rules have nothing to judge, availability fails.
    assert_eq!(judge("hipaa.transmission.certificate", &r).0, Status::NotApplicable);
    assert_eq!(judge("hipaa.availability.ehr_reachable", &r).0, Status::Fail);

    let open = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = open.local_addr().unwrap().to_string();
    let r = probe(endpoint(EndpointKind::Tcp, &target, None, Duration::from_secs(5)), &ctx).await;
    assert!(r.up && r.connect_ms.is_some(), "{r:?}");
}

#[tokio::test]
async fn fhir_needs_a_capability_statement() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(vec![]);
    let capability = r#"{"resourceType":"CapabilityStatement","status":"active","fhirVersion":"4.0.1",
        "software":{"name":"Test EHR","version":"9.1"},"rest":[{"mode":"server","resource":[{"type":"Patient"}]}]}"#;
    let (server, ca) = valid_server(TLS13, http_response("application/fhir+json", capability)).await;
    let r = probe_at(&server, "/fhir/r4", EndpointKind::Fhir, Some(ca.pem_file(&dir)), &ctx).await;
    assert!(r.up, "{r:?}");
    assert_eq!(r.fhir_version.as_deref(), Some("4.0.1"));
    assert_eq!(r.fhir_software.as_deref(), Some("Test EHR"));
    assert_eq!(judge("hipaa.availability.ehr_reachable", &r).0, Status::Pass);

    let (server, ca) = valid_server(
        TLS13,
        http_response("text/html", "<html><body>Please log in</body></html>"),
    )
    .await;
    let r = probe_at(&server, "/fhir/r4", EndpointKind::Fhir, Some(ca.pem_file(&dir)), &ctx).await;
    assert_eq!(r.reason.as_deref(), Some("not_fhir"), "{r:?}");
    let (status, message) = judge("hipaa.availability.ehr_reachable", &r);
    assert_eq!(status, Status::Fail);
    assert!(message.contains("not_fhir"), "{message}");
}

#[tokio::test]
async fn https_status_range_and_body_text_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(vec![]);
    let (server, ca) = valid_server(TLS13, http_response("text/html", "<h1>Sign in</h1>")).await;
    let url = format!("https://127.0.0.1:{}/", server.addr.port());
    let base = endpoint(
        EndpointKind::Https,
        &url,
        Some(ca.pem_file(&dir)),
        Duration::from_secs(5),
    );
    let mut e = base.clone();
    e.body_contains = Some("Sign in".into());
    assert!(probe(e, &ctx).await.up);
    let mut e = base.clone();
    e.body_contains = Some("Maintenance".into());
    assert_eq!(probe(e, &ctx).await.reason.as_deref(), Some("body_mismatch"));
    let mut e = base.clone();
    e.expect_status = 300..=399;
    e.method = HttpMethod::Head;
    let r = probe(e, &ctx).await;
    assert_eq!(
        (r.reason.as_deref(), r.http_status),
        (Some("http_status"), Some(200)),
        "{r:?}"
    );
}

#[tokio::test]
async fn a_root_expiring_soon_is_not_counted_but_an_intermediate_is() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(vec![]);
    let root = Issuer::root("root expiring soon", 10);
    let (leaf, key) = root.leaf(&["127.0.0.1"], -1, 200);
    // The server also sends the root, as many do: it is still the trust anchor, not counted.
    let server = tls_server(vec![leaf, root.der()], key, TLS13, http_response("text/plain", "ok")).await;
    let r = probe_at(&server, "/", EndpointKind::Https, Some(root.pem_file(&dir)), &ctx).await;
    assert!(r.up, "{r:?}");
    assert!(matches!(r.chain_expires_in_days, Some(198..=200)), "{r:?}");
    assert_eq!(judge("hipaa.transmission.certificate", &r).0, Status::Pass);

    let root = Issuer::root("long-lived root", 3650);
    let inter = root.intermediate("intermediate expiring soon", 10);
    let (leaf, key) = inter.leaf(&["127.0.0.1"], -1, 200);
    let server = tls_server(vec![leaf, inter.der()], key, TLS13, http_response("text/plain", "ok")).await;
    let r = probe_at(&server, "/", EndpointKind::Https, Some(root.pem_file(&dir)), &ctx).await;
    assert!(r.up, "{r:?}");
    assert!(matches!(r.chain_expires_in_days, Some(8..=10)), "{r:?}");
    assert!(matches!(r.leaf_expires_in_days, Some(198..=200)), "{r:?}");
    let (status, message) = judge("hipaa.transmission.certificate", &r);
    assert_eq!(status, Status::Fail);
    assert!(message.contains("chain_expires_in_days"), "{message}");
}

/// A UDP DNS server answering every query with `rcode` and no records, or never answering.
async fn dns_server(rcode: Option<u8>) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let Some(rcode) = rcode else { continue };
            let mut answer = buf[..n].to_vec();
            answer[2] |= 0x80;
            answer[3] = 0x80 | rcode;
            let _ = socket.send_to(&answer, from).await;
        }
    });
    (addr, task)
}

#[tokio::test]
async fn dns_failures_are_nxdomain_or_timeout() {
    let (nx, nx_task) = dns_server(Some(3)).await;
    let (silent, silent_task) = dns_server(None).await;
    let r = probe(
        endpoint(EndpointKind::Dns, "ehr.invalid", None, Duration::from_secs(2)),
        &context(vec![nx]),
    )
    .await;
    assert_eq!(r.reason.as_deref(), Some("dns_nxdomain"), "{r:?}");
    let url = "https://ehr.invalid/fhir";
    let r = probe(
        endpoint(EndpointKind::Fhir, url, None, Duration::from_secs(1)),
        &context(vec![silent]),
    )
    .await;
    assert_eq!(r.reason.as_deref(), Some("dns_timeout"), "{r:?}");
    let r = probe(
        endpoint(EndpointKind::Dns, "ehr.test", None, Duration::from_secs(1)),
        &context(vec![]),
    )
    .await;
    assert!(r.up && r.address.as_deref() == Some("127.0.0.1"), "hosts file: {r:?}");
    let mut e = endpoint(EndpointKind::Dns, "ehr.test", None, Duration::from_secs(1));
    e.expect_address = Some("192.0.2.1".parse().unwrap());
    assert_eq!(probe(e, &context(vec![])).await.reason.as_deref(), Some("dns_mismatch"));
    nx_task.abort();
    silent_task.abort();
}

/// Every submission of the engine, with the time it came.
#[derive(Default)]
struct Collect(Mutex<Vec<(Instant, bool, Vec<Observation>)>>);

impl ProbeSink for Collect {
    fn submit(&self, observations: Vec<Observation>, urgent: bool) {
        self.0.lock().unwrap().push((Instant::now(), urgent, observations));
    }
}

impl Collect {
    fn urgent(&self) -> Vec<(Instant, EhrProbe)> {
        let all = self.0.lock().unwrap();
        all.iter()
            .filter(|(_, u, _)| *u)
            .flat_map(|(t, _, o)| o.iter().map(|o| (*t, serde_json::from_value(o.data.clone()).unwrap())))
            .collect()
    }

    /// Where in the order of submissions the first urgent (or summary) observation matching
    /// `pred` was submitted.
    fn first_submitted(&self, urgent: bool, pred: impl Fn(&serde_json::Value) -> bool) -> Option<usize> {
        let all = self.0.lock().unwrap();
        all.iter()
            .position(|(_, u, o)| *u == urgent && o.iter().any(|o| pred(&o.data)))
    }

    fn summaries(&self) -> Vec<ProbeSummary> {
        let all = self.0.lock().unwrap();
        all.iter()
            .filter(|(_, u, _)| !*u)
            .flat_map(|(_, _, o)| o.iter().map(|o| serde_json::from_value(o.data.clone()).unwrap()))
            .collect()
    }
}

async fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_engine_sends_state_changes_at_once_and_summaries_on_their_cadence() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let ctx = Arc::new(context(vec![]));
    let mut e = endpoint(EndpointKind::Tcp, &addr.to_string(), None, Duration::from_secs(1));
    e.interval = Duration::from_millis(100);
    let target = Target::endpoint(e, &ctx);
    assert_eq!(target.role, Role::Endpoint);
    let sink = Arc::new(Collect::default());
    let stop = CancellationToken::new();
    let settings = EngineSettings {
        summary_interval: Duration::from_millis(700),
        retry_delay: Duration::from_millis(200),
        max_concurrent: 4,
    };
    let engine = tokio::spawn(probes::run(
        vec![target],
        settings,
        ctx,
        sink.clone(),
        Arc::new(SystemClock),
        stop.clone(),
    ));
    wait_for("the first state", || !sink.urgent().is_empty()).await;
    assert!(sink.urgent()[0].1.up);
    // Several probes later, still one state change: nothing is sent while nothing changes.
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(sink.urgent().len(), 1);

    drop(listener);
    let went_down = Instant::now();
    wait_for("the down state", || sink.urgent().len() >= 2).await;
    let (at, down) = sink.urgent()[1].clone();
    assert_eq!(
        (down.up, down.reason.as_deref(), down.attempts),
        (false, Some("tcp_refused"), 2),
        "{down:?}"
    );
    // Retried once after the retry delay, then sent without waiting for a summary: the down
    // state is submitted before the first summary that counts the outage (an order, not a
    // time bound, so a loaded machine's timer jitter cannot fail it).
    let delay = at - went_down;
    assert!(delay >= Duration::from_millis(200), "{delay:?}");

    wait_for("a summary with the outage", || {
        sink.summaries()
            .iter()
            .any(|s| s.down > 0 && s.reasons == ["tcp_refused"])
    })
    .await;
    let urgent_down = sink.first_submitted(true, |d| d["up"] == false);
    let summary_down = sink.first_submitted(false, |d| d["down"].as_u64().unwrap_or(0) > 0);
    assert!(
        urgent_down.is_some() && urgent_down < summary_down,
        "the down state (entry {urgent_down:?}) before the first summary with the outage (entry {summary_down:?})"
    );
    let summaries = sink.summaries();
    assert!(summaries.iter().all(|s| s.role == "endpoint" && s.probe == "tcp"));
    let first = &summaries[0];
    assert!(first.probes >= 5 && first.up >= 5, "{first:?}");
    assert!(first.latency_ms_p50.is_some() && first.latency_ms_p95 >= first.latency_ms_p50);
    assert!(first.latency_ms_max >= first.latency_ms_p95);
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), engine)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn an_unreadable_ca_file_is_reported_on_the_probe() {
    let ctx = context(vec![]);
    let (server, _ca) = valid_server(TLS13, http_response("text/plain", "ok")).await;
    let r = probe_at(
        &server,
        "/",
        EndpointKind::Https,
        Some(PathBuf::from("/nonexistent/ca.pem")),
        &ctx,
    )
    .await;
    assert_eq!(r.reason.as_deref(), Some("cert_untrusted"));
    assert!(
        r.failure.as_deref().is_some_and(|f| f.contains("/nonexistent/ca.pem")),
        "{r:?}"
    );
}

#[tokio::test]
async fn rounds_agent_check_probes_every_endpoint_once_and_judges_it() {
    let dir = tempfile::tempdir().unwrap();
    let (server, ca) = valid_server(TLS12, http_response("text/plain", "ok")).await;
    let closed = closed_port().await;
    let mut text: String = rounds_agent_config::CHECKS
        .iter()
        .map(|c| format!("[checks.{c}]\nenabled = false\n"))
        .collect();
    text.push_str(&format!(
        "[[endpoint]]\nname = \"EHR\"\nkind = \"https\"\nurl = \"https://127.0.0.1:{}/\"\nca_file = \"{}\"\n\n\
         [[endpoint]]\nname = \"EHR database\"\nkind = \"tcp\"\ntarget = \"{closed}\"\n",
        server.addr.port(),
        ca.pem_file(&dir).display()
    ));
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, text).unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_rounds-agent"))
            .args(["check", "--format", "json", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "the closed port fails: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let probes: Vec<&serde_json::Value> = report["observations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["kind"] == "ehr.probe")
        .collect();
    assert_eq!(probes.len(), 2, "{probes:?}");
    assert_eq!(
        (probes[0]["subject"].as_str(), probes[0]["data"]["up"].as_bool()),
        (Some("EHR"), Some(true))
    );
    assert_eq!(probes[0]["data"]["tls_version"], "TLSv1.2");
    assert_eq!(probes[1]["data"]["reason"], "tcp_refused");
    assert_eq!(probes[1]["data"]["attempts"], 2, "retried once before counting as down");
    let status = |rule: &str| {
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["rule"] == rule)
            .map(|f| {
                (
                    f["status"].as_str().unwrap().to_string(),
                    f["message"].as_str().unwrap().to_string(),
                )
            })
            .unwrap()
    };
    let (s, message) = status("hipaa.availability.ehr_reachable");
    assert_eq!(s, "fail");
    assert!(
        message.contains("EHR database") && message.contains("tcp_refused"),
        "{message}"
    );
    assert_eq!(status("hipaa.transmission.tls_version").0, "pass");
    assert_eq!(status("hipaa.transmission.certificate").0, "pass");
}

#[tokio::test]
async fn a_server_refusing_tls_1_2_and_1_3_fails_transmission_security() {
    // Answers every ClientHello with a fatal protocol_version alert, as a TLS 1.0/1.1-only
    // server does.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(&[0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x46]).await;
        }
    });
    let server = Server { addr, task };
    let r = probe_at(&server, "/", EndpointKind::Https, None, &context(vec![])).await;
    assert_eq!(r.reason.as_deref(), Some("tls_handshake"), "{r:?}");
    assert_eq!(r.tls_version.as_deref(), Some("older than TLSv1.2"));
    let (status, message) = judge("hipaa.transmission.tls_version", &r);
    assert_eq!(status, Status::Fail, "{message}");
}
