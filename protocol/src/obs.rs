//! Typed observation payloads, one struct per observation kind.
//!
//! The `KIND` string of each payload is part of the wire format and of the policy rules that
//! read it: it never changes once released. Fields a check could not determine are `None`
//! (unknown), never a guessed default. Times are UTC, sizes in bytes, durations carry their
//! unit in the field name.
//!
//! No payload ever carries patient data: only metadata about the machine and its software.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A typed observation payload with its stable kind name.
pub trait Payload: Serialize + for<'de> Deserialize<'de> {
    /// The stable kind name used on the wire and in policy rules.
    const KIND: &'static str;
}

macro_rules! kinds {
    ($($ty:ident => $kind:literal),* $(,)?) => {
        $(impl Payload for $ty { const KIND: &'static str = $kind; })*
        /// Every observation kind this build knows, for validating policy rules.
        pub const ALL_KINDS: &[&str] = &[$($kind),*];
    };
}

kinds! {
    Inventory => "inventory",
    EncryptionVolume => "encryption.volume",
    EncryptionSwap => "encryption.swap",
    Firewall => "firewall",
    Updates => "updates",
    ScreenLock => "screen_lock",
    Malware => "malware",
    TimeSync => "time_sync",
    PasswordPolicy => "password_policy",
    Accounts => "accounts",
    LoginMonitoring => "login_monitoring",
    DiskSpace => "disk_space",
    Backup => "backup",
    BackupDiscovered => "backup.discovered",
    EhrProbe => "ehr.probe",
    NetworkBaseline => "network.baseline",
    ProbeSummary => "ehr.summary",
    AuditLog => "audit.log",
    AuditService => "audit.service",
    Mfa => "mfa",
    UsbStorage => "usb_storage",
    AdminAccounts => "accounts.admin",
    AccountActivity => "accounts.activity",
    LogForwarding => "log_forwarding",
    OsRelease => "os_release",
    RemoteAccess => "remote_access",
}

/// Asset inventory of the machine (subject `host`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Inventory {
    pub hostname: String,
    /// Operating system family: `linux`, `windows`, `macos`.
    pub os_family: String,
    /// Distribution or product name, e.g. `Debian GNU/Linux`.
    pub os_name: Option<String>,
    pub os_version: Option<String>,
    pub kernel_version: Option<String>,
    /// CPU architecture, e.g. `x86_64`.
    pub arch: String,
    /// Machine role when known: `server` or `workstation`.
    #[serde(default)]
    pub role: Option<String>,
    pub hardware_vendor: Option<String>,
    pub hardware_model: Option<String>,
    pub serial_number: Option<String>,
    pub cpu_model: Option<String>,
    pub cpu_cores: u32,
    pub memory_total_bytes: u64,
    pub uptime_secs: u64,
    pub boot_time: Option<DateTime<Utc>>,
    pub disks: Vec<InventoryDisk>,
    #[serde(default)]
    pub interfaces: Vec<NetworkInterface>,
    #[serde(default)]
    pub listening: Vec<ListeningPort>,
    pub agent_version: String,
}

/// One mounted file system.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct InventoryDisk {
    pub device: String,
    pub mount_point: String,
    pub file_system: String,
    pub total_bytes: u64,
    pub available_bytes: u64,
    pub removable: bool,
}

/// One network interface.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct NetworkInterface {
    pub name: String,
    pub mac: Option<String>,
    /// Addresses in CIDR form, e.g. `192.0.2.10/24`.
    pub addresses: Vec<String>,
}

/// A listening socket.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ListeningPort {
    /// `tcp`, `tcp6`, `udp`, `udp6`.
    pub protocol: String,
    pub address: String,
    pub port: u16,
    /// Owning process name, when readable.
    pub process: Option<String>,
}

