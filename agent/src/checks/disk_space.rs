//! Free disk space, one observation per local file system.
//!
//! Reads the mounted file systems and their sizes from the live system (sysinfo: `statvfs` on
//! Linux and macOS, `GetDiskFreeSpaceExW` on Windows). Pseudo and read-only image file systems
//! (tmpfs, squashfs, overlay layers of containers, ...) are left out. Needs no privilege. A fixture
//! run (`live = false`) has no file systems to measure and says so.

use rounds_protocol::Observation;
use rounds_protocol::obs::{DiskSpace, Payload};

use super::{Check, Host};

/// Observes free disk space.
#[derive(Debug)]
pub struct DiskSpaceCheck;

impl Check for DiskSpaceCheck {
    fn name(&self) -> &'static str {
        "disk_space"
    }

    fn kinds(&self) -> &'static [&'static str] {
        &[DiskSpace::KIND]
    }

    fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(15)
    }

    fn run(&self, host: &Host) -> Vec<Observation> {
        if !host.live {
            return vec![Observation::error(
                DiskSpace::KIND,
                "host",
                host.now,
                "disk space is measured on the live system only",
            )];
        }
        let disks = sysinfo::Disks::new_with_refreshed_list();
        let mut out: Vec<Observation> = disks
            .list()
            .iter()
            .map(|d| {
                (
                    d.mount_point().to_string_lossy().into_owned(),
                    d.file_system().to_string_lossy().into_owned(),
                    d.total_space(),
                    d.available_space(),
                )
            })
            .filter(|(mount, fs, total, _)| counts(mount, fs, *total))
            .map(|(mount, _, total, available)| {
                Observation::ok(mount.clone(), host.now, &measure(&mount, total, available))
            })
            .collect();
        out.dedup_by(|a, b| a.subject == b.subject);
        if out.is_empty() {
            out.push(Observation::error(
                DiskSpace::KIND,
                "host",
                host.now,
                "no local file systems found",
            ));
        }
        out
    }
}

/// File systems that hold no data of their own.
const PSEUDO_FS: &[&str] = &[
    "tmpfs",
    "devtmpfs",
    "ramfs",
    "squashfs",
    "overlay",
    "proc",
    "sysfs",
    "cgroup",
    "cgroup2",
    "devpts",
    "autofs",
    "fuse.snapfuse",
    "iso9660",
    "nsfs",
    "tracefs",
    "debugfs",
    "efivarfs",
];

/// Whether a mounted file system is measured.
pub fn counts(mount_point: &str, fs_type: &str, total_bytes: u64) -> bool {
    total_bytes > 0
        && !PSEUDO_FS.contains(&fs_type)
        && !["/proc", "/sys", "/dev", "/run", "/snap", "/var/lib/docker", "/var/snap"]
            .iter()
            .any(|p| mount_point == *p || mount_point.starts_with(&format!("{p}/")))
}

/// The payload for one file system.
pub fn measure(mount_point: &str, total_bytes: u64, available_bytes: u64) -> DiskSpace {
    let used = total_bytes.saturating_sub(available_bytes);
    DiskSpace {
        mount_point: mount_point.to_string(),
        total_bytes,
        available_bytes,
        used_percent: if total_bytes == 0 {
            0.0
        } else {
            (used as f64 / total_bytes as f64 * 1000.0).round() / 10.0
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_and_filters() {
        let d = measure("/", 100 * 1024, 25 * 1024);
        assert_eq!(d.used_percent, 75.0);
        assert!(counts("/", "ext4", 1));
        assert!(counts("C:\\", "NTFS", 1));
        assert!(!counts("/run/user/1000", "tmpfs", 1));
        assert!(!counts("/snap/core22/1380", "squashfs", 1));
        assert!(!counts("/boot/efi", "vfat", 0));
    }

    #[test]
    fn live_run_measures_this_machine() {
        let obs = DiskSpaceCheck.run(&Host::system());
        assert!(!obs.is_empty());
        for o in &obs {
            assert!(o.error.is_some() || o.payload::<DiskSpace>().unwrap().is_ok(), "{o:?}");
        }
    }
}
