//! Encryption at rest: one observation per mounted fixed or removable volume, one for swap.
//!
//! - Linux: every block-device mount in /proc/mounts is mapped to its kernel device and walked
//!   down through `/sys/block/<dev>/slaves` to the disks. A volume counts as encrypted only when
//!   every path down to a disk passes through a dm-crypt device (/sys/block/dm-*/dm/uuid starting
//!   `CRYPT-`, except dm-verity and dm-integrity, which do not encrypt). So LVM on LUKS and LUKS
//!   on RAID count, an unencrypted /home under an encrypted / is caught, and a volume group that
//!   spans one encrypted and one plain disk is not encrypted. /boot and the EFI system partition
//!   are reported with `volume_type: boot` (they hold the boot loader and kernel, and the
//!   firmware cannot read an encrypted ESP). Swap comes from /proc/swaps (a swap
//!   file takes the state of the file system that holds it; zram never reaches a disk).
//!   Needs no privilege.
//! - Windows: `manage-bde -status` (administrator), parsed by [`parse_manage_bde`]; English and
//!   German output are understood, any other language is an error observation, never a pass.
//! - macOS: `fdesetup status` for the system volume, `sysctl vm.swapusage` for swap.

use std::collections::BTreeSet;

use rounds_protocol::Observation;
use rounds_protocol::obs::{EncryptionSwap, EncryptionVolume, Payload};

use super::{Check, Host, Platform, platform};

/// Observes disk and swap encryption.
#[derive(Debug)]
pub struct EncryptionCheck;

impl Check for EncryptionCheck {
    fn name(&self) -> &'static str {
        "encryption"
    }

    fn kinds(&self) -> &'static [&'static str] {
        &[EncryptionVolume::KIND, EncryptionSwap::KIND]
    }

    fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(30)
    }

    fn run(&self, host: &Host) -> Vec<Observation> {
        collect(host, platform())
    }
}

fn collect(host: &Host, platform: Platform) -> Vec<Observation> {
    match platform {
        Platform::Linux => linux(host),
        Platform::Windows => windows(host),
        Platform::MacOs => macos(host),
    }
}

// ---------------------------------------------------------------------------------------------
// Linux

/// One line of /proc/mounts.
#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    pub device: String,
    pub mount_point: String,
    pub fs_type: String,
}

/// Parses /proc/mounts (or /etc/mtab); octal escapes such as `\040` are decoded.
pub fn parse_mounts(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            Some(Mount {
                device: unescape_octal(f.next()?),
                mount_point: unescape_octal(f.next()?),
                fs_type: f.next()?.to_string(),
            })
        })
        .collect()
}

/// Decodes the `\NNN` octal escapes the kernel uses in /proc/mounts and /proc/swaps.
pub fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let code = (b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)))
            .then(|| b[i + 1..i + 4].iter().fold(0u32, |n, c| n * 8 + u32::from(c - b'0')))
            .and_then(|n| u8::try_from(n).ok());
        if let Some(c) = code {
            out.push(c);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// File systems on block devices that are not at-rest storage of the machine's data.
const SKIP_FS: &[&str] = &["squashfs", "iso9660", "udf", "erofs"];

/// Whether a mount is a block-device volume whose encryption matters.
fn is_volume(m: &Mount) -> bool {
    let Some(dev) = m.device.strip_prefix("/dev/") else {
        return false;
    };
    let virtual_dev = ["loop", "zram", "ram", "nbd"].iter().any(|p| dev.starts_with(p));
    !virtual_dev && !SKIP_FS.contains(&m.fs_type.as_str())
}

/// What the walk down the device stack found.
#[derive(Debug, Clone, PartialEq)]
struct Stack {
    encrypted: bool,
    /// `luks` or `dm-crypt` when encrypted.
    method: Option<&'static str>,
    /// Every device seen from the top down.
    chain: Vec<String>,
    removable: bool,
}

/// The dm-crypt flavour named by a device-mapper uuid, if it encrypts.
fn crypt_method(dm_uuid: &str) -> Option<&'static str> {
    let rest = dm_uuid.strip_prefix("CRYPT-")?;
    if rest.starts_with("VERITY") || rest.starts_with("INTEGRITY") {
        None
    } else if rest.starts_with("LUKS") {
        Some("luks")
    } else {
        Some("dm-crypt")
    }
}

