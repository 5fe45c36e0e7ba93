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
    EhrProbe => "ehr.probe",
    NetworkBaseline => "network.baseline",
    ProbeSummary => "ehr.summary",
    AuditLog => "audit.log",
    AuditService => "audit.service",
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
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Backup {
    /// `restic`, `borg`, `folder`, `status-file`, `time-machine`, `windows-server-backup`, `veeam`.
    pub tool: String,
    pub repository: String,
    pub last_success_at: Option<DateTime<Utc>>,
    /// `success`, `failed`, `running`, `unknown`.
    pub last_result: String,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub size_bytes: Option<u64>,
    pub encrypted: Option<bool>,
    pub last_restore_test_at: Option<DateTime<Utc>>,
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

/// Integrity of one watched log (subject: its path or name).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AuditLog {
    pub path: String,
    pub present: bool,
    /// Content seen before is unchanged and the file only grew.
    pub append_only: Option<bool>,
    pub truncated: Option<bool>,
    pub rewritten: Option<bool>,
    pub world_writable: Option<bool>,
    pub last_entry_at: Option<DateTime<Utc>>,
    /// Longest silence between entries seen, in seconds.
    pub longest_gap_secs: Option<u64>,
    /// The log was cleared (e.g. Windows event 1102).
    pub cleared: Option<bool>,
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
}
