//! USB mass storage: blocked or controlled.
//!
//! - Linux: modprobe configuration (/etc/modprobe.d, /run/modprobe.d, /usr/lib/modprobe.d,
//!   /lib/modprobe.d `*.conf`): `install usb-storage /bin/false` (or `/bin/true`) blocks the
//!   module; `blacklist usb-storage` (or `modprobe.blacklist=` on /proc/cmdline) blocks it only
//!   while /sys/module/usb_storage shows it not loaded. usbguard-daemon running (/proc) is
//!   control. /sys/bus/usb/devices tells whether the machine has USB at all. World-readable
//!   files, no privilege.
//! - Windows: `reg query` of the USBSTOR driver's `Start` (4: disabled), the removable storage
//!   policies (`Deny_All`; removable disks `{53f5630d-...}` `Deny_Read`, `Deny_Write`) and
//!   BitLocker's `RDVDenyWriteAccess` (write only to encrypted drives). No privilege.
//! - macOS: `defaults read "/Library/Managed Preferences/com.apple.systemuiserver"
//!   mount-controls`: `harddisk-external` `deny` or `eject` blocks, `read-only` or
//!   `authenticate` controls. (macOS 15's disk-management declaration is not read yet.)

use rounds_protocol::obs::UsbStorage;

use super::hostcfg::host_check;
use super::hostcfg::{process_names, reg_dword};
use super::mfa::defaults_read;
use super::{Host, Platform};

host_check! {
    /// Observes whether USB mass storage is blocked or controlled.
    UsbStorageCheck,
    "usb_storage",
    UsbStorage
}

/// What modprobe configuration says about usb-storage: `(install_false, blacklisted)`.
pub fn parse_modprobe(text: &str) -> (bool, bool) {
    let mut install = false;
    let mut blacklist = false;
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let is_usb = |w: &str| w.replace('-', "_") == "usb_storage";
        match words.as_slice() {
            ["install", module, cmd, ..] if is_usb(module) => {
                install |= [
                    "/bin/false",
                    "/bin/true",
                    "/usr/bin/false",
                    "/usr/bin/true",
                    "/sbin/nologin",
                ]
                .contains(cmd);
            }
            ["blacklist", module, ..] if is_usb(module) => blacklist = true,
            _ => {}
        }
    }
    (install, blacklist)
}

/// Whether the kernel command line blacklists usb-storage (`modprobe.blacklist=a,usb-storage`).
pub fn cmdline_blacklists(cmdline: &str) -> bool {
    cmdline.split_whitespace().any(|w| {
        w.strip_prefix("modprobe.blacklist=")
            .is_some_and(|list| list.split(',').any(|m| m.replace('-', "_") == "usb_storage"))
    })
}

fn linux(host: &Host) -> Result<UsbStorage, String> {
    let mut install = false;
    let mut blacklist = false;
    for dir in [
        "/etc/modprobe.d",
        "/run/modprobe.d",
        "/usr/lib/modprobe.d",
        "/lib/modprobe.d",
    ] {
        for name in host.list_dir(dir)? {
            if name.ends_with(".conf")
                && let Some(text) = host.read_opt(format!("{dir}/{name}"))?
            {
                let (i, b) = parse_modprobe(&text);
                install |= i;
                blacklist |= b;
            }
        }
    }
    let cmdline = host.read_opt("/proc/cmdline")?.unwrap_or_default();
    let cmdline_blacklist = cmdline_blacklists(&cmdline);
    let loaded = host.exists("/sys/module/usb_storage");
    let usbguard = process_names(host, Platform::Linux)
        .map(|names| names.iter().any(|n| n == "usbguard-daemon"))
        .ok();
    let mut mechanisms = Vec::new();
    if install {
        mechanisms.push("modprobe-install-false".to_string());
    }
    if blacklist || cmdline_blacklist {
        mechanisms.push(if loaded { "blacklist-but-loaded" } else { "blacklist" }.to_string());
    }
    if usbguard == Some(true) {
        mechanisms.push("usbguard".to_string());
    }
    let usb_present = if host.exists("/sys/bus/usb/devices") {
        Some(!host.list_dir("/sys/bus/usb/devices")?.is_empty())
    } else if host.exists("/sys/bus") {
        Some(false)
    } else {
        None
    };
    Ok(UsbStorage {
        usb_present,
        blocked: Some(install || ((blacklist || cmdline_blacklist) && !loaded)),
        controlled: usbguard,
        mechanisms,
    })
}

const USBSTOR: &str = r"HKLM\SYSTEM\CurrentControlSet\Services\USBSTOR";
const REMOVABLE: &str = r"HKLM\SOFTWARE\Policies\Microsoft\Windows\RemovableStorageDevices";
const REMOVABLE_DISKS: &str =
    r"HKLM\SOFTWARE\Policies\Microsoft\Windows\RemovableStorageDevices\{53f5630d-b6bf-11d0-94f2-00a0c91efb8b}";
const FVE: &str = r"HKLM\SYSTEM\CurrentControlSet\Policies\Microsoft\FVE";

