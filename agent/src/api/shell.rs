//! A root shell in a running container over the API socket (`devhost shell
//! NAME`, `fc-devhost login NAME`): `POST /v1/containers/NAME/shell` with
//! `Upgrade: devhost-shell`, the terminal's size and type in the query.
//! Only the container's owner or an admin gets one — they are its root
//! anyway. The agent opens a pseudo-terminal, starts the enter helper on it
//! (the container's namespaces and privilege, a new session with the
//! terminal as its controlling one, `/bin/sh -l`) and relays bytes between
//! the upgraded connection and the terminal until the shell ends.

use super::types::ApiError;
use crate::access::Caller;
use crate::container::ContainerName;
use crate::enter::Action;
use crate::supervisor::Handle;
use hyper_util::rt::TokioIo;
use std::os::fd::{AsRawFd, OwnedFd};

/// The upgrade token both sides use.
pub const UPGRADE: &str = "devhost-shell";

/// What the client asks for: terminal size and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellRequest {
    pub rows: u16,
    pub cols: u16,
    pub term: String,
}

impl ShellRequest {
    /// `rows=R&cols=C&term=T`; missing values get 24, 80, `xterm`.
    pub fn from_query(query: &str) -> Result<ShellRequest, ApiError> {
        let mut r = ShellRequest {
            rows: 24,
            cols: 80,
            term: "xterm".into(),
        };
        for kv in query.split('&').filter(|s| !s.is_empty()) {
            let bad = || {
                ApiError::bad_request(format!(
                    "invalid shell query {kv:?} (use rows=N, cols=N, term=NAME)"
                ))
            };
            match kv.split_once('=') {
                Some(("rows", v)) => r.rows = v.parse().map_err(|_| bad())?,
                Some(("cols", v)) => r.cols = v.parse().map_err(|_| bad())?,
                Some(("term", v))
                    if !v.is_empty()
                        && v.len() <= 64
                        && v.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(&b)) =>
                {
                    r.term = v.to_string()
                }
                _ => return Err(bad()),
            }
        }
        Ok(r)
    }
}

/// Check the caller and the container; the relay to run once upgraded.
pub async fn prepare(
    handle: &Handle,
    caller: &Caller,
    name: &str,
    query: &str,
) -> Result<(ContainerName, crate::provision::entry::Target, ShellRequest), ApiError> {
    let name: ContainerName = name.parse()?;
    let want = ShellRequest::from_query(query)?;
    let info = handle.get(name.clone()).await?;
    if !caller.may_manage(info.owner_uid) {
        return Err(ApiError::forbidden(format!(
            "container {name} belongs to uid {}; only its owner or an admin may open a shell in it",
            info.owner_uid
        )));
    }
    if info.state == super::types::State::Sleeping {
        return Err(crate::supervisor::SupervisorError::Asleep(name).into());
    }
    let leader = info
        .pid
        .and_then(|p| crate::sys::proc::children(p).into_iter().next())
        .ok_or_else(|| {
            ApiError::failed(format!("container {name} is not running; start it first"))
        })?;
    let target = crate::provision::entry::target(leader)
        .map_err(|e| ApiError::failed(format!("container {name}: {e}")))?;
    Ok((name, target, want))
}

/// A new pseudo-terminal of `size`: the master (non-blocking) and the
/// slave, both close-on-exec from the start.
fn open_terminal(size: &nix::pty::Winsize) -> nix::Result<(OwnedFd, std::fs::File)> {
    use nix::fcntl::OFlag;
    use std::os::fd::{FromRawFd, IntoRawFd};
    use std::os::unix::fs::OpenOptionsExt;
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)?;
    nix::pty::grantpt(&master)?;
    nix::pty::unlockpt(&master)?;
    let name = nix::pty::ptsname_r(&master)?;
    // SAFETY: TIOCSWINSZ reads one winsize.
    unsafe { nix::libc::ioctl(master.as_raw_fd(), nix::libc::TIOCSWINSZ, size) };
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_NOCTTY | nix::libc::O_CLOEXEC)
        .open(&name)
        .map_err(|e| nix::Error::try_from(e).unwrap_or(nix::Error::EIO))?;
    // SAFETY: the descriptor was just opened and is handed over whole.
    let master = unsafe { OwnedFd::from_raw_fd(master.into_raw_fd()) };
    nix::fcntl::fcntl(
        master.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK),
    )?;
    Ok((master, slave))
}

