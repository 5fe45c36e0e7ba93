//! Test support: certificate authorities made with rcgen, and a tiny fake collector (HTTP/1.1 over
//! real TLS with tokio-rustls on 127.0.0.1:0) that records every request and answers through a
//! handler.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};
use rounds_protocol::{BatchAck, EnrollResponse, HeartbeatAck, PROTOCOL_MAJOR, ReportAck, paths};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A certificate authority that can issue server certificates.
pub struct Ca {
    pub cert: rcgen::Certificate,
    pub key: KeyPair,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A server certificate for 127.0.0.1 and localhost, and its key.
    pub fn server_cert(&self) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        params
            .distinguished_name
            .push(DnType::CommonName, "rounds test collector");
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (cert.der().clone(), key)
    }
}

/// One request the fake collector received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// Answers a request with a status and a JSON body.
pub type Handler = Arc<dyn Fn(&Recorded) -> (u16, String) + Send + Sync>;

/// A fake collector on 127.0.0.1 with a certificate from `ca`.
pub struct FakeCollector {
    pub url: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeCollector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub const AGENT_ID: &str = "agt_test_1";
pub const AGENT_SECRET: &str = "s3cr3t-never-logged";

/// Answers like a healthy collector: enrollment succeeds, heartbeats and reports are acknowledged.
pub fn healthy(req: &Recorded) -> (u16, String) {
    match req.path.as_str() {
        paths::ENROLL => (
            200,
            serde_json::to_string(&EnrollResponse {
                protocol: PROTOCOL_MAJOR,
                agent_id: AGENT_ID.into(),
                agent_secret: AGENT_SECRET.into(),
                practice: "Maple Family Practice".into(),
                site: "Main Street".into(),
                // Short, so a test can watch `run` keep the announced interval.
                heartbeat_interval_secs: 1,
            })
            .unwrap(),
        ),
        paths::HEARTBEAT => (
            200,
            serde_json::to_string(&HeartbeatAck {
                received_at: chrono::Utc::now(),
                config_etag: None,
            })
            .unwrap(),
        ),
        paths::REPORTS => {
            let sequence = req.json()["sequence"].as_u64().unwrap();
            (
                200,
                serde_json::to_string(&ReportAck {
                    sequence,
                    stored: true,
                    next_expected: None,
                })
                .unwrap(),
            )
        }
        paths::REPORT_BATCH => {
            let reports = req.json()["reports"].as_array().unwrap().clone();
            let acks: Vec<ReportAck> = reports
                .iter()
                .map(|r| ReportAck {
                    sequence: r["sequence"].as_u64().unwrap(),
                    stored: true,
                    next_expected: None,
                })
                .collect();
            let next_expected = acks.last().map_or(1, |a| a.sequence + 1);
            (200, serde_json::to_string(&BatchAck { acks, next_expected }).unwrap())
        }
        _ => (404, r#"{"error":"no such path"}"#.into()),
    }
}

impl FakeCollector {
    /// Starts a collector answering through `handler`, with a certificate issued by `ca`.
    pub async fn start(ca: &Ca, handler: impl Fn(&Recorded) -> (u16, String) + Send + Sync + 'static) -> Self {
        let (cert, key) = ca.server_cert();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Handler = Arc::new(handler);
        let recorded = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let (acceptor, handler, recorded) = (acceptor.clone(), handler.clone(), recorded.clone());
                tokio::spawn(async move {
                    // A failed handshake (an agent that does not trust us) just ends the connection.
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Some(req) = read_request(&mut tls).await else {
                        return;
                    };
                    let (status, body) = handler(&req);
                    recorded.lock().unwrap().push(req);
                    // A busy collector asks for 30 s.
                    let retry_after = if matches!(status, 429 | 503) {
                        "retry-after: 30\r\n"
                    } else {
                        ""
                    };
                    let head = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{retry_after}connection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = tls.write_all(head.as_bytes()).await;
                    let _ = tls.write_all(body.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        FakeCollector {
            url: format!("https://127.0.0.1:{}", addr.port()),
            requests,
            task,
        }
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// Requests received so far on `path`.
    pub fn on(&self, path: &str) -> Vec<Recorded> {
        self.requests().into_iter().filter(|r| r.path == path).collect()
    }

    /// Sequence numbers of the reports received so far (singly or in batches), in order of
    /// arrival.
    pub fn report_sequences(&self) -> Vec<u64> {
        self.reports().iter().map(|r| r["sequence"].as_u64().unwrap()).collect()
    }

    /// Every report received so far, singly or in batches, in order of arrival.
    pub fn reports(&self) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for r in self.requests() {
            if r.path == paths::REPORTS {
                out.push(r.json());
            } else if r.path == paths::REPORT_BATCH {
                out.extend(r.json()["reports"].as_array().cloned().unwrap_or_default());
            }
        }
        out
    }

    /// Waits (up to 30 s of real time, however far a paused tokio clock moves) until `cond`
    /// holds for the requests received.
    pub async fn wait_for(&self, what: &str, cond: impl Fn(&FakeCollector) -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !cond(self) {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}; received: {:?}",
                self.requests()
                    .iter()
                    .map(|r| (
                        &r.path,
                        String::from_utf8_lossy(&r.body).chars().take(80).collect::<String>()
                    ))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn read_request<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> Option<Recorded> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Recorded {
        method,
        path,
        headers,
        body,
    })
}

/// Standard base64, for checking Basic auth headers.
pub fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Writes `ca`'s certificate to `dir/name` and returns the path.
pub fn write_ca(ca: &Ca, dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, ca.pem()).unwrap();
    p
}

/// Enrolls against `collector` into `state_dir`, trusting `ca`.
pub async fn enroll_into(collector: &FakeCollector, ca: &Ca, state_dir: &std::path::Path) -> rounds_agent::Identity {
    let outside = state_dir.parent().unwrap();
    std::fs::create_dir_all(outside).unwrap();
    let ca_file = write_ca(ca, outside, "enroll-ca.pem");
    rounds_agent::enroll(rounds_agent::EnrollOptions {
        collector: collector.url.clone(),
        token: "tok_test".into(),
        ca_file,
        state_dir: state_dir.to_path_buf(),
        hostname: Some("frontdesk-01".into()),
    })
    .await
    .unwrap()
}

#[test]
fn base64_matches_known_values() {
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foo"), "Zm9v");
    assert_eq!(base64(b"agt:secret"), "YWd0OnNlY3JldA==");
}
