//! Host checks on fixture trees, judged by the built-in HIPAA pack: for each tree, the
//! observation the check makes AND the finding of the matching rule (the acceptance of the
//! host-checks issue). One data-driven helper, [`case`], and one small test per fixture.
//!
//! Each case runs only the check under test (fixture trees hold only what that check reads)
//! through `checks::run_all`, on `Host { root: fixtures/<tree>, live: false }` with a runner
//! that refuses every command, so nothing of this machine leaks in. Expected values come from
//! what each tree describes (agent/tests/fixtures/SOURCE.md).

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rounds_agent::checks::{self, CommandRunner, Host};
use rounds_policies::{EvalContext, Finding, Os, Policy, Role, Status};
use rounds_protocol::{Observation, ObservationStatus};
use serde_json::{Value, json};

/// Refuses every command: a fixture tree is all a check may read here.
#[derive(Debug)]
struct NoCommands;

impl CommandRunner for NoCommands {
    fn run(&self, program: &str, _args: &[&str]) -> Result<String, String> {
        Err(format!("cannot run {program}: fixture tests run no commands"))
    }
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339).unwrap().with_timezone(&Utc)
}

/// One fixture tree, one check, one rule.
struct Case<'a> {
    fixture: &'a str,
    check: &'a str,
    now: &'a str,
    role: Role,
    /// `(kind, subject, JSON pointer into the payload, expected value)`.
    observed: &'a [(&'a str, &'a str, &'a str, Value)],
    rule: &'a str,
    expect: Status,
    /// The subjects the rule judged (`evidence.observations[].subject`), in order.
    judged: &'a [&'a str],
    /// The subjects that fail (`evidence.failing`); empty unless the rule fails.
    failing: &'a [&'a str],
    /// Text the finding's message must contain.
    message: &'a [&'a str],
}

/// Runs `c.check` on the fixture tree, asserts the observations, evaluates the built-in pack
/// and asserts the finding of `c.rule`; returns the observations and the finding for further
/// assertions.
async fn case(c: Case<'_>) -> (Vec<Observation>, Finding) {
    let Case {
        fixture: tree,
        check,
        now,
        role,
        observed,
        rule,
        expect,
        judged,
        failing,
        message,
    } = c;
    let host = Host {
        root: fixture(tree),
        runner: Arc::new(NoCommands),
        now: at(now),
        live: false,
        state_dir: None,
    };
    let check = checks::by_name(check).unwrap_or_else(|| panic!("no check named {check}"));
    let obs = checks::run_all(&[Arc::clone(&check)], &host).await;
    assert!(!obs.is_empty(), "{tree}: {} observed nothing", check.name());
    for o in &obs {
        assert_eq!(o.status, ObservationStatus::Ok, "{tree}: {o:#?}");
        assert_eq!(o.observed_at, host.now, "{tree}: observed at the host's time");
    }
    for (kind, subject, pointer, want) in observed {
        let o = obs
            .iter()
            .find(|o| o.kind == *kind && o.subject == *subject)
            .unwrap_or_else(|| panic!("{tree}: no {kind} observation of {subject} in {obs:#?}"));
        let got = o
            .data
            .pointer(pointer)
            .unwrap_or_else(|| panic!("{tree}: {kind} {subject} has no {pointer}: {:#}", o.data));
        assert_eq!(got, want, "{tree}: {kind} {subject} {pointer} in {:#}", o.data);
    }

    let policy = Policy::builtin().unwrap();
    let ctx = EvalContext {
        now: host.now,
        os: Os::Linux,
        role: Some(role),
    };
    let findings = rounds_policies::evaluate(&obs, &policy, &ctx);
    let f = findings
        .into_iter()
        .find(|f| f.rule == rule)
        .unwrap_or_else(|| panic!("no finding of {rule}"));
    assert_eq!(f.status, expect, "{tree}: {rule}: {f:#?}");
    let subjects: Vec<&str> = f.evidence["observations"]
        .as_array()
        .unwrap_or_else(|| panic!("{tree}: {rule}: no evidence.observations: {f:#?}"))
        .iter()
        .map(|o| o["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, judged, "{tree}: {rule}: judged subjects");
    let failing_now: Vec<&str> = f.evidence["failing"]
        .as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap()).collect())
        .unwrap_or_default();
    assert_eq!(failing_now, failing, "{tree}: {rule}: evidence.failing");
    for needle in message {
        assert!(
            f.message.contains(needle),
            "{tree}: {rule}: {needle:?} not in {:?}",
            f.message
        );
    }
    // A failure says how to fix it on Linux; nothing else carries a remediation.
    assert_eq!(
        f.remediation.is_some(),
        expect == Status::Fail,
        "{tree}: {rule}: remediation {:?}",
        f.remediation
    );
    (obs, f)
}

