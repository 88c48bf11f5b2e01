//! A command in a running container over the API socket (`devhost exec
//! NAME -- CMD…`, `nixos-container run`): `POST /v1/containers/NAME/exec`
//! with `Upgrade: devhost-exec` and the argv as a small JSON body, read
//! only once the caller is known to own the container (or be an admin);
//! then frames ([`super::frame`]) both ways: stdin and its end from the
//! client, stdout and stderr kept apart and last the exit status from the
//! agent. No terminal: it works in pipes and scripts.
//!
//! The command runs as the container's root with its init's privilege:
//! through machined as a transient unit of the container's systemd when
//! the systemd backend runs a container whose init is systemd, else
//! through the enter helper (the same rule as provisioning's RUN,
//! [`crate::provision::entry`]). When the client goes away before the
//! command ends, the command is killed with everything it started (its
//! process group, or its unit's cgroup).

use super::frame::Frame;
use super::types::ApiError;
use crate::access::Caller;
use crate::container::ContainerName;
use crate::enter::Action;
use crate::provision::entry::{self, MachineCommand, RunMethod, Target};
use crate::supervisor::Handle;
use hyper_util::rt::TokioIo;
use std::sync::atomic::{AtomicU64, Ordering};

/// The upgrade token both sides use.
pub const UPGRADE: &str = "devhost-exec";
/// Arguments of one command line, at most.
pub const MAX_ARGS: usize = 1024;
/// Bytes of one command line, at most (its arguments together).
pub const MAX_ARGV_BYTES: usize = 60 * 1024;
/// Commands one uid may have running at once through exec (root:
/// unbounded).
pub const MAX_EXECS_PER_UID: u32 = 8;
/// How often the agent sends an empty stdout frame while a command runs:
/// a client that has gone is noticed by it even while the agent waits
/// for the command to take input the client sent (the client's stream is
/// not read meanwhile).
pub const PROBE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);
/// The exit status when the command could not be started in the container
/// (the enter helper's, see [`crate::enter::helper::ENTER_FAILED`]).
pub const START_FAILED: i32 = 125;

/// The request body.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecBody {
    pub argv: Vec<String>,
}

/// A command line that may be run: not empty, no NUL byte, at most
/// [`MAX_ARGS`] arguments and [`MAX_ARGV_BYTES`] bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecArgv(Vec<String>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgvError {
    #[error("no command: give one after `--` (devhost exec NAME -- COMMAND [ARG…])")]
    Empty,
    #[error("argument {position} of the command contains a NUL byte")]
    Nul { position: usize },
    #[error("the command has {count} arguments; at most {MAX_ARGS} are taken")]
    TooMany { count: usize },
    #[error("the command line is {bytes} bytes long; at most {MAX_ARGV_BYTES} are taken")]
    TooLong { bytes: usize },
}

impl TryFrom<Vec<String>> for ExecArgv {
    type Error = ArgvError;
    fn try_from(argv: Vec<String>) -> Result<ExecArgv, ArgvError> {
        if argv.is_empty() {
            return Err(ArgvError::Empty);
        }
        if argv.len() > MAX_ARGS {
            return Err(ArgvError::TooMany { count: argv.len() });
        }
        if let Some(i) = argv.iter().position(|a| a.contains('\0')) {
            return Err(ArgvError::Nul { position: i + 1 });
        }
        let bytes: usize = argv.iter().map(|a| a.len() + 1).sum();
        if bytes > MAX_ARGV_BYTES {
            return Err(ArgvError::TooLong { bytes });
        }
        Ok(ExecArgv(argv))
    }
}

impl ExecArgv {
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

/// How a session (exec or shell) gets into a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Way {
    /// The enter helper, with the init's namespaces and privilege.
    Enter(Target),
    /// A transient unit `unit` of the container's systemd, through
    /// machined.
    Machine { unit: String },
}

