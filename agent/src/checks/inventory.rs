//! Asset inventory: hostname, OS and version, kernel, hardware, CPU, memory, disks, network
//! interfaces, listening ports, uptime, agent version.
//!
//! Reads: sysinfo (on Linux: /proc/cpuinfo, /proc/meminfo, /proc/uptime, /proc/mounts,
//! /etc/os-release) and, under the host root, /sys/class/dmi/id/{sys_vendor,product_name,
//! product_serial}. On Linux, interfaces come from /sys/class/net/*/address, /proc/net/if_inet6
//! (IPv6) and /proc/net/fib_trie with /proc/net/route (IPv4); listening sockets from
//! /proc/net/{tcp,tcp6,udp,udp6}, and their owning process from /proc/*/fd socket links and
//! /proc/*/comm. Elsewhere interfaces come from sysinfo.
//! Needs no privilege; with it, the serial number (/sys/class/dmi/id/product_serial is root-only)
//! and the owners of other users' sockets (`/proc/<pid>/fd`) become readable.

use rounds_protocol::Observation;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};

use rounds_protocol::obs::{Inventory, InventoryDisk, ListeningPort, NetworkInterface, Payload};

use super::{Check, Host, Platform, platform};

/// Collects the machine's asset inventory.
#[derive(Debug)]
pub struct InventoryCheck;

impl Check for InventoryCheck {
    fn name(&self) -> &'static str {
        "inventory"
    }

    fn kinds(&self) -> &'static [&'static str] {
        &[Inventory::KIND]
    }

    fn run(&self, host: &Host) -> Vec<Observation> {
        vec![Observation::ok("host", host.now, &collect(host))]
    }
}

fn dmi(host: &Host, name: &str) -> Option<String> {
    let v = host.read(format!("/sys/class/dmi/id/{name}")).ok()?;
    let v = v.trim();
    (!v.is_empty()).then(|| v.to_string())
}

/// Gathers the inventory of the host.
pub fn collect(host: &Host) -> Inventory {
    use sysinfo::{Disks, System};
    let mut inv = Inventory {
        os_family: std::env::consts::OS.to_string(),
        arch: std::env::consts::ARCH.to_string(),
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        hardware_vendor: dmi(host, "sys_vendor"),
        hardware_model: dmi(host, "product_name"),
        serial_number: dmi(host, "product_serial"),
        ..Inventory::default()
    };
    if host.live {
        let mut sys = System::new();
        sys.refresh_memory();
        sys.refresh_cpu_list(sysinfo::CpuRefreshKind::nothing());
        inv.hostname = System::host_name().unwrap_or_default();
        inv.os_name = System::name();
        inv.os_version = System::os_version();
        inv.kernel_version = System::kernel_version();
        inv.uptime_secs = System::uptime();
        inv.boot_time = chrono::DateTime::from_timestamp(System::boot_time() as i64, 0);
        inv.cpu_cores = sys.cpus().len() as u32;
        inv.cpu_model = sys
            .cpus()
            .first()
            .map(|c| c.brand().trim().to_string())
            .filter(|s| !s.is_empty());
        inv.memory_total_bytes = sys.total_memory();
        let disks = Disks::new_with_refreshed_list();
        inv.disks = disks
            .list()
            .iter()
            .map(|d| InventoryDisk {
                device: d.name().to_string_lossy().into_owned(),
                mount_point: d.mount_point().to_string_lossy().into_owned(),
                file_system: d.file_system().to_string_lossy().into_owned(),
                total_bytes: d.total_space(),
                available_bytes: d.available_space(),
                removable: d.is_removable(),
            })
            .collect();
    } else {
        inv.hostname = host
            .read("/etc/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        if let Ok(text) = host.read("/etc/os-release") {
            let (name, version) = parse_os_release(&text);
            inv.os_name = name;
            inv.os_version = version;
        }
    }
    inv.role = detect_role(host, platform());
    if platform() == Platform::Linux || !host.live {
        inv.interfaces = linux_interfaces(host);
        inv.listening = listening(host);
    } else {
        inv.interfaces = sysinfo_interfaces();
    }
    inv
}

/// `NAME` and `VERSION_ID` of an os-release file (values may be quoted).
pub fn parse_os_release(text: &str) -> (Option<String>, Option<String>) {
    let get = |key: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.trim().split_once('=')?;
            (k == key)
                .then(|| v.trim().trim_matches('"').trim_matches('\'').to_string())
                .filter(|v| !v.is_empty())
        })
    };
    (get("NAME"), get("VERSION_ID"))
}

