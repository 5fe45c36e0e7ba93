//! Limits of the HTTPS server (issue 15, item 2): how many connections are open at once (in all
//! and per source address), how long a request body and a whole request may take, and how
//! many requests an agent may make.
//!
//! - [`ConnectionLimits`] is checked by [`LimitAcceptor`] before the TLS handshake: a
//!   connection over a limit is closed at once, so slow clients cannot use up file
//!   descriptors. Its count goes down when the connection closes (the guard lives in the
//!   stream).
//! - [`timeouts`] (middleware) gives the body a deadline (`body_timeout`: reading it fails
//!   after that, the request is answered and the connection closed) and the whole request one
//!   (`request_timeout`: `408` and the connection closed).
//! - [`AgentRate`] is a token bucket per authenticated agent: over it, `429` with
//!   `Retry-After`, the same answer as a saturated ingest queue ([`crate::api::delivery::IngestGate`]).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::config::LimitSettings;

/// Open connections, in all and per address.
#[derive(Debug)]
pub struct ConnectionLimits {
    max: usize,
    per_address: usize,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

impl ConnectionLimits {
    pub fn new(max: usize, per_address: usize) -> Self {
        ConnectionLimits {
            max,
            per_address,
            open: Mutex::default(),
        }
    }

    /// Counts a new connection from `ip`, or `None` when a limit is reached.
    pub fn try_open(self: &Arc<Self>, ip: IpAddr) -> Option<ConnectionGuard> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let from = open.1.get(&ip).copied().unwrap_or(0);
        if open.0 >= self.max || from >= self.per_address {
            return None;
        }
        open.0 += 1;
        open.1.insert(ip, from + 1);
        Some(ConnectionGuard {
            limits: Arc::clone(self),
            ip,
        })
    }

    /// Connections open now (in all, from `ip`).
    pub fn open(&self, ip: IpAddr) -> (usize, usize) {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        (open.0, open.1.get(&ip).copied().unwrap_or(0))
    }
}

/// One open connection; dropping it (when the connection closes) gives its place back.
#[derive(Debug)]
pub struct ConnectionGuard {
    limits: Arc<ConnectionLimits>,
    ip: IpAddr,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock().unwrap_or_else(|p| p.into_inner());
        open.0 = open.0.saturating_sub(1);
        if let Some(n) = open.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.ip);
            }
        }
    }
}

/// A TCP stream holding its place among the open connections.
#[derive(Debug)]
pub struct Limited {
    inner: TcpStream,
    _guard: ConnectionGuard,
}

