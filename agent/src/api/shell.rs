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
) -> Result<(ContainerName, crate::provision::exec::Target, ShellRequest), ApiError> {
    let name: ContainerName = name.parse()?;
    let want = ShellRequest::from_query(query)?;
    let info = handle.get(name.clone()).await?;
    if !caller.may_manage(info.owner_uid) {
        return Err(ApiError::forbidden(format!(
            "container {name} belongs to uid {}; only its owner or an admin may open a shell in it",
            info.owner_uid
        )));
    }
    let leader = info
        .pid
        .and_then(|p| crate::sys::proc::children(p).into_iter().next())
        .ok_or_else(|| {
            ApiError::failed(format!("container {name} is not running; start it first"))
        })?;
    let target = crate::provision::exec::target(leader)
        .map_err(|e| ApiError::failed(format!("container {name}: {e}")))?;
    Ok((name, target, want))
}

fn cloexec(fd: &OwnedFd) {
    let _ = nix::fcntl::fcntl(
        fd.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
}

/// Relay between the upgraded connection and a shell in the container.
pub async fn relay(
    upgraded: hyper::upgrade::Upgraded,
    name: ContainerName,
    target: crate::provision::exec::Target,
    want: ShellRequest,
) {
    let size = nix::pty::Winsize {
        ws_row: want.rows,
        ws_col: want.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = match nix::pty::openpty(Some(&size), None) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!("shell in {name}: openpty: {e}");
            return;
        }
    };
    cloexec(&pty.master);
    cloexec(&pty.slave);
    let slave = std::fs::File::from(pty.slave);
    let (Ok(out), Ok(err)) = (slave.try_clone(), slave.try_clone()) else {
        return;
    };
    let mut cmd = crate::enter::command(&target.request(Action::Shell { term: want.term }));
    cmd.stdin(slave).stdout(out).stderr(err);
    let spawned = cmd.spawn();
    // The terminal's other end belongs to the shell alone: once the shell
    // is gone, reading this end fails and the relay ends.
    drop(cmd);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("shell in {name}: cannot start the enter helper: {e}");
            return;
        }
    };
    tracing::info!(container = %name, "shell opened");
    // Two descriptors of the terminal: a tokio File has one operation in
    // flight at a time, and a read waits for the shell's output.
    let master = std::fs::File::from(pty.master);
    let Ok(master_w) = master.try_clone() else {
        let _ = child.start_kill();
        return;
    };
    let mut from_pty = tokio::fs::File::from_std(master);
    let mut to_pty = tokio::fs::File::from_std(master_w);
    let (mut from_client, mut to_client) = tokio::io::split(TokioIo::new(upgraded));
    // Output ends when the shell is gone (the terminal reads EIO) or the
    // client is; the end of the client's input is an end of file (^D) for
    // the shell, which ends once it has read what came before.
    let output = tokio::io::copy(&mut from_pty, &mut to_client);
    let input = async {
        use tokio::io::AsyncWriteExt;
        let _ = tokio::io::copy(&mut from_client, &mut to_pty).await;
        let _ = to_pty.write_all(b"\x04").await;
        std::future::pending::<()>().await
    };
    tokio::select! {
        _ = output => {}
        _ = input => {}
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
    tracing::info!(container = %name, "shell closed");
}