/// The machine's role for the policy's applies-to: `workstation` when a graphical session
/// can be started (an X11 or Wayland session is installed; always on macOS; Windows client
/// editions), `server` otherwise. `None` when it cannot be told.
pub fn detect_role(host: &Host, platform: Platform) -> Option<String> {
    match platform {
        Platform::MacOs => Some("workstation".into()),
        Platform::Windows => {
            // ProductType: WinNT = client, ServerNT / LanmanNT = server.
            let out = host
                .runner
                .run(
                    "reg",
                    &[
                        "query",
                        r"HKLM\SYSTEM\CurrentControlSet\Control\ProductOptions",
                        "/v",
                        "ProductType",
                    ],
                )
                .ok()?;
            if out.contains("WinNT") {
                Some("workstation".into())
            } else if out.contains("ServerNT") || out.contains("LanmanNT") {
                Some("server".into())
            } else {
                None
            }
        }
        Platform::Linux => {
            let sessions = ["/usr/share/xsessions", "/usr/share/wayland-sessions"].iter().any(|d| {
                host.list_dir(d)
                    .unwrap_or_default()
                    .iter()
                    .any(|f| f.ends_with(".desktop"))
            });
            Some(if sessions { "workstation" } else { "server" }.into())
        }
    }
}

fn sysinfo_interfaces() -> Vec<NetworkInterface> {
    let networks = sysinfo::Networks::new_with_refreshed_list();
    let mut out: Vec<NetworkInterface> = networks
        .iter()
        .map(|(name, data)| NetworkInterface {
            name: name.clone(),
            mac: Some(data.mac_address().to_string()).filter(|m| m != "00:00:00:00:00:00"),
            addresses: data
                .ip_networks()
                .iter()
                .map(|n| format!("{}/{}", n.addr, n.prefix))
                .collect(),
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Parses /proc/net/if_inet6: `(interface, address/prefix)`.
pub fn parse_if_inet6(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 6 || f[0].len() != 32 {
                return None;
            }
            let bits = u128::from_str_radix(f[0], 16).ok()?;
            let prefix = u8::from_str_radix(f[2], 16).ok()?;
            Some((f[5].to_string(), format!("{}/{prefix}", Ipv6Addr::from(bits))))
        })
        .collect()
}

/// Local IPv4 addresses from /proc/net/fib_trie (`/32 host LOCAL` leaves).
pub fn parse_fib_trie_local(text: &str) -> BTreeSet<Ipv4Addr> {
    let mut out = BTreeSet::new();
    let mut last: Option<Ipv4Addr> = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(addr) = t.strip_prefix("|-- ") {
            last = addr.trim().parse().ok();
        } else if t.starts_with("/32 host LOCAL") {
            out.extend(last);
        }
    }
    out
}

/// Routes of /proc/net/route: `(interface, destination, mask)`.
pub fn parse_route(text: &str) -> Vec<(String, u32, u32)> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            // The kernel prints addresses in host byte order (little-endian on x86 and ARM).
            let dest = u32::from_str_radix(f[1], 16).ok()?.swap_bytes();
            let mask = u32::from_str_radix(f[7], 16).ok()?.swap_bytes();
            Some((f[0].to_string(), dest, mask))
        })
        .collect()
}