impl AsyncRead for Limited {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Limited {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The acceptor under TLS that applies [`ConnectionLimits`].
#[derive(Debug, Clone)]
pub struct LimitAcceptor {
    limits: Arc<ConnectionLimits>,
}

impl LimitAcceptor {
    pub fn new(limits: Arc<ConnectionLimits>) -> Self {
        LimitAcceptor { limits }
    }
}

impl<S> axum_server::accept::Accept<TcpStream, S> for LimitAcceptor {
    type Stream = Limited;
    type Service = S;
    type Future = std::future::Ready<io::Result<(Limited, S)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let peer = stream.peer_addr().map(|a: SocketAddr| a.ip());
        std::future::ready(match peer {
            Err(e) => Err(e),
            Ok(ip) => match self.limits.try_open(ip) {
                Some(guard) => Ok((
                    Limited {
                        inner: stream,
                        _guard: guard,
                    },
                    service,
                )),
                None => {
                    tracing::warn!(%ip, "connection limit reached, connection closed");
                    Err(io::Error::other("connection limit reached"))
                }
            },
        })
    }
}

/// A request body that fails once its deadline has passed.
struct Deadline {
    inner: Body,
    sleep: Pin<Box<tokio::time::Sleep>>,
    after: Duration,
}

impl HttpBody for Deadline {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        if self.sleep.as_mut().poll(cx).is_ready() {
            let secs = self.after.as_secs();
            return Poll::Ready(Some(Err(axum::Error::new(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the request body did not arrive within {secs} s"),
            )))));
        }
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

use std::future::Future as _;

/// Middleware: the body gets `body_timeout`, the whole request `request_timeout`; a request
/// over time is answered `408` and its connection closed.
pub async fn timeouts(State(limits): State<LimitSettings>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let body = Body::new(Deadline {
        inner: body,
        sleep: Box::pin(tokio::time::sleep(limits.body_timeout)),
        after: limits.body_timeout,
    });
    let req = Request::from_parts(parts, body);
    let mut resp = match tokio::time::timeout(limits.request_timeout, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => {
            tracing::warn!(
                timeout_secs = limits.request_timeout.as_secs(),
                "request took too long, answered 408"
            );
            (
                StatusCode::REQUEST_TIMEOUT,
                axum::Json(rounds_protocol::ErrorBody {
                    error: format!(
                        "the request did not complete within {} s",
                        limits.request_timeout.as_secs()
                    ),
                    code: None,
                }),
            )
                .into_response()
        }
    };
    if matches!(
        resp.status(),
        StatusCode::REQUEST_TIMEOUT | StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE
    ) {
        // Whatever of the body is still coming is not read: do not keep the connection.
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// Requests per agent: a token bucket of `burst` requests refilled at `per_minute`.
#[derive(Debug)]
pub struct AgentRate {
    per_minute: u32,
    burst: u32,
    buckets: Mutex<HashMap<String, (f64, DateTime<Utc>)>>,
}

/// Agents whose buckets are kept at most (full buckets are dropped first).
const MAX_BUCKETS: usize = 100_000;

impl AgentRate {
    pub fn new(per_minute: u32, burst: u32) -> Self {
        AgentRate {
            per_minute: per_minute.max(1),
            burst: burst.max(1),
            buckets: Mutex::default(),
        }
    }

    /// Takes one request from `agent_id`'s bucket; `Err(seconds to wait)` when it is empty.
    pub fn check(&self, agent_id: &str, now: DateTime<Utc>) -> Result<(), u64> {
        let rate = f64::from(self.per_minute) / 60.0;
        let burst = f64::from(self.burst);
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(agent_id) {
            // Buckets that have refilled carry no information.
            buckets.retain(|_, (tokens, at)| {
                *tokens + (now - *at).num_milliseconds().max(0) as f64 / 1000.0 * rate < burst
            });
        }
        let (tokens, at) = buckets.entry(agent_id.to_string()).or_insert((burst, now));
        let elapsed = (now - *at).num_milliseconds().max(0) as f64 / 1000.0;
        *tokens = (*tokens + elapsed * rate).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / rate).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every agent keeps one keep-alive connection between heartbeats, so the default limits
    /// must admit a whole fleet's idle connections: 10,000 agents (the capacity target), in
    /// practices of 40 machines behind one NAT address each, plus a practice of 200 machines
    /// behind one address. The old defaults (1024 in all, 64 per address) refused the 1,025th.
    #[test]
    fn the_default_limits_admit_a_fleet_of_ten_thousand_agents_each_keeping_a_connection() {
        let d = LimitSettings::default();
        let limits = Arc::new(ConnectionLimits::new(d.max_connections, d.max_connections_per_address));
        let mut held = Vec::new();
        for agent in 0..10_000u32 {
            let practice = agent / 40;
            let ip = IpAddr::from([10, (practice >> 8) as u8, practice as u8, 1]);
            held.push(limits.try_open(ip).expect("a fleet agent's connection"));
        }
        let big = IpAddr::from([192, 0, 2, 1]);
        for _ in 0..200 {
            held.push(limits.try_open(big).expect("a large practice's machine"));
        }
        assert_eq!(limits.open(big), (10_200, 200));
        // Over the limits, a connection is still refused.
        let tight = Arc::new(ConnectionLimits::new(2, 1));
        let one = IpAddr::from([10, 0, 0, 1]);
        let _a = tight.try_open(one).unwrap();
        assert!(tight.try_open(one).is_none(), "per address");
        let _b = tight.try_open(IpAddr::from([10, 0, 0, 2])).unwrap();
        assert!(tight.try_open(IpAddr::from([10, 0, 0, 3])).is_none(), "in all");
    }
}
