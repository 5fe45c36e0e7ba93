//! auditd: its configuration (`/etc/audit/auditd.conf`), its rules (`/etc/audit/rules.d/*.rules`,
//! `auditctl -l` and `-s` when run as root), the kernel's `audit=` boot parameter, and the
//! record serial numbers and times in its log. Every parser is pure; only record headers
//! (`msg=audit(SECONDS.MILLIS:SERIAL)`) are read from the log, never the rest of a line.

use serde::{Deserialize, Serialize};

/// The settings of auditd.conf this check reports (values lowercased).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditdConf {
    pub log_file: Option<String>,
    pub write_logs: Option<String>,
    pub max_log_file_action: Option<String>,
    pub space_left_action: Option<String>,
    pub admin_space_left_action: Option<String>,
    pub disk_full_action: Option<String>,
}

/// Parses auditd.conf (`key = value` lines, `#` comments; keys are case-insensitive).
pub fn parse_auditd_conf(text: &str) -> AuditdConf {
    let mut c = AuditdConf::default();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some((k, v)) = line.split_once('=') else { continue };
        let v = v.trim().to_string();
        let slot = match k.trim().to_ascii_lowercase().as_str() {
            "log_file" => {
                c.log_file = Some(v);
                continue;
            }
            "write_logs" => &mut c.write_logs,
            "max_log_file_action" => &mut c.max_log_file_action,
            "space_left_action" => &mut c.space_left_action,
            "admin_space_left_action" => &mut c.admin_space_left_action,
            "disk_full_action" => &mut c.disk_full_action,
            _ => continue,
        };
        *slot = Some(v.to_ascii_lowercase());
    }
    c
}

/// What the rules files say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RulesFiles {
    /// `-a`, `-A` and `-w` rules.
    pub rules: u32,
    /// The last `-e` says 2.
    pub immutable: bool,
}

/// Parses rules files in the order augenrules concatenates them (sorted by name).
pub fn parse_rules<'a>(files: impl IntoIterator<Item = &'a str>) -> RulesFiles {
    let mut out = RulesFiles::default();
    for text in files {
        for line in text.lines().map(str::trim) {
            if line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            match words.next() {
                Some("-a" | "-A" | "-w") => out.rules += 1,
                Some(w) if w.starts_with("-a") || w.starts_with("-w") => out.rules += 1,
                Some("-e") => out.immutable = words.next() == Some("2"),
                _ => {}
            }
        }
    }
    out
}

/// The number of rules `auditctl -l` lists (`No rules` is zero).
pub fn count_loaded_rules(text: &str) -> u32 {
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with('-'))
        .count()
        .try_into()
        .unwrap_or(u32::MAX)
}

/// The `enabled` value of `auditctl -s` (`enabled 2`: immutable), or why it is not there.
pub fn parse_auditctl_status(text: &str) -> Result<u8, String> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("enabled ")?.trim().parse().ok())
        .ok_or_else(|| "unrecognised auditctl -s output: no `enabled` line".to_string())
}

/// Whether the kernel command line turns auditing on from boot (`audit=1`).
pub fn kernel_audit(cmdline: &str) -> bool {
    cmdline
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("audit="))
        .next_back()
        == Some("1")
}

/// Where a scan of audit.log stands between looks (kept in the state dir; no log content).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecordScan {
    /// Inode of the file scanned and the offset after its last complete line.
    pub inode: u64,
    pub offset: u64,
    pub last_serial: Option<u64>,
    /// Milliseconds since the epoch of the last record.
    pub last_time_ms: Option<i64>,
}

/// What a scan found in the lines it read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordGaps {
    /// Places where serial numbers were skipped, and how many were skipped in all.
    pub serial_gaps: u64,
    pub missing_records: u64,
    /// Records whose time is more than a second before the previous one's.
    pub time_backwards: u64,
    /// Longest time between two consecutive records, in seconds.
    pub longest_gap_secs: u64,
    /// Time of the last record, in milliseconds since the epoch.
    pub last_time_ms: Option<i64>,
}

