//! The helper's side: `devhost __enter REQUEST`, run by the agent as root.
//! It is single-threaded (joining a user or mount namespace demands it) and
//! ends with the command it runs.
//!
//! Order matters. While still host root it reads the init's privilege and
//! seccomp filters, joins the init's cgroups and the namespaces the host
//! owns or may enter (network — the agent made it —, IPC, UTS, cgroup, PID,
//! mount) and takes the init's root; the user namespace comes last, after
//! which it is the container's root with no power over the host. It forks
//! (a PID namespace takes effect for children), and the child limits its
//! bounding set, sets `no_new_privs` if the init has it, installs the init's
//! filters and sets the init's capability sets, then runs the command or
//! applies the write batch. The parent waits and exits as the child did.

use super::privilege::{parse_status, Privilege};
use super::{Action, EnterRequest, RUN_ENV};
use crate::sys::ns;
use nix::libc;
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow, Signal};
use std::os::fd::OwnedFd;

/// Exit code when entering failed (the command never ran).
pub const ENTER_FAILED: i32 = 125;

/// Only the agent may start the helper: it runs as root (never under sudo,
/// whose users are not trusted) and its parent runs the very same
/// executable. A sudoer who runs `sudo fc-build-dev-container __enter …`
/// through the multi-call binary has sudo as the parent and is refused.
fn started_by_the_agent() -> bool {
    use std::os::unix::fs::MetadataExt;
    let same =
        |a: &std::fs::Metadata, b: &std::fs::Metadata| a.dev() == b.dev() && a.ino() == b.ino();
    let ppid = nix::unistd::getppid().as_raw();
    let (Ok(own), Ok(parent)) = (
        std::fs::metadata("/proc/self/exe"),
        std::fs::metadata(format!("/proc/{ppid}/exe")),
    ) else {
        return false;
    };
    nix::unistd::geteuid().is_root()
        && std::env::var_os("SUDO_UID").is_none()
        && same(&own, &parent)
}

/// `devhost __enter REQUEST`.
pub fn main(args: &[String]) -> i32 {
    if !started_by_the_agent() {
        eprintln!("devhost __enter: only the devhost agent runs this");
        return ENTER_FAILED;
    }
    // Nothing of the agent's comes along into the container: no descriptor
    // but stdin, stdout and stderr, and no way for the container's root to
    // trace this process (it stays non-dumpable).
    if let Err(e) = crate::sys::fs::close_from(3) {
        eprintln!("cannot enter the container: closing descriptors: {e}");
        return ENTER_FAILED;
    }
    let req: EnterRequest = match args {
        [json] => match serde_json::from_str(json) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("devhost __enter: invalid request: {e}");
                return ENTER_FAILED;
            }
        },
        _ => {
            eprintln!("devhost __enter: takes one request (this is the agent's own helper)");
            return ENTER_FAILED;
        }
    };
    match enter(&req) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cannot enter the container: {e}");
            ENTER_FAILED
        }
    }
}

fn open_ns(pid: u32, ns: &str) -> Result<OwnedFd, String> {
    ns::open(&format!("/proc/{pid}/ns/{ns}"), libc::O_RDONLY)
        .map_err(|e| format!("opening the init's {ns} namespace: {e}"))
}

