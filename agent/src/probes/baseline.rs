//! The network baseline, probed on every agent unless `[probes] baseline = false`, with no
//! privilege: the default gateway (from `/proc/net/route` under the host root) answers TCP on
//! port 53 at all, each resolver in `/etc/resolv.conf` answers a DNS query, and the reference
//! endpoints (the collector first, then `[probes] references`) answer HTTPS.
//!
//! With it an EHR outage can be told from the practice's internet being down (gateway up,
//! references down) or its LAN being down (gateway down).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rounds_agent_config::AgentConfig;
use rounds_agent_config::endpoint::{Endpoint, EndpointKind};
use rounds_protocol::obs::EhrProbe;
use tokio::net::TcpStream;

use super::{Probe, ProbeContext, Role, Target, dns};

/// A reference endpoint: the collector's URL and the CA that signed its certificate.
#[derive(Debug, Clone)]
pub struct Reference {
    pub url: String,
    pub ca_file: Option<PathBuf>,
}

/// The default gateways in a `/proc/net/route` text.
pub fn default_gateways(route: &str) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = route
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (dest, gw, flags) = (f.get(1)?, f.get(2)?, u16::from_str_radix(f.get(3)?, 16).ok()?);
            // RTF_UP (1) and RTF_GATEWAY (2), destination 0.0.0.0.
            if *dest != "00000000" || flags & 0x3 != 0x3 {
                return None;
            }
            let gw = u32::from_str_radix(gw, 16).ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(gw.to_le_bytes())))
        })
        .collect();
    out.dedup();
    out
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

fn record(probe: &str, target: String) -> EhrProbe {
    EhrProbe {
        probe: probe.into(),
        target,
        attempts: 1,
        ..EhrProbe::default()
    }
}

/// Whether the gateway answers: a TCP connection to port 53 accepted or refused (both are an
/// answer from the host) within `timeout`.
pub async fn probe_gateway(ip: IpAddr, timeout: Duration) -> EhrProbe {
    let addr = SocketAddr::new(ip, 53);
    let mut p = record("tcp", addr.to_string());
    p.address = Some(addr.to_string());
    let start = Instant::now();
    let r = tokio::time::timeout(timeout, TcpStream::connect(addr)).await;
    p.latency_ms = Some(ms(start.elapsed()));
    p.connect_ms = p.latency_ms;
    match r {
        Ok(Ok(_)) => p.up = true,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => p.up = true,
        Ok(Err(e)) => {
            p.reason = Some("tcp_unreachable".into());
            p.failure = Some(format!("gateway {ip} is unreachable: {e}"));
        }
        Err(_) => {
            p.reason = Some("tcp_timeout".into());
            p.failure = Some(format!(
                "gateway {ip} did not answer within {} s",
                timeout.as_secs_f64()
            ));
        }
    }
    p
}

/// Whether the resolver answers a query for the root name servers, with any response code.
pub async fn probe_resolver(resolver: SocketAddr, timeout: Duration) -> EhrProbe {
    let mut p = record("dns", resolver.to_string());
    p.address = Some(resolver.to_string());
    let start = Instant::now();
    let r = dns::query(resolver, ".", dns::TYPE_NS, timeout).await;
    p.latency_ms = Some(ms(start.elapsed()));
    p.dns_ms = p.latency_ms;
    match r {
        Ok(_) => p.up = true,
        Err(e) => {
            p.reason = Some("dns_timeout".into());
            p.failure = Some(e.to_string());
        }
    }
    p
}

/// Every target of `config`: its endpoints, then (unless the baseline is off) the default
/// gateway under `root`, the resolvers, the collector and the configured references.
pub fn targets(config: &AgentConfig, collector: Option<Reference>, ctx: &ProbeContext, root: &Path) -> Vec<Target> {
    let settings = &config.probes;
    let mut out: Vec<Target> = config
        .endpoints
        .iter()
        .map(|e| Target::endpoint(e.clone(), ctx))
        .collect();
    if !settings.baseline {
        return out;
    }
    let route = std::fs::read_to_string(root.join("proc/net/route")).unwrap_or_default();
    for gw in default_gateways(&route) {
        out.push(Target {
            role: Role::Gateway,
            name: format!("gateway {gw}"),
            probe: Probe::Gateway(gw),
            interval: settings.interval,
            timeout: settings.timeout,
        });
    }
    for r in &ctx.resolvers {
        out.push(Target {
            role: Role::Resolver,
            name: format!("resolver {}", r.ip()),
            probe: Probe::Resolver(*r),
            interval: settings.interval,
            timeout: settings.timeout,
        });
    }
    let references = collector
        .into_iter()
        .map(|c| ("collector".to_string(), c))
        .chain(settings.references.iter().map(|u| {
            (
                format!("reference {u}"),
                Reference {
                    url: u.clone(),
                    ca_file: None,
                },
            )
        }));
    for (name, r) in references {
        let mut e = Endpoint::new(name.clone(), EndpointKind::Https, r.url, settings);
        e.ca_file = r.ca_file;
        // Any answer at all shows the path out of the practice works.
        e.expect_status = 100..=599;
        let mut t = Target::endpoint(e, ctx);
        t.role = Role::Reference;
        t.name = name;
        out.push(t);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_route_gives_the_gateway() {
        let route = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
eth0\t0001A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n";
        assert_eq!(default_gateways(route), vec!["192.168.1.1".parse::<IpAddr>().unwrap()]);
        assert!(default_gateways("Iface\tDestination\n").is_empty());
    }
}
