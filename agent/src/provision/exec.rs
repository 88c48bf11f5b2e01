//! How a RUN command gets into a container. A container whose PID 1 is
//! systemd, run by the systemd backend (registered with machined), gets it
//! the systemd way: `systemd-run --machine` starts it as a transient unit of
//! the container's own systemd, so it is tracked, logged and limited like the
//! container's services. Any other container gets it by entering all of the
//! PID 1's namespaces (nsenter) after joining its cgroups, so its limits and
//! accounting apply too. The argv and the cgroup paths are planned here
//! purely; spawning is the thin part.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// What RUN commands get as PATH: NixOS's and the FHS places.
pub const RUN_PATH: &str = "/run/wrappers/bin:/run/current-system/sw/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The environment RUN commands get: nothing of the agent's.
pub const RUN_ENV: [(&str, &str); 4] = [
    ("PATH", RUN_PATH),
    ("HOME", "/root"),
    ("USER", "root"),
    ("LANG", "C.UTF-8"),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunMethod {
    /// A transient unit of the container's systemd, through machined.
    Machine { name: String },
    /// nsenter into the namespaces of `leader`, after joining its cgroups
    /// (the `cgroup.procs` files to write).
    Enter {
        leader: u32,
        cgroup_procs: Vec<PathBuf>,
    },
}

/// The command line that runs `command` by `/bin/sh -c` as root.
pub fn argv(method: &RunMethod, command: &str) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    match method {
        RunMethod::Machine { name } => {
            v.extend(
                [
                    "systemd-run",
                    "--machine",
                    name.as_str(),
                    "--quiet",
                    "--pipe",
                    "--wait",
                    "--collect",
                    "--service-type=exec",
                    "--description=devhost provisioning (RUN)",
                ]
                .map(String::from),
            );
            for (k, val) in RUN_ENV {
                v.push(format!("--setenv={k}={val}"));
            }
            v.push("--working-directory=/".into());
            v.push("--".into());
        }
        RunMethod::Enter { leader, .. } => {
            v.extend(
                [
                    "nsenter",
                    "--target",
                    &leader.to_string(),
                    "--mount",
                    "--uts",
                    "--ipc",
                    "--net",
                    "--pid",
                    "--root",
                    "--wd=/",
                    "--",
                ]
                .map(String::from),
            );
        }
    }
    v.extend(["/bin/sh", "-c", command].map(String::from));
    v
}

/// The `cgroup.procs` files of the cgroups in `proc_cgroup` (a
/// `/proc/PID/cgroup`) that differ from ours (`own_cgroup`), where
/// `mountinfo` (this process's) mounts them; cgroups that are not visible
/// here are left out.
pub fn cgroup_procs_paths(proc_cgroup: &str, own_cgroup: &str, mountinfo: &str) -> Vec<PathBuf> {
    // (root within the hierarchy, mount point, fstype, super options)
    let mounts: Vec<(&str, &str, &str, Vec<&str>)> = mountinfo
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let dash = f.iter().position(|x| *x == "-")?;
            let (fstype, opts) = (*f.get(dash + 1)?, *f.get(dash + 3)?);
            Some((*f.get(3)?, *f.get(4)?, fstype, opts.split(',').collect()))
        })
        .collect();
    let mut out = Vec::new();
    for line in proc_cgroup.lines() {
        if own_cgroup.lines().any(|l| l == line) {
            continue; // already there (e.g. a hierarchy nobody may write)
        }
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let found = mounts.iter().find(|(_, _, fstype, opts)| {
            if controllers.is_empty() {
                *fstype == "cgroup2"
            } else {
                *fstype == "cgroup" && controllers.split(',').all(|c| opts.contains(&c))
            }
        });
        let Some((root, mountpoint, _, _)) = found else {
            continue;
        };
        let rel = if *root == "/" {
            Some(path)
        } else {
            path.strip_prefix(root)
                .filter(|r| r.is_empty() || r.starts_with('/'))
        };
        if let Some(rel) = rel {
            let mut p = PathBuf::from(mountpoint);
            p.push(rel.trim_start_matches('/'));
            p.push("cgroup.procs");
            out.push(p);
        }
    }
    out
}

/// How RUN reaches the container with PID 1 `leader`.
pub fn method_for(name: &str, leader: u32, registered: bool) -> std::io::Result<RunMethod> {
    let comm = std::fs::read_to_string(format!("/proc/{leader}/comm")).unwrap_or_default();
    if registered && comm.trim() == "systemd" {
        return Ok(RunMethod::Machine {
            name: name.to_string(),
        });
    }
    let cgroup = std::fs::read_to_string(format!("/proc/{leader}/cgroup"))?;
    let own = std::fs::read_to_string("/proc/self/cgroup")?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(RunMethod::Enter {
        leader,
        cgroup_procs: cgroup_procs_paths(&cgroup, &own, &mountinfo),
    })
}