/// The value of `field` the finding shows as evidence for `subject`.
fn evidence_value<'a>(f: &'a Finding, subject: &str, field: &str) -> &'a Value {
    f.evidence["observations"]
        .as_array()
        .and_then(|a| a.iter().find(|o| o["subject"] == subject))
        .map(|o| &o["values"][field])
        .unwrap_or_else(|| panic!("{}: no evidence for {subject}: {:#}", f.rule, f.evidence))
}

const NOW: &str = "2026-11-24T12:00:00Z";
const AT_REST: &str = "hipaa.encryption.at_rest";

#[tokio::test]
async fn luks_root_fails_only_on_the_plain_home_disk() {
    // / and swap are on LUKS; /boot and the ESP are plain but boot volumes, which the rule does
    // not judge; /home is a plain second disk.
    case(Case {
        fixture: "luks-root",
        check: "encryption",
        now: NOW,
        role: Role::Workstation,
        observed: &[
            ("encryption.volume", "/", "/encrypted", json!(true)),
            ("encryption.volume", "/", "/method", json!("luks")),
            ("encryption.volume", "/", "/device_chain", json!(["dm-0", "nvme0n1p3"])),
            ("encryption.volume", "/boot", "/volume_type", json!("boot")),
            ("encryption.volume", "/boot/efi", "/volume_type", json!("boot")),
            ("encryption.volume", "/home", "/encrypted", json!(false)),
            ("encryption.volume", "/home", "/volume_type", json!("fixed")),
            ("encryption.swap", "swap", "/encrypted", json!(true)),
            ("encryption.swap", "swap", "/devices", json!(["/dev/dm-1"])),
        ],
        rule: AT_REST,
        expect: Status::Fail,
        judged: &["/", "/home", "swap"],
        failing: &["/home"],
        message: &["/home", "/dev/sdb1"],
    })
    .await;
}

#[tokio::test]
async fn lvm_on_luks_passes() {
    case(Case {
        fixture: "lvm-on-luks",
        check: "encryption",
        now: NOW,
        role: Role::Server,
        observed: &[
            ("encryption.volume", "/", "/encrypted", json!(true)),
            ("encryption.volume", "/", "/method", json!("luks")),
            (
                "encryption.volume",
                "/",
                "/device_chain",
                json!(["dm-1", "dm-0", "sda3"]),
            ),
            ("encryption.volume", "/home", "/encrypted", json!(true)),
            ("encryption.swap", "swap", "/encrypted", json!(true)),
            ("encryption.swap", "swap", "/devices", json!(["/dev/dm-2"])),
        ],
        rule: AT_REST,
        expect: Status::Pass,
        judged: &["/", "/home", "swap"],
        failing: &[],
        message: &["ok: "],
    })
    .await;
}

#[tokio::test]
async fn plain_root_with_encrypted_home_fails_on_root_and_its_swap_file() {
    case(Case {
        fixture: "plain-root-encrypted-home",
        check: "encryption",
        now: NOW,
        role: Role::Workstation,
        observed: &[
            ("encryption.volume", "/", "/encrypted", json!(false)),
            ("encryption.volume", "/", "/state", json!("off")),
            ("encryption.volume", "/home", "/encrypted", json!(true)),
            ("encryption.volume", "/home", "/method", json!("luks")),
            ("encryption.swap", "swap", "/encrypted", json!(false)),
            ("encryption.swap", "swap", "/unencrypted", json!(["/swapfile"])),
        ],
        rule: AT_REST,
        expect: Status::Fail,
        judged: &["/", "/home", "swap"],
        failing: &["/", "swap"],
        message: &["/dev/sda2"],
    })
    .await;
}