/// Encryption state of one volume (subject: its mount point or drive letter).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EncryptionVolume {
    pub device: String,
    pub mount_point: String,
    /// `fixed`, `removable` or `boot` (/boot, the EFI system partition). Only `fixed`
    /// volumes are held to encryption at rest; removable media are reported, judged apart.
    pub volume_type: String,
    /// `true` only when protection is fully on.
    pub encrypted: bool,
    /// Mechanism: `luks`, `dm-crypt`, `bitlocker`, `filevault`, or `none`.
    pub method: String,
    /// `on`, `off`, `suspended`, `encrypting`, `decrypting`, `locked`, `unknown`.
    pub state: String,
    /// The chain of block devices from the mount down to the disk, for evidence.
    #[serde(default)]
    pub device_chain: Vec<String>,
}

/// Encryption of swap (subject `swap`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EncryptionSwap {
    /// Swap devices or files in use.
    pub devices: Vec<String>,
    /// Devices among them that are not encrypted.
    pub unencrypted: Vec<String>,
    /// `true` when there is no swap or all of it is encrypted.
    pub encrypted: bool,
}

/// Host firewall (subject `host`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Firewall {
    /// `ufw`, `firewalld`, `nftables`, `windows-firewall`, `socketfilterfw`, or `none`.
    pub backend: String,
    pub enabled: bool,
    /// Default inbound policy: `deny`, `allow`, or `unknown`.
    pub default_inbound: String,
    /// Per profile, where the platform has profiles (Windows domain/private/public).
    #[serde(default)]
    pub profiles: Vec<FirewallProfile>,
}

/// One firewall profile.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FirewallProfile {
    pub name: String,
    pub enabled: bool,
    pub default_inbound: String,
}

/// Operating-system updates (subject `host`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Updates {
    /// `apt`, `dnf`, `windows-update`, `softwareupdate`.
    pub manager: String,
    pub pending_count: Option<u32>,
    pub pending_security_count: Option<u32>,
    /// Age in days of the oldest pending security update, when known.
    pub oldest_pending_security_days: Option<u32>,
    /// Automatic installation of security updates is configured.
    pub auto_security_updates: Option<bool>,
    pub reboot_required: Option<bool>,
    /// Last time updates were successfully installed or checked.
    pub last_run: Option<DateTime<Utc>>,
    /// The platform said the severity of every pending security update (Windows MSRC severity,
    /// Debian/Ubuntu security-tracker priority, macOS critical updates); the two fields below
    /// are then meaningful. `None` or `false`: severity unknown.
    #[serde(default)]
    pub severity_known: Option<bool>,
    /// Age in days of the oldest pending critical update; `None`: none pending (when
    /// `severity_known`).
    #[serde(default)]
    pub oldest_pending_critical_days: Option<u32>,
    /// Age in days of the oldest pending high-severity update; `None`: none pending (when
    /// `severity_known`).
    #[serde(default)]
    pub oldest_pending_high_days: Option<u32>,
}

/// Automatic screen lock / session inactivity timeout (subject `host`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ScreenLock {
    pub enabled: bool,
    /// Inactivity before lock, in seconds, when known.
    pub idle_timeout_secs: Option<u64>,
    /// The setting is enforced (locked) and users cannot turn it off.
    pub enforced: Option<bool>,
    /// Shell session timeout (TMOUT) in seconds, when set.
    pub shell_timeout_secs: Option<u64>,
    /// Where it was read from, e.g. `gnome-dconf`, `registry`, `com.apple.screensaver`.
    pub source: String,
    /// The machine has a graphical session at all.
    pub graphical: Option<bool>,
}

/// Anti-malware protection (subject: the product, e.g. `clamav`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Malware {
    pub product: String,
    pub installed: bool,
    pub running: Option<bool>,
    pub real_time_protection: Option<bool>,
    pub signatures_updated_at: Option<DateTime<Utc>>,
    pub signatures_age_hours: Option<f64>,
}

/// Clock synchronisation (subject `host`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TimeSync {
    pub synchronized: bool,
    /// `chrony`, `systemd-timesyncd`, `ntpd`, `w32time`, `sntp`.
    pub service: Option<String>,
    pub offset_ms: Option<f64>,
}

/// Password policy (subject `host`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PasswordPolicy {
    pub min_length: Option<u32>,
    pub max_age_days: Option<u32>,
    /// Failed attempts before lockout; `Some(0)` means never locks.
    pub lockout_threshold: Option<u32>,
    pub complexity_required: Option<bool>,
    pub source: String,
}

