//! Entering a running container with no more privilege than its init. RUN,
//! COPY and ECHO happen inside the container through a helper: the agent's
//! own binary run as `devhost __enter REQUEST`, a fresh single-threaded
//! process that joins the init's cgroups and namespaces (the user namespace
//! included, so container root is an unprivileged host uid), takes the
//! init's root, copies the init's seccomp filters (read with ptrace), limits
//! its capability bounding set and sets its capabilities and `no_new_privs`
//! as the init has them, then runs the command or applies a batch of file
//! writes there — where the container sees them (its tmpfs mounts too),
//! with its owners and through its uid mapping. Everything is enforced by
//! the kernel; the agent only decides what to ask for.
//!
//! The request and the argv are planned here purely; [`helper`] is the
//! helper's side, [`privilege`] reads an init's privilege, [`write`](mod@write) is the
//! batch format.

pub mod helper;
pub mod privilege;
pub mod write;

use crate::sys::proc::ProcessId;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The hidden first argument that makes `devhost` the helper.
pub const HELPER_ARG: &str = "__enter";

/// What the helper is asked to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnterRequest {
    /// The container's init (PID 1 inside), as the host sees it; its start
    /// time makes sure a recycled pid is never entered.
    pub leader: ProcessId,
    /// The `cgroup.procs` files to join before entering (the init's cgroups
    /// where they differ from the agent's).
    pub cgroup_procs: Vec<PathBuf>,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// `/bin/sh -c COMMAND` as the container's root, with [`RUN_ENV`].
    Run { command: String },
    /// Apply the write batch read from stdin ([`write::Batch`]).
    Write,
    /// An interactive login shell on the terminal that is stdin (a new
    /// session with it as the controlling terminal), `TERM` as given.
    Shell { term: String },
    /// `devhost exec`: `argv` through [`EXEC_SCRIPT`] as the container's
    /// root, with [`RUN_ENV`], in a process group of its own; a SIGTERM,
    /// SIGINT or SIGHUP to the helper kills that whole group (the client
    /// went away), and the helper exits with the command's status.
    Exec { argv: Vec<String> },
}

/// How `devhost exec` runs its argv, the same on every way in: `/bin/sh -c
/// EXEC_SCRIPT devhost-exec ARGV…`. The container's PATH finds the program
/// (127: not found, 126: not executable), and a command ended by signal N
/// reports 128 + N (the shell's `$?`) — also where systemd-run would only
/// say "signal".
pub const EXEC_SCRIPT: &str = "\"$@\"; exit $?";

/// `/bin/sh -c EXEC_SCRIPT devhost-exec ARGV…`.
pub fn exec_argv(argv: &[String]) -> Vec<String> {
    let mut v: Vec<String> = ["/bin/sh", "-c", EXEC_SCRIPT, "devhost-exec"]
        .map(String::from)
        .to_vec();
    v.extend(argv.iter().cloned());
    v
}

/// What RUN commands get as PATH: NixOS's and the FHS places.
pub const RUN_PATH: &str = "/run/wrappers/bin:/run/current-system/sw/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The environment RUN commands get: nothing of the agent's.
pub const RUN_ENV: [(&str, &str); 4] = [
    ("PATH", RUN_PATH),
    ("HOME", "/root"),
    ("USER", "root"),
    ("LANG", "C.UTF-8"),
];

/// The helper's arguments (after the program, which is the agent's own
/// executable).
pub fn helper_args(req: &EnterRequest) -> Vec<String> {
    vec![
        HELPER_ARG.to_string(),
        serde_json::to_string(req).expect("requests serialize"),
    ]
}

/// The helper, not yet spawned: the agent's own executable (as it was
/// started, whatever happened to the file since), a clean environment.
pub fn command(req: &EnterRequest) -> tokio::process::Command {
    use std::os::unix::process::CommandExt;
    let mut std_cmd = std::process::Command::new("/proc/self/exe");
    std_cmd.arg0("devhost").args(helper_args(req)).env_clear();
    let mut c = tokio::process::Command::from(std_cmd);
    c.kill_on_drop(true);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_travels_as_one_json_argument() {
        let req = EnterRequest {
            leader: ProcessId {
                pid: 42,
                start_time: 1234,
            },
            cgroup_procs: vec![PathBuf::from("/sys/fs/cgroup/c/payload/cgroup.procs")],
            action: Action::Run {
                command: "id -u".into(),
            },
        };
        let args = helper_args(&req);
        assert_eq!(
            args,
            [
                "__enter",
                r#"{"leader":{"pid":42,"start_time":1234},"cgroup_procs":["/sys/fs/cgroup/c/payload/cgroup.procs"],"action":{"run":{"command":"id -u"}}}"#
            ]
        );
        let back: EnterRequest = serde_json::from_str(&args[1]).unwrap();
        assert_eq!(back, req);
        assert_eq!(
            exec_argv(&["ls".into(), "-l".into(), "a b".into()]),
            [
                "/bin/sh",
                "-c",
                "\"$@\"; exit $?",
                "devhost-exec",
                "ls",
                "-l",
                "a b"
            ]
        );
        assert!(serde_json::from_str::<EnterRequest>(
            r#"{"leader":{"pid":1,"start_time":1},"cgroup_procs":[],"action":"write","x":1}"#
        )
        .is_err());
    }
}
