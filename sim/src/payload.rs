//! Realistic report payloads: the observations each check of a simulated machine would send,
//! built from the typed payloads of `rounds_protocol::obs`, so the collector parses, stores and
//! evaluates them as it does real ones. A machine's profile decides which controls fail;
//! some values (pending updates, free space, probe latency) wander from run to run.
//!
//! Payloads hold metadata only, as the agent's do.

use chrono::{DateTime, Duration, Utc};
use rand::Rng;
use rounds_protocol::Observation;
use rounds_protocol::obs;

use crate::fleet::{Os, Profile};

/// The scheduled checks a simulated agent runs, in the agent's order, plus `backup` on machines
/// with a backup job.
pub const CHECKS: &[&str] = &[
    "inventory",
    "encryption",
    "firewall",
    "updates",
    "screen_lock",
    "malware",
    "time_sync",
    "passwords",
    "accounts",
    "disk_space",
];

/// The check name of EHR probe reports.
pub const EHR_CHECK: &str = "ehr";

/// The checks of `profile`: every scheduled check, and `backup` where it has a backup job.
pub fn checks_of(profile: &Profile) -> Vec<&'static str> {
    let mut v = CHECKS.to_vec();
    if profile.has_backup {
        v.push("backup");
    }
    v
}

fn fails(p: &Profile, control: &str) -> bool {
    p.failing.contains(control)
}

fn mounts(p: &Profile) -> Vec<(&'static str, &'static str, &'static str)> {
    match (p.os, p.role) {
        (Os::Windows, "server") => vec![("C:", "\\\\?\\Volume{1}", "ntfs"), ("D:", "\\\\?\\Volume{2}", "ntfs")],
        (Os::Windows, _) => vec![("C:", "\\\\?\\Volume{1}", "ntfs")],
        (Os::Macos, _) => vec![("/", "/dev/disk3s1", "apfs")],
        (Os::Linux, "server") => vec![
            ("/", "/dev/mapper/vg-root", "ext4"),
            ("/srv", "/dev/mapper/vg-srv", "xfs"),
        ],
        (Os::Linux, _) => vec![("/", "/dev/mapper/root", "ext4")],
    }
}

fn inventory(p: &Profile, rng: &mut impl Rng, now: DateTime<Utc>) -> obs::Inventory {
    let (os_name, os_version, kernel) = match p.os {
        Os::Windows if p.role == "server" => ("Windows Server 2022 Standard", "10.0.20348", None),
        Os::Windows => ("Windows 11 Pro", "10.0.22631", None),
        Os::Macos => ("macOS", "14.6.1", Some("23.6.0")),
        Os::Linux => ("Debian GNU/Linux", "12", Some("6.1.0-27-amd64")),
    };
    let uptime_secs = rng.gen_range(3_600..3_000_000);
    let listening = match p.role {
        "server" => vec![
            port("tcp", "0.0.0.0", 445, Some("System")),
            port("tcp", "0.0.0.0", 3389, Some("svchost")),
            port("tcp", "0.0.0.0", 1433, Some("sqlservr")),
        ],
        _ => vec![port("tcp", "127.0.0.1", 631, Some("cupsd"))],
    };
    obs::Inventory {
        hostname: p.hostname.clone(),
        os_family: p.os.family().into(),
        os_name: Some(os_name.into()),
        os_version: Some(os_version.into()),
        kernel_version: kernel.map(Into::into),
        arch: "x86_64".into(),
        role: Some(p.role.into()),
        hardware_vendor: Some(if p.os == Os::Macos { "Apple Inc." } else { "Dell Inc." }.into()),
        hardware_model: Some(
            if p.role == "server" {
                "PowerEdge T150"
            } else {
                "OptiPlex 7010"
            }
            .into(),
        ),
        serial_number: Some(format!("SIM{:07}", p.index)),
        cpu_model: Some("Intel(R) Core(TM) i5-13500".into()),
        cpu_cores: if p.role == "server" { 8 } else { 4 },
        memory_total_bytes: if p.role == "server" { 32 << 30 } else { 16 << 30 },
        uptime_secs,
        boot_time: Some(now - Duration::seconds(uptime_secs as i64)),
        disks: mounts(p)
            .into_iter()
            .map(|(m, d, fs)| obs::InventoryDisk {
                device: d.into(),
                mount_point: m.into(),
                file_system: fs.into(),
                total_bytes: 512 << 30,
                available_bytes: rng.gen_range(40u64..400) << 30,
                removable: false,
            })
            .collect(),
        interfaces: vec![obs::NetworkInterface {
            name: if p.os == Os::Linux { "eth0" } else { "Ethernet" }.into(),
            mac: Some(format!(
                "02:00:00:{:02x}:{:02x}:{:02x}",
                p.index >> 16 & 0xff,
                p.index >> 8 & 0xff,
                p.index & 0xff
            )),
            addresses: vec![format!(
                "10.{}.{}.{}/24",
                p.index >> 16 & 0xff,
                p.index >> 8 & 0xff,
                p.index & 0xff
            )],
        }],
        listening,
        agent_version: crate::run::AGENT_VERSION.into(),
    }
}

