//! Reading what the preflight decides on — inotify use and limits, threads
//! and PID limits, free disk, MemTotal — behind the narrow [`HostProbe`]
//! trait: the real one reads `/proc` (any root, so it is tested on a made-up
//! tree), the fake in the supervisor's tests says what a test wants.
//!
//! inotify instances and watches count against the user that created them,
//! and in a user namespace also against the namespace's creator, up to the
//! initial namespace (the kernel's ucounts): every container's count against
//! host root, which creates them. So the probe counts the instances held by
//! processes that run as the agent's user in its own user namespace, and
//! by every process in another user namespace. Two overestimates, on the
//! safe side: namespaces an unprivileged host user made are counted too, and
//! an instance whose descriptor two processes share (inherited, passed) is
//! counted once per process — telling them apart would take `kcmp` per pair.

use super::verdict::{Disk, HostFacts, Inotify, Threads};
use std::path::{Path, PathBuf};

/// Reads what the host has and uses.
pub trait HostProbe: Send + Sync {
    /// Blocking (a /proc scan): call off the async threads. What cannot be
    /// read is `None`.
    fn facts(&self, containers_dir: &Path) -> HostFacts;
}

/// The real probe: `/proc` and `statvfs`.
pub struct ProcProbe {
    proc: PathBuf,
}

impl Default for ProcProbe {
    fn default() -> Self {
        ProcProbe {
            proc: "/proc".into(),
        }
    }
}

impl ProcProbe {
    /// A probe reading another tree laid out as /proc (tests).
    pub fn at(proc: impl Into<PathBuf>) -> ProcProbe {
        ProcProbe { proc: proc.into() }
    }

    fn number(&self, rel: &str) -> Option<u64> {
        std::fs::read_to_string(self.proc.join(rel))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Instances and watches charged to the agent's user (see the header).
    pub fn inotify_use(&self) -> Option<(u64, u64)> {
        let me = self.proc.join("self");
        let my_ns = std::fs::read_link(me.join("ns/user")).ok();
        let my_uid = effective_uid(&std::fs::read_to_string(me.join("status")).ok()?)?;
        let (mut instances, mut watches) = (0, 0);
        for entry in std::fs::read_dir(&self.proc).ok()?.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            let dir = self.proc.join(pid);
            let Ok(fds) = std::fs::read_dir(dir.join("fd")) else {
                continue; // gone, or a kernel thread
            };
            let inotify: Vec<_> = fds
                .flatten()
                .filter(|fd| {
                    std::fs::read_link(fd.path())
                        .is_ok_and(|t| t.as_os_str() == "anon_inode:inotify")
                })
                .map(|fd| fd.file_name())
                .collect();
            if inotify.is_empty() {
                continue;
            }
            let other_ns = std::fs::read_link(dir.join("ns/user")).ok() != my_ns;
            let ours = other_ns
                || std::fs::read_to_string(dir.join("status"))
                    .ok()
                    .and_then(|s| effective_uid(&s))
                    == Some(my_uid);
            if !ours {
                continue;
            }
            instances += inotify.len() as u64;
            for fd in inotify {
                if let Ok(info) = std::fs::read_to_string(dir.join("fdinfo").join(fd)) {
                    watches += watch_lines(&info);
                }
            }
        }
        Some((instances, watches))
    }

    /// Threads in use: the total of /proc/loadavg's `running/total`.
    pub fn threads_in_use(&self) -> Option<u64> {
        loadavg_threads(&std::fs::read_to_string(self.proc.join("loadavg")).ok()?)
    }
}