fn linux_interfaces(host: &Host) -> Vec<NetworkInterface> {
    let mut by_name: BTreeMap<String, NetworkInterface> = BTreeMap::new();
    for name in host.list_dir("/sys/class/net").unwrap_or_default() {
        let mac = host
            .read_opt(format!("/sys/class/net/{name}/address"))
            .ok()
            .flatten()
            .map(|m| m.trim().to_string())
            .filter(|m| !m.is_empty() && m != "00:00:00:00:00:00");
        by_name.insert(
            name.clone(),
            NetworkInterface {
                name,
                mac,
                addresses: Vec::new(),
            },
        );
    }
    let routes = host
        .read_opt("/proc/net/route")
        .ok()
        .flatten()
        .map(|t| parse_route(&t))
        .unwrap_or_default();
    let locals = host
        .read_opt("/proc/net/fib_trie")
        .ok()
        .flatten()
        .map(|t| parse_fib_trie_local(&t))
        .unwrap_or_default();
    for addr in locals {
        let a = u32::from(addr);
        let found = if addr.is_loopback() {
            Some(("lo".to_string(), 8))
        } else {
            routes
                .iter()
                .filter(|(_, dest, mask)| *mask != 0 && a & mask == *dest)
                .max_by_key(|(_, _, mask)| mask.count_ones())
                .map(|(name, _, mask)| (name.clone(), mask.count_ones()))
        };
        if let Some((name, prefix)) = found
            && let Some(i) = by_name.get_mut(&name)
        {
            i.addresses.push(format!("{addr}/{prefix}"));
        }
    }
    if let Some(t) = host.read_opt("/proc/net/if_inet6").ok().flatten() {
        for (name, addr) in parse_if_inet6(&t) {
            if let Some(i) = by_name.get_mut(&name) {
                i.addresses.push(addr);
            }
        }
    }
    by_name.into_values().collect()
}

/// A listening socket from /proc/net/{tcp,tcp6,udp,udp6}, with its socket inode.
#[derive(Debug, Clone, PartialEq)]
pub struct Socket {
    pub address: String,
    pub port: u16,
    pub inode: u64,
}

fn hex_addr(hex: &str) -> Option<String> {
    match hex.len() {
        8 => Some(Ipv4Addr::from(u32::from_str_radix(hex, 16).ok()?.swap_bytes()).to_string()),
        32 => {
            // Four 32-bit words, each in host byte order.
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_mut(4).enumerate() {
                let w = u32::from_str_radix(&hex[i * 8..i * 8 + 8], 16).ok()?.swap_bytes();
                chunk.copy_from_slice(&w.to_be_bytes());
            }
            Some(Ipv6Addr::from(bytes).to_string())
        }
        _ => None,
    }
}

/// Listening sockets in one /proc/net table: TCP in state LISTEN (0A), UDP unconnected (07 with
/// no remote port).
pub fn parse_proc_net(text: &str, udp: bool) -> Vec<Socket> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 10 {
                return None;
            }
            let (local, remote, state) = (f[1], f[2], f[3]);
            let listening = if udp {
                state == "07" && remote.ends_with(":0000")
            } else {
                state == "0A"
            };
            if !listening {
                return None;
            }
            let (addr, port) = local.split_once(':')?;
            Some(Socket {
                address: hex_addr(addr)?,
                port: u16::from_str_radix(port, 16).ok()?,
                inode: f[9].parse().ok()?,
            })
        })
        .collect()
}

/// Owning process names of socket inodes, from `/proc/<pid>/fd` links (where readable).
fn socket_owners(host: &Host, wanted: &BTreeSet<u64>) -> HashMap<u64, String> {
    let mut owners = HashMap::new();
    let Ok(procs) = host.processes() else { return owners };
    for (pid, comm) in procs {
        let Ok(fds) = std::fs::read_dir(host.path(format!("/proc/{pid}/fd"))) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let target = target.to_string_lossy();
            if let Some(inode) = target
                .strip_prefix("socket:[")
                .and_then(|r| r.strip_suffix(']'))
                .and_then(|n| n.parse::<u64>().ok())
                && wanted.contains(&inode)
            {
                owners.entry(inode).or_insert_with(|| comm.clone());
            }
        }
        if owners.len() == wanted.len() {
            break;
        }
    }
    owners
}