fn port(protocol: &str, address: &str, port: u16, process: Option<&str>) -> obs::ListeningPort {
    obs::ListeningPort {
        protocol: protocol.into(),
        address: address.into(),
        port,
        process: process.map(Into::into),
    }
}

/// The observations of one run of `check` on machine `p` at `now`.
pub fn observations(p: &Profile, check: &str, rng: &mut impl Rng, now: DateTime<Utc>) -> Vec<Observation> {
    let at = now;
    match check {
        "inventory" => vec![Observation::ok("host", at, &inventory(p, rng, now))],
        "encryption" => {
            let method = match p.os {
                Os::Windows => "bitlocker",
                Os::Macos => "filevault",
                Os::Linux => "luks",
            };
            let bad = fails(p, "encryption");
            let mut v: Vec<Observation> = mounts(p)
                .into_iter()
                .enumerate()
                .map(|(i, (m, d, _))| {
                    let encrypted = !(bad && i == 0);
                    Observation::ok(
                        m,
                        at,
                        &obs::EncryptionVolume {
                            device: d.into(),
                            mount_point: m.into(),
                            volume_type: "fixed".into(),
                            encrypted,
                            method: if encrypted { method } else { "none" }.into(),
                            state: if encrypted { "on" } else { "off" }.into(),
                            device_chain: vec![d.into()],
                        },
                    )
                })
                .collect();
            if p.os == Os::Linux {
                v.push(Observation::ok(
                    "swap",
                    at,
                    &obs::EncryptionSwap {
                        devices: vec!["/dev/mapper/swap".into()],
                        unencrypted: vec![],
                        encrypted: true,
                    },
                ));
            }
            v
        }
        "firewall" => {
            let on = !fails(p, "firewall");
            let backend = match p.os {
                Os::Windows => "windows-firewall",
                Os::Macos => "socketfilterfw",
                Os::Linux => "nftables",
            };
            let profiles = if p.os == Os::Windows {
                ["domain", "private", "public"]
                    .iter()
                    .map(|n| obs::FirewallProfile {
                        name: (*n).into(),
                        enabled: on || *n != "public",
                        default_inbound: "deny".into(),
                    })
                    .collect()
            } else {
                vec![]
            };
            vec![Observation::ok(
                "host",
                at,
                &obs::Firewall {
                    backend: backend.into(),
                    enabled: on,
                    default_inbound: if on { "deny" } else { "allow" }.into(),
                    profiles,
                },
            )]
        }
        "updates" => {
            let behind = fails(p, "updates");
            let security = if behind { rng.gen_range(1..12) } else { 0 };
            vec![Observation::ok(
                "host",
                at,
                &obs::Updates {
                    manager: match p.os {
                        Os::Windows => "windows-update",
                        Os::Macos => "softwareupdate",
                        Os::Linux => "apt",
                    }
                    .into(),
                    pending_count: Some(security + rng.gen_range(0..20)),
                    pending_security_count: Some(security),
                    oldest_pending_security_days: behind.then(|| rng.gen_range(31..120)),
                    auto_security_updates: Some(!behind),
                    reboot_required: Some(rng.gen_bool(0.1)),
                    last_run: Some(now - Duration::hours(rng.gen_range(1..48))),
                    ..obs::Updates::default()
                },
            )]
        }
        "screen_lock" => {
            let bad = fails(p, "screen_lock");
            vec![Observation::ok(
                "host",
                at,
                &obs::ScreenLock {
                    enabled: !bad,
                    idle_timeout_secs: Some(if bad { 3600 } else { 600 }),
                    enforced: Some(!bad),
                    shell_timeout_secs: None,
                    source: match p.os {
                        Os::Windows => "registry",
                        Os::Macos => "com.apple.screensaver",
                        Os::Linux => "gnome-dconf",
                    }
                    .into(),
                    graphical: Some(p.role != "server" || p.os == Os::Windows),
                },
            )]
        }
        "malware" => {
            let bad = fails(p, "malware");
            let product = match p.os {
                Os::Windows => "windows-defender",
                Os::Macos => "xprotect",
                Os::Linux => "clamav",
            };
            let age = if bad {
                rng.gen_range(200.0..900.0)
            } else {
                rng.gen_range(1.0..20.0)
            };
            vec![Observation::ok(
                product,
                at,
                &obs::Malware {
                    product: product.into(),
                    installed: true,
                    running: Some(!bad),
                    real_time_protection: Some(!bad && p.os != Os::Linux),
                    signatures_updated_at: Some(now - Duration::minutes((age * 60.0) as i64)),
                    signatures_age_hours: Some(age),
                },
            )]
        }
        "time_sync" => vec![Observation::ok(
            "host",
            at,
            &obs::TimeSync {
                synchronized: !fails(p, "time_sync"),
                service: Some(
                    match p.os {
                        Os::Windows => "w32time",
                        Os::Macos => "sntp",
                        Os::Linux => "chrony",
                    }
                    .into(),
                ),
                offset_ms: Some(rng.gen_range(-5.0..5.0)),
            },
        )],
        "passwords" => {
            let bad = fails(p, "passwords");
            vec![
                Observation::ok(
                    "host",
                    at,
                    &obs::PasswordPolicy {
                        min_length: Some(if bad { 6 } else { 12 }),
                        max_age_days: Some(if bad { 0 } else { 365 }),
                        lockout_threshold: Some(if bad { 0 } else { 10 }),
                        complexity_required: Some(!bad),
                        source: if p.os == Os::Windows { "secedit" } else { "pam" }.into(),
                    },
                ),
                Observation::ok(
                    "host",
                    at,
                    &obs::LoginMonitoring {
                        failed_logins_recorded: true,
                        lockout_configured: Some(!bad),
                        source: if p.os == Os::Windows { "eventlog" } else { "auth.log" }.into(),
                    },
                ),
            ]
        }
        "accounts" => {
            let bad = fails(p, "accounts");
            vec![Observation::ok(
                "host",
                at,
                &obs::Accounts {
                    uid0_accounts: vec![if p.os == Os::Windows { "Administrator" } else { "root" }.into()],
                    duplicate_uids: vec![],
                    duplicate_names: vec![],
                    empty_password_accounts: Some(if bad { vec!["frontdesk".into()] } else { vec![] }),
                    auto_login: Some(bad),
                    guest_enabled: Some(false),
                    interactive_accounts: rng.gen_range(2..9),
                },
            )]
        }
        "disk_space" => mounts(p)
            .into_iter()
            .map(|(m, _, _)| {
                let total: u64 = 512 << 30;
                let used_percent = if fails(p, "disk_space") {
                    rng.gen_range(92.0..99.0)
                } else {
                    rng.gen_range(20.0..80.0)
                };
                Observation::ok(
                    m,
                    at,
                    &obs::DiskSpace {
                        mount_point: m.into(),
                        total_bytes: total,
                        available_bytes: (total as f64 * (1.0 - used_percent / 100.0)) as u64,
                        used_percent,
                    },
                )
            })
            .collect(),
        "backup" => {
            let bad = fails(p, "backup");
            let tool = match p.os {
                Os::Windows if p.role == "server" => "veeam",
                Os::Windows => "windows-server-backup",
                Os::Macos => "time-machine",
                Os::Linux => "restic",
            };
            let last_success = now
                - Duration::hours(if bad {
                    rng.gen_range(50..400)
                } else {
                    rng.gen_range(1..24)
                });
            vec![Observation::ok(
                "nightly",
                at,
                &obs::Backup {
                    tool: tool.into(),
                    repository: "nas-01:/backups/nightly".into(),
                    last_success_at: Some(last_success),
                    last_result: if bad { "failed" } else { "success" }.into(),
                    last_attempt_at: Some(now - Duration::hours(rng.gen_range(1..24))),
                    size_bytes: Some(rng.gen_range(50u64..900) << 30),
                    encrypted: Some(!bad || rng.gen_bool(0.5)),
                    last_restore_test_at: Some(now - Duration::days(rng.gen_range(10..200))),
                    destination: Some("nas".into()),
                    ..obs::Backup::default()
                },
            )]
        }
        other => vec![Observation::error(
            other,
            "host",
            at,
            format!("simulated check {other} has no payload"),
        )],
    }
}

