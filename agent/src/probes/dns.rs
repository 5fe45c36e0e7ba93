//! A minimal DNS stub resolver over UDP: one A or AAAA question to one resolver, the answer's
//! response code and addresses. Enough to tell NXDOMAIN from a resolver that does not answer,
//! which the system resolver (`getaddrinfo`) does not say, and without a blocking thread.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use tokio::net::UdpSocket;

/// Record types asked for.
pub const TYPE_A: u16 = 1;
pub const TYPE_NS: u16 = 2;
pub const TYPE_AAAA: u16 = 28;

/// Response code NXDOMAIN: the name does not exist.
pub const RCODE_NXDOMAIN: u8 = 3;

/// What a resolver answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The response code (0 = no error, 3 = NXDOMAIN, 2 = SERVFAIL, ...).
    pub rcode: u8,
    pub addresses: Vec<IpAddr>,
}

/// Why no answer came.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("no answer from resolver {0} in time")]
    Timeout(SocketAddr),
    #[error("resolver {resolver}: {source}")]
    Io {
        resolver: SocketAddr,
        source: std::io::Error,
    },
    #[error("`{0}` is not a valid DNS name")]
    BadName(String),
}

static NEXT_ID: AtomicU16 = AtomicU16::new(0);

fn next_id() -> u16 {
    // Mixed with the clock so that ids are not predictable from one agent run to the next.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    NEXT_ID.fetch_add(0x9e37, Ordering::Relaxed) ^ (nanos as u16)
}

/// The query message for `name` of type `qtype`, recursion desired.
pub fn encode_query(id: u16, name: &str, qtype: u16) -> Option<Vec<u8>> {
    let mut m = Vec::with_capacity(32 + name.len());
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.').filter(|l| !l.is_empty()) {
        if label.len() > 63 {
            return None;
        }
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    (m.len() <= 512).then_some(m)
}

/// Skips a possibly compressed name at `pos`, returning the position after it.
fn skip_name(m: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let len = *m.get(pos)?;
        if len & 0xc0 == 0xc0 {
            return Some(pos + 2);
        }
        pos += 1;
        if len == 0 {
            return Some(pos);
        }
        pos += len as usize;
    }
}

fn u16_at(m: &[u8], pos: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*m.get(pos)?, *m.get(pos + 1)?]))
}

/// Parses a response to query `id`: its response code and the A/AAAA addresses in its answer
/// section. `None` for a message that is not a response to `id`.
pub fn decode_response(id: u16, m: &[u8]) -> Option<Answer> {
    if u16_at(m, 0)? != id || m.get(2)? & 0x80 == 0 {
        return None;
    }
    let rcode = m.get(3)? & 0x0f;
    let qd = u16_at(m, 4)?;
    let an = u16_at(m, 6)?;
    let mut pos = 12;
    for _ in 0..qd {
        pos = skip_name(m, pos)? + 4;
    }
    let mut addresses = Vec::new();
    for _ in 0..an {
        pos = skip_name(m, pos)?;
        let rtype = u16_at(m, pos)?;
        let len = u16_at(m, pos + 8)? as usize;
        let data = m.get(pos + 10..pos + 10 + len)?;
        match (rtype, len) {
            (TYPE_A, 4) => addresses.push(IpAddr::V4(Ipv4Addr::new(data[0], data[1], data[2], data[3]))),
            (TYPE_AAAA, 16) => {
                let b: [u8; 16] = data.try_into().ok()?;
                addresses.push(IpAddr::V6(Ipv6Addr::from(b)));
            }
            _ => {}
        }
        pos += 10 + len;
    }
    Some(Answer { rcode, addresses })
}

/// Asks `resolver` for `name` of `qtype`, waiting at most `timeout`.
pub async fn query(resolver: SocketAddr, name: &str, qtype: u16, timeout: Duration) -> Result<Answer, QueryError> {
    let id = next_id();
    let msg = encode_query(id, name, qtype).ok_or_else(|| QueryError::BadName(name.to_string()))?;
    let io = |source| QueryError::Io { resolver, source };
    let bind: SocketAddr = if resolver.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let exchange = async {
        let socket = UdpSocket::bind(bind).await.map_err(io)?;
        socket.connect(resolver).await.map_err(io)?;
        socket.send(&msg).await.map_err(io)?;
        let mut buf = [0u8; 1500];
        loop {
            let n = socket.recv(&mut buf).await.map_err(io)?;
            // Anything that is not the answer to this question is ignored.
            if let Some(answer) = decode_response(id, &buf[..n]) {
                return Ok(answer);
            }
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or(Err(QueryError::Timeout(resolver)))
}

/// The resolvers in a resolv.conf text (`nameserver` lines), on port 53.
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next()? == "nameserver").then(|| words.next())?
        })
        .filter_map(|a| a.split('%').next()?.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// The addresses of `name` in a hosts file text.
pub fn lookup_hosts(text: &str, name: &str) -> Vec<IpAddr> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let ip: IpAddr = words.next()?.parse().ok()?;
            words.any(|w| w.eq_ignore_ascii_case(name)).then_some(ip)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_is_decoded_with_compressed_names() {
        let q = encode_query(7, "ehr.example", TYPE_A).unwrap();
        let mut r = q.clone();
        r[2] = 0x81;
        r[3] = 0x80;
        r[7] = 1; // one answer
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 7]);
        let a = decode_response(7, &r).unwrap();
        assert_eq!(a.rcode, 0);
        assert_eq!(a.addresses, vec!["192.0.2.7".parse::<IpAddr>().unwrap()]);
        assert!(decode_response(8, &r).is_none(), "another id is not our answer");
        assert!(decode_response(7, &q).is_none(), "a query is not a response");
    }

    #[test]
    fn resolv_conf_and_hosts_are_read() {
        let rc = "# generated\nsearch lan\nnameserver 192.168.1.1\nnameserver fe80::1%eth0\noptions ndots:1\n";
        assert_eq!(
            parse_resolv_conf(rc),
            vec!["192.168.1.1:53".parse().unwrap(), "[fe80::1]:53".parse().unwrap()]
        );
        let hosts = "127.0.0.1 localhost\n10.0.0.5 ehr.lan ehr # on-prem\n";
        assert_eq!(lookup_hosts(hosts, "EHR"), vec!["10.0.0.5".parse::<IpAddr>().unwrap()]);
        assert!(lookup_hosts(hosts, "on-prem").is_empty());
    }
}