fn listening(host: &Host) -> Vec<ListeningPort> {
    let mut sockets = Vec::new();
    for (proto, udp) in [("tcp", false), ("tcp6", false), ("udp", true), ("udp6", true)] {
        if let Some(t) = host.read_opt(format!("/proc/net/{proto}")).ok().flatten() {
            sockets.extend(parse_proc_net(&t, udp).into_iter().map(|s| (proto, s)));
        }
    }
    let wanted: BTreeSet<u64> = sockets.iter().map(|(_, s)| s.inode).filter(|i| *i != 0).collect();
    let owners = if wanted.is_empty() {
        HashMap::new()
    } else {
        socket_owners(host, &wanted)
    };
    let mut seen = BTreeSet::new();
    sockets
        .into_iter()
        .filter(|(p, s)| seen.insert((*p, s.address.clone(), s.port)))
        .map(|(p, s)| ListeningPort {
            protocol: p.to_string(),
            address: s.address,
            port: s.port,
            process: owners.get(&s.inode).cloned(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_inventory_names_this_machine() {
        let inv = collect(&Host::system());
        assert!(!inv.hostname.is_empty(), "hostname is empty");
        assert!(inv.cpu_cores >= 1);
        assert!(inv.memory_total_bytes > 0);
        assert_eq!(inv.agent_version, env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn interfaces_and_listening_ports_from_proc() {
        // Recorded from this build machine's /proc and /sys.
        let host = Host {
            root: crate::checks::testutil::fixture("inventory-net"),
            live: false,
            state_dir: None,
            ..Host::system()
        };
        let inv = collect(&host);
        let eth0 = inv.interfaces.iter().find(|i| i.name == "eth0").unwrap();
        assert_eq!(eth0.mac.as_deref(), Some("02:fc:00:00:00:01"));
        assert_eq!(eth0.addresses, ["192.0.2.2/24", "fe80::fc:ff:fe00:1/64", "fd00::2/64"]);
        let lo = inv.interfaces.iter().find(|i| i.name == "lo").unwrap();
        assert_eq!(
            (lo.mac.as_deref(), lo.addresses.as_slice()),
            (None, &["127.0.0.1/8".to_string(), "::1/128".to_string()][..])
        );
        let ssh = inv.listening.iter().find(|l| l.port == 1883).unwrap();
        assert_eq!((ssh.protocol.as_str(), ssh.address.as_str()), ("tcp", "127.0.0.1"));
        assert!(
            inv.listening.iter().all(|l| l.process.is_none()),
            "no /proc/<pid>/fd in the fixture"
        );
        assert_eq!(parse_proc_net("  sl  local_address rem_address   st\n   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 20123 1\n", false)[0].address, "::");
    }

    #[test]
    fn fixture_root_is_read_for_hardware() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sys/class/dmi/id")).unwrap();
        std::fs::write(dir.path().join("sys/class/dmi/id/product_name"), "OptiPlex 7090\n").unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/hostname"), "frontdesk-01\n").unwrap();
        let host = Host {
            root: dir.path().to_path_buf(),
            live: false,
            state_dir: None,
            ..Host::system()
        };
        let inv = collect(&host);
        assert_eq!(inv.hardware_model.as_deref(), Some("OptiPlex 7090"));
        assert_eq!(inv.hostname, "frontdesk-01");
        assert_eq!(inv.serial_number, None);
    }

    #[test]
    fn os_release_names_the_distribution() {
        let text =
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n";
        assert_eq!(
            parse_os_release(text),
            (Some("Debian GNU/Linux".into()), Some("12".into()))
        );
        assert_eq!(parse_os_release("ID=arch\n"), (None, None));
    }

    #[test]
    fn role_follows_installed_graphical_sessions() {
        use crate::checks::testutil::{FakeRunner, host};
        let desktop = host("golden-host", FakeRunner::default(), "2026-11-24T12:00:00Z");
        assert_eq!(detect_role(&desktop, Platform::Linux).as_deref(), Some("workstation"));
        let headless = host("two-uid0", FakeRunner::default(), "2026-11-24T12:00:00Z");
        assert_eq!(detect_role(&headless, Platform::Linux).as_deref(), Some("server"));
        assert_eq!(detect_role(&headless, Platform::MacOs).as_deref(), Some("workstation"));
        // `reg query` output in the layout public projects quote for this value.
        let key = r"HKLM\SYSTEM\CurrentControlSet\Control\ProductOptions";
        let reg = |value: &str| {
            let out = format!(
                "\r\nHKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Control\\ProductOptions\r\n    ProductType    REG_SZ    {value}\r\n\r\n"
            );
            let runner = FakeRunner::default().with(&format!("reg query {key} /v ProductType"), Ok(out.as_str()));
            detect_role(&host("two-uid0", runner, "2026-11-24T12:00:00Z"), Platform::Windows)
        };
        assert_eq!(reg("WinNT").as_deref(), Some("workstation"));
        assert_eq!(reg("ServerNT").as_deref(), Some("server"));
        assert_eq!(reg("LanmanNT").as_deref(), Some("server"));
        assert_eq!(reg("Something").as_deref(), None);
        assert_eq!(detect_role(&headless, Platform::Windows), None, "reg not available");
    }
}