/// Unique user identification (subject `host`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Accounts {
    /// Accounts with UID 0 (or built-in Administrator enabled, on Windows).
    pub uid0_accounts: Vec<String>,
    pub duplicate_uids: Vec<u32>,
    pub duplicate_names: Vec<String>,
    /// Accounts with an empty password hash, when the shadow file was readable.
    pub empty_password_accounts: Option<Vec<String>>,
    /// Automatic login into a graphical session is configured.
    pub auto_login: Option<bool>,
    /// A guest account is enabled.
    pub guest_enabled: Option<bool>,
    /// Number of interactive (login-shell) accounts.
    pub interactive_accounts: u32,
}

/// Monitoring of log-in attempts (subject `host`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LoginMonitoring {
    /// Failed log-ins are recorded (auth log, auditd, Security event log).
    pub failed_logins_recorded: bool,
    /// Repeated failures lock the account (faillock, pam_tally2, lockout policy).
    pub lockout_configured: Option<bool>,
    pub source: String,
}

/// Free space of one volume (subject: its mount point).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DiskSpace {
    pub mount_point: String,
    pub total_bytes: u64,
    pub available_bytes: u64,
    /// Used share, 0 to 100.
    pub used_percent: f64,
}

/// State of one backup job or repository (subject: its name or repository).
///
/// A server with no backup source configured reports one observation with subject `host`,
/// `tool` `none`, `not_configured` true and `last_error` "no backup is configured for this
/// server".
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Backup {
    /// `restic`, `borg`, `folder`, `status-file`, `time-machine`, `windows-server-backup`, `veeam`,
    /// or `none` (nothing configured).
    pub tool: String,
    pub repository: String,
    pub last_success_at: Option<DateTime<Utc>>,
    /// `success`, `failed`, `partial`, `running`, `unknown`; `none` when nothing is configured.
    pub last_result: String,
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// Size of the newest backup, bytes (what it would restore).
    pub size_bytes: Option<u64>,
    pub encrypted: Option<bool>,
    /// The last successful restore test (a failed test since is `last_restore_test_result`).
    pub last_restore_test_at: Option<DateTime<Utc>>,
    /// No backup source is configured on this machine.
    #[serde(default)]
    pub not_configured: bool,
    /// What the last attempt (or the attempt to read the backup's state) reported when it
    /// did not succeed.
    #[serde(default)]
    pub last_error: Option<String>,
    /// Size of the backup before the newest one, bytes.
    #[serde(default)]
    pub previous_size_bytes: Option<u64>,
    /// `size_bytes - previous_size_bytes`.
    #[serde(default)]
    pub size_change_bytes: Option<i64>,
    /// The newest backup is less than half the size of the one before: suspicious (data
    /// deleted or encrypted away, a source folder not mounted).
    #[serde(default)]
    pub shrank_by_half: Option<bool>,
    /// Backups (snapshots, archives, versions) the destination holds.
    #[serde(default)]
    pub backup_count: Option<u64>,
    /// Files the newest backup holds (folder: files in the folder).
    #[serde(default)]
    pub file_count: Option<u64>,
    /// `same_disk`, `usb`, `nas`, `cloud`, `other_disk`; `null` when unknown. A copy on the
    /// same disk as the data is not a backup.
    #[serde(default)]
    pub destination: Option<String>,
    /// When the repository's integrity was last verified (`restic check`).
    #[serde(default)]
    pub integrity_checked_at: Option<DateTime<Utc>>,
    /// Whether that verification found the repository intact.
    #[serde(default)]
    pub integrity_ok: Option<bool>,
    #[serde(default)]
    pub integrity_error: Option<String>,
    /// `success` or `failed`: the last restore test's result (its time is
    /// `last_restore_test_at`).
    #[serde(default)]
    pub last_restore_test_result: Option<String>,
    /// How long the last restore test took, seconds (evidence for a restore-time objective).
    #[serde(default)]
    pub last_restore_test_duration_secs: Option<f64>,
    #[serde(default)]
    pub last_restore_test_error: Option<String>,
    /// The last successful restore test (a failed one does not count).
    #[serde(default)]
    pub last_successful_restore_test_at: Option<DateTime<Utc>>,
}

