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

/// One probe of an EHR endpoint (subject: the endpoint's name).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EhrProbe {
    /// `https`, `fhir`, `tcp`, `dns`.
    pub probe: String,
    /// URL, `host:port` or DNS name probed.
    pub target: String,
    pub up: bool,
    pub latency_ms: Option<f64>,
    pub http_status: Option<u16>,
    /// Negotiated TLS version, e.g. `TLSv1.3`.
    pub tls_version: Option<String>,
    pub certificate_expires_at: Option<DateTime<Utc>>,
    pub certificate_valid: Option<bool>,
    /// Why it is down, when it is.
    pub failure: Option<String>,
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
