//! The preflight decision, pure: what the host has and uses (read by a
//! [`super::probe::HostProbe`]), what one boot needs (`[admission]`) and what
//! the agent has already admitted (boots under way, memory limits of the
//! running containers) go in; a [`Verdict`] comes out — the limits the boot
//! would exceed, each with the setting that raises it, and warnings. Tested
//! by equality, like the other planners.

use std::path::PathBuf;

/// inotify use of the user the containers are charged to (host root: a user
/// namespace root creates charges its creator's uid), and the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inotify {
    /// `fs.inotify.max_user_instances`.
    pub max_instances: u64,
    pub instances: u64,
    /// `fs.inotify.max_user_watches`.
    pub max_watches: u64,
    pub watches: u64,
}

/// Threads on the host (each takes a PID) and the limits on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Threads {
    /// `kernel.pid_max`.
    pub pid_max: u64,
    /// `kernel.threads-max`.
    pub threads_max: u64,
    /// In use: the 4th field of /proc/loadavg (`running/total`).
    pub in_use: u64,
}

/// Free space where the container roots are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    pub path: PathBuf,
    /// Bytes an unprivileged writer may still use (`f_bavail`).
    pub free: u64,
}

/// What the host has and uses now. A fact that could not be read is
/// `None`, and its check is left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFacts {
    pub inotify: Option<Inotify>,
    pub threads: Option<Threads>,
    pub disk: Option<Disk>,
    /// MemTotal, bytes.
    pub memory: Option<u64>,
}

/// What one container boot is expected to take (`[admission]`); 0 leaves
/// that check out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    pub inotify_instances: u64,
    pub inotify_watches: u64,
    pub threads: u64,
    /// Bytes.
    pub min_free_disk: u64,
}

/// What the agent has admitted beside this boot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Claims {
    /// Other boots admitted and not done: each holds a reservation of
    /// [`Needs`] (what it has taken so far is counted twice: the
    /// estimate errs on the safe side).
    pub booting: u64,
    /// Memory limits of the containers that run (or boot).
    pub memory: Memory,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// The sum of the limits of the running containers that have one.
    pub limits: u64,
    /// Running containers with a limit.
    pub limited: u64,
    /// Running containers without one.
    pub unlimited: u64,
    /// This container's limit.
    pub this: Option<u64>,
}

/// A kernel limit a boot can run into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sysctl {
    InotifyInstances,
    InotifyWatches,
    PidMax,
    ThreadsMax,
}

impl Sysctl {
    pub fn key(self) -> &'static str {
        match self {
            Sysctl::InotifyInstances => "fs.inotify.max_user_instances",
            Sysctl::InotifyWatches => "fs.inotify.max_user_watches",
            Sysctl::PidMax => "kernel.pid_max",
            Sysctl::ThreadsMax => "kernel.threads-max",
        }
    }

    /// What the devhost NixOS role sets (`nixos-module/default.nix`; NixOS
    /// itself sets `kernel.pid_max` on 64-bit).
    pub fn role_value(self) -> Option<u64> {
        match self {
            Sysctl::InotifyInstances => Some(ROLE_INOTIFY_INSTANCES),
            Sysctl::InotifyWatches => Some(ROLE_INOTIFY_WATCHES),
            Sysctl::PidMax => Some(PID_MAX_LIMIT),
            Sysctl::ThreadsMax => None,
        }
    }

    /// The `[admission]` key of the estimate.
    pub fn estimate_key(self) -> &'static str {
        match self {
            Sysctl::InotifyInstances => "admission.inotify_instances_per_container",
            Sysctl::InotifyWatches => "admission.inotify_watches_per_container",
            Sysctl::PidMax | Sysctl::ThreadsMax => "admission.threads_per_container",
        }
    }

    /// What is counted, in a message.
    fn unit(self) -> &'static str {
        match self {
            Sysctl::InotifyInstances => "instances",
            Sysctl::InotifyWatches => "watches",
            Sysctl::PidMax | Sysctl::ThreadsMax => "threads",
        }
    }
}

/// `fs.inotify.max_user_instances` as the NixOS role sets it.
pub const ROLE_INOTIFY_INSTANCES: u64 = 8192;
/// `fs.inotify.max_user_watches` as the NixOS role sets it.
pub const ROLE_INOTIFY_WATCHES: u64 = 1_048_576;
/// The kernel's largest `pid_max` (64-bit), which NixOS sets.
pub const PID_MAX_LIMIT: u64 = 4_194_304;

