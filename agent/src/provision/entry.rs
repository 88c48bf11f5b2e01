//! How provisioning, `devhost exec` and `devhost shell` get into a
//! container. A RUN (an exec, a shell) in a container whose PID 1 is
//! systemd, run by the systemd backend (registered with machined), goes the
//! systemd way: `systemd-run --machine` starts it as a transient unit of
//! the container's own systemd, so it is tracked, logged and limited like
//! the container's services (and, forked by that systemd, has its
//! privilege). Everything else — RUN in any other container, every COPY and
//! ECHO — goes through the enter helper ([`crate::enter`]): the init's
//! cgroups, namespaces (user namespace included), root, capability sets and
//! seccomp filters. The argv and the cgroup paths are planned here purely;
//! spawning is the thin part.

use crate::enter::{Action, EnterRequest, RUN_ENV};
use crate::sys::proc::ProcessId;
use std::path::PathBuf;

/// A running container's init and its cgroups, as the enter helper takes
/// them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub leader: ProcessId,
    /// The `cgroup.procs` files to write.
    pub cgroup_procs: Vec<PathBuf>,
}

impl Target {
    pub fn request(&self, action: Action) -> EnterRequest {
        EnterRequest {
            leader: self.leader,
            cgroup_procs: self.cgroup_procs.clone(),
            action,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunMethod {
    /// A transient unit of the container's systemd, through machined.
    Machine,
    /// The enter helper.
    Enter,
}

/// `systemd-run --machine NAME … /bin/sh -c COMMAND`, with every `$`
/// doubled: systemd would otherwise expand `$NAME` and `$$` in the
/// command line from its own environment, and RUN would mean something
/// else than through the enter helper, where only the container's shell
/// expands it.
pub fn machine_argv(name: &str, command: &str) -> Vec<String> {
    let mut v: Vec<String> = [
        "systemd-run",
        "--machine",
        name,
        "--quiet",
        "--pipe",
        "--wait",
        "--collect",
        "--service-type=exec",
        "--description=devhost provisioning (RUN)",
    ]
    .map(String::from)
    .to_vec();
    for (k, val) in RUN_ENV {
        v.push(format!("--setenv={k}={val}"));
    }
    v.push("--working-directory=/".into());
    v.push("--".into());
    v.extend(["/bin/sh".into(), "-c".into(), command.replace('$', "$$")]);
    v
}

/// What the agent runs in a container through machined for `devhost
/// exec` or `devhost shell`, as a transient unit `unit` of the container's
/// own systemd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MachineCommand<'a> {
    /// The argv through [`crate::enter::EXEC_SCRIPT`]; stdin, stdout and
    /// stderr are systemd-run's own (`--pipe`).
    Exec(&'a [String]),
    /// A login shell on a terminal of the container's (`--pty`, relayed by
    /// systemd-run to its own terminal), with `TERM`.
    Shell { term: &'a str },
}

/// `systemd-run --machine NAME --unit UNIT … ` for exec or a shell: the
/// same environment and directory as RUN, a unit name the agent knows so
/// that it can kill what is left ([`machine_kill_argv`]), and the command
/// line escaped for systemd (which would expand `$` in it).
pub fn machine_session_argv(name: &str, unit: &str, what: &MachineCommand) -> Vec<String> {
    let (stdio, description) = match what {
        MachineCommand::Exec(_) => ("--pipe", "devhost exec"),
        MachineCommand::Shell { .. } => ("--pty", "devhost shell"),
    };
    let mut v: Vec<String> = [
        "systemd-run",
        "--machine",
        name,
        "--quiet",
        stdio,
        "--wait",
        "--collect",
        "--service-type=exec",
    ]
    .map(String::from)
    .to_vec();
    v.push(format!("--unit={unit}"));
    v.push(format!("--description={description}"));
    for (k, val) in RUN_ENV {
        v.push(format!("--setenv={k}={val}"));
    }
    if let MachineCommand::Shell { term } = what {
        v.push(format!("--setenv=TERM={term}"));
    }
    v.push("--working-directory=/".into());
    v.push("--".into());
    match what {
        // systemd expands `$NAME`, `${NAME}` and `$$` in a command line;
        // every `$` doubled, the command gets its arguments as given.
        MachineCommand::Exec(argv) => v.extend(
            crate::enter::exec_argv(argv)
                .into_iter()
                .map(|a| a.replace('$', "$$")),
        ),
        MachineCommand::Shell { .. } => v.extend(["/bin/sh", "-l"].map(String::from)),
    }
    v
}

/// Kill everything of the transient unit `unit` in container `name` (the
/// client of an exec or shell went away).
pub fn machine_kill_argv(name: &str, unit: &str) -> Vec<String> {
    [
        "systemctl",
        "--machine",
        name,
        "kill",
        "--signal=SIGKILL",
        unit,
    ]
    .map(String::from)
    .to_vec()
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

/// The container with init `leader` as the enter helper takes it.
pub fn target(leader: u32) -> std::io::Result<Target> {
    let id = ProcessId::of(leader).ok_or_else(|| {
        std::io::Error::other(format!("the container's init (pid {leader}) is gone"))
    })?;
    let cgroup = std::fs::read_to_string(format!("/proc/{leader}/cgroup"))?;
    let own = std::fs::read_to_string("/proc/self/cgroup")?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(Target {
        leader: id,
        cgroup_procs: cgroup_procs_paths(&cgroup, &own, &mountinfo),
    })
}

/// How RUN reaches the container with init `leader`.
pub fn method_for(leader: u32, registered: bool) -> RunMethod {
    let comm = std::fs::read_to_string(format!("/proc/{leader}/comm")).unwrap_or_default();
    if registered && comm.trim() == "systemd" {
        return RunMethod::Machine;
    }
    RunMethod::Enter
}

/// The process for RUN `command`, not yet spawned, with a clean environment.
pub fn run_command(
    method: &RunMethod,
    name: &str,
    target: &Target,
    command: &str,
) -> tokio::process::Command {
    match method {
        RunMethod::Machine => {
            let argv = machine_argv(name, command);
            let mut c = tokio::process::Command::new(&argv[0]);
            c.args(&argv[1..]).env_clear();
            for (k, v) in RUN_ENV {
                c.env(k, v);
            }
            c
        }
        RunMethod::Enter => crate::enter::command(&target.request(Action::Run {
            command: command.to_string(),
        })),
    }
}

/// For messages: where a RUN went.
pub fn describe(method: &RunMethod, name: &str, target: &Target) -> String {
    match method {
        RunMethod::Machine => format!("a transient unit of {name}'s systemd"),
        RunMethod::Enter => format!(
            "the namespaces, cgroups and privilege of PID {}",
            target.leader.pid
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_through_machined() {
        assert_eq!(
            machine_argv("web01", "id -u; echo $HOME$$"),
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
                &format!("--setenv=PATH={}", crate::enter::RUN_PATH),
                "--setenv=HOME=/root",
                "--setenv=USER=root",
                "--setenv=LANG=C.UTF-8",
                "--working-directory=/",
                "--",
                "/bin/sh",
                "-c",
                "id -u; echo $$HOME$$$$"
            ]
        );
    }

    #[test]
    fn exec_and_shell_through_machined() {
        let env = [
            format!("--setenv=PATH={}", crate::enter::RUN_PATH),
            "--setenv=HOME=/root".into(),
            "--setenv=USER=root".into(),
            "--setenv=LANG=C.UTF-8".into(),
        ];
        let argv = ["cat".to_string(), "$HOME$$".to_string()];
        let mut want: Vec<String> = [
            "systemd-run",
            "--machine",
            "web01",
            "--quiet",
            "--pipe",
            "--wait",
            "--collect",
            "--service-type=exec",
            "--unit=devhost-exec-7-1",
            "--description=devhost exec",
        ]
        .map(String::from)
        .to_vec();
        want.extend(env.iter().cloned());
        want.extend(
            [
                "--working-directory=/",
                "--",
                "/bin/sh",
                "-c",
                "\"$$@\"; exit $$?",
                "devhost-exec",
                "cat",
                "$$HOME$$$$",
            ]
            .map(String::from),
        );
        assert_eq!(
            machine_session_argv("web01", "devhost-exec-7-1", &MachineCommand::Exec(&argv)),
            want
        );
        let shell = machine_session_argv(
            "web01",
            "devhost-shell-7-2",
            &MachineCommand::Shell { term: "xterm" },
        );
        assert_eq!(shell[4], "--pty");
        assert_eq!(shell[9], "--description=devhost shell");
        assert_eq!(
            shell[shell.len() - 5..],
            [
                "--setenv=TERM=xterm",
                "--working-directory=/",
                "--",
                "/bin/sh",
                "-l"
            ]
        );
        assert_eq!(
            machine_kill_argv("web01", "devhost-exec-7-1"),
            [
                "systemctl",
                "--machine",
                "web01",
                "kill",
                "--signal=SIGKILL",
                "devhost-exec-7-1"
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
