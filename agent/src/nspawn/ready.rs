//! Waiting for a container to be ready: READY=1 relayed by nspawn over a
//! notify socket (systemd and NixOS inits), or a configured fallback for
//! inits that cannot notify: a TCP port answering at the container's address,
//! or a fixed delay.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;
use tokio::net::UnixDatagram;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadyCheck {
    Notify,
    Tcp(u16),
    Delay(Duration),
}

impl ReadyCheck {
    pub fn describe(&self) -> String {
        match self {
            ReadyCheck::Notify => "READY=1 from the container's init".into(),
            ReadyCheck::Tcp(p) => format!("TCP port {p} to accept connections"),
            ReadyCheck::Delay(d) => format!("{} ms after start", d.as_millis()),
        }
    }
}

/// Resolves when the container is ready. `notify` must be the socket nspawn
/// was given as NOTIFY_SOCKET (only used for [`ReadyCheck::Notify`]).
pub async fn wait_ready(check: ReadyCheck, notify: Option<&UnixDatagram>, address: Ipv4Addr) {
    match check {
        ReadyCheck::Notify => {
            let Some(sock) = notify else {
                return std::future::pending().await;
            };
            let mut buf = vec![0u8; 4096];
            loop {
                match sock.recv(&mut buf).await {
                    Ok(n) => {
                        let msg = String::from_utf8_lossy(&buf[..n]);
                        if msg.lines().any(|l| l == "READY=1") {
                            return;
                        }
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }
        ReadyCheck::Tcp(port) => {
            let addr = SocketAddr::from((address, port));
            loop {
                let attempt = tokio::time::timeout(
                    Duration::from_millis(500),
                    tokio::net::TcpStream::connect(addr),
                )
                .await;
                if let Ok(Ok(_)) = attempt {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
        ReadyCheck::Delay(d) => tokio::time::sleep(d).await,
    }
}

/// A notify socket bound for one start; its file goes with it, whatever
/// way the start ends (ready, failed, or abandoned half-way).
pub struct NotifySocket {
    pub sock: UnixDatagram,
    path: std::path::PathBuf,
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Bind a fresh notify socket at `path` (a stale one is replaced).
pub fn bind_notify(path: &Path) -> std::io::Result<NotifySocket> {
    let _ = std::fs::remove_file(path);
    Ok(NotifySocket {
        sock: UnixDatagram::bind(path)?,
        path: path.to_path_buf(),
    })
}

/// Remove the notify sockets in `dir`: at the agent's start no start is
/// under way, so any there were left by a crash.
pub fn clear_stale(dir: &Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let _ = std::fs::remove_file(e.path());
    }
}

/// What [`tail_lines`] reads of a log, at most: its end.
const TAIL_BYTES: u64 = 1 << 20;

/// The last `n` lines of a log file (for error messages), from its last
/// MiB: a console is as long as its container made it.
pub fn tail_lines(path: &Path, n: usize) -> String {
    use std::io::{Read, Seek};
    let mut text = Vec::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if f.seek(std::io::SeekFrom::Start(len.saturating_sub(TAIL_BYTES)))
            .is_ok()
        {
            let _ = f.take(TAIL_BYTES).read_to_end(&mut text);
        }
    }
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_of_a_huge_log_is_read_from_its_end() {
        use std::io::Write;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("console.log");
        let f = std::fs::File::create(&p).unwrap();
        f.set_len(1 << 40).unwrap();
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"\none\ntwo\nthree\n").unwrap();
        assert_eq!(tail_lines(&p, 2), "two\nthree");
        assert_eq!(tail_lines(&d.path().join("missing"), 2), "");
    }

    #[tokio::test]
    async fn a_notify_sockets_file_goes_with_it() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("web01");
        let s = bind_notify(&p).unwrap();
        assert!(p.exists());
        drop(s);
        assert!(!p.exists());
        let _kept = bind_notify(&p).unwrap();
        clear_stale(d.path());
        assert!(!p.exists());
    }
}