/// A backup tool found installed on the machine but not configured as a `[[backup]]` source
/// (subject: the tool and where, e.g. `veeam`, `restic:/srv/restic-repo`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct BackupDiscovered {
    /// `restic`, `borg`, `veeam`, `windows-server-backup`, `time-machine`.
    pub tool: String,
    /// What was found: a program path, a repository folder, a destination or policy name.
    pub location: String,
    /// Whether a configured source watches it (always false for now: watched ones are not
    /// reported).
    pub watched: bool,
    /// For the technician, e.g. "Veeam Agent installed, not watched by Rounds".
    pub note: String,
}

/// One probe of an EHR endpoint (subject: the endpoint's name). Sent when the endpoint's state
/// changes (up to down, down to up, another reason) and by `rounds-agent check`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EhrProbe {
    /// `https`, `fhir`, `tcp`, `dns`.
    pub probe: String,
    /// URL, `host:port` or DNS name probed.
    pub target: String,
    pub up: bool,
    /// Whole probe, from the start of name resolution to the end of the answer.
    pub latency_ms: Option<f64>,
    pub http_status: Option<u16>,
    /// Negotiated TLS version: `TLSv1.2`, `TLSv1.3`.
    pub tls_version: Option<String>,
    /// Earliest expiry in the verified chain, trust anchor not counted (the leaf's when the
    /// chain did not verify).
    pub certificate_expires_at: Option<DateTime<Utc>>,
    /// Chain verified and valid for the host name.
    pub certificate_valid: Option<bool>,
    /// Why it is down, in words, when it is.
    pub failure: Option<String>,
    /// Why it is down, typed: `dns_nxdomain`, `dns_timeout`, `tcp_refused`, `tcp_timeout`,
    /// `tls_handshake`, `cert_expired`, `cert_untrusted`, `cert_hostname`, `http_status`,
    /// `not_fhir`, `body_mismatch`, `dns_mismatch`, `timeout`, `error`.
    #[serde(default)]
    pub reason: Option<String>,
    /// Tries it took: 1, or 2 when the first failed and was retried.
    #[serde(default)]
    pub attempts: u32,
    /// The address connected to (`ip:port`) or, for dns, the first address the name resolved to.
    #[serde(default)]
    pub address: Option<String>,
    /// Name resolution time (0 for an IP address or a name from the hosts file).
    #[serde(default)]
    pub dns_ms: Option<f64>,
    /// TCP connect time.
    #[serde(default)]
    pub connect_ms: Option<f64>,
    /// TLS handshake time.
    #[serde(default)]
    pub tls_ms: Option<f64>,
    /// From the request written to the first byte of the answer.
    #[serde(default)]
    pub first_byte_ms: Option<f64>,
    /// Negotiated cipher suite, e.g. `TLS13_AES_256_GCM_SHA384`.
    #[serde(default)]
    pub tls_cipher: Option<String>,
    /// The chain verifies against the roots in use (system roots or the endpoint's CA file).
    #[serde(default)]
    pub chain_verified: Option<bool>,
    /// `system` or the CA file's path.
    #[serde(default)]
    pub roots: Option<String>,
    /// The leaf certificate is valid for the host name.
    #[serde(default)]
    pub hostname_match: Option<bool>,
    /// Whole days until the leaf certificate expires (negative once expired).
    #[serde(default)]
    pub leaf_expires_in_days: Option<i64>,
    /// Whole days until the earliest expiry in the verified chain, trust anchor not counted.
    #[serde(default)]
    pub chain_expires_in_days: Option<i64>,
    /// fhir: the CapabilityStatement's `fhirVersion`.
    #[serde(default)]
    pub fhir_version: Option<String>,
    /// fhir: the CapabilityStatement's `software.name`.
    #[serde(default)]
    pub fhir_software: Option<String>,
}