/// The rule judges swap as one subject, `swap`: it fails when any swap device is plain, and
/// the evidence names the plain ones. Encrypted swap (plain dm-crypt with a random key) and
/// zram are not listed; with the plain partition gone the same machine passes.
#[tokio::test]
async fn plain_swap_fails_and_encrypted_swap_passes() {
    let (_, mixed) = case(Case {
        fixture: "swap-mixed",
        check: "encryption",
        now: NOW,
        role: Role::Server,
        observed: &[
            (
                "encryption.swap",
                "swap",
                "/devices",
                json!(["/dev/dm-1", "/dev/sda2", "/dev/zram0"]),
            ),
            ("encryption.swap", "swap", "/unencrypted", json!(["/dev/sda2"])),
            ("encryption.swap", "swap", "/encrypted", json!(false)),
            ("encryption.volume", "/", "/encrypted", json!(true)),
            (
                "encryption.volume",
                "/",
                "/device_chain",
                json!(["dm-0", "md0", "sda1", "sdb1"]),
            ),
            // The USB stick is reported, not judged by the at-rest rule.
            ("encryption.volume", "/media/usb", "/volume_type", json!("removable")),
        ],
        rule: AT_REST,
        expect: Status::Fail,
        judged: &["/", "swap"],
        failing: &["swap"],
        message: &["/dev/sda2"],
    })
    .await;
    assert_eq!(evidence_value(&mixed, "swap", "unencrypted"), &json!(["/dev/sda2"]));

    case(Case {
        fixture: "swap-encrypted-only",
        check: "encryption",
        now: NOW,
        role: Role::Server,
        observed: &[
            (
                "encryption.swap",
                "swap",
                "/devices",
                json!(["/dev/dm-1", "/dev/zram0"]),
            ),
            ("encryption.swap", "swap", "/unencrypted", json!([])),
            ("encryption.swap", "swap", "/encrypted", json!(true)),
        ],
        rule: AT_REST,
        expect: Status::Pass,
        judged: &["/", "swap"],
        failing: &[],
        message: &["ok: "],
    })
    .await;
}

#[tokio::test]
async fn ufw_active_with_deny_policy_passes() {
    case(Case {
        fixture: "ufw-deny",
        check: "firewall",
        now: NOW,
        role: Role::Server,
        observed: &[
            ("firewall", "host", "/backend", json!("ufw")),
            ("firewall", "host", "/enabled", json!(true)),
            ("firewall", "host", "/default_inbound", json!("deny")),
        ],
        rule: "hipaa.network.firewall",
        expect: Status::Pass,
        judged: &["host"],
        failing: &[],
        message: &["ufw"],
    })
    .await;
}

#[tokio::test]
async fn no_firewall_fails() {
    case(Case {
        fixture: "no-firewall",
        check: "firewall",
        now: NOW,
        role: Role::Server,
        observed: &[
            ("firewall", "host", "/backend", json!("none")),
            ("firewall", "host", "/enabled", json!(false)),
            ("firewall", "host", "/default_inbound", json!("unknown")),
        ],
        rule: "hipaa.network.firewall",
        expect: Status::Fail,
        judged: &["host"],
        failing: &["host"],
        message: &["enabled: false"],
    })
    .await;
}