/// A limit the boot would exceed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shortfall {
    Sysctl {
        limit: Sysctl,
        max: u64,
        in_use: u64,
        /// Other boots under way …
        booting: u64,
        /// … and what they hold in reserve.
        reserved: u64,
        /// What this boot needs.
        need: u64,
    },
    Disk {
        path: PathBuf,
        free: u64,
        min: u64,
    },
}

/// What does not stop a boot but should be known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// Memory limits add up to more than the host has.
    Memory {
        limits: u64,
        /// Containers whose limits are summed, this one included if it has one.
        containers: u64,
        total: u64,
        unlimited: u64,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Empty: the boot may go ahead.
    pub refused: Vec<Shortfall>,
    pub warnings: Vec<Warning>,
}

/// May one more container boot, given what the host has and uses, what a
/// boot needs and what is already admitted?
pub fn decide(facts: &HostFacts, needs: &Needs, claims: &Claims) -> Verdict {
    let mut v = Verdict::default();
    let booting = claims.booting;
    let mut check = |limit: Sysctl, max: u64, in_use: u64, need: u64| {
        if need == 0 {
            return;
        }
        let reserved = booting.saturating_mul(need);
        if in_use.saturating_add(reserved).saturating_add(need) > max {
            v.refused.push(Shortfall::Sysctl {
                limit,
                max,
                in_use,
                booting,
                reserved,
                need,
            });
        }
    };
    if let Some(i) = facts.inotify {
        check(
            Sysctl::InotifyInstances,
            i.max_instances,
            i.instances,
            needs.inotify_instances,
        );
        check(
            Sysctl::InotifyWatches,
            i.max_watches,
            i.watches,
            needs.inotify_watches,
        );
    }
    if let Some(t) = facts.threads {
        check(Sysctl::PidMax, t.pid_max, t.in_use, needs.threads);
        check(Sysctl::ThreadsMax, t.threads_max, t.in_use, needs.threads);
    }
    if let Some(d) = &facts.disk {
        if needs.min_free_disk > 0 && d.free < needs.min_free_disk {
            v.refused.push(Shortfall::Disk {
                path: d.path.clone(),
                free: d.free,
                min: needs.min_free_disk,
            });
        }
    }
    if let Some(total) = facts.memory {
        let m = claims.memory;
        let limits = m.limits.saturating_add(m.this.unwrap_or(0));
        if limits > total {
            v.warnings.push(Warning::Memory {
                limits,
                containers: m.limited + u64::from(m.this.is_some()),
                total,
                unlimited: m.unlimited,
            });
        }
    }
    v
}

/// A value to raise a limit to: what the role sets, or twice what is
/// needed (a power of two) when that is more.
fn suggestion(limit: Sysctl, needed: u64) -> u64 {
    let twice = needed
        .saturating_mul(2)
        .checked_next_power_of_two()
        .unwrap_or(u64::MAX);
    let s = limit.role_value().map_or(twice, |role| role.max(twice));
    match limit {
        Sysctl::PidMax => s.min(PID_MAX_LIMIT),
        _ => s,
    }
}

impl std::fmt::Display for Shortfall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shortfall::Sysctl {
                limit,
                max,
                in_use,
                booting,
                reserved,
                need,
            } => {
                let key = limit.key();
                let unit = limit.unit();
                write!(f, "{key} = {max}: {in_use} {unit} in use")?;
                if *booting > 0 {
                    let s = if *booting == 1 { "" } else { "s" };
                    write!(f, ", {booting} container{s} booting hold {reserved} more")?;
                }
                write!(f, ", a container needs about {need}; raise it")?;
                let needed = in_use + reserved + need;
                let to = suggestion(*limit, needed);
                if to > *max {
                    write!(f, " (sysctl -w {key}={to}")?;
                } else {
                    // Raising to the usual value would not help: say
                    // nothing misleading.
                    write!(f, " (sysctl -w {key}=…")?;
                }
                match limit.role_value() {
                    Some(v) if *limit == Sysctl::PidMax => write!(
                        f,
                        "; NixOS sets boot.kernel.sysctl.\"{key}\" = {v} on 64-bit)"
                    )?,
                    Some(v) => write!(
                        f,
                        "; the NixOS role sets boot.kernel.sysctl.\"{key}\" = {v})"
                    )?,
                    None => write!(f, "; on NixOS boot.kernel.sysctl.\"{key}\")")?,
                }
                write!(f, ", or lower {} if it is too high", limit.estimate_key())
            }
            Shortfall::Disk { path, free, min } => write!(
                f,
                "{} has {} free, less than admission.min_free_disk_mib ({}); free space there or lower admission.min_free_disk_mib",
                path.display(),
                mib(*free),
                mib(*min)
            ),
        }
    }
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Warning::Memory {
                limits,
                containers,
                total,
                unlimited,
            } => {
                let s = if *containers == 1 { "" } else { "s" };
                write!(
                    f,
                    "the memory limits of {containers} container{s} add up to {}, more than this host's {} (MemTotal): they can be out of memory before their limits",
                    mib(*limits),
                    mib(*total)
                )?;
                if *unlimited > 0 {
                    write!(f, " ({unlimited} more run without a limit)")?;
                }
                Ok(())
            }
        }
    }
}

