//! Parsers of host configuration shared by the access checks (issue 18): PAM stacks, OpenSSH's
//! `sshd_config`, single registry values, and the names of running processes. Pure functions
//! where they can be; readers take the [`Host`].

use std::collections::BTreeMap;

use super::{Host, reg_number, reg_value};

/// Declares a check that makes one observation about the `host` of payload `$payload`, read
/// by the calling module's `linux`, `windows` and `macos` functions (each
/// `fn(&Host) -> Result<$payload, String>`; an `Err` becomes an error observation), with a
/// `collect(host, platform)` that tests call for any platform.
macro_rules! host_check {
    ($(#[$doc:meta])* $check:ident, $name:literal, $payload:ty) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $check;

        impl super::Check for $check {
            fn name(&self) -> &'static str {
                $name
            }

            fn kinds(&self) -> &'static [&'static str] {
                &[<$payload as rounds_protocol::obs::Payload>::KIND]
            }

            fn run(&self, host: &super::Host) -> Vec<rounds_protocol::Observation> {
                collect(host, super::platform())
            }
        }

        fn collect(host: &super::Host, platform: super::Platform) -> Vec<rounds_protocol::Observation> {
            let result = match platform {
                super::Platform::Linux => linux(host),
                super::Platform::Windows => windows(host),
                super::Platform::MacOs => macos(host),
            };
            vec![rounds_protocol::Observation::from_result("host", host.now, result)]
        }
    };
}
pub(crate) use host_check;

/// `ERROR: The system was unable to find the specified registry key or value.`
pub fn reg_missing(error: &str) -> bool {
    error.contains("unable to find")
}