/// One probe of the network baseline (subject: `gateway`, `resolver <ip>`, `reference <url>`),
/// which tells an EHR outage from the practice's own network or internet being down.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct NetworkBaseline {
    /// `gateway`, `resolver`, `reference` (the collector is always one).
    pub role: String,
    /// `tcp`, `dns`, `https`.
    pub probe: String,
    pub target: String,
    pub up: bool,
    /// As [`EhrProbe::reason`].
    pub reason: Option<String>,
    pub failure: Option<String>,
    pub latency_ms: Option<f64>,
    pub address: Option<String>,
    pub attempts: u32,
}

/// A compact summary of one endpoint's probes over a period (subject: the endpoint's or
/// baseline target's name), sent every summary interval instead of one report per probe.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ProbeSummary {
    /// `endpoint` (an `[[endpoint]]`), `gateway`, `resolver`, `reference`.
    pub role: String,
    pub probe: String,
    pub target: String,
    pub period_start: Option<DateTime<Utc>>,
    pub period_end: Option<DateTime<Utc>>,
    /// Probes counted (a retried probe counts once).
    pub probes: u64,
    pub up: u64,
    pub down: u64,
    /// `100 * up / probes`; `None` when no probe ran.
    pub up_percent: Option<f64>,
    /// Latency of the probes that were up (nearest-rank percentiles); `None` when none was.
    pub latency_ms_p50: Option<f64>,
    pub latency_ms_p95: Option<f64>,
    pub latency_ms_max: Option<f64>,
    /// Every down reason seen in the period, sorted.
    pub reasons: Vec<String>,
    /// State at the end of the period.
    pub up_now: bool,
}

/// Integrity of one watched log (subject: its path as the host sees it; for Windows event logs
/// `eventlog:Security`, `eventlog:System`). Only metadata and hashes: never a log line.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AuditLog {
    pub path: String,
    pub present: bool,
    /// Content seen before is unchanged and the file only grew (or rotated normally).
    pub append_only: Option<bool>,
    pub truncated: Option<bool>,
    pub rewritten: Option<bool>,
    pub world_writable: Option<bool>,
    pub last_entry_at: Option<DateTime<Utc>>,
    /// Longest silence between entries seen, in seconds.
    pub longest_gap_secs: Option<u64>,
    /// The log was cleared (e.g. Windows event 1102).
    pub cleared: Option<bool>,
    /// What changed since the last look: `new` (first look), `unchanged`, `appended`,
    /// `rotated`, `rewritten`, `truncated`, `deleted`, `replaced`, `cleared`.
    #[serde(default)]
    pub change: Option<String>,
    /// The file was removed (and not rotated away).
    #[serde(default)]
    pub deleted: Option<bool>,
    /// The file was replaced by another file (new inode) without a rotation.
    #[serde(default)]
    pub replaced: Option<bool>,
    /// Writable by its group (mode g+w).
    #[serde(default)]
    pub group_writable: Option<bool>,
    /// The owner (uid or gid) differs from the last look.
    #[serde(default)]
    pub owner_changed: Option<bool>,
    /// The mode gained write permission for group or others since the last look.
    #[serde(default)]
    pub mode_widened: Option<bool>,
    /// A normal rotation was seen since the last look: `rename` or `copytruncate`.
    #[serde(default)]
    pub rotation: Option<String>,
    /// Where the content seen went in a rotation (`/var/log/app.log.1`).
    #[serde(default)]
    pub rotated_to: Option<String>,
    /// Size now, and at the last look, in bytes.
    #[serde(default)]
    pub size_bytes: Option<u64>,
    #[serde(default)]
    pub old_size_bytes: Option<u64>,
    /// Inode now, and at the last look.
    #[serde(default)]
    pub inode: Option<u64>,
    #[serde(default)]
    pub old_inode: Option<u64>,
    #[serde(default)]
    pub owner_uid: Option<u32>,
    #[serde(default)]
    pub owner_gid: Option<u32>,
    /// Permission bits in octal, e.g. `0640`.
    #[serde(default)]
    pub mode: Option<String>,
    /// SHA-256 over the checkpoint hashes of the content seen (hex): it names the content
    /// without revealing it.
    #[serde(default)]
    pub content_hash: Option<String>,
    /// Bytes whose hash was checked against the checkpoints in this run (0: appended bytes only).
    #[serde(default)]
    pub verified_bytes: Option<u64>,
    /// The tamper found in this run, if any.
    #[serde(default)]
    pub tamper: Option<TamperEvent>,
    /// The newest tamper ever found on this path (kept in the agent's state), so a collector
    /// keeps its finding open until a person acknowledges that event id.
    #[serde(default)]
    pub last_tamper: Option<TamperEvent>,
    /// Audit-record serial numbers missing within one boot (auditd's log).
    #[serde(default)]
    pub serial_gaps: Option<u64>,
    /// Records missing in those gaps.
    #[serde(default)]
    pub missing_records: Option<u64>,
    /// Records whose time runs backwards within one boot.
    #[serde(default)]
    pub time_backwards: Option<u64>,
    /// Events of interest read from an event log (Windows 1102, 104, 1101, 4719).
    #[serde(default)]
    pub events: Vec<LogEvent>,
}