/// Bytes as MiB, or GiB (from 10 GiB) or TiB (from 10 TiB) with a decimal.
fn mib(bytes: u64) -> String {
    let m = bytes >> 20;
    if m >= 10 << 20 {
        format!("{:.1} TiB", bytes as f64 / (1u64 << 40) as f64)
    } else if m >= 10 << 10 {
        format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else {
        format!("{m} MiB")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEEDS: Needs = Needs {
        inotify_instances: 6,
        inotify_watches: 200,
        threads: 50,
        min_free_disk: 1 << 30,
    };

    fn facts() -> HostFacts {
        HostFacts {
            inotify: Some(Inotify {
                max_instances: 128,
                instances: 100,
                max_watches: 65536,
                watches: 1000,
            }),
            threads: Some(Threads {
                pid_max: 32768,
                threads_max: 192_000,
                in_use: 300,
            }),
            disk: Some(Disk {
                path: "/var/lib/nixos-containers".into(),
                free: 80 << 30,
            }),
            memory: Some(24 << 30),
        }
    }

    #[test]
    fn a_boot_that_fits_everywhere_is_admitted() {
        assert_eq!(
            decide(&facts(), &NEEDS, &Claims::default()),
            Verdict::default()
        );
    }

    #[test]
    fn inotify_instances_count_what_is_in_use_what_boots_and_this_one() {
        // 100 + 3 × 6 + 6 = 124 fits in 128 …
        let claims = Claims {
            booting: 3,
            ..Default::default()
        };
        assert_eq!(decide(&facts(), &NEEDS, &claims), Verdict::default());
        // … 100 + 4 × 6 + 6 = 130 does not.
        let claims = Claims {
            booting: 4,
            ..Default::default()
        };
        let v = decide(&facts(), &NEEDS, &claims);
        assert_eq!(
            v,
            Verdict {
                refused: vec![Shortfall::Sysctl {
                    limit: Sysctl::InotifyInstances,
                    max: 128,
                    in_use: 100,
                    booting: 4,
                    reserved: 24,
                    need: 6,
                }],
                warnings: vec![],
            }
        );
        assert_eq!(
            v.refused[0].to_string(),
            "fs.inotify.max_user_instances = 128: 100 instances in use, 4 containers booting hold 24 more, a container needs about 6; raise it (sysctl -w fs.inotify.max_user_instances=8192; the NixOS role sets boot.kernel.sysctl.\"fs.inotify.max_user_instances\" = 8192), or lower admission.inotify_instances_per_container if it is too high"
        );
    }

    #[test]
    fn every_limit_exceeded_is_named() {
        let mut f = facts();
        f.inotify = Some(Inotify {
            max_instances: 128,
            instances: 123,
            max_watches: 8192,
            watches: 8000,
        });
        f.threads = Some(Threads {
            pid_max: 32768,
            threads_max: 1000,
            in_use: 32750,
        });
        f.disk = Some(Disk {
            path: "/srv/roots".into(),
            free: 100 << 20,
        });
        let v = decide(&f, &NEEDS, &Claims::default());
        let sysctl = |limit, max, in_use, need| Shortfall::Sysctl {
            limit,
            max,
            in_use,
            booting: 0,
            reserved: 0,
            need,
        };
        assert_eq!(
            v.refused,
            vec![
                sysctl(Sysctl::InotifyInstances, 128, 123, 6),
                sysctl(Sysctl::InotifyWatches, 8192, 8000, 200),
                sysctl(Sysctl::PidMax, 32768, 32750, 50),
                sysctl(Sysctl::ThreadsMax, 1000, 32750, 50),
                Shortfall::Disk {
                    path: "/srv/roots".into(),
                    free: 100 << 20,
                    min: 1 << 30
                },
            ]
        );
        let texts: Vec<String> = v.refused.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            texts[0],
            "fs.inotify.max_user_instances = 128: 123 instances in use, a container needs about 6; raise it (sysctl -w fs.inotify.max_user_instances=8192; the NixOS role sets boot.kernel.sysctl.\"fs.inotify.max_user_instances\" = 8192), or lower admission.inotify_instances_per_container if it is too high"
        );
        assert_eq!(
            texts[2],
            "kernel.pid_max = 32768: 32750 threads in use, a container needs about 50; raise it (sysctl -w kernel.pid_max=4194304; NixOS sets boot.kernel.sysctl.\"kernel.pid_max\" = 4194304 on 64-bit), or lower admission.threads_per_container if it is too high"
        );
        assert_eq!(
            texts[3],
            "kernel.threads-max = 1000: 32750 threads in use, a container needs about 50; raise it (sysctl -w kernel.threads-max=131072; on NixOS boot.kernel.sysctl.\"kernel.threads-max\"), or lower admission.threads_per_container if it is too high"
        );
        assert_eq!(
            texts[4],
            "/srv/roots has 100 MiB free, less than admission.min_free_disk_mib (1024 MiB); free space there or lower admission.min_free_disk_mib"
        );
    }

    #[test]
    fn a_limit_already_above_the_roles_value_is_suggested_twice_what_is_needed() {
        let mut f = facts();
        f.inotify = Some(Inotify {
            max_instances: 10_000,
            instances: 9_999,
            max_watches: 1 << 20,
            watches: 0,
        });
        let v = decide(&f, &NEEDS, &Claims::default());
        assert!(
            v.refused[0]
                .to_string()
                .contains("sysctl -w fs.inotify.max_user_instances=32768;"),
            "{}",
            v.refused[0]
        );
    }

    #[test]
    fn an_estimate_of_zero_or_a_fact_not_read_checks_nothing() {
        let mut f = facts();
        f.inotify.as_mut().unwrap().instances = 128;
        f.disk.as_mut().unwrap().free = 0;
        let needs = Needs {
            inotify_instances: 0,
            min_free_disk: 0,
            ..NEEDS
        };
        assert_eq!(decide(&f, &needs, &Claims::default()), Verdict::default());
        let unread = HostFacts::default();
        let claims = Claims {
            booting: 1000,
            memory: Memory {
                limits: u64::MAX,
                ..Default::default()
            },
        };
        assert_eq!(decide(&unread, &NEEDS, &claims), Verdict::default());
    }

    #[test]
    fn sizes_are_said_in_a_unit_that_reads() {
        assert_eq!(
            [mib(5 << 20), mib(10239 << 20), mib(12 << 30), mib(1 << 50)],
            ["5 MiB", "10239 MiB", "12.0 GiB", "1024.0 TiB"]
        );
    }

    #[test]
    fn memory_limits_beyond_memtotal_warn_and_do_not_refuse() {
        let claims = Claims {
            booting: 0,
            memory: Memory {
                limits: 20 << 30,
                limited: 5,
                unlimited: 2,
                this: Some(8 << 30),
            },
        };
        let v = decide(&facts(), &NEEDS, &claims);
        assert_eq!(
            v,
            Verdict {
                refused: vec![],
                warnings: vec![Warning::Memory {
                    limits: 28 << 30,
                    containers: 6,
                    total: 24 << 30,
                    unlimited: 2,
                }],
            }
        );
        assert_eq!(
            v.warnings[0].to_string(),
            "the memory limits of 6 containers add up to 28.0 GiB, more than this host's 24.0 GiB (MemTotal): they can be out of memory before their limits (2 more run without a limit)"
        );
        // Within MemTotal: nothing to say.
        let claims = Claims {
            memory: Memory {
                this: Some(4 << 30),
                ..claims.memory
            },
            ..claims
        };
        assert_eq!(decide(&facts(), &NEEDS, &claims), Verdict::default());
    }
}