/// Maps a `/dev/...` path to its kernel block-device name (`dm-1`, `sda2`, `md0`).
fn kernel_name(host: &Host, device: &str) -> Option<String> {
    let dev = device.strip_prefix("/dev/")?;
    if let Some(mapped) = dev.strip_prefix("mapper/") {
        // Device-mapper names are in /sys/block/dm-*/dm/name.
        for n in host.list_dir("/sys/block").ok()? {
            if n.starts_with("dm-")
                && let Ok(Some(name)) = host.read_opt(format!("/sys/block/{n}/dm/name"))
                && name.trim() == mapped
            {
                return Some(n);
            }
        }
        return None;
    }
    if dev.contains('/') {
        return None;
    }
    if host.exists(format!("/sys/block/{dev}")) || host.exists(format!("/sys/class/block/{dev}")) {
        return Some(dev.to_string());
    }
    // A partition lives in its disk's directory: /sys/block/sda/sda2.
    let disks = host.list_dir("/sys/block").ok()?;
    disks
        .iter()
        .any(|d| host.exists(format!("/sys/block/{d}/{dev}")))
        .then(|| dev.to_string())
}

/// Walks from `name` down through its slaves.
fn walk(
    host: &Host,
    name: &str,
    depth: u32,
    chain: &mut Vec<String>,
    removable: &mut bool,
) -> (bool, Option<&'static str>) {
    chain.push(name.to_string());
    if depth > 16 {
        return (false, None);
    }
    let own = host
        .read_opt(format!("/sys/block/{name}/dm/uuid"))
        .ok()
        .flatten()
        .and_then(|u| crypt_method(u.trim()));
    let slaves = host.list_dir(format!("/sys/block/{name}/slaves")).unwrap_or_default();
    let mut all_below = !slaves.is_empty();
    let mut below_method = None;
    for s in &slaves {
        let (enc, m) = walk(host, s, depth + 1, chain, removable);
        all_below &= enc;
        below_method = below_method.or(m);
    }
    if slaves.is_empty() {
        // A disk or a partition: read the disk's `removable` flag.
        let flag = if host.exists(format!("/sys/block/{name}/removable")) {
            host.read_opt(format!("/sys/block/{name}/removable")).ok().flatten()
        } else {
            host.list_dir("/sys/block")
                .unwrap_or_default()
                .into_iter()
                .find(|d| host.exists(format!("/sys/block/{d}/{name}")))
                .and_then(|d| host.read_opt(format!("/sys/block/{d}/removable")).ok().flatten())
        };
        if flag.is_some_and(|f| f.trim() == "1") {
            *removable = true;
        }
    }
    match own {
        Some(m) => (true, Some(m)),
        None => (all_below, below_method.filter(|_| all_below)),
    }
}

/// Analyses the device stack under a kernel block device.
fn stack(host: &Host, name: &str) -> Stack {
    let mut chain = Vec::new();
    let mut removable = false;
    let (encrypted, method) = walk(host, name, 0, &mut chain, &mut removable);
    Stack {
        encrypted,
        method,
        chain,
        removable,
    }
}

/// `removable`, `boot` (/boot and the EFI system partition: boot loader and kernel, no data,
/// and the firmware cannot read an encrypted ESP) or `fixed`. Only `fixed` volumes are held to
/// the at-rest rule; the others are reported as evidence.
fn volume_type(mount_point: &str, removable: bool) -> &'static str {
    if removable {
        "removable"
    } else if matches!(mount_point, "/boot" | "/boot/efi" | "/efi") {
        "boot"
    } else {
        "fixed"
    }
}