impl HostProbe for ProcProbe {
    fn facts(&self, containers_dir: &Path) -> HostFacts {
        let inotify = (|| {
            let (instances, watches) = self.inotify_use()?;
            Some(Inotify {
                max_instances: self.number("sys/fs/inotify/max_user_instances")?,
                instances,
                max_watches: self.number("sys/fs/inotify/max_user_watches")?,
                watches,
            })
        })();
        let threads = (|| {
            Some(Threads {
                pid_max: self.number("sys/kernel/pid_max")?,
                threads_max: self.number("sys/kernel/threads-max")?,
                in_use: self.threads_in_use()?,
            })
        })();
        let memory = std::fs::read_to_string(self.proc.join("meminfo"))
            .ok()
            .and_then(|m| mem_total(&m));
        HostFacts {
            inotify,
            threads,
            disk: free_space(containers_dir),
            memory,
        }
    }
}

/// Free space for the container roots: of the directory, or of the nearest
/// one above it that exists (before the first container it may not).
pub fn free_space(dir: &Path) -> Option<Disk> {
    let mut at = dir;
    loop {
        match nix::sys::statvfs::statvfs(at) {
            Ok(s) => {
                return Some(Disk {
                    path: dir.to_path_buf(),
                    free: s.blocks_available().saturating_mul(s.fragment_size()),
                })
            }
            Err(_) => at = at.parent()?,
        }
    }
}

/// The effective uid of a /proc/PID/status (`Uid: real effective saved fs`).
fn effective_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Watches of one inotify descriptor: its fdinfo's `inotify wd:` lines.
fn watch_lines(fdinfo: &str) -> u64 {
    fdinfo
        .lines()
        .filter(|l| l.starts_with("inotify wd:"))
        .count() as u64
}

/// `0.20 0.18 0.12 1/80 11206`: 80.
fn loadavg_threads(loadavg: &str) -> Option<u64> {
    loadavg
        .split_whitespace()
        .nth(3)?
        .split_once('/')?
        .1
        .parse()
        .ok()
}

/// `MemTotal:       24683652 kB`, in bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    let kb: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    kb.checked_mul(1024)
}

/// The supervisor's tests' probe: the facts a test sets, counted.
#[cfg(test)]
#[derive(Clone, Default)]
pub struct FakeProbe {
    pub facts: std::sync::Arc<std::sync::Mutex<HostFacts>>,
    /// How often the facts were read.
    pub reads: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

#[cfg(test)]
impl FakeProbe {
    /// A host with room for everything.
    pub fn roomy() -> FakeProbe {
        let p = FakeProbe::default();
        p.set(HostFacts {
            inotify: Some(Inotify {
                max_instances: 8192,
                instances: 0,
                max_watches: 1 << 20,
                watches: 0,
            }),
            threads: Some(Threads {
                pid_max: 1 << 22,
                threads_max: 1 << 20,
                in_use: 100,
            }),
            disk: Some(Disk {
                path: "/containers".into(),
                free: 1 << 40,
            }),
            memory: Some(1 << 40),
        });
        p
    }

    pub fn set(&self, facts: HostFacts) {
        *self.facts.lock().unwrap() = facts;
    }

