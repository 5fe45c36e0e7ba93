//! Asset inventory: hostname, OS and version, kernel, hardware, CPU, memory, disks, uptime.
//!
//! Reads: sysinfo (on Linux: /proc/cpuinfo, /proc/meminfo, /proc/uptime, /proc/mounts,
//! /etc/os-release) and, under the host root, /sys/class/dmi/id/{sys_vendor,product_name}.
//! Needs no privilege; the serial number is read when the file is readable (root on Linux).

use rounds_protocol::Observation;
use rounds_protocol::obs::{Inventory, InventoryDisk, Payload};

use super::{Check, Host};

/// Collects the machine's asset inventory.
#[derive(Debug)]
pub struct InventoryCheck;

impl Check for InventoryCheck {
    fn name(&self) -> &'static str {
        "inventory"
    }

    fn kinds(&self) -> &'static [&'static str] {
        &[Inventory::KIND]
    }

    fn run(&self, host: &Host) -> Vec<Observation> {
        vec![Observation::ok("host", host.now, &collect(host))]
    }
}

fn dmi(host: &Host, name: &str) -> Option<String> {
    let v = host.read(format!("/sys/class/dmi/id/{name}")).ok()?;
    let v = v.trim();
    (!v.is_empty()).then(|| v.to_string())
}

/// Gathers the inventory of the host.
pub fn collect(host: &Host) -> Inventory {
    use sysinfo::{Disks, System};
    let mut inv = Inventory {
        os_family: std::env::consts::OS.to_string(),
        arch: std::env::consts::ARCH.to_string(),
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        hardware_vendor: dmi(host, "sys_vendor"),
        hardware_model: dmi(host, "product_name"),
        serial_number: dmi(host, "product_serial"),
        ..Inventory::default()
    };
    if host.live {
        let mut sys = System::new();
        sys.refresh_memory();
        sys.refresh_cpu_list(sysinfo::CpuRefreshKind::nothing());
        inv.hostname = System::host_name().unwrap_or_default();
        inv.os_name = System::name();
        inv.os_version = System::os_version();
        inv.kernel_version = System::kernel_version();
        inv.uptime_secs = System::uptime();
        inv.boot_time = chrono::DateTime::from_timestamp(System::boot_time() as i64, 0);
        inv.cpu_cores = sys.cpus().len() as u32;
        inv.cpu_model = sys
            .cpus()
            .first()
            .map(|c| c.brand().trim().to_string())
            .filter(|s| !s.is_empty());
        inv.memory_total_bytes = sys.total_memory();
        let disks = Disks::new_with_refreshed_list();
        inv.disks = disks
            .list()
            .iter()
            .map(|d| InventoryDisk {
                device: d.name().to_string_lossy().into_owned(),
                mount_point: d.mount_point().to_string_lossy().into_owned(),
                file_system: d.file_system().to_string_lossy().into_owned(),
                total_bytes: d.total_space(),
                available_bytes: d.available_space(),
                removable: d.is_removable(),
            })
            .collect();
    } else {
        inv.hostname = host
            .read("/etc/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
    }
    inv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_inventory_names_this_machine() {
        let inv = collect(&Host::system());
        assert!(!inv.hostname.is_empty(), "hostname is empty");
        assert!(inv.cpu_cores >= 1);
        assert!(inv.memory_total_bytes > 0);
        assert_eq!(inv.agent_version, env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn fixture_root_is_read_for_hardware() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sys/class/dmi/id")).unwrap();
        std::fs::write(dir.path().join("sys/class/dmi/id/product_name"), "OptiPlex 7090\n").unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/hostname"), "frontdesk-01\n").unwrap();
        let host = Host {
            root: dir.path().to_path_buf(),
            live: false,
            ..Host::system()
        };
        let inv = collect(&host);
        assert_eq!(inv.hardware_model.as_deref(), Some("OptiPlex 7090"));
        assert_eq!(inv.hostname, "frontdesk-01");
        assert_eq!(inv.serial_number, None);
    }
}