/// The updates rule judges the age of pending security updates, which neither tree records
/// (APT keeps no date for them): both findings are `error`, never a pass. The rule does not read
/// `auto_security_updates`, so on and off differ in the observation and in the evidence the
/// finding shows, not in its status.
#[tokio::test]
async fn unattended_upgrades_on_and_off() {
    let (_, on) = case(Case {
        fixture: "unattended-upgrades-on",
        check: "updates",
        now: NOW,
        role: Role::Workstation,
        observed: &[
            ("updates", "host", "/manager", json!("apt")),
            ("updates", "host", "/auto_security_updates", json!(true)),
            ("updates", "host", "/pending_security_count", json!(31)),
            ("updates", "host", "/oldest_pending_security_days", Value::Null),
            ("updates", "host", "/last_run", json!("2026-10-06T14:59:51Z")),
            ("updates", "host", "/reboot_required", json!(true)),
        ],
        rule: "hipaa.updates.security_patches",
        // 31 pending security updates of unknown age, and the automatic updates last ran
        // 49 days before NOW: longer than the 30 days the rule allows.
        expect: Status::Fail,
        judged: &["host"],
        failing: &["host"],
        message: &["fails on host"],
    })
    .await;
    // The same machine the day after its automatic updates ran passes.
    case(Case {
        fixture: "unattended-upgrades-on",
        check: "updates",
        now: "2026-10-07T12:00:00Z",
        role: Role::Workstation,
        observed: &[("updates", "host", "/auto_security_updates", json!(true))],
        rule: "hipaa.updates.security_patches",
        expect: Status::Pass,
        judged: &["host"],
        failing: &[],
        message: &[],
    })
    .await;
    let (_, off) = case(Case {
        fixture: "unattended-upgrades-off",
        check: "updates",
        now: NOW,
        role: Role::Server,
        observed: &[
            ("updates", "host", "/manager", json!("apt")),
            ("updates", "host", "/auto_security_updates", json!(false)),
            ("updates", "host", "/pending_security_count", Value::Null),
            ("updates", "host", "/last_run", Value::Null),
            ("updates", "host", "/reboot_required", json!(false)),
        ],
        rule: "hipaa.updates.security_patches",
        expect: Status::Error,
        judged: &["host"],
        failing: &[],
        message: &["does not say", "pending_security_count"],
    })
    .await;
    assert_eq!(evidence_value(&on, "host", "auto_security_updates"), &json!(true));
    assert_eq!(evidence_value(&off, "host", "auto_security_updates"), &json!(false));
}

#[tokio::test]
async fn gnome_lock_on_passes() {
    case(Case {
        fixture: "gnome-lock-on",
        check: "screen_lock",
        now: NOW,
        role: Role::Workstation,
        observed: &[
            ("screen_lock", "host", "/enabled", json!(true)),
            ("screen_lock", "host", "/idle_timeout_secs", json!(300)),
            ("screen_lock", "host", "/enforced", json!(true)),
            ("screen_lock", "host", "/shell_timeout_secs", json!(900)),
            ("screen_lock", "host", "/source", json!("gnome-dconf")),
        ],
        rule: "hipaa.access.automatic_logoff",
        expect: Status::Pass,
        judged: &["host"],
        failing: &[],
        message: &["idle_timeout_secs: 300"],
    })
    .await;
}

#[tokio::test]
async fn gnome_lock_off_fails() {
    case(Case {
        fixture: "gnome-lock-off",
        check: "screen_lock",
        now: NOW,
        role: Role::Workstation,
        observed: &[
            ("screen_lock", "host", "/enabled", json!(false)),
            ("screen_lock", "host", "/idle_timeout_secs", Value::Null),
            ("screen_lock", "host", "/enforced", json!(false)),
            ("screen_lock", "host", "/graphical", json!(true)),
        ],
        rule: "hipaa.access.automatic_logoff",
        expect: Status::Fail,
        judged: &["host"],
        failing: &["host"],
        message: &["enabled: false"],
    })
    .await;
}

