//! The Windows side of installation: the sc.exe invocations of the service (from
//! `windows-service.txt`) and the explicit ACL of the state dir and the secret file.
//!
//! The ACL: inheritance removed (`/inheritance:r`), then full control granted to SYSTEM
//! (`S-1-5-18`) and the Administrators group (`S-1-5-32-544`) only, named by SID so that a
//! localized Windows (where "Administrators" is "Administratoren") gets the same ACL. The
//! state dir's grant is inherited by what is created in it (`(OI)(CI)`); the identity file
//! (the agent secret) gets its own explicit ACL as well, so a file copied in with other
//! permissions is narrowed too. The command lines are built here on every platform (and
//! tested on Linux); they are run only on Windows, by [`protect_dir`] and [`protect_file`].

use std::path::Path;

use super::{Cmd, ServiceError, ServiceSpec, WINDOWS_SERVICE, WINDOWS_TEMPLATE};

/// SID of LocalSystem.
pub const SYSTEM_SID: &str = "*S-1-5-18";
/// SID of the built-in Administrators group.
pub const ADMINISTRATORS_SID: &str = "*S-1-5-32-544";

/// `icacls` for the state dir: only SYSTEM and Administrators, inherited by its contents.
pub fn protect_dir_command(dir: &Path) -> Cmd {
    Cmd {
        program: "icacls".into(),
        args: vec![
            dir.display().to_string(),
            "/inheritance:r".into(),
            "/grant:r".into(),
            format!("{SYSTEM_SID}:(OI)(CI)F"),
            "/grant:r".into(),
            format!("{ADMINISTRATORS_SID}:(OI)(CI)F"),
            "/q".into(),
        ],
    }
}

/// `icacls` for one file (the identity with the agent secret): only SYSTEM and Administrators.
pub fn protect_file_command(file: &Path) -> Cmd {
    Cmd {
        program: "icacls".into(),
        args: vec![
            file.display().to_string(),
            "/inheritance:r".into(),
            "/grant:r".into(),
            format!("{SYSTEM_SID}:F"),
            "/grant:r".into(),
            format!("{ADMINISTRATORS_SID}:F"),
            "/q".into(),
        ],
    }
}

/// The ACL commands `install` runs on the state dir and the identity file in it.
pub fn protect_commands(state_dir: &Path) -> Vec<Cmd> {
    vec![
        protect_dir_command(state_dir),
        protect_file_command(&state_dir.join(crate::state::IDENTITY_FILE)),
    ]
}

/// Quotes one argument for a Windows command line (the `binPath=` value sc.exe stores).
fn quote(arg: &str) -> String {
    if !arg.is_empty() && !arg.contains([' ', '\t', '"']) {
        return arg.to_string();
    }
    format!("\"{arg}\"")
}

/// The sc.exe invocations that create, describe, set recovery for and start the service.
pub fn service_commands(spec: &ServiceSpec) -> Result<Vec<Cmd>, ServiceError> {
    let p = super::Platform::Windows;
    let exe = super::checked("the agent binary", &spec.exe, p)?;
    super::checked("the state dir", &spec.state_dir, p)?;
    if let Some(c) = &spec.config {
        super::checked("the configuration file", c, p)?;
    }
    let bin_path = std::iter::once(exe.to_string())
        .chain(super::run_args(spec))
        .map(|a| quote(&a))
        .collect::<Vec<_>>()
        .join(" ");
    let mut cmds = Vec::new();
    let mut args: Vec<String> = Vec::new();
    for line in WINDOWS_TEMPLATE.lines().chain(std::iter::once("")) {
        if line.starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            if !args.is_empty() {
                cmds.push(Cmd {
                    program: "sc.exe".into(),
                    args: std::mem::take(&mut args),
                });
            }
            continue;
        }
        args.push(
            line.replace("{{service}}", WINDOWS_SERVICE)
                .replace("{{bin_path}}", &bin_path),
        );
    }
    Ok(cmds)
}

/// Sets the explicit ACL on the state dir (Windows only).
#[cfg(windows)]
pub fn protect_dir(dir: &Path) -> std::io::Result<()> {
    run(&protect_dir_command(dir))
}

/// Sets the explicit ACL on a secret file (Windows only).
#[cfg(windows)]
pub fn protect_file(file: &Path) -> std::io::Result<()> {
    run(&protect_file_command(file))
}

#[cfg(windows)]
fn run(cmd: &Cmd) -> std::io::Result<()> {
    use super::Runner as _;
    super::SystemRunner
        .run(cmd)
        .map_err(|e| std::io::Error::other(format!("{cmd}: {e}")))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::service::Platform;

    #[test]
    fn the_state_dir_acl_is_system_and_administrators_only() {
        let dir = PathBuf::from(r"C:\ProgramData\Rounds\agent");
        let cmds = protect_commands(&dir);
        assert_eq!(
            cmds[0].to_string(),
            r#"icacls C:\ProgramData\Rounds\agent /inheritance:r /grant:r *S-1-5-18:(OI)(CI)F /grant:r *S-1-5-32-544:(OI)(CI)F /q"#
        );
        assert_eq!(
            cmds[1].args,
            [
                r"C:\ProgramData\Rounds\agent/identity.json",
                "/inheritance:r",
                "/grant:r",
                "*S-1-5-18:F",
                "/grant:r",
                "*S-1-5-32-544:F",
                "/q"
            ]
        );
        // Nobody else is granted anything: every /grant names one of the two SIDs.
        for c in &cmds {
            for (i, a) in c.args.iter().enumerate() {
                if a.starts_with("/grant") {
                    let who = &c.args[i + 1];
                    assert!(
                        who.starts_with(SYSTEM_SID) || who.starts_with(ADMINISTRATORS_SID),
                        "{who}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_service_is_created_with_recovery_actions_and_a_quoted_bin_path() {
        let spec = ServiceSpec {
            platform: Platform::Windows,
            exe: r"C:\Program Files\Rounds\rounds-agent.exe".into(),
            state_dir: Platform::Windows.default_state_dir(),
            config: None,
        };
        let cmds = service_commands(&spec).unwrap();
        let args: Vec<Vec<&str>> = cmds
            .iter()
            .map(|c| c.args.iter().map(String::as_str).collect())
            .collect();
        assert!(cmds.iter().all(|c| c.program == "sc.exe"));
        assert_eq!(
            args,
            vec![
                vec![
                    "create",
                    "RoundsAgent",
                    "binPath=",
                    r#""C:\Program Files\Rounds\rounds-agent.exe" run --state-dir C:\ProgramData\Rounds\agent"#,
                    "start=",
                    "delayed-auto",
                    "obj=",
                    "LocalSystem",
                    "DisplayName=",
                    "Rounds agent",
                ],
                vec![
                    "description",
                    "RoundsAgent",
                    "Rounds agent: compliance checks for this practice machine, reported to the MSP's collector.",
                ],
                vec![
                    "failure",
                    "RoundsAgent",
                    "reset=",
                    "86400",
                    "actions=",
                    "restart/10000/restart/30000/restart/60000",
                ],
                vec!["failureflag", "RoundsAgent", "1"],
                vec!["start", "RoundsAgent"],
            ]
        );
        // install protects the state dir before the service is created and started.
        let plan = crate::service::install_plan(&spec).unwrap();
        let first = match &plan[0] {
            crate::service::Step::Run { cmd, .. } => cmd.program.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(first, "icacls");
    }
}
