//! Deployment over the real binaries: enrollment pinned by the CA fingerprint that
//! `token create` prints, `install`/`uninstall` into a test root (with `systemd-analyze verify`
//! on the unit), and an online backup of a collector while an agent reports every second,
//! restored into a second collector that serves the same fleet.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::{Collector, Running, bin, eventually, run};

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// SHA-256 of the first certificate in a PEM file, as `sha256:hex`.
fn fingerprint_of(pem: &Path) -> String {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let cert = CertificateDer::pem_file_iter(pem).unwrap().next().unwrap().unwrap();
    let out = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(cert.as_ref())?;
            c.wait_with_output()
        })
        .unwrap();
    format!(
        "sha256:{}",
        String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap()
    )
}

/// `token create` with `--url`, returning (token, the printed install command).
fn token_and_command(c: &Collector, practice: &str, site: &str) -> (String, String) {
    let url = c.url();
    let out = c.admin(&["token", "create", "--practice", practice, "--site", site, "--url", &url]);
    assert!(out.status.success(), "token create: {}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let token = crate::support::last_line(&out);
    let command = stdout
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("rounds-agent install "))
        .unwrap_or_else(|| panic!("no install command in:\n{stdout}"))
        .to_string();
    (token, command)
}

#[test]
fn fingerprint_enrollment_accepts_only_the_collectors_ca_and_install_writes_a_hardened_unit() {
    let c = Collector::start();
    let (token, command) = token_and_command(&c, "Smith Family Practice", "Main Street");
    let fp = fingerprint_of(&c.ca());
    assert_eq!(
        command,
        format!(
            "rounds-agent install --collector {} --token {token} --ca-fingerprint {fp}",
            c.url()
        )
    );

    // A wrong fingerprint (last digit changed): refused, both fingerprints shown, nothing stored,
    // the token not spent.
    let last = fp.chars().last().unwrap();
    let wrong = format!("{}{}", &fp[..fp.len() - 1], if last == '0' { '1' } else { '0' });
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().join("agent");
    let out = run(
        "rounds-agent",
        &[
            "enroll",
            "--collector",
            &c.url(),
            "--token",
            &token,
            "--ca-fingerprint",
            &wrong,
            "--state-dir",
            dir.to_str().unwrap(),
        ],
    );
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains(&format!("expected {wrong}")), "{said}");
    assert!(said.contains(&format!("{fp} (CA)")), "{said}");
    assert!(said.contains("nothing was stored"), "{said}");
    assert!(!dir.exists(), "a refused enrollment created {}", dir.display());
    let key = c.api_key();

    // The printed command, as typed by the technician, into a test root: enrolls with the same
    // (unspent) token, pins the CA, writes the unit, runs no systemctl.
    let root = tempfile::tempdir().unwrap();
    let mut args: Vec<&str> = command.split(' ').skip(1).collect();
    let root_s = root.path().to_str().unwrap();
    args.extend(["--root", root_s]);
    let out = run("rounds-agent", &args);
    let said = text(&out);
    assert!(out.status.success(), "install: {said}");
    assert!(said.contains("enrolled as agent"), "{said}");
    assert!(said.contains("not run for an install under --root"), "{said}");
    assert!(said.contains("systemctl enable --now rounds-agent.service"), "{said}");
    let state_dir = root.path().join("var/lib/rounds-agent");
    assert_eq!(
        fingerprint_of(&state_dir.join("ca.pem")),
        fp,
        "the pinned CA is the collector's"
    );
    assert!(state_dir.join("identity.json").is_file());
    let unit_path = root.path().join("etc/systemd/system/rounds-agent.service");
    let unit = std::fs::read_to_string(&unit_path).unwrap();
    for line in [
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/rounds-agent",
        "ProtectHome=read-only",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=CAP_DAC_READ_SEARCH CAP_SYS_PTRACE CAP_NET_ADMIN CAP_AUDIT_CONTROL",
    ] {
        assert!(unit.lines().any(|l| l == line), "unit lacks `{line}`:\n{unit}");
    }
    let exec = format!(
        "ExecStart={} run --state-dir /var/lib/rounds-agent",
        bin("rounds-agent").canonicalize().unwrap().display()
    );
    assert!(unit.lines().any(|l| l == exec), "unit lacks `{exec}`:\n{unit}");
    match Command::new("systemd-analyze").arg("verify").arg(&unit_path).output() {
        Ok(out) => assert!(out.status.success(), "systemd-analyze verify: {}", text(&out)),
        Err(e) => eprintln!("SKIPPED: systemd-analyze verify of the agent unit: systemd-analyze cannot run here: {e}"),
    }

    // The pinned enrollment works: the agent under the root reaches the collector.
    let mut agent = Running::start("rounds-agent", &["run", "--state-dir", state_dir.to_str().unwrap()]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(eventually(
        "the installed agent online",
        Duration::from_secs(30),
        || async {
            let v = c.get_json(&key, "/api/v1/agents").await;
            (v[0]["online"] == true).then_some(())
        },
    ));
    agent.terminate();

    // Uninstall keeps the state; --purge removes it.
    let out = run("rounds-agent", &["uninstall", "--root", root_s]);
    assert!(out.status.success(), "uninstall: {}", text(&out));
    assert!(!unit_path.exists());
    assert!(
        state_dir.join("identity.json").is_file(),
        "uninstall without --purge keeps the state"
    );
    let out = run("rounds-agent", &["uninstall", "--purge", "--root", root_s]);
    assert!(out.status.success(), "uninstall --purge: {}", text(&out));
    assert!(!state_dir.exists());
}