fn volume_observation(host: &Host, m: &Mount, s: &Stack) -> Observation {
    Observation::ok(
        m.mount_point.clone(),
        host.now,
        &EncryptionVolume {
            device: m.device.clone(),
            mount_point: m.mount_point.clone(),
            volume_type: volume_type(&m.mount_point, s.removable).to_string(),
            encrypted: s.encrypted,
            method: s.method.unwrap_or("none").to_string(),
            state: if s.encrypted { "on" } else { "off" }.to_string(),
            device_chain: s.chain.clone(),
        },
    )
}

fn linux(host: &Host) -> Vec<Observation> {
    let mounts = match host.read_opt("/proc/mounts") {
        Ok(Some(text)) => parse_mounts(&text),
        Ok(None) => {
            return vec![
                Observation::error(EncryptionVolume::KIND, "host", host.now, "/proc/mounts does not exist"),
                Observation::error(EncryptionSwap::KIND, "swap", host.now, "/proc/mounts does not exist"),
            ];
        }
        Err(e) => {
            return vec![
                Observation::error(EncryptionVolume::KIND, "host", host.now, e.clone()),
                Observation::error(EncryptionSwap::KIND, "swap", host.now, e),
            ];
        }
    };
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    // Later mounts hide earlier ones on the same mount point: keep the last.
    for m in mounts.iter().rev().filter(|m| is_volume(m)) {
        if !seen.insert(m.mount_point.clone()) {
            continue;
        }
        match kernel_name(host, &m.device) {
            Some(name) => out.push(volume_observation(host, m, &stack(host, &name))),
            None => out.push(Observation::error(
                EncryptionVolume::KIND,
                m.mount_point.clone(),
                host.now,
                format!("cannot map {} to a block device under /sys/block", m.device),
            )),
        }
    }
    out.reverse();
    if out.is_empty() {
        out.push(Observation::error(
            EncryptionVolume::KIND,
            "host",
            host.now,
            "no block-device file systems in /proc/mounts",
        ));
    }
    out.push(linux_swap(host, &mounts));
    out
}

/// One line of /proc/swaps.
#[derive(Debug, Clone, PartialEq)]
pub struct Swap {
    pub filename: String,
    /// `partition` or `file`.
    pub kind: String,
}

/// Parses /proc/swaps.
pub fn parse_swaps(text: &str) -> Vec<Swap> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            Some(Swap {
                filename: unescape_octal(f.next()?),
                kind: f.next()?.to_string(),
            })
        })
        .collect()
}

fn linux_swap(host: &Host, mounts: &[Mount]) -> Observation {
    let swaps = match host.read_opt("/proc/swaps") {
        Ok(Some(text)) => parse_swaps(&text),
        Ok(None) => return Observation::error(EncryptionSwap::KIND, "swap", host.now, "/proc/swaps does not exist"),
        Err(e) => return Observation::error(EncryptionSwap::KIND, "swap", host.now, e),
    };
    let mut devices = Vec::new();
    let mut unencrypted = Vec::new();
    for s in swaps {
        devices.push(s.filename.clone());
        let encrypted = if s.filename.starts_with("/dev/zram") {
            // Compressed RAM: never written to a disk.
            true
        } else if s.kind == "partition" {
            match kernel_name(host, &s.filename) {
                Some(name) => stack(host, &name).encrypted,
                None => {
                    return Observation::error(
                        EncryptionSwap::KIND,
                        "swap",
                        host.now,
                        format!(
                            "cannot map swap device {} to a block device under /sys/block",
                            s.filename
                        ),
                    );
                }
            }
        } else {
            // A swap file: the state of the file system that holds it.
            let holder = mounts
                .iter()
                .filter(|m| is_volume(m) && path_under(&s.filename, &m.mount_point))
                .max_by_key(|m| m.mount_point.len());
            match holder.and_then(|m| kernel_name(host, &m.device)) {
                Some(name) => stack(host, &name).encrypted,
                None => {
                    return Observation::error(
                        EncryptionSwap::KIND,
                        "swap",
                        host.now,
                        format!("cannot tell which volume holds swap file {}", s.filename),
                    );
                }
            }
        };
        if !encrypted {
            unencrypted.push(s.filename);
        }
    }
    Observation::ok(
        "swap",
        host.now,
        &EncryptionSwap {
            encrypted: unencrypted.is_empty(),
            devices,
            unencrypted,
        },
    )
}