/// A unit name no other session of this agent has: `devhost-WHAT-PID-N`.
pub fn unit_name(what: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "devhost-{what}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Check that the caller may open a session (`what`: "exec", "shell") in
/// container `name`: its owner or an admin, they are its root anyway.
pub async fn authorize(
    handle: &Handle,
    caller: &Caller,
    name: &str,
    what: &str,
) -> Result<(ContainerName, crate::api::types::ContainerInfo), ApiError> {
    let name: ContainerName = name.parse()?;
    let info = handle.get(name.clone()).await?;
    if !caller.may_manage(info.owner_uid) {
        let verb = if what == "shell" {
            "open a shell in"
        } else {
            "run commands in"
        };
        return Err(ApiError::forbidden(format!(
            "container {name} belongs to uid {}; only its owner or an admin may {verb} it",
            info.owner_uid
        )));
    }
    Ok((name, info))
}

/// [`authorize`], check that the container runs, and decide the way in.
/// Decided just before the session starts: a way through machined names
/// the container, and a name may be another user's container a moment
/// later (destroyed and made again).
pub async fn way_in(
    handle: &Handle,
    caller: &Caller,
    name: &str,
    what: &str,
) -> Result<(ContainerName, Way), ApiError> {
    let (name, info) = authorize(handle, caller, name, what).await?;
    if info.state == super::types::State::Sleeping {
        return Err(crate::supervisor::SupervisorError::Asleep(name).into());
    }
    let leader = info
        .pid
        .and_then(|p| crate::sys::proc::children(p).into_iter().next())
        .ok_or_else(|| {
            ApiError::failed(format!("container {name} is not running; start it first"))
        })?;
    let registered = handle.info().await?.backend == "systemd";
    let way = match entry::method_for(leader, registered) {
        RunMethod::Machine => Way::Machine {
            unit: unit_name(what),
        },
        RunMethod::Enter => Way::Enter(
            entry::target(leader)
                .map_err(|e| ApiError::failed(format!("container {name}: {e}")))?,
        ),
    };
    Ok((name, way))
}

/// The process that runs a session, not yet spawned; dropped, it is
/// killed.
pub fn session_command(
    name: &ContainerName,
    way: &Way,
    enter: Action,
    machine: &MachineCommand,
) -> tokio::process::Command {
    match way {
        Way::Enter(target) => crate::enter::command(&target.request(enter)),
        Way::Machine { unit } => {
            let argv = entry::machine_session_argv(name.as_str(), unit, machine);
            let mut c = tokio::process::Command::new(&argv[0]);
            c.args(&argv[1..]).env_clear().kill_on_drop(true);
            for (k, v) in crate::enter::RUN_ENV {
                c.env(k, v);
            }
            c
        }
    }
}

/// End a session whose client went away: everything it started is killed
/// (its unit, or — through the helper's SIGTERM — its process group), then
/// the helper or systemd-run is waited for.
pub async fn end_session(name: &ContainerName, way: &Way, child: &mut tokio::process::Child) {
    match way {
        Way::Machine { unit } => {
            let argv = entry::machine_kill_argv(name.as_str(), unit);
            let kill = tokio::process::Command::new(&argv[0])
                .args(&argv[1..])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true)
                .output();
            match tokio::time::timeout(std::time::Duration::from_secs(30), kill).await {
                Ok(Ok(o)) if o.status.success() => {}
                Ok(Ok(o)) => tracing::warn!(
                    "{name}: killing {unit}: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
                Ok(Err(e)) => tracing::warn!("{name}: killing {unit}: {e}"),
                Err(_) => tracing::warn!("{name}: killing {unit}: systemctl did not answer"),
            }
        }
        Way::Enter(_) => {
            if let Some(pid) = child.id() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
                // The helper kills the group and exits at once; it is
                // killed itself when it does not.
                if tokio::time::timeout(std::time::Duration::from_secs(10), child.wait())
                    .await
                    .is_ok()
                {
                    return;
                }
            }
        }
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
}

/// The status a shell reports for `status`: the code, or 128 + N after
/// signal N.
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(START_FAILED)
}

async fn send<W: tokio::io::AsyncWrite + Unpin>(w: &mut W, f: Frame) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    w.write_all(&f.encode()).await?;
    w.flush().await
}