#[tokio::test]
async fn two_uid0_accounts_fail() {
    case(Case {
        fixture: "two-uid0",
        check: "accounts",
        now: NOW,
        role: Role::Workstation,
        observed: &[
            ("accounts", "host", "/uid0_accounts", json!(["root", "toor"])),
            ("accounts", "host", "/duplicate_uids", json!([0])),
            ("accounts", "host", "/empty_password_accounts", json!(["toor"])),
            ("accounts", "host", "/auto_login", json!(true)),
        ],
        rule: "hipaa.access.unique_user_ids",
        expect: Status::Fail,
        judged: &["host"],
        failing: &["host"],
        message: &["toor"],
    })
    .await;
}

const MALWARE: &str = "hipaa.malware.protection";
/// The build time in the header of the fixtures' daily.cld.
const SIGNATURES_BUILT: &str = "2020-04-16T11:58:59Z";

/// clamav-stale: signatures two weeks old and only freshclam running, so it fails; an hour after
/// the signatures were built it still fails, because no scanner runs (the rule wants a running
/// scanner with real-time protection, not only fresh signatures).
#[tokio::test]
async fn clamav_with_stale_signatures_fails() {
    for (now, age) in [("2020-04-30T12:00:00Z", 336.0), ("2020-04-16T13:00:00Z", 1.0)] {
        case(Case {
            fixture: "clamav-stale",
            check: "malware",
            now,
            role: Role::Workstation,
            observed: &[
                ("malware", "clamav", "/product", json!("clamav")),
                ("malware", "clamav", "/installed", json!(true)),
                ("malware", "clamav", "/running", json!(false)),
                ("malware", "clamav", "/real_time_protection", json!(false)),
                ("malware", "clamav", "/signatures_updated_at", json!(SIGNATURES_BUILT)),
                ("malware", "clamav", "/signatures_age_hours", json!(age)),
            ],
            rule: MALWARE,
            expect: Status::Fail,
            judged: &["clamav"],
            failing: &["clamav"],
            message: &["running: false"],
        })
        .await;
    }
}

/// clamav-fresh is clamav-stale with clamd and clamonacc running: a day after the signatures
/// were built it passes; two weeks after, the same machine fails on the signature age alone.
#[tokio::test]
async fn clamav_running_passes_with_fresh_signatures_and_fails_with_stale_ones() {
    for (now, age, expect, failing) in [
        ("2020-04-17T11:58:59Z", 24.0, Status::Pass, &[][..]),
        ("2020-04-30T12:00:00Z", 336.0, Status::Fail, &["clamav"][..]),
    ] {
        case(Case {
            fixture: "clamav-fresh",
            check: "malware",
            now,
            role: Role::Workstation,
            observed: &[
                ("malware", "clamav", "/running", json!(true)),
                ("malware", "clamav", "/real_time_protection", json!(true)),
                ("malware", "clamav", "/signatures_updated_at", json!(SIGNATURES_BUILT)),
                ("malware", "clamav", "/signatures_age_hours", json!(age)),
            ],
            rule: MALWARE,
            expect,
            judged: &["clamav"],
            failing,
            message: &["signatures_age_hours"],
        })
        .await;
    }
}

/// Removable media are judged apart from fixed volumes: the plain USB stick of the
/// swap-mixed machine fails `hipaa.encryption.removable_media`; a machine with none mounted
/// is not applicable.
#[tokio::test]
async fn a_plain_usb_stick_fails_the_removable_media_rule() {
    case(Case {
        fixture: "swap-mixed",
        check: "encryption",
        now: NOW,
        role: Role::Workstation,
        observed: &[
            ("encryption.volume", "/media/usb", "/volume_type", json!("removable")),
            ("encryption.volume", "/media/usb", "/encrypted", json!(false)),
        ],
        rule: "hipaa.encryption.removable_media",
        expect: Status::Fail,
        judged: &["/media/usb"],
        failing: &["/media/usb"],
        message: &["/media/usb"],
    })
    .await;
    case(Case {
        fixture: "lvm-on-luks",
        check: "encryption",
        now: NOW,
        role: Role::Workstation,
        observed: &[],
        rule: "hipaa.encryption.removable_media",
        expect: Status::NotApplicable,
        judged: &[],
        failing: &[],
        message: &["nothing to judge"],
    })
    .await;
}