/// What a restore must keep of each item of an API list: `keys` of each object (liveness and
/// counters move on in the original after the backup).
fn keep(v: &Value, keys: &[&str]) -> Vec<Value> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|item| {
            let mut kept = serde_json::Map::new();
            for k in keys {
                let mut x = item[*k].clone();
                if *k == "sites" {
                    for s in x.as_array_mut().into_iter().flatten() {
                        s.as_object_mut().map(|s| s.remove("agents_online"));
                    }
                }
                kept.insert(k.to_string(), x);
            }
            Value::Object(kept)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_taken_while_an_agent_reports_every_second_restores_the_same_fleet() {
    let c = Collector::start();
    let state = tempfile::tempdir().unwrap();
    c.enroll_agent("Smith Family Practice", "Main Street", state.path());
    let config = state.path().join("agent.toml");
    std::fs::write(
        &config,
        "[checks.inventory]\nschedule = \"* * * * * *\"\n\n[checks.time_sync]\nschedule = \"* * * * * *\"\n\n[checks.disk_space]\nschedule = \"* * * * * *\"\n",
    )
    .unwrap();
    let key = c.api_key();
    let mut agent = Running::start(
        "rounds-agent",
        &[
            "run",
            "--state-dir",
            state.path().to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let agent_id = eventually("findings from the agent", Duration::from_secs(30), || async {
        let agents = c.get_json(&key, "/api/v1/agents").await;
        let id = agents[0]["agent_id"].as_str()?.to_string();
        let f = c.get_json(&key, &format!("/api/v1/agents/{id}/findings")).await;
        (f.as_array()?.len() >= 2).then_some(id)
    })
    .await;
    let before = c.get_json(&key, "/api/v1/agents").await;

    // The backup, while reports keep arriving.
    let backups = tempfile::tempdir().unwrap();
    let file = backups.path().join("rounds-backup.db");
    let out = c.admin(&["backup", file.to_str().unwrap()]);
    assert!(out.status.success(), "backup: {}", text(&out));
    assert!(text(&out).contains("1 agents"), "{}", text(&out));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    // Reports went on during and after the backup.
    tokio::time::sleep(Duration::from_secs(2)).await;
    agent.terminate();

    // Restore refuses the running collector's data dir, even with --force.
    let out = c.admin(&["restore", file.to_str().unwrap(), "--force"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("a collector is serving"), "{}", text(&out));

    // Into a fresh data dir; a second restore over it needs --force.
    let restored_dir = tempfile::tempdir().unwrap();
    let dd = restored_dir.path().to_str().unwrap();
    let out = run(
        "rounds-collector",
        &["--data-dir", dd, "restore", file.to_str().unwrap()],
    );
    assert!(out.status.success(), "restore: {}", text(&out));
    let out = run(
        "rounds-collector",
        &["--data-dir", dd, "restore", file.to_str().unwrap()],
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("--force"), "{}", text(&out));
    // The TLS files travel with the backup in the README's procedure.
    std::fs::create_dir_all(restored_dir.path().join("ca")).unwrap();
    for f in ["ca.pem", "ca/ca-key.pem", "server.pem", "server-key.pem"] {
        std::fs::copy(c.data_dir.path().join(f), restored_dir.path().join(f)).unwrap();
    }
    let r = Collector::start_in(restored_dir, &[]);

    // Same practices and agents; the restored history is exactly the original's up to the
    // last change the backup holds, and the findings as they stood then are the same.
    let (o_pr, r_pr) = (
        c.get_json(&key, "/api/v1/practices").await,
        r.get_json(&key, "/api/v1/practices").await,
    );
    let practice_keys = ["name", "created_at", "sites"];
    assert_eq!(keep(&r_pr, &practice_keys), keep(&o_pr, &practice_keys));
    let (o_ag, r_ag) = (
        c.get_json(&key, "/api/v1/agents").await,
        r.get_json(&key, "/api/v1/agents").await,
    );
    let agent_keys = [
        "agent_id",
        "hostname",
        "practice",
        "site",
        "os",
        "agent_version",
        "enrolled_at",
    ];
    assert_eq!(keep(&r_ag, &agent_keys), keep(&o_ag, &agent_keys));
    // The backup holds what had arrived before it started, and not more than arrived in all.
    let seq = |v: &Value| v[0]["last_sequence"].as_u64().unwrap();
    assert!(
        seq(&before) <= seq(&r_ag) && seq(&r_ag) < seq(&o_ag),
        "sequences: before the backup {}, restored {}, original at the end {}",
        seq(&before),
        seq(&r_ag),
        seq(&o_ag)
    );
    let from = "2000-01-01T00:00:00Z";
    let r_hist = r
        .get_json(&key, &format!("/api/v1/agents/{agent_id}/findings/history?from={from}"))
        .await;
    let changes = r_hist.as_array().unwrap();
    assert!(!changes.is_empty(), "the restored store has no finding history");
    let cut = changes.last().unwrap()["at"].as_str().unwrap().to_string();
    let cut_t = chrono::DateTime::parse_from_rfc3339(&cut).unwrap() + chrono::Duration::milliseconds(1);
    let to = cut_t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let o_hist = c
        .get_json(
            &key,
            &format!("/api/v1/agents/{agent_id}/findings/history?from={from}&to={to}"),
        )
        .await;
    assert_eq!(r_hist, o_hist, "history up to {cut}");
    let (o_f, r_f) = (
        c.get_json(&key, &format!("/api/v1/agents/{agent_id}/findings?at={to}"))
            .await,
        r.get_json(&key, &format!("/api/v1/agents/{agent_id}/findings?at={to}"))
            .await,
    );
    assert_eq!(r_f, o_f);
    assert!(r_f.as_array().unwrap().len() >= 2);
}