fn path_under(path: &str, mount_point: &str) -> bool {
    mount_point == "/"
        || path == mount_point
        || path.strip_prefix(mount_point).is_some_and(|rest| rest.starts_with('/'))
}

// ---------------------------------------------------------------------------------------------
// Windows: BitLocker

/// One volume in `manage-bde -status` output.
#[derive(Debug, Clone, PartialEq)]
pub struct BdeVolume {
    /// Drive letter with colon (`C:`) or volume GUID path.
    pub volume: String,
    /// `on`, `off`, `suspended`, `encrypting`, `decrypting`, `locked`, `unknown`.
    pub state: &'static str,
    pub percentage_encrypted: Option<f64>,
}

/// Field labels of `manage-bde -status`, per language.
struct BdeLabels {
    conversion: &'static str,
    protection: &'static str,
    lock: &'static str,
    percentage: &'static str,
}

const BDE_LANGUAGES: &[BdeLabels] = &[
    BdeLabels {
        conversion: "conversion status",
        protection: "protection status",
        lock: "lock status",
        percentage: "percentage encrypted",
    },
    BdeLabels {
        conversion: "konvertierungsstatus",
        protection: "schutzstatus",
        lock: "sperrungsstatus",
        percentage: "verschlüsselt (prozent)",
    },
];

