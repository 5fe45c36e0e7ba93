//! Link options of the `rounds-agent` binary (issue 16, idle memory).
//!
//! On Linux with glibc the binary is linked with `-z pack-relative-relocs` (RELR): its ~48,000
//! relative relocations, which the dynamic loader reads at every start, take a few KB instead
//! of 1.1 MB of `.rela.dyn`, and those 1.1 MB no longer stay resident for the life of the
//! process. It needs glibc 2.36 or newer where the agent runs (Debian 12, Ubuntu 24.04,
//! RHEL 10); for older systems (Ubuntu 22.04: 2.35, RHEL 9: 2.34) build with
//! `ROUNDS_AGENT_NO_RELR=1`, which keeps the classic relocations.

fn main() {
    println!("cargo:rerun-if-env-changed=ROUNDS_AGENT_NO_RELR");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" && std::env::var_os("ROUNDS_AGENT_NO_RELR").is_none() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