fn enter(req: &EnterRequest) -> Result<i32, String> {
    let pid = req.leader.pid;
    let gone = || format!("the container's init (pid {pid}) is gone");
    if !req.leader.is_alive() {
        return Err(gone());
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|_| gone())?;
    let privilege = parse_status(&status)?;
    let last_cap: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40);
    // Opened first, so that they all belong to the same process.
    let user = open_ns(pid, "user")?;
    let others: Vec<(&str, OwnedFd)> = ["net", "ipc", "uts", "cgroup", "pid", "mnt"]
        .into_iter()
        .map(|n| open_ns(pid, n).map(|fd| (n, fd)))
        .collect::<Result<_, _>>()?;
    let root = ns::open(
        &format!("/proc/{pid}/root"),
        libc::O_RDONLY | libc::O_DIRECTORY,
    )
    .map_err(|e| format!("opening the init's root: {e}"))?;
    let own_user = ns::open("/proc/self/ns/user", libc::O_RDONLY)
        .map_err(|e| format!("opening our user namespace: {e}"))?;
    // A process in the host's user namespace is no container of ours (all
    // run with one since devhost isolates them); its root would be host
    // root. Refused before anything is joined.
    if ns::same_namespace(&user, &own_user).map_err(|e| e.to_string())? {
        return Err(format!(
            "pid {pid} runs without a user namespace of its own: the container started before devhost isolated containers (restart it), or it is not a container"
        ));
    }
    // nspawn (root) made the container's; one a user made for a process
    // dressed up as a container's init is not entered.
    match ns::namespace_owner(&user) {
        Ok(0) => {}
        Ok(uid) => {
            return Err(format!(
                "the user namespace of pid {pid} was made by uid {uid}, not by systemd-nspawn"
            ))
        }
        Err(e) => {
            return Err(format!(
                "reading the owner of pid {pid}'s user namespace: {e}"
            ))
        }
    }
    let filters = match privilege.seccomp {
        0 => Vec::new(),
        2 => ns::seccomp_filters(pid as i32).map_err(|e| {
            format!("reading the init's seccomp filters (ptrace, kernel CHECKPOINT_RESTORE): {e}")
        })?,
        m => {
            return Err(format!(
                "the init runs in seccomp mode {m}; nothing can run beside it"
            ))
        }
    };
    // Everything above described this process, not a recycled pid.
    if !req.leader.is_alive() {
        return Err(gone());
    }
    for procs in &req.cgroup_procs {
        std::fs::write(procs, b"0")
            .map_err(|e| format!("joining the cgroup {}: {e}", procs.display()))?;
    }
    for (name, fd) in &others {
        ns::setns(fd).map_err(|e| format!("joining the {name} namespace: {e}"))?;
    }
    ns::chroot_to(&root).map_err(|e| format!("taking the init's root: {e}"))?;
    ns::setns(&user).map_err(|e| format!("joining the user namespace: {e}"))?;
    become_root_inside()?;
    ns::set_dumpable(false).map_err(|e| format!("PR_SET_DUMPABLE: {e}"))?;
    let parent = std::process::id();
    // An exec's helper waits for signals instead of dying of them: the
    // agent's SIGTERM (its client went away) kills the command's group.
    let exec = matches!(req.action, Action::Exec { .. });
    let mut watched = SigSet::empty();
    for s in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGCHLD,
    ] {
        watched.add(s);
    }
    let mut saved = SigSet::empty();
    if exec {
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&watched), Some(&mut saved))
            .map_err(|e| format!("blocking signals: {e}"))?;
    }
    // SAFETY: this process is single-threaded, so the child may do anything.
    match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
        nix::unistd::ForkResult::Child => {
            if exec {
                // The command gets the mask the helper had, and a group of
                // its own (for the helper to kill).
                let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&saved), None);
                let _ = nix::unistd::setpgid(
                    nix::unistd::Pid::from_raw(0),
                    nix::unistd::Pid::from_raw(0),
                );
            }
            let code = match child(req, &privilege, &filters, last_cap, parent) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("cannot enter the container: {e}");
                    ENTER_FAILED
                }
            };
            std::process::exit(code);
        }
        nix::unistd::ForkResult::Parent { child } if exec => {
            // The child may not have made its group yet; then the kill
            // below reaches it by pid.
            wait_killing_group(child, &watched)
        }
        nix::unistd::ForkResult::Parent { child } => wait_for(child),
    }
}