fn windows(host: &Host) -> Result<UsbStorage, String> {
    let mut mechanisms = Vec::new();
    let mut blocked = false;
    let mut controlled = false;
    if reg_dword(host, USBSTOR, "Start")? == Some(4) {
        mechanisms.push("usbstor-disabled".to_string());
        blocked = true;
    }
    if reg_dword(host, REMOVABLE, "Deny_All")? == Some(1) {
        mechanisms.push("removable-storage-deny-all".to_string());
        blocked = true;
    }
    if reg_dword(host, REMOVABLE_DISKS, "Deny_Read")? == Some(1) {
        mechanisms.push("removable-disks-deny-read".to_string());
        blocked = true;
    }
    if reg_dword(host, REMOVABLE_DISKS, "Deny_Write")? == Some(1) {
        mechanisms.push("removable-disks-deny-write".to_string());
        controlled = true;
    }
    if reg_dword(host, FVE, "RDVDenyWriteAccess")? == Some(1) {
        mechanisms.push("bitlocker-deny-write-unencrypted".to_string());
        controlled = true;
    }
    Ok(UsbStorage {
        usb_present: None,
        blocked: Some(blocked),
        controlled: Some(controlled),
        mechanisms,
    })
}

/// The actions of `harddisk-external` in `defaults read ... mount-controls` output, e.g.
/// `["deny"]` or `["read-only"]`.
pub fn parse_mount_controls(output: &str) -> Vec<String> {
    let Some(start) = output.find("harddisk-external") else {
        return Vec::new();
    };
    let rest = &output[start..];
    let Some(open) = rest.find('(') else {
        return Vec::new();
    };
    let close = rest[open..].find(')').map_or(rest.len(), |c| open + c);
    rest[open + 1..close]
        .split(|c: char| c == ',' || c.is_whitespace())
        .map(|w| w.trim_matches('"'))
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

fn macos(host: &Host) -> Result<UsbStorage, String> {
    let actions = defaults_read(
        host,
        "/Library/Managed Preferences/com.apple.systemuiserver",
        "mount-controls",
    )?
    .map(|o| parse_mount_controls(&o))
    .unwrap_or_default();
    let blocked = actions.iter().any(|a| a == "deny" || a == "eject");
    let controlled = actions.iter().any(|a| a == "read-only" || a == "authenticate");
    Ok(UsbStorage {
        usb_present: None,
        blocked: Some(blocked),
        controlled: Some(controlled),
        mechanisms: actions.into_iter().map(|a| format!("mount-controls-{a}")).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testutil::{FakeRunner, error_of, host, payload, recorded};

    #[test]
    fn linux_modprobe_and_usbguard() {
        assert_eq!(parse_modprobe("install usb-storage /bin/false\n"), (true, false));
        assert_eq!(
            parse_modprobe("blacklist usb_storage\n# install usb-storage /bin/true\n"),
            (false, true)
        );
        assert!(cmdline_blacklists(
            "BOOT_IMAGE=/vmlinuz ro modprobe.blacklist=nouveau,usb-storage quiet"
        ));
        let h = host("access-hardened", FakeRunner::default(), "2026-11-24T10:00:00Z");
        let u: UsbStorage = payload(&collect(&h, Platform::Linux), "host");
        assert_eq!(
            (u.usb_present, u.blocked, u.controlled),
            (Some(true), Some(true), Some(true))
        );
        assert_eq!(u.mechanisms, ["modprobe-install-false", "usbguard"]);
        let h = host("golden-host", FakeRunner::default(), "2026-11-24T10:00:00Z");
        let u: UsbStorage = payload(&collect(&h, Platform::Linux), "host");
        assert_eq!((u.blocked, u.controlled), (Some(false), Some(false)));
    }

    #[test]
    fn windows_usbstor_disabled() {
        let missing = Err("ERROR: The system was unable to find the specified registry key or value.");
        let runner = FakeRunner::default()
            .with(
                &format!("reg query {USBSTOR} /v Start"),
                Ok(&recorded("reg/usbstor-start-4.txt")),
            )
            .with(&format!("reg query {REMOVABLE} /v Deny_All"), missing)
            .with(&format!("reg query {REMOVABLE_DISKS} /v Deny_Read"), missing)
            .with(&format!("reg query {REMOVABLE_DISKS} /v Deny_Write"), missing)
            .with(&format!("reg query {FVE} /v RDVDenyWriteAccess"), missing);
        let u: UsbStorage = payload(
            &collect(&host("empty", runner, "2026-11-24T10:00:00Z"), Platform::Windows),
            "host",
        );
        assert_eq!((u.blocked, u.controlled), (Some(true), Some(false)));
        assert_eq!(u.mechanisms, ["usbstor-disabled"]);
        let broken = host("empty", FakeRunner::default(), "2026-11-24T10:00:00Z");
        assert!(error_of(&collect(&broken, Platform::Windows), "usb_storage", "host").contains("reg"));
    }

    #[test]
    fn macos_mount_controls() {
        let deny = recorded("defaults/mount-controls-deny.txt");
        assert_eq!(parse_mount_controls(&deny), ["deny"]);
        let h = host(
            "empty",
            FakeRunner::default().with(
                "defaults read /Library/Managed Preferences/com.apple.systemuiserver mount-controls",
                Ok(&deny),
            ),
            "2026-11-24T10:00:00Z",
        );
        let u: UsbStorage = payload(&collect(&h, Platform::MacOs), "host");
        assert_eq!((u.blocked, u.controlled), (Some(true), Some(false)));
        let none = host(
            "empty",
            FakeRunner::default().with(
                "defaults read /Library/Managed Preferences/com.apple.systemuiserver mount-controls",
                Err("The domain/default pair of (/Library/Managed Preferences/com.apple.systemuiserver, mount-controls) does not exist"),
            ),
            "2026-11-24T10:00:00Z",
        );
        let u: UsbStorage = payload(&collect(&none, Platform::MacOs), "host");
        assert_eq!((u.blocked, u.controlled), (Some(false), Some(false)));
    }
}