/// Shells one uid may have open at once (root: unbounded); each holds a
/// terminal of the host's.
pub const MAX_SHELLS_PER_UID: u32 = 4;

/// Relay between the upgraded connection and a shell in the container.
/// Ends when the shell (the enter helper) has exited and its output is
/// read, or when the client is gone; the end of the client's input is an
/// end of file (^D) for the shell, so piped commands run to their end.
pub async fn relay(
    upgraded: hyper::upgrade::Upgraded,
    name: ContainerName,
    uid: u32,
    target: crate::provision::entry::Target,
    want: ShellRequest,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let size = nix::pty::Winsize {
        ws_row: want.rows,
        ws_col: want.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let (master, slave) = match open_terminal(&size) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!("shell in {name}: opening a terminal: {e}");
            return;
        }
    };
    let (Ok(out), Ok(err)) = (slave.try_clone(), slave.try_clone()) else {
        return;
    };
    let mut cmd = crate::enter::command(&target.request(Action::Shell { term: want.term }));
    cmd.stdin(slave).stdout(out).stderr(err);
    let spawned = cmd.spawn();
    // The terminal's other end belongs to the shell alone.
    drop(cmd);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("shell in {name}: cannot start the enter helper: {e}");
            return;
        }
    };
    tracing::info!(container = %name, uid, "shell opened");
    // SAFETY: `master` is this function's own descriptor, registered once,
    // and open for as long as the AsyncFd that owns it.
    let Ok(master) = (unsafe { tokio::io::unix::AsyncFd::register(master) }) else {
        let _ = child.start_kill();
        return;
    };
    let (mut from_client, mut to_client) = tokio::io::split(TokioIo::new(upgraded));
    let mut out = [0u8; 8192];
    let mut inp = [0u8; 8192];
    let mut client_open = true;
    loop {
        tokio::select! {
            ready = master.readable() => {
                let Ok(mut guard) = ready else { break };
                match guard.try_io(|fd| nix::unistd::read(fd.as_raw_fd(), &mut out).map_err(std::io::Error::from)) {
                    Ok(Ok(n)) if n > 0 => {
                        if to_client.write_all(&out[..n]).await.is_err() {
                            break; // the client is gone
                        }
                    }
                    Ok(_) => break, // EIO: nothing holds the terminal any more
                    Err(_would_block) => {}
                }
            }
            n = from_client.read(&mut inp), if client_open => {
                let data: &[u8] = match n {
                    Ok(n) if n > 0 => &inp[..n],
                    _ => {
                        client_open = false;
                        b"\x04"
                    }
                };
                if write_all(&master, data).await.is_err() {
                    break;
                }
            }
            _ = child.wait() => {
                // The shell is gone (a job it left may still hold the
                // terminal): what it wrote is read, then the relay ends.
                while let Ok(n) = nix::unistd::read(master.get_ref().as_raw_fd(), &mut out) {
                    if n == 0 || to_client.write_all(&out[..n]).await.is_err() {
                        break;
                    }
                }
                break;
            }
        }
    }
    let _ = to_client.shutdown().await;
    let _ = child.start_kill();
    let _ = child.wait().await;
    tracing::info!(container = %name, uid, "shell closed");
}

/// Write all of `data` to the non-blocking terminal.
async fn write_all(
    master: &tokio::io::unix::AsyncFd<OwnedFd>,
    mut data: &[u8],
) -> std::io::Result<()> {
    while !data.is_empty() {
        let mut guard = master.writable().await?;
        match guard.try_io(|fd| nix::unistd::write(fd, data).map_err(std::io::Error::from)) {
            Ok(Ok(n)) => data = &data[n..],
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => continue,
        }
    }
    Ok(())
}