/// Wait for an exec's command; on SIGTERM, SIGINT or SIGHUP kill its
/// process group (everything it started that stayed in it), then report
/// its status as [`wait_for`] does.
fn wait_killing_group(child: nix::unistd::Pid, watched: &SigSet) -> Result<i32, String> {
    use nix::sys::signal::kill;
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(format!("waiting for the command: {e}")),
        }
        match watched.wait() {
            Ok(Signal::SIGCHLD) | Err(_) => {}
            Ok(_) => {
                let _ = kill(nix::unistd::Pid::from_raw(-child.as_raw()), Signal::SIGKILL);
                let _ = kill(child, Signal::SIGKILL);
            }
        }
    }
}

/// uid and gid 0 of the namespace this process is in, no supplementary
/// groups.
fn become_root_inside() -> Result<(), String> {
    // SAFETY: plain system calls.
    unsafe {
        if libc::setgroups(0, std::ptr::null()) != 0 {
            return Err(format!("setgroups: {}", std::io::Error::last_os_error()));
        }
        if libc::setresgid(0, 0, 0) != 0 || libc::setresuid(0, 0, 0) != 0 {
            return Err(format!(
                "becoming the container's root: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

fn wait_for(child: nix::unistd::Pid) -> Result<i32, String> {
    use nix::sys::wait::{waitpid, WaitStatus};
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("waiting for the command: {e}")),
        }
    }
}

/// Take the init's privilege, then run the action.
fn child(
    req: &EnterRequest,
    p: &Privilege,
    filters: &[ns::Filter],
    last_cap: u32,
    parent: u32,
) -> Result<i32, String> {
    ns::die_with_parent().map_err(|e| format!("PR_SET_PDEATHSIG: {e}"))?;
    if nix::unistd::getppid().as_raw() as u32 != parent && nix::unistd::getppid().as_raw() != 0 {
        // Outside the PID namespace the parent shows as 0; any other pid
        // means the parent is already gone.
        return Err("the helper's parent is gone".into());
    }
    ns::limit_bounding_set(p.bounding, last_cap)
        .map_err(|e| format!("limiting the capability bounding set: {e}"))?;
    if p.no_new_privs {
        ns::set_no_new_privs().map_err(|e| format!("setting no_new_privs: {e}"))?;
    }
    for f in filters {
        ns::install_filter(f).map_err(|e| format!("installing a seccomp filter: {e}"))?;
    }
    ns::set_capabilities(p.effective, p.permitted, p.inheritable, p.ambient, last_cap)
        .map_err(|e| format!("setting the capabilities: {e}"))?;
    match &req.action {
        Action::Run { command } => {
            use std::os::unix::process::CommandExt;
            let mut c = std::process::Command::new("/bin/sh");
            c.args(["-c", command]).env_clear().current_dir("/");
            for (k, v) in RUN_ENV {
                c.env(k, v);
            }
            let e = c.exec();
            Err(format!("running /bin/sh in the container: {e}"))
        }
        Action::Shell { term } => {
            use std::os::unix::process::CommandExt;
            ns::controlling_terminal().map_err(|e| format!("taking the terminal: {e}"))?;
            let mut c = std::process::Command::new("/bin/sh");
            c.arg("-l").env_clear().current_dir("/");
            for (k, v) in RUN_ENV {
                c.env(k, v);
            }
            c.env("TERM", term);
            let e = c.exec();
            Err(format!("running /bin/sh in the container: {e}"))
        }
        Action::Exec { argv } => {
            use std::os::unix::process::CommandExt;
            let argv = super::exec_argv(argv);
            let mut c = std::process::Command::new(&argv[0]);
            c.args(&argv[1..]).env_clear().current_dir("/");
            for (k, v) in RUN_ENV {
                c.env(k, v);
            }
            let e = c.exec();
            Err(format!("running /bin/sh in the container: {e}"))
        }
        Action::Write => {
            let stdin = std::io::stdin();
            super::write::apply(std::path::Path::new("/"), &mut stdin.lock())
                .map(|_| 0)
                .or_else(|e| {
                    eprintln!("{e}");
                    Ok(1)
                })
        }
    }
}
