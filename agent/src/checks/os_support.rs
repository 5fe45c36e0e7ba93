//! The operating-system release, keyed as the pack's end-of-life table keys it.
//!
//! - Linux: /etc/os-release (or /usr/lib/os-release): `ID`, `VERSION_ID` (the major version
//!   for the RHEL family, whose table rows are per major release), `PRETTY_NAME`. No
//!   privilege.
//! - Windows: `reg query "HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion"`:
//!   `InstallationType` Server gives `windows_server` with the year from `ProductName`
//!   (`2019`, `2012 R2`); a client gives `windows` with `10` or `11` (build 22000 and later;
//!   `ProductName` says "Windows 10" on Windows 11 too) and `DisplayVersion` (or `ReleaseId`).
//!   No privilege.
//! - macOS: `sw_vers`: the major version of `ProductVersion` (`15`; `10.15` before Big Sur).

use std::collections::BTreeMap;

use rounds_protocol::obs::OsRelease;

use super::Host;
use super::hostcfg::host_check;
use super::hostcfg::parse_reg_values;

host_check! {
    /// Observes the operating-system release.
    OsReleaseCheck,
    "os_release",
    OsRelease
}

/// `KEY=value` pairs of os-release, quotes removed.
pub fn parse_os_release(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.split_once('=')?;
            Some((
                k.trim().to_string(),
                v.trim().trim_matches('"').trim_matches('\'').to_string(),
            ))
        })
        .collect()
}

/// The release from os-release fields.
pub fn linux_release(fields: &BTreeMap<String, String>) -> Result<OsRelease, String> {
    let id = fields.get("ID").ok_or("os-release has no ID")?.to_ascii_lowercase();
    let version_id = fields.get("VERSION_ID").cloned().unwrap_or_default();
    let version = match id.as_str() {
        "rhel" | "centos" | "rocky" | "almalinux" | "ol" => {
            version_id.split('.').next().unwrap_or_default().to_string()
        }
        _ => version_id,
    };
    Ok(OsRelease {
        name: fields.get("PRETTY_NAME").cloned().unwrap_or_else(|| id.clone()),
        os_id: id,
        version,
    })
}

fn linux(host: &Host) -> Result<OsRelease, String> {
    let text = match host.read_opt("/etc/os-release")? {
        Some(t) => t,
        None => host
            .read_opt("/usr/lib/os-release")?
            .ok_or("neither /etc/os-release nor /usr/lib/os-release exists")?,
    };
    linux_release(&parse_os_release(&text))
}

/// The release from the values of the CurrentVersion key.
pub fn windows_release(values: &BTreeMap<String, String>) -> Result<OsRelease, String> {
    let product = values
        .get("ProductName")
        .ok_or("the CurrentVersion key has no ProductName")?;
    if values.get("InstallationType").is_some_and(|t| t.starts_with("Server")) {
        let words: Vec<&str> = product.split_whitespace().collect();
        let year = words
            .iter()
            .position(|w| w.len() == 4 && w.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| format!("no release year in `{product}`"))?;
        let version = match words.get(year + 1) {
            Some(&"R2") => format!("{} R2", words[year]),
            _ => words[year].to_string(),
        };
        return Ok(OsRelease {
            os_id: "windows_server".into(),
            version,
            name: product.clone(),
        });
    }
    let build: u32 = values
        .get("CurrentBuild")
        .and_then(|b| b.parse().ok())
        .ok_or("the CurrentVersion key has no CurrentBuild")?;
    let major = if build >= 22000 { "11" } else { "10" };
    let feature = values
        .get("DisplayVersion")
        .or_else(|| values.get("ReleaseId"))
        .ok_or("the CurrentVersion key has neither DisplayVersion nor ReleaseId")?;
    Ok(OsRelease {
        os_id: "windows".into(),
        version: format!("{major} {feature}"),
        name: product.replacen("Windows 10", &format!("Windows {major}"), 1),
    })
}

const CURRENT_VERSION: &str = r"HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion";

fn windows(host: &Host) -> Result<OsRelease, String> {
    let out = host.runner.run("reg", &["query", CURRENT_VERSION])?;
    windows_release(&parse_reg_values(&out))
}