/// The time (ms since the epoch) and serial of an audit record line.
pub fn record_header(line: &str) -> Option<(i64, u64)> {
    let rest = &line[line.find("msg=audit(")? + "msg=audit(".len()..];
    let (stamp, _) = rest.split_once(')')?;
    let (time, serial) = stamp.split_once(':')?;
    let (sec, ms) = time.split_once('.').unwrap_or((time, "0"));
    let ms: i64 = format!("{ms:0<3}").get(..3)?.parse().ok()?;
    Some((sec.parse::<i64>().ok()? * 1000 + ms, serial.parse().ok()?))
}

/// Scans complete lines of `text` (the bytes from `scan.offset` on), updating `scan`. Several
/// records of one event share a serial; a serial lower than the last starts a new boot (the
/// kernel counts from 1 again), where neither serial nor time gaps are counted.
pub fn scan_records(text: &[u8], scan: &mut RecordScan) -> RecordGaps {
    let mut gaps = RecordGaps::default();
    let complete = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    for line in text[..complete].split(|b| *b == b'\n') {
        let Ok(line) = std::str::from_utf8(line) else { continue };
        let Some((time, serial)) = record_header(line) else {
            continue;
        };
        let new_boot = scan.last_serial.is_some_and(|last| serial + 1000 < last)
            || line.starts_with("type=DAEMON_START") && scan.last_serial.is_some_and(|last| serial < last);
        // The other records of the event just seen.
        if scan.last_serial == Some(serial) {
            continue;
        }
        if let (Some(last), false) = (scan.last_serial, new_boot) {
            if serial > last + 1 {
                gaps.serial_gaps += 1;
                gaps.missing_records += serial - last - 1;
            }
            if let Some(t) = scan.last_time_ms {
                if time + 1000 < t {
                    gaps.time_backwards += 1;
                } else {
                    gaps.longest_gap_secs = gaps.longest_gap_secs.max(u64::try_from((time - t) / 1000).unwrap_or(0));
                }
            }
        }
        if new_boot || scan.last_serial.is_none_or(|last| serial >= last) {
            scan.last_serial = Some(serial);
        }
        scan.last_time_ms = Some(
            scan.last_time_ms
                .map_or(time, |t| if new_boot { time } else { t.max(time) }),
        );
        gaps.last_time_ms = scan.last_time_ms;
    }
    scan.offset += complete as u64;
    gaps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_headers_are_read_and_nothing_else() {
        let line = "type=SYSCALL msg=audit(1764590400.123:4242): arch=c000003e syscall=257 name=\"/home/x\"";
        assert_eq!(record_header(line), Some((1_764_590_400_123, 4242)));
        assert_eq!(
            record_header("type=X msg=audit(1764590400.5:7): a"),
            Some((1_764_590_400_500, 7))
        );
        assert_eq!(record_header("no header"), None);
    }

    #[test]
    fn rules_count_and_the_last_e_decides_immutability() {
        let r = parse_rules([
            "-D\n-b 8192\n-w /etc/passwd -p wa -k identity\n-a always,exit -F arch=b64 -S open\n",
            "-e 2\n",
        ]);
        assert_eq!(
            r,
            RulesFiles {
                rules: 2,
                immutable: true
            }
        );
        assert!(!parse_rules(["-e 2\n", "-e 1\n"]).immutable);
        assert_eq!(count_loaded_rules("No rules\n"), 0);
        assert_eq!(parse_auditctl_status("enabled 2\nfailure 1\npid 612\n"), Ok(2));
        assert!(parse_auditctl_status("You must be root").is_err());
    }

    #[test]
    fn kernel_audit_is_the_last_audit_word() {
        assert!(kernel_audit("BOOT_IMAGE=/vmlinuz root=UUID=x ro audit=1 quiet"));
        assert!(!kernel_audit("BOOT_IMAGE=/vmlinuz ro quiet"));
        assert!(!kernel_audit("audit=1 audit=0"));
    }

    #[test]
    fn a_partial_last_line_waits_for_the_next_scan() {
        let mut s = RecordScan::default();
        let text = b"type=A msg=audit(10.000:1): x\ntype=A msg=audit(11.000:2): x\ntype=A msg=aud";
        let g = scan_records(text, &mut s);
        assert_eq!((s.offset, s.last_serial, g.serial_gaps), (60, Some(2), 0));
        let g = scan_records(b"type=A msg=audit(12.000:5): x\n", &mut s);
        assert_eq!((g.serial_gaps, g.missing_records), (1, 2));
    }
}