fn is_bde_label(k: &str) -> bool {
    BDE_LANGUAGES
        .iter()
        .any(|l| [l.conversion, l.protection, l.lock, l.percentage].contains(&k))
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Conversion {
    Full,
    Decrypted,
    Encrypting,
    Decrypting,
    Unknown,
}

fn conversion(v: &str) -> Conversion {
    match v {
        "fully encrypted"
        | "used space only encrypted"
        | "vollständig verschlüsselt"
        | "nur verwendeter speicherplatz verschlüsselt" => Conversion::Full,
        "fully decrypted" | "vollständig entschlüsselt" => Conversion::Decrypted,
        "encryption in progress"
        | "encryption paused"
        | "verschlüsselung wird durchgeführt"
        | "verschlüsselung angehalten" => Conversion::Encrypting,
        "decryption in progress"
        | "decryption paused"
        | "entschlüsselung wird durchgeführt"
        | "entschlüsselung angehalten" => Conversion::Decrypting,
        _ => Conversion::Unknown,
    }
}

/// `Some(true)` protection on, `Some(false)` off (including "Protection Off (1 reboots left)").
fn protection(v: &str) -> Option<bool> {
    let v = v.trim_end_matches('.');
    if v == "protection on" || v == "der schutz ist aktiviert" {
        Some(true)
    } else if v.starts_with("protection off") || v == "der schutz ist deaktiviert" {
        Some(false)
    } else {
        None
    }
}

fn locked(v: &str) -> Option<bool> {
    match v {
        "locked" | "gesperrt" => Some(true),
        "unlocked" | "entsperrt" => Some(false),
        _ => None,
    }
}

/// Parses `manage-bde -status`. Output in a language whose labels are unknown is an `Err`, so it
/// can never be read as protected.
pub fn parse_manage_bde(text: &str) -> Result<Vec<BdeVolume>, String> {
    let mut volumes = Vec::new();
    let mut current: Option<(String, Vec<(String, String)>)> = None;
    for raw in text.lines() {
        let line = raw.trim();
        if let Some(rest) = line.strip_prefix("Volume ") {
            if let Some(done) = current.take() {
                volumes.push(done);
            }
            let name = rest
                .split_whitespace()
                .next()
                .unwrap_or("")
                .trim_matches('"')
                .to_string();
            current = Some((name, Vec::new()));
            continue;
        }
        let Some((k, v)) = line.split_once(':') else { continue };
        let (k, v) = (k.trim().to_lowercase(), v.trim().to_lowercase());
        // An excerpt without its `Volume` line still counts once a known field appears.
        if current.is_none() && is_bde_label(&k) {
            current = Some((String::new(), Vec::new()));
        }
        if let Some((_, fields)) = current.as_mut() {
            fields.push((k, v));
        }
    }
    volumes.extend(current);
    if volumes.is_empty() {
        let first = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("empty output");
        return Err(format!("unrecognised manage-bde output, no volume found: {first}"));
    }
    let mut out = Vec::new();
    for (volume, fields) in volumes {
        let get = |label: &str| fields.iter().find(|(k, _)| k == label).map(|(_, v)| v.as_str());
        let Some(labels) = BDE_LANGUAGES
            .iter()
            .find(|l| get(l.conversion).is_some() || get(l.protection).is_some())
        else {
            return Err(format!(
                "unrecognised manage-bde output for volume {volume}: no known field labels \
                 (English and German output are understood)"
            ));
        };
        let conv = get(labels.conversion).map(conversion).unwrap_or(Conversion::Unknown);
        let prot = get(labels.protection).and_then(protection);
        let lock = get(labels.lock).and_then(locked);
        let state = match (lock, conv, prot) {
            (Some(true), _, _) => "locked",
            (_, Conversion::Encrypting, _) => "encrypting",
            (_, Conversion::Decrypting, _) => "decrypting",
            (_, Conversion::Full, Some(true)) => "on",
            (_, Conversion::Full, Some(false)) => "suspended",
            (_, Conversion::Decrypted, _) => "off",
            _ => "unknown",
        };
        let percentage_encrypted =
            get(labels.percentage).and_then(|p| p.trim_end_matches('%').trim().replace(',', ".").parse::<f64>().ok());
        out.push(BdeVolume {
            volume,
            state,
            percentage_encrypted,
        });
    }
    Ok(out)
}

fn bde_observation(host: &Host, v: &BdeVolume) -> Observation {
    Observation::ok(
        v.volume.clone(),
        host.now,
        &EncryptionVolume {
            device: v.volume.clone(),
            mount_point: v.volume.clone(),
            volume_type: "fixed".to_string(),
            encrypted: v.state == "on",
            method: if v.state == "off" { "none" } else { "bitlocker" }.to_string(),
            state: v.state.to_string(),
            device_chain: Vec::new(),
        },
    )
}

fn windows(host: &Host) -> Vec<Observation> {
    let volumes = host
        .runner
        .run("manage-bde", &["-status"])
        .map_err(|e| format!("manage-bde -status failed (needs administrator): {e}"))
        .and_then(|text| parse_manage_bde(&text));
    match volumes {
        Ok(volumes) => {
            let mut out: Vec<Observation> = volumes.iter().map(|v| bde_observation(host, v)).collect();
            // The page file lives on the system drive; it is protected when that drive is.
            let system = volumes.iter().find(|v| v.volume.eq_ignore_ascii_case("C:"));
            out.push(match system {
                Some(c) => Observation::ok(
                    "swap",
                    host.now,
                    &EncryptionSwap {
                        devices: vec!["C:".to_string()],
                        unencrypted: if c.state == "on" {
                            Vec::new()
                        } else {
                            vec!["C:".to_string()]
                        },
                        encrypted: c.state == "on",
                    },
                ),
                None => Observation::error(EncryptionSwap::KIND, "swap", host.now, "manage-bde did not report C:"),
            });
            out
        }
        Err(e) => vec![
            Observation::error(EncryptionVolume::KIND, "host", host.now, e.clone()),
            Observation::error(EncryptionSwap::KIND, "swap", host.now, e),
        ],
    }
}

// ---------------------------------------------------------------------------------------------
// macOS: FileVault

/// Parses `fdesetup status` into `on`, `off`, `encrypting` or `decrypting`.
pub fn parse_fdesetup(text: &str) -> Result<&'static str, String> {
    if text.contains("Encryption in progress") {
        Ok("encrypting")
    } else if text.contains("Decryption in progress") {
        Ok("decrypting")
    } else if text.contains("FileVault is On") {
        Ok("on")
    } else if text.contains("FileVault is Off") {
        Ok("off")
    } else {
        Err(format!("unrecognised fdesetup output: {}", text.trim()))
    }
}