/// The process for `command`, not yet spawned: a clean environment, and for
/// [`RunMethod::Enter`] a move into the container's cgroups before exec.
pub fn command(method: &RunMethod, command: &str) -> tokio::process::Command {
    let argv = argv(method, command);
    let mut c = tokio::process::Command::new(&argv[0]);
    c.args(&argv[1..]).env_clear();
    for (k, v) in RUN_ENV {
        c.env(k, v);
    }
    if let RunMethod::Enter { cgroup_procs, .. } = method {
        let files: Vec<CString> = cgroup_procs
            .iter()
            .filter_map(|p| CString::new(p.as_os_str().as_bytes()).ok())
            .collect();
        // SAFETY: between fork and exec only open/write/close are called,
        // on strings allocated before the fork.
        unsafe {
            c.pre_exec(move || {
                for f in &files {
                    join_cgroup(f)?;
                }
                Ok(())
            });
        }
    }
    c
}

/// Write "0" (this process) to a `cgroup.procs` file; async-signal-safe.
fn join_cgroup(procs: &CString) -> std::io::Result<()> {
    use nix::libc;
    // SAFETY: plain syscalls on a NUL-terminated path and a static buffer.
    unsafe {
        let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let n = libc::write(fd, b"0".as_ptr().cast(), 1);
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if n != 1 {
            return Err(err);
        }
    }
    Ok(())
}

/// For messages: where a RUN went.
pub fn describe(method: &RunMethod) -> String {
    match method {
        RunMethod::Machine { name } => format!("a transient unit of {name}'s systemd"),
        RunMethod::Enter { leader, .. } => format!("the namespaces and cgroups of PID {leader}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_for_both_methods() {
        assert_eq!(
            argv(
                &RunMethod::Enter {
                    leader: 42,
                    cgroup_procs: vec![]
                },
                "make && make install"
            ),
            [
                "nsenter",
                "--target",
                "42",
                "--mount",
                "--uts",
                "--ipc",
                "--net",
                "--pid",
                "--root",
                "--wd=/",
                "--",
                "/bin/sh",
                "-c",
                "make && make install"
            ]
        );
        assert_eq!(
            argv(
                &RunMethod::Machine {
                    name: "web01".into()
                },
                "id -u"
            ),
            [
                "systemd-run",
                "--machine",
                "web01",
                "--quiet",
                "--pipe",
                "--wait",
                "--collect",
                "--service-type=exec",
                "--description=devhost provisioning (RUN)",
                &format!("--setenv=PATH={RUN_PATH}"),
                "--setenv=HOME=/root",
                "--setenv=USER=root",
                "--setenv=LANG=C.UTF-8",
                "--working-directory=/",
                "--",
                "/bin/sh",
                "-c",
                "id -u"
            ]
        );
    }

    #[test]
    fn cgroup_paths_on_a_unified_host() {
        let mountinfo =
            "25 1 0:23 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate\n";
        let cg = "0::/machine.slice/devhost-web01.service/payload\n";
        assert_eq!(
            cgroup_procs_paths(cg, "0::/system.slice/devhost.service\n", mountinfo),
            [PathBuf::from(
                "/sys/fs/cgroup/machine.slice/devhost-web01.service/payload/cgroup.procs"
            )]
        );
    }

    #[test]
    fn cgroup_paths_on_a_v1_host_inside_a_container() {
        // Hierarchies mounted with their roots at /ci (as in a container).
        let mountinfo = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 /ci /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
33 31 0:30 /ci /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
34 31 0:31 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
";
        let cg = "\
9:name=systemd:/c1
4:memory:/ci/c1
2:cpu,cpuacct:/ci
7:pids:/c1
1:blkio:/elsewhere
0::/
";
        let own = "9:name=systemd:/\n4:memory:/ci\n2:cpu,cpuacct:/ci\n";
        assert_eq!(
            cgroup_procs_paths(cg, own, mountinfo),
            [
                PathBuf::from("/sys/fs/cgroup/systemd/c1/cgroup.procs"),
                PathBuf::from("/sys/fs/cgroup/memory/c1/cgroup.procs"),
            ],
            "cpu,cpuacct is where we are; pids, blkio and the unified one are not mounted"
        );
        // A cgroup outside the mount's root is not reachable.
        assert_eq!(
            cgroup_procs_paths("4:memory:/cix/c1\n", "", mountinfo),
            Vec::<PathBuf>::new()
        );
    }
}
