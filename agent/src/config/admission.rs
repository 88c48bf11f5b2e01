//! The `[admission]` section: how many containers boot at once, and what one
//! boot is expected to take of the host's kernel limits and disk, which the
//! preflight (`crate::admission`) checks before a container boots.

use super::error::{invalid, ConfigError};
use serde::Deserialize;

/// `[admission]` as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Admission {
    /// Containers booting at once (from nspawn's start until ready); the
    /// rest wait in order. 0: `max(4, 2 × CPUs)`.
    pub max_parallel_boots: usize,
    /// inotify instances one booting container is expected to take.
    pub inotify_instances_per_container: u64,
    /// inotify watches one booting container is expected to take.
    pub inotify_watches_per_container: u64,
    /// Threads (PIDs) one booting container is expected to take.
    pub threads_per_container: u64,
    /// A container does not boot with less free space than this (MiB) where
    /// the container roots are. 0: not checked.
    pub min_free_disk_mib: u64,
}

/// What one container takes, measured (agent/tests/admission.rs) on the
/// full-system fixture (Debian's systemd, D-Bus, logind, sshd, a getty: 8
/// inotify instances — systemd 5, the others 1 each —, 25 watches, 7
/// threads with nspawn's) and the mini-init fixture (0, 0, 5), with room for
/// a NixOS system's few more daemons (nscd) and units (systemd watches each
/// unit's cgroup). See docs/configuration.md.
pub const INOTIFY_INSTANCES_PER_CONTAINER: u64 = 12;
pub const INOTIFY_WATCHES_PER_CONTAINER: u64 = 256;
pub const THREADS_PER_CONTAINER: u64 = 64;

impl Default for Admission {
    fn default() -> Self {
        Admission {
            max_parallel_boots: 0,
            inotify_instances_per_container: INOTIFY_INSTANCES_PER_CONTAINER,
            inotify_watches_per_container: INOTIFY_WATCHES_PER_CONTAINER,
            threads_per_container: THREADS_PER_CONTAINER,
            min_free_disk_mib: 1024,
        }
    }
}

/// The validated section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionConfig {
    /// Boots at once (resolved: never 0).
    pub max_parallel_boots: usize,
    pub needs: crate::admission::Needs,
}

/// The bound when none is configured: a boot is mostly waiting (units
/// starting, files read, processes forked), not computing, so two per CPU
/// keep the CPUs busy without a storm of hundreds contending for them; at
/// least four, so a small host never boots one at a time.
pub fn default_boots(cpus: usize) -> usize {
    (2 * cpus).max(4)
}

/// The most boots at once that may be configured.
const MAX_BOOTS: usize = 1024;

impl Admission {
    pub fn validate(self) -> Result<AdmissionConfig, ConfigError> {
        if self.max_parallel_boots > MAX_BOOTS {
            return Err(invalid(
                "admission.max_parallel_boots",
                format!(
                    "{} is more than {MAX_BOOTS} (0: two per CPU, at least 4)",
                    self.max_parallel_boots
                ),
            ));
        }
        for (key, value, max) in [
            (
                "admission.inotify_instances_per_container",
                self.inotify_instances_per_container,
                1 << 20,
            ),
            (
                "admission.inotify_watches_per_container",
                self.inotify_watches_per_container,
                1 << 24,
            ),
            (
                "admission.threads_per_container",
                self.threads_per_container,
                crate::container::limits::TASKS_MAX,
            ),
            // 1 PiB.
            (
                "admission.min_free_disk_mib",
                self.min_free_disk_mib,
                1 << 30,
            ),
        ] {
            if value > max {
                return Err(invalid(key, format!("{value} is not 0 to {max}")));
            }
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(AdmissionConfig {
            max_parallel_boots: match self.max_parallel_boots {
                0 => default_boots(cpus),
                n => n,
            },
            needs: crate::admission::Needs {
                inotify_instances: self.inotify_instances_per_container,
                inotify_watches: self.inotify_watches_per_container,
                threads: self.threads_per_container,
                min_free_disk: self.min_free_disk_mib << 20,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_bound_is_two_per_cpu_and_at_least_four() {
        assert_eq!([1, 2, 3, 8, 64].map(default_boots), [4, 4, 6, 16, 128]);
        let c = Admission::default().validate().unwrap();
        let cpus = std::thread::available_parallelism().unwrap().get();
        assert_eq!(c.max_parallel_boots, default_boots(cpus));
        let c = Admission {
            max_parallel_boots: 3,
            ..Default::default()
        };
        assert_eq!(c.validate().unwrap().max_parallel_boots, 3);
    }

    #[test]
    fn defaults_are_the_measured_estimates() {
        let c = Admission::default().validate().unwrap();
        assert_eq!(
            c.needs,
            crate::admission::Needs {
                inotify_instances: INOTIFY_INSTANCES_PER_CONTAINER,
                inotify_watches: INOTIFY_WATCHES_PER_CONTAINER,
                threads: THREADS_PER_CONTAINER,
                min_free_disk: 1 << 30,
            }
        );
    }

    #[test]
    fn bad_values_name_the_key() {
        let cases = [
            (
                Admission {
                    max_parallel_boots: 1025,
                    ..Default::default()
                },
                "config key admission.max_parallel_boots: 1025 is more than 1024 (0: two per CPU, at least 4)",
            ),
            (
                Admission {
                    inotify_instances_per_container: (1 << 20) + 1,
                    ..Default::default()
                },
                "config key admission.inotify_instances_per_container: 1048577 is not 0 to 1048576",
            ),
            (
                Admission {
                    threads_per_container: 4_194_305,
                    ..Default::default()
                },
                "config key admission.threads_per_container: 4194305 is not 0 to 4194304",
            ),
            (
                Admission {
                    min_free_disk_mib: (1 << 30) + 1,
                    ..Default::default()
                },
                "config key admission.min_free_disk_mib: 1073741825 is not 0 to 1073741824",
            ),
        ];
        for (c, want) in cases {
            assert_eq!(c.validate().unwrap_err().to_string(), want);
        }
    }
}