/// One tamper event on a watched log: stable, so the collector can keep and acknowledge it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TamperEvent {
    /// Stable id: the same event carries the same id in every later observation.
    pub id: String,
    /// `rewritten`, `truncated`, `deleted`, `replaced`, `owner_changed`, `mode_widened`.
    pub kind: String,
    pub detected_at: DateTime<Utc>,
    /// First changed byte and the end of the changed range (exclusive), located to the
    /// checkpoint granularity; for a truncation, the new size and the old size.
    pub range_start: Option<u64>,
    pub range_end: Option<u64>,
    pub old_size_bytes: Option<u64>,
    pub new_size_bytes: Option<u64>,
    pub old_inode: Option<u64>,
    pub new_inode: Option<u64>,
}

/// One event read from an event log.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LogEvent {
    /// Event log name, e.g. `Security`.
    pub log: String,
    pub event_id: u32,
    /// `log_cleared` (1102, 104), `events_dropped` (1101), `audit_policy_changed` (4719).
    pub what: String,
    pub at: Option<DateTime<Utc>>,
    /// The account that did it, when the event names one (a staff account, never patient data).
    #[serde(default)]
    pub account: Option<String>,
    /// Record id in the event log.
    #[serde(default)]
    pub record_id: Option<u64>,
}

/// An audit-logging service (subject: `auditd`, `journald`, `eventlog`, `unified-log`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AuditService {
    pub service: String,
    pub installed: bool,
    pub running: Option<bool>,
    pub enabled: Option<bool>,
    /// Logs persist across reboots (journald `Storage=persistent`, auditd log file).
    pub persistent: Option<bool>,
    /// auditd: rules in /etc/audit/rules.d (`-a`/`-w` lines), and rules loaded in the kernel
    /// (`auditctl -l`, needs root).
    #[serde(default)]
    pub rules_configured: Option<u32>,
    #[serde(default)]
    pub rules_loaded: Option<u32>,
    /// auditd: the rules end with `-e 2` (immutable until reboot), and the kernel says so
    /// (`auditctl -s`: `enabled 2`).
    #[serde(default)]
    pub immutable_configured: Option<bool>,
    #[serde(default)]
    pub immutable: Option<bool>,
    /// auditd.conf settings as written (lowercase).
    #[serde(default)]
    pub max_log_file_action: Option<String>,
    #[serde(default)]
    pub space_left_action: Option<String>,
    #[serde(default)]
    pub admin_space_left_action: Option<String>,
    #[serde(default)]
    pub disk_full_action: Option<String>,
    /// Kernel command line has `audit=1` (processes started before auditd are audited too).
    #[serde(default)]
    pub kernel_audit: Option<bool>,
    /// journald: `Storage=` and `Seal=` as effective (after drop-ins).
    #[serde(default)]
    pub storage: Option<String>,
    #[serde(default)]
    pub seal: Option<bool>,
    /// journald: forward-secure sealing keys are set up (`/var/log/journal/<id>/fss`).
    #[serde(default)]
    pub sealing_keys: Option<bool>,
    /// journald: `journalctl --verify` found every journal file intact; files that failed.
    #[serde(default)]
    pub verify_passed: Option<bool>,
    #[serde(default)]
    pub verify_failures: Vec<String>,
}