fn macos(host: &Host) -> Vec<Observation> {
    let volume = match host
        .runner
        .run("fdesetup", &["status"])
        .and_then(|t| parse_fdesetup(&t))
    {
        Ok(state) => Observation::ok(
            "/",
            host.now,
            &EncryptionVolume {
                device: "/".to_string(),
                mount_point: "/".to_string(),
                volume_type: "fixed".to_string(),
                encrypted: state == "on",
                method: "filevault".to_string(),
                state: state.to_string(),
                device_chain: Vec::new(),
            },
        ),
        Err(e) => Observation::error(EncryptionVolume::KIND, "/", host.now, e),
    };
    // macOS has encrypted its swap since 10.7; sysctl says so.
    let swap = match host.runner.run("sysctl", &["vm.swapusage"]) {
        Ok(t) => Observation::ok(
            "swap",
            host.now,
            &EncryptionSwap {
                devices: vec!["/private/var/vm".to_string()],
                unencrypted: if t.contains("(encrypted)") {
                    Vec::new()
                } else {
                    vec!["/private/var/vm".to_string()]
                },
                encrypted: t.contains("(encrypted)"),
            },
        ),
        Err(e) => Observation::error(EncryptionSwap::KIND, "swap", host.now, e),
    };
    vec![volume, swap]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testutil::{FakeRunner, error_of, host, payload, recorded};

    const NOW: &str = "2026-11-24T10:00:00Z";

    fn linux_fixture(name: &str) -> Vec<Observation> {
        collect(&host(name, FakeRunner::default(), NOW), Platform::Linux)
    }

    #[test]
    fn plain_luks_root_is_encrypted() {
        let obs = linux_fixture("luks-root");
        let root: EncryptionVolume = payload(&obs, "/");
        assert!(root.encrypted, "{root:?}");
        assert_eq!(root.method, "luks");
        assert_eq!(root.state, "on");
        assert_eq!(root.volume_type, "fixed");
        assert_eq!(root.device_chain, ["dm-0", "nvme0n1p3"]);
        // /boot and the EFI system partition are plain: reported, not encrypted, and marked
        // `boot` so the at-rest rule (fixed volumes) does not hold them to encryption.
        let boot: EncryptionVolume = payload(&obs, "/boot");
        assert!(!boot.encrypted);
        assert_eq!((boot.method.as_str(), boot.volume_type.as_str()), ("none", "boot"));
        let esp: EncryptionVolume = payload(&obs, "/boot/efi");
        assert_eq!(esp.volume_type, "boot");
        // A second disk mounted on /home without encryption is caught.
        let home: EncryptionVolume = payload(&obs, "/home");
        assert!(!home.encrypted);
        assert_eq!(home.device_chain, ["sdb1"]);
        // Swap on its own LUKS device.
        let swap: EncryptionSwap = payload(&obs, "swap");
        assert!(swap.encrypted, "{swap:?}");
    }

    #[test]
    fn lvm_on_luks_counts_as_encrypted() {
        let obs = linux_fixture("lvm-on-luks");
        for mp in ["/", "/home"] {
            let v: EncryptionVolume = payload(&obs, mp);
            assert!(v.encrypted, "{mp}: {v:?}");
            assert_eq!(v.method, "luks");
            assert!(v.device_chain.contains(&"dm-0".to_string()), "{v:?}");
            assert_eq!(v.device_chain.last().map(String::as_str), Some("sda3"));
        }
        let swap: EncryptionSwap = payload(&obs, "swap");
        assert!(swap.encrypted);
        assert_eq!(swap.devices, ["/dev/dm-2"]);
    }

    #[test]
    fn unencrypted_home_under_encrypted_root_is_caught() {
        let obs = linux_fixture("plain-root-encrypted-home");
        let root: EncryptionVolume = payload(&obs, "/");
        assert!(!root.encrypted);
        assert_eq!(root.state, "off");
        let home: EncryptionVolume = payload(&obs, "/home");
        assert!(home.encrypted);
        assert_eq!(home.method, "luks");
        // The swap file lives on the plain root file system.
        let swap: EncryptionSwap = payload(&obs, "swap");
        assert!(!swap.encrypted);
        assert_eq!(swap.unencrypted, ["/swapfile"]);
    }

    #[test]
    fn encrypted_versus_plain_swap() {
        let obs = linux_fixture("swap-mixed");
        let swap: EncryptionSwap = payload(&obs, "swap");
        assert_eq!(swap.devices, ["/dev/dm-1", "/dev/sda2", "/dev/zram0"]);
        assert_eq!(swap.unencrypted, ["/dev/sda2"]);
        assert!(!swap.encrypted);
        // Plain dm-crypt with a random key (crypttab `swap`) counts; LUKS-on-RAID root too.
        let root: EncryptionVolume = payload(&obs, "/");
        assert!(root.encrypted, "{root:?}");
        assert_eq!(root.device_chain, ["dm-0", "md0", "sda1", "sdb1"]);
        // A USB stick is reported as removable.
        let usb: EncryptionVolume = payload(&obs, "/media/usb");
        assert_eq!(usb.volume_type, "removable");
        assert!(!usb.encrypted);
    }

    #[test]
    fn dm_verity_and_integrity_do_not_count() {
        assert_eq!(crypt_method("CRYPT-VERITY-1234-root"), None);
        assert_eq!(crypt_method("CRYPT-INTEGRITY-abc"), None);
        assert_eq!(crypt_method("CRYPT-PLAIN-swap"), Some("dm-crypt"));
        assert_eq!(crypt_method("CRYPT-LUKS2-0123-luks-0123"), Some("luks"));
        assert_eq!(crypt_method("LVM-abc"), None);
    }

    #[test]
    fn octal_escapes_in_mount_points() {
        let m = parse_mounts("/dev/sdb1 /media/My\\040Disk vfat rw 0 0\n");
        assert_eq!(m[0].mount_point, "/media/My Disk");
    }

    #[test]
    fn unmappable_device_is_an_explained_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("proc")).unwrap();
        std::fs::write(dir.path().join("proc/mounts"), "/dev/root / ext4 rw 0 0\n").unwrap();
        std::fs::write(dir.path().join("proc/swaps"), "Filename\tType\tSize\tUsed\tPriority\n").unwrap();
        let h = Host {
            root: dir.path().to_path_buf(),
            live: false,
            state_dir: None,
            ..Host::system()
        };
        let obs = collect(&h, Platform::Linux);
        assert!(error_of(&obs, EncryptionVolume::KIND, "/").contains("cannot map /dev/root"));
        let swap: EncryptionSwap = payload(&obs, "swap");
        assert!(swap.encrypted && swap.devices.is_empty());
    }

    fn bde(name: &str) -> Result<Vec<BdeVolume>, String> {
        parse_manage_bde(&recorded(&format!("manage-bde/{name}")))
    }

    #[test]
    fn manage_bde_english_states() {
        let on = bde("en-protection-on.txt").unwrap();
        assert_eq!(on[0].volume, "C:");
        assert_eq!(on[0].state, "on");
        assert_eq!(on[0].percentage_encrypted, Some(100.0));

        let two = bde("en-on-and-off.txt").unwrap();
        assert_eq!(
            two.iter().map(|v| (v.volume.as_str(), v.state)).collect::<Vec<_>>(),
            [("C:", "on"), ("D:", "off")]
        );

        let suspended = bde("en-suspended.txt").unwrap();
        assert_eq!(suspended[0].state, "suspended", "suspended is not on");

        let encrypting = bde("en-encryption-in-progress.txt").unwrap();
        assert_eq!(encrypting[0].state, "encrypting");
        assert_eq!(encrypting[0].percentage_encrypted, Some(99.0));

        let decrypting = bde("en-decryption-in-progress.txt").unwrap();
        assert_eq!(decrypting[0].state, "decrypting");

        let locked = bde("en-locked.txt").unwrap();
        assert_eq!(locked[0].volume, "F:");
        assert_eq!(locked[0].state, "locked");

        let azure = bde("en-azure-bek-volume.txt").unwrap();
        assert_eq!(azure[0].state, "on");
        assert_eq!(azure[1].state, "off");
    }

    #[test]
    fn manage_bde_german_states() {
        let off = bde("de-off.txt").unwrap();
        assert_eq!(off[0].volume, "C:");
        assert_eq!(off[0].state, "off");
        assert_eq!(off[0].percentage_encrypted, Some(0.0));
        let encrypting = bde("de-encryption-in-progress.txt").unwrap();
        assert_eq!(encrypting[0].state, "encrypting");
        assert_eq!(encrypting[0].percentage_encrypted, Some(3.5));
        // 100 % but still converting with protection on: not yet "on".
        let finishing = bde("de-encryption-finishing.txt").unwrap();
        assert_eq!(finishing[0].state, "encrypting");
    }

    #[test]
    fn manage_bde_unknown_language_is_an_error_not_a_pass() {
        let err = bde("fr-protection-on.txt").unwrap_err();
        assert!(err.contains("unrecognised manage-bde output"), "{err}");
        let h = host(
            "empty",
            FakeRunner::default().with("manage-bde -status", Ok(&recorded("manage-bde/fr-protection-on.txt"))),
            NOW,
        );
        let obs = collect(&h, Platform::Windows);
        assert!(error_of(&obs, EncryptionVolume::KIND, "host").contains("unrecognised"));
    }

    #[test]
    fn windows_collection_reports_each_volume() {
        let h = host(
            "empty",
            FakeRunner::default().with("manage-bde -status", Ok(&recorded("manage-bde/en-suspended.txt"))),
            NOW,
        );
        let obs = collect(&h, Platform::Windows);
        let c: EncryptionVolume = payload(&obs, "C:");
        assert_eq!(
            (c.state.as_str(), c.encrypted, c.method.as_str()),
            ("suspended", false, "bitlocker")
        );
        let swap: EncryptionSwap = payload(&obs, "swap");
        assert!(!swap.encrypted);
        let denied = host(
            "empty",
            FakeRunner::default().with("manage-bde -status", Err("manage-bde exited with exit code: 4294967295: ERROR: An attempt to access a required resource was denied.")),
            NOW,
        );
        let obs = collect(&denied, Platform::Windows);
        assert!(error_of(&obs, EncryptionVolume::KIND, "host").contains("administrator"));
    }

    #[test]
    fn fdesetup_states() {
        let states: Vec<_> = [
            "on.txt",
            "off.txt",
            "encrypting.txt",
            "decrypting.txt",
            "off-deferred.txt",
        ]
        .iter()
        .map(|f| parse_fdesetup(&recorded(&format!("fdesetup/{f}"))).unwrap())
        .collect();
        assert_eq!(states, ["on", "off", "encrypting", "decrypting", "off"]);
        assert!(parse_fdesetup("Error: unable to determine status.").is_err());
        let h = host(
            "empty",
            FakeRunner::default().with("fdesetup status", Ok(&recorded("fdesetup/encrypting.txt"))),
            NOW,
        );
        let obs = collect(&h, Platform::MacOs);
        let root: EncryptionVolume = payload(&obs, "/");
        assert_eq!((root.state.as_str(), root.encrypted), ("encrypting", false));
    }
}