    pub fn update(&self, f: impl FnOnce(&mut HostFacts)) {
        f(&mut self.facts.lock().unwrap());
    }
}

#[cfg(test)]
impl HostProbe for FakeProbe {
    fn facts(&self, _: &Path) -> HostFacts {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.facts.lock().unwrap().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A process in a made-up /proc: its user namespace, euid and
    /// descriptors (name → link target, fdinfo).
    fn process(proc: &Path, pid: &str, ns: &str, euid: u32, fds: &[(&str, &str, &str)]) {
        let dir = proc.join(pid);
        std::fs::create_dir_all(dir.join("fd")).unwrap();
        std::fs::create_dir_all(dir.join("fdinfo")).unwrap();
        std::fs::create_dir_all(dir.join("ns")).unwrap();
        symlink(ns, dir.join("ns/user")).unwrap();
        std::fs::write(
            dir.join("status"),
            format!("Name:\tx\nUid:\t{euid}\t{euid}\t{euid}\t{euid}\nGid:\t0\t0\t0\t0\n"),
        )
        .unwrap();
        for (fd, target, info) in fds {
            symlink(target, dir.join("fd").join(fd)).unwrap();
            std::fs::write(dir.join("fdinfo").join(fd), info).unwrap();
        }
    }

    const HOST_NS: &str = "user:[4026531837]";
    const WATCH: &str = "inotify wd:1 ino:2 sdev:3 mask:fc6 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:0200\n";

    #[test]
    fn inotify_counts_roots_and_the_containers_instances_and_watches() {
        let t = tempfile::tempdir().unwrap();
        let proc = t.path();
        let two = format!("pos:\t0\nflags:\t02004000\nmnt_id:\t15\nino:\t1057\n{WATCH}{WATCH}");
        // The agent itself (self), with one instance and no watch.
        process(
            proc,
            "10",
            HOST_NS,
            0,
            &[("3", "anon_inode:inotify", "pos: 0\n")],
        );
        symlink("10", proc.join("self")).unwrap();
        // Host root: two instances, one with two watches; a socket.
        process(
            proc,
            "1",
            HOST_NS,
            0,
            &[
                ("4", "anon_inode:inotify", &two),
                ("5", "anon_inode:inotify", ""),
                ("6", "socket:[123]", ""),
            ],
        );
        // A container's process (another namespace, uid mapped high).
        process(
            proc,
            "200",
            "user:[4026532000]",
            65536 * 7,
            &[("7", "anon_inode:inotify", WATCH)],
        );
        // A host user's instance counts against that user, not root.
        process(
            proc,
            "300",
            HOST_NS,
            1000,
            &[("3", "anon_inode:inotify", WATCH)],
        );
        // Not processes.
        std::fs::create_dir_all(proc.join("sys")).unwrap();
        std::fs::create_dir_all(proc.join("42")).unwrap();
        assert_eq!(ProcProbe::at(proc).inotify_use(), Some((4, 3)));
    }

    #[test]
    fn facts_read_from_a_proc_tree() {
        let t = tempfile::tempdir().unwrap();
        let proc = t.path();
        process(
            proc,
            "10",
            HOST_NS,
            0,
            &[("3", "anon_inode:inotify", WATCH)],
        );
        symlink("10", proc.join("self")).unwrap();
        for (rel, v) in [
            ("sys/fs/inotify/max_user_instances", "128\n"),
            ("sys/fs/inotify/max_user_watches", "192536\n"),
            ("sys/kernel/pid_max", "32768\n"),
            ("sys/kernel/threads-max", "192729\n"),
            ("loadavg", "1.88 0.70 0.26 3/98 8021\n"),
            (
                "meminfo",
                "MemTotal:       24683652 kB\nMemFree:        1 kB\n",
            ),
        ] {
            let p = proc.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, v).unwrap();
        }
        let f = ProcProbe::at(proc).facts(&t.path().join("no/such/dir"));
        assert_eq!(
            f.inotify,
            Some(Inotify {
                max_instances: 128,
                instances: 1,
                max_watches: 192536,
                watches: 1,
            })
        );
        assert_eq!(
            f.threads,
            Some(Threads {
                pid_max: 32768,
                threads_max: 192729,
                in_use: 98,
            })
        );
        assert_eq!(f.memory, Some(24683652 * 1024));
        // The nearest directory that exists answers for one not made yet.
        let disk = f.disk.unwrap();
        assert_eq!(disk.path, t.path().join("no/such/dir"));
        assert!(disk.free > 0);
    }

    #[test]
    fn what_cannot_be_read_is_none() {
        let t = tempfile::tempdir().unwrap();
        let f = ProcProbe::at(t.path()).facts(t.path());
        assert_eq!((f.inotify, f.threads, f.memory), (None, None, None));
        assert_eq!(loadavg_threads("1.0 2.0"), None);
        assert_eq!(mem_total("MemTotal: lots"), None);
    }

    #[test]
    fn the_real_proc_is_readable() {
        let f = ProcProbe::default().facts(Path::new("/"));
        assert!(f.inotify.is_some() && f.threads.is_some() && f.memory.is_some());
        assert!(f.threads.unwrap().in_use > 0);
    }
}