/// One EHR probe observation of the practice's endpoint: up with a latency, or down and why.
pub fn ehr_probe(practice: &str, up: bool, rng: &mut impl Rng, now: DateTime<Utc>) -> Observation {
    let slug: String = practice
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_ascii_lowercase();
    Observation::ok(
        "EHR",
        now,
        &obs::EhrProbe {
            probe: "fhir".into(),
            target: format!("https://ehr.{slug}.example/fhir/r4/metadata"),
            up,
            latency_ms: up.then(|| rng.gen_range(40.0..250.0)),
            http_status: up.then_some(200),
            tls_version: up.then(|| "TLSv1.3".into()),
            certificate_expires_at: Some(now + Duration::days(60)),
            certificate_valid: Some(true),
            failure: (!up).then(|| "connect: connection timed out after 10 s".into()),
            reason: (!up).then(|| "tcp_timeout".into()),
            attempts: if up { 1 } else { 2 },
            chain_verified: up.then_some(true),
            hostname_match: up.then_some(true),
            leaf_expires_in_days: Some(60),
            chain_expires_in_days: Some(60),
            ..obs::EhrProbe::default()
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::profile;
    use rounds_protocol::ObservationStatus;

    #[test]
    fn every_check_of_every_profile_yields_typed_observations() {
        let now = Utc::now();
        let mut rng = crate::fleet::rng_for(1, 0, 9);
        for i in 0..60 {
            let p = profile(5, i, "Smith", i % 6 == 0);
            for check in checks_of(&p) {
                let obs = observations(&p, check, &mut rng, now);
                assert!(!obs.is_empty(), "{check}");
                for o in &obs {
                    assert_eq!(o.status, ObservationStatus::Ok, "{check}: {o:?}");
                    assert!(rounds_protocol::obs::ALL_KINDS.contains(&o.kind.as_str()), "{}", o.kind);
                }
            }
        }
    }

    #[test]
    fn failing_controls_show_in_the_payloads() {
        let now = Utc::now();
        let mut rng = crate::fleet::rng_for(1, 0, 9);
        let mut p = profile(5, 1, "Smith", false);
        p.failing = ["encryption", "firewall"].into_iter().collect();
        let enc = observations(&p, "encryption", &mut rng, now);
        let v: obs::EncryptionVolume = enc[0].payload().unwrap().unwrap();
        assert!(!v.encrypted);
        let fw: obs::Firewall = observations(&p, "firewall", &mut rng, now)[0]
            .payload()
            .unwrap()
            .unwrap();
        assert!(!fw.enabled);
        p.failing.clear();
        let v: obs::EncryptionVolume = observations(&p, "encryption", &mut rng, now)[0]
            .payload()
            .unwrap()
            .unwrap();
        assert!(v.encrypted);
        let down: obs::EhrProbe = ehr_probe("Smith", false, &mut rng, now).payload().unwrap().unwrap();
        assert!(!down.up && down.failure.is_some());
    }
}