/// The release from `sw_vers` output.
pub fn macos_release(output: &str) -> Result<OsRelease, String> {
    let field = |name: &str| {
        output
            .lines()
            .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_string()))
    };
    let version = field("ProductVersion:").ok_or("sw_vers printed no ProductVersion")?;
    let parts: Vec<&str> = version.split('.').collect();
    let major = match parts.as_slice() {
        ["10", minor, ..] => format!("10.{minor}"),
        [major, ..] => (*major).to_string(),
        [] => return Err("empty ProductVersion".into()),
    };
    Ok(OsRelease {
        os_id: "macos".into(),
        version: major,
        name: format!("{} {version}", field("ProductName:").unwrap_or_else(|| "macOS".into())),
    })
}

fn macos(host: &Host) -> Result<OsRelease, String> {
    macos_release(&host.runner.run("sw_vers", &[])?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Platform;
    use crate::checks::testutil::{FakeRunner, error_of, host, payload, recorded};

    #[test]
    fn linux_os_release() {
        let h = host("golden-host", FakeRunner::default(), "2026-11-24T10:00:00Z");
        let r: OsRelease = payload(&collect(&h, Platform::Linux), "host");
        assert_eq!((r.os_id.as_str(), r.version.as_str()), ("debian", "12"));
        let rocky = linux_release(&parse_os_release(
            "ID=\"rocky\"\nVERSION_ID=\"9.4\"\nPRETTY_NAME=\"Rocky Linux 9.4 (Blue Onyx)\"\n",
        ))
        .unwrap();
        assert_eq!((rocky.os_id.as_str(), rocky.version.as_str()), ("rocky", "9"));
        let ubuntu = linux_release(&parse_os_release("ID=ubuntu\nVERSION_ID=\"24.04\"\n")).unwrap();
        assert_eq!(ubuntu.version, "24.04");
        let h = host("empty", FakeRunner::default(), "2026-11-24T10:00:00Z");
        assert!(error_of(&collect(&h, Platform::Linux), "os_release", "host").contains("os-release"));
    }

    #[test]
    fn windows_current_version() {
        let h = host(
            "empty",
            FakeRunner::default().with(
                &format!("reg query {CURRENT_VERSION}"),
                Ok(&recorded("reg/currentversion-win11-23h2.txt")),
            ),
            "2026-11-24T10:00:00Z",
        );
        let r: OsRelease = payload(&collect(&h, Platform::Windows), "host");
        assert_eq!((r.os_id.as_str(), r.version.as_str()), ("windows", "11 23H2"));
        assert_eq!(r.name, "Windows 11 Pro");
        let v = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let server = windows_release(&v(&[
            ("ProductName", "Windows Server 2012 R2 Standard"),
            ("InstallationType", "Server"),
            ("CurrentBuild", "9600"),
        ]))
        .unwrap();
        assert_eq!(
            (server.os_id.as_str(), server.version.as_str()),
            ("windows_server", "2012 R2")
        );
        let win10 = windows_release(&v(&[
            ("ProductName", "Windows 10 Enterprise"),
            ("InstallationType", "Client"),
            ("CurrentBuild", "19045"),
            ("DisplayVersion", "22H2"),
        ]))
        .unwrap();
        assert_eq!(win10.version, "10 22H2");
    }

    #[test]
    fn macos_sw_vers() {
        let r = macos_release(&recorded("sw_vers/macos-15.0.1.txt")).unwrap();
        assert_eq!((r.os_id.as_str(), r.version.as_str()), ("macos", "15"));
        assert_eq!(r.name, "macOS 15.0.1");
        let old = macos_release(&recorded("sw_vers/mac-os-x-10.14.4.txt")).unwrap();
        assert_eq!(old.version, "10.14");
        let h = host(
            "empty",
            FakeRunner::default().with("sw_vers", Ok(&recorded("sw_vers/macos-15.0.1.txt"))),
            "2026-11-24T10:00:00Z",
        );
        let r: OsRelease = payload(&collect(&h, Platform::MacOs), "host");
        assert_eq!(r.version, "15");
    }
}