/// Multi-factor authentication on log-in (subject `host`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Mfa {
    /// Interactive log-in at the machine asks for a second factor (a PAM module in the local
    /// stack, a credential provider, smart-card enforcement); `None`: cannot tell.
    pub local: Option<bool>,
    /// Remote log-in (SSH, RDP) asks for a second factor; `None`: no remote log-in service, or
    /// cannot tell.
    pub remote: Option<bool>,
    /// The mechanisms found, e.g. `pam_u2f`, `duo`, `windows-hello-for-business`, `smart-card`.
    pub methods: Vec<String>,
    /// Where it was read from, e.g. `/etc/pam.d`, `registry`, `com.apple.security.smartcard`.
    pub source: String,
}

/// Whether USB mass storage is blocked or controlled (subject `host`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct UsbStorage {
    /// The machine has USB host controllers at all (`false` on most virtual machines).
    pub usb_present: Option<bool>,
    /// Mass storage cannot be used at all (module disabled, USBSTOR disabled, deny policy).
    pub blocked: Option<bool>,
    /// Mass storage is allowed only under control (usbguard, read-only or write-protected
    /// unless encrypted, authentication required).
    pub controlled: Option<bool>,
    /// The mechanisms found, e.g. `modprobe-install-false`, `usbguard`, `usbstor-disabled`.
    pub mechanisms: Vec<String>,
}

/// Members of the administrators' group who log in interactively (subject `host`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AdminAccounts {
    /// The group read: `sudo`, `wheel`, `admin`, `Administrators`.
    pub groups: Vec<String>,
    /// Every member of those groups.
    pub admins: Vec<String>,
    /// Members that log in interactively (a login shell; on Windows every member but the
    /// built-in Administrator, which `accounts` judges); `None`: cannot tell.
    pub interactive_admins: Option<Vec<String>>,
}

/// When each interactive account last logged in (subject `host`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AccountActivity {
    pub accounts: Vec<AccountLogin>,
    /// Where it was read from, e.g. `lastlog`, `Get-LocalUser`, `last`.
    pub source: String,
}

/// One account's last log-in.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AccountLogin {
    pub name: String,
    /// The account can log in (not locked or disabled); `None`: cannot tell.
    pub enabled: Option<bool>,
    /// The last recorded log-in; `None`: never, as far as the record goes.
    pub last_login_at: Option<DateTime<Utc>>,
}

/// Whether logs are forwarded off the host (subject `host`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LogForwarding {
    /// At least one forwarding mechanism is configured or running; `None`: cannot tell.
    pub forwarded: Option<bool>,
    /// The mechanisms found, e.g. `rsyslog`, `journal-upload`, `windows-event-forwarding`,
    /// `filebeat`.
    pub mechanisms: Vec<String>,
    /// Destinations where the configuration names them (host or URL, no credentials).
    pub destinations: Vec<String>,
}

/// The operating-system release, as the end-of-life table keys it (subject `host`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct OsRelease {
    /// `debian`, `ubuntu`, `rhel`, `rocky`, `almalinux`, `centos`, `windows`,
    /// `windows_server`, `macos`, or the os-release ID of another distribution.
    pub os_id: String,
    /// The release as the table keys it: `12`, `22.04`, `11 23H2`, `2019`, `14`.
    pub version: String,
    /// Human name, e.g. `Debian GNU/Linux 12 (bookworm)`, `Windows 11 Pro`.
    pub name: String,
}

/// Hardening of remote access services (subject `host`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RemoteAccess {
    /// An RDP server accepts connections (Windows Remote Desktop, xrdp).
    pub rdp_enabled: Option<bool>,
    /// RDP requires Network Level Authentication.
    pub rdp_nla_required: Option<bool>,
    /// The SMB server requires signing; `None`: no SMB server.
    pub smb_signing_required: Option<bool>,
    /// An SSH server is installed and enabled.
    pub ssh_enabled: Option<bool>,
    /// SSH lets root log in with a password (PermitRootLogin yes with password
    /// authentication on).
    pub ssh_root_password_login: Option<bool>,
}