/// Read what is already in a non-blocking pipe, without waiting: at most
/// what the pipe holds (its capacity as it is now). What the command wrote
/// before it ended fits in that; more is written after it ended, by what
/// it left running, and is not read — a process left spinning on the pipe
/// would otherwise keep this loop reading, into memory, for ever.
fn drain(fd: &impl std::os::fd::AsRawFd, buf: &mut [u8]) -> Vec<u8> {
    use nix::fcntl::{fcntl, FcntlArg};
    let capacity = fcntl(fd.as_raw_fd(), FcntlArg::F_GETPIPE_SZ)
        .ok()
        .and_then(|c| usize::try_from(c).ok())
        .unwrap_or(1 << 20);
    let mut out = Vec::new();
    while out.len() < capacity {
        let want = buf.len().min(capacity - out.len());
        match nix::unistd::read(fd.as_raw_fd(), &mut buf[..want]) {
            Ok(n) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    out
}

/// Run `argv` and relay between it and the upgraded connection until it
/// has ended and its exit status is sent, or the client is gone.
pub async fn relay(
    upgraded: hyper::upgrade::Upgraded,
    name: ContainerName,
    uid: u32,
    way: Way,
    argv: ExecArgv,
) {
    use std::process::Stdio;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut from_client, mut to_client) = tokio::io::split(TokioIo::new(upgraded));
    let mut cmd = session_command(
        &name,
        &way,
        Action::Exec {
            argv: argv.as_slice().to_vec(),
        },
        &MachineCommand::Exec(argv.as_slice()),
    );
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("exec in {name}: cannot start: {e}");
            let msg = format!("devhost: cannot start the command in {name}: {e}\n");
            let _ = send(&mut to_client, Frame::Stderr(msg.into_bytes())).await;
            let _ = send(&mut to_client, Frame::Exit(START_FAILED)).await;
            return;
        }
    };
    // The program only: arguments may hold secrets.
    let program = argv.as_slice()[0].clone();
    tracing::info!(container = %name, uid, program, "exec started");
    let (Some(stdin), Some(mut stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        end_session(&name, &way, &mut child).await;
        return;
    };
    // The client's frames, on a task of its own: writing to a command
    // that does not read its input must not hold up its output.
    let (gone_tx, mut gone) = tokio::sync::oneshot::channel::<String>();
    let reader = tokio::spawn(async move {
        let mut stdin = Some(stdin);
        let why = loop {
            match super::frame::read_async(&mut from_client).await {
                Ok(Some(Frame::Stdin(data))) => {
                    if let Some(s) = stdin.as_mut() {
                        if s.write_all(&data).await.is_err() {
                            stdin = None; // the command closed its input
                        }
                    }
                }
                Ok(Some(Frame::StdinEof)) => stdin = None,
                Ok(Some(other)) => break format!("the client sent {other:?}"),
                Ok(None) => break "the client went away".to_string(),
                Err(e) => break format!("the client's stream: {e}"),
            }
        };
        let _ = gone_tx.send(why);
    });
    let mut ob = vec![0u8; 32 * 1024];
    let mut eb = vec![0u8; 32 * 1024];
    let (mut out_open, mut err_open) = (true, true);
    let mut client_left: Option<String> = None;
    let mut probe =
        tokio::time::interval_at(tokio::time::Instant::now() + PROBE_INTERVAL, PROBE_INTERVAL);
    let code = loop {
        tokio::select! {
            _ = probe.tick() => {
                if let Err(e) = send(&mut to_client, Frame::Stdout(Vec::new())).await {
                    client_left = Some(format!("writing to the client: {e}"));
                    break None;
                }
            }
            n = stdout.read(&mut ob), if out_open => match n {
                Ok(n) if n > 0 => {
                    if let Err(e) = send(&mut to_client, Frame::Stdout(ob[..n].to_vec())).await {
                        client_left = Some(format!("writing to the client: {e}"));
                        break None;
                    }
                }
                _ => out_open = false,
            },
            n = stderr.read(&mut eb), if err_open => match n {
                Ok(n) if n > 0 => {
                    if let Err(e) = send(&mut to_client, Frame::Stderr(eb[..n].to_vec())).await {
                        client_left = Some(format!("writing to the client: {e}"));
                        break None;
                    }
                }
                _ => err_open = false,
            },
            status = child.wait() => {
                // Everything the command wrote before it ended is in the
                // pipes; what it left running may hold them open, and is
                // not waited for.
                let rest = (drain(&stdout, &mut ob), drain(&stderr, &mut eb));
                let mut sent = Ok(());
                for f in Frame::chunks(&rest.0, Frame::Stdout).chain(Frame::chunks(&rest.1, Frame::Stderr)) {
                    sent = sent.and(send(&mut to_client, f).await);
                }
                break match (status, sent) {
                    (Ok(s), Ok(())) => Some(exit_code(s)),
                    (Err(e), Ok(())) => {
                        tracing::warn!("exec in {name}: waiting: {e}");
                        Some(START_FAILED)
                    }
                    (_, Err(e)) => {
                        client_left = Some(format!("writing to the client: {e}"));
                        None
                    }
                };
            }
            why = &mut gone => {
                client_left = Some(why.unwrap_or_else(|_| "the client went away".into()));
                break None;
            }
        }
    };
    match code {
        Some(code) => {
            let _ = send(&mut to_client, Frame::Exit(code)).await;
            let _ = to_client.shutdown().await;
            tracing::info!(container = %name, uid, code, "exec ended");
        }
        None => {
            end_session(&name, &way, &mut child).await;
            tracing::info!(
                container = %name,
                uid,
                "exec killed: {}",
                client_left.unwrap_or_default()
            );
        }
    }
    reader.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_command_line_is_checked() {
        assert_eq!(
            ExecArgv::try_from(argv(&["cat", "-"])).unwrap().as_slice(),
            ["cat", "-"]
        );
        assert_eq!(ExecArgv::try_from(vec![]), Err(ArgvError::Empty));
        assert_eq!(
            ExecArgv::try_from(argv(&["echo", "a\0b"])),
            Err(ArgvError::Nul { position: 2 })
        );
        assert_eq!(
            ExecArgv::try_from(vec!["x".to_string(); MAX_ARGS + 1]),
            Err(ArgvError::TooMany {
                count: MAX_ARGS + 1
            })
        );
        assert!(ExecArgv::try_from(vec!["x".to_string(); MAX_ARGS]).is_ok());
        let long = "y".repeat(MAX_ARGV_BYTES);
        assert_eq!(
            ExecArgv::try_from(vec!["echo".into(), long]),
            Err(ArgvError::TooLong {
                bytes: MAX_ARGV_BYTES + 6
            })
        );
        assert_eq!(
            ArgvError::Nul { position: 2 }.to_string(),
            "argument 2 of the command contains a NUL byte"
        );
    }

    #[test]
    fn the_body_takes_nothing_but_the_argv() {
        let b: ExecBody = serde_json::from_str(r#"{"argv":["id","-u"]}"#).unwrap();
        assert_eq!(b.argv, ["id", "-u"]);
        assert!(serde_json::from_str::<ExecBody>(r#"{"argv":[],"uid":0}"#).is_err());
    }

    #[test]
    fn unit_names_differ() {
        let (a, b) = (unit_name("exec"), unit_name("exec"));
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("devhost-exec-{}-", std::process::id())));
    }

    #[test]
    fn a_drained_pipe_gives_what_it_holds_and_no_more() {
        use std::io::Write;
        let (r, w) = nix::unistd::pipe().unwrap();
        nix::fcntl::fcntl(
            std::os::fd::AsRawFd::as_raw_fd(&r),
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .unwrap();
        let mut w = std::fs::File::from(w);
        w.write_all(b"the last words\n").unwrap();
        let mut buf = vec![0u8; 32 * 1024];
        assert_eq!(drain(&r, &mut buf), b"the last words\n");
        assert_eq!(drain(&r, &mut buf), b"", "empty: no waiting");
        // A writer that never stops: what is read is bounded by the
        // pipe's capacity, however fast it writes.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let block = vec![7u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    let _ = w.write_all(&block);
                }
            })
        };
        let capacity = nix::fcntl::fcntl(
            std::os::fd::AsRawFd::as_raw_fd(&r),
            nix::fcntl::FcntlArg::F_GETPIPE_SZ,
        )
        .unwrap() as usize;
        for _ in 0..100 {
            assert!(drain(&r, &mut buf).len() <= capacity);
        }
        stop.store(true, Ordering::Relaxed);
        drop(r);
        writer.join().unwrap();
    }

    #[test]
    fn exit_codes_as_a_shell_reports_them() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(9)), 137);
    }
}