/// A REG_DWORD value: `Ok(None)` when the key or value does not exist, `Err` when `reg`
/// failed otherwise or printed something else.
pub fn reg_dword(host: &Host, key: &str, value: &str) -> Result<Option<u64>, String> {
    match host.runner.run("reg", &["query", key, "/v", value]) {
        Ok(out) => match reg_value(&out, value) {
            Some((_, data)) => reg_number(&data)
                .map(Some)
                .ok_or_else(|| format!("reg query {key} /v {value}: `{data}` is not a number")),
            None => Ok(None),
        },
        Err(e) if reg_missing(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Every value of a registry key as `name -> data` (`reg query KEY` output), or `None` when the
/// key does not exist.
pub fn reg_key(host: &Host, key: &str) -> Result<Option<BTreeMap<String, String>>, String> {
    match host.runner.run("reg", &["query", key]) {
        Ok(out) => Ok(Some(parse_reg_values(&out))),
        Err(e) if reg_missing(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `name -> data` of every `    Name    REG_TYPE    data` line of `reg query` output (the first
/// key's values; subkeys' values are included too, later ones not replacing earlier ones).
pub fn parse_reg_values(output: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for l in output.lines() {
        let mut parts = l.trim().splitn(3, "    ");
        let (Some(name), Some(ty)) = (parts.next(), parts.next()) else {
            continue;
        };
        if ty.trim().starts_with("REG_") {
            out.entry(name.trim().to_string())
                .or_insert_with(|| parts.next().unwrap_or("").trim().to_string());
        }
    }
    out
}

/// One `auth` line of a PAM stack, with includes already resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PamAuth {
    pub control: String,
    /// Module file name without directory or `.so`, e.g. `pam_u2f`.
    pub module: String,
    pub args: Vec<String>,
}

/// Modules that ask for a second factor.
pub const MFA_MODULES: &[&str] = &[
    "pam_u2f",
    "pam_duo",
    "pam_google_authenticator",
    "pam_oath",
    "pam_yubico",
];

impl PamAuth {
    /// A second-factor module that must succeed: control `required`, `requisite` or a bracket
    /// control that fails on default, and no `nullok` (which lets users without a token in).
    pub fn enforces_second_factor(&self) -> bool {
        let must = matches!(self.control.as_str(), "required" | "requisite")
            || (self.control.starts_with('[')
                && (self.control.contains("default=die") || self.control.contains("default=bad")));
        must && MFA_MODULES.contains(&self.module.as_str()) && !self.args.iter().any(|a| a == "nullok")
    }
}

/// The `auth` lines of PAM service `service` under `/etc/pam.d`, following `@include`,
/// `include` and `substack`; `Ok(None)` when the service file does not exist.
pub fn pam_auth(host: &Host, service: &str) -> Result<Option<Vec<PamAuth>>, String> {
    fn walk(host: &Host, service: &str, depth: u32, out: &mut Vec<PamAuth>) -> Result<bool, String> {
        if depth > 8 {
            return Err(format!("PAM includes nest too deep at /etc/pam.d/{service}"));
        }
        let Some(text) = host.read_opt(format!("/etc/pam.d/{service}"))? else {
            return Ok(false);
        };
        for line in text.lines().map(str::trim) {
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            if let Some(inc) = line.strip_prefix("@include") {
                walk(host, inc.trim(), depth + 1, out)?;
                continue;
            }
            let (ty, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            if ty.trim_start_matches('-') != "auth" {
                continue;
            }
            let rest = rest.trim();
            let (control, rest) = if rest.starts_with('[') {
                match rest.find(']') {
                    Some(end) => (rest[..=end].to_string(), rest[end + 1..].trim()),
                    None => continue,
                }
            } else {
                let (c, r) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                (c.to_string(), r.trim())
            };
            let mut words = rest.split_whitespace();
            let Some(module) = words.next() else { continue };
            if control == "include" || control == "substack" {
                walk(host, module, depth + 1, out)?;
                continue;
            }
            let module = module.rsplit('/').next().unwrap_or(module).trim_end_matches(".so");
            out.push(PamAuth {
                control,
                module: module.to_string(),
                args: words.map(str::to_string).collect(),
            });
        }
        Ok(true)
    }
    let mut out = Vec::new();
    Ok(walk(host, service, 0, &mut out)?.then_some(out))
}

/// The effective global settings of `sshd_config` text: keywords lowercased, the first value of
/// each keyword wins (as sshd reads it), `Match` blocks are not applied.
pub fn parse_sshd_config(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (key, value) = match line.split_once(|c: char| c.is_whitespace() || c == '=') {
            Some((k, v)) => (k, v.trim().trim_start_matches('=').trim()),
            None => (line, ""),
        };
        let key = key.to_ascii_lowercase();
        if key == "match" {
            break;
        }
        out.entry(key).or_insert_with(|| value.to_string());
    }
    out
}

/// `sshd_config` and every file its `Include` lines name (globs `*` in the last component),
/// in order, as one text; `Ok(None)` when `/etc/ssh/sshd_config` does not exist.
pub fn sshd_config(host: &Host) -> Result<Option<String>, String> {
    let Some(main) = host.read_opt("/etc/ssh/sshd_config")? else {
        return Ok(None);
    };
    let mut text = String::new();
    for line in main.lines() {
        let trimmed = line.trim();
        if trimmed.len() > 8 && trimmed[..8].eq_ignore_ascii_case("include ") {
            for pattern in trimmed[8..].split_whitespace() {
                let pattern = if pattern.starts_with('/') {
                    pattern.to_string()
                } else {
                    format!("/etc/ssh/{pattern}")
                };
                let (dir, file) = pattern.rsplit_once('/').unwrap_or(("/etc/ssh", &pattern));
                let (prefix, suffix) = file.split_once('*').unwrap_or((file, ""));
                let names: Vec<String> = if file.contains('*') {
                    host.list_dir(dir)?
                        .into_iter()
                        .filter(|n| n.starts_with(prefix) && n.ends_with(suffix))
                        .collect()
                } else {
                    vec![file.to_string()]
                };
                for n in names {
                    if let Some(t) = host.read_opt(format!("{dir}/{n}"))? {
                        text.push_str(&t);
                        text.push('\n');
                    }
                }
            }
        } else {
            text.push_str(line);
            text.push('\n');
        }
    }
    Ok(Some(text))
}

/// Whether root can log in with a password under these `sshd_config` settings: PermitRootLogin
/// `yes` (the default since OpenSSH 7.0 is `prohibit-password`) and password or
/// keyboard-interactive authentication on.
pub fn ssh_root_password_login(settings: &BTreeMap<String, String>) -> bool {
    let get = |k: &str, default: &str| settings.get(k).map_or(default.to_string(), |v| v.to_ascii_lowercase());
    let permit = get("permitrootlogin", "prohibit-password");
    let password = get("passwordauthentication", "yes") != "no";
    let kbd = get(
        "kbdinteractiveauthentication",
        &get("challengeresponseauthentication", "yes"),
    ) != "no"
        && get("usepam", "no") == "yes";
    permit == "yes" && (password || kbd)
}

/// Whether every alternative of `AuthenticationMethods` needs two methods or more (e.g.
/// `publickey,keyboard-interactive`), so each log-in uses two factors.
pub fn ssh_requires_two_methods(settings: &BTreeMap<String, String>) -> bool {
    settings.get("authenticationmethods").is_some_and(|v| {
        let alternatives: Vec<&str> = v.split_whitespace().collect();
        !alternatives.is_empty() && alternatives.iter().all(|a| a.split(',').count() >= 2)
    })
}

/// Image names of `tasklist /fo csv /nh` output (the first quoted field of each line).
pub fn parse_tasklist_csv(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|l| l.trim().strip_prefix('"')?.split('"').next().map(str::to_string))
        .filter(|n| !n.is_empty())
        .collect()
}

/// Names of running processes: `/proc` on Linux, `ps -axco command` on macOS, `tasklist` on
/// Windows (lowercased, `.exe` kept).
pub fn process_names(host: &Host, platform: super::Platform) -> Result<Vec<String>, String> {
    use super::Platform;
    let names = match platform {
        Platform::Linux => host.processes()?.into_iter().map(|(_, n)| n).collect(),
        Platform::MacOs => host
            .runner
            .run("ps", &["-axco", "command"])?
            .lines()
            .skip(1)
            .map(|l| l.trim().to_string())
            .collect(),
        Platform::Windows => parse_tasklist_csv(&host.runner.run("tasklist", &["/fo", "csv", "/nh"])?),
    };
    Ok(names.into_iter().map(|n: String| n.to_ascii_lowercase()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testutil::{FakeRunner, host, recorded};

    #[test]
    fn pam_stacks_follow_includes_and_judge_second_factors() {
        let h = host("access-hardened", FakeRunner::default(), "2026-11-24T10:00:00Z");
        let sshd = pam_auth(&h, "sshd").unwrap().unwrap();
        assert!(sshd.iter().any(|a| a.module == "pam_unix"), "{sshd:?}");
        assert!(sshd.iter().any(PamAuth::enforces_second_factor), "{sshd:?}");
        let login = pam_auth(&h, "login").unwrap().unwrap();
        let ga = login.iter().find(|a| a.module == "pam_google_authenticator").unwrap();
        assert!(!ga.enforces_second_factor(), "nullok lets users without a token in");
        assert_eq!(pam_auth(&h, "no-such-service").unwrap(), None);
        let optional = PamAuth {
            control: "sufficient".into(),
            module: "pam_u2f".into(),
            args: vec![],
        };
        assert!(!optional.enforces_second_factor(), "sufficient replaces the password");
        let bracket = PamAuth {
            control: "[success=done default=die]".into(),
            module: "pam_duo".into(),
            args: vec![],
        };
        assert!(bracket.enforces_second_factor());
    }

    #[test]
    fn sshd_settings_first_value_wins_and_includes_come_first() {
        let h = host("access-hardened", FakeRunner::default(), "2026-11-24T10:00:00Z");
        let text = sshd_config(&h).unwrap().unwrap();
        let s = parse_sshd_config(&text);
        // sshd_config.d/50-hardening.conf is included before the main file's PermitRootLogin yes.
        assert_eq!(s["permitrootlogin"], "no");
        assert!(!ssh_root_password_login(&s));
        assert!(ssh_requires_two_methods(&s));
        let weak = parse_sshd_config("PermitRootLogin yes\nMatch User bob\n  PermitRootLogin no\n");
        assert!(ssh_root_password_login(&weak));
        let keys_only = parse_sshd_config("PermitRootLogin yes\nPasswordAuthentication no\n");
        assert!(!ssh_root_password_login(&keys_only));
        assert!(
            !ssh_root_password_login(&parse_sshd_config("")),
            "default prohibit-password"
        );
        assert!(!ssh_requires_two_methods(&parse_sshd_config(
            "AuthenticationMethods publickey,password publickey"
        )));
    }

    #[test]
    fn registry_values_and_tasklist() {
        let v = parse_reg_values(&recorded("reg/currentversion-win11-23h2.txt"));
        assert_eq!(v["CurrentBuild"], "22631");
        assert_eq!(v["ProductName"], "Windows 10 Pro");
        assert_eq!(v["EditionSubManufacturer"], "");
        assert_eq!(
            parse_tasklist_csv(&recorded("tasklist/csv-nh.txt")),
            ["RustDedicatedServer.exe", "svchost.exe"]
        );
    }
}
