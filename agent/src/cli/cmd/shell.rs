//! `devhost shell NAME` (and `fc-devhost login NAME`): a root shell in a
//! running container, for its owner or an admin. The request upgrades the
//! API connection to a terminal stream (see `api::shell`); the terminal is
//! put into raw mode while the shell runs (when stdin is one) and restored
//! afterwards, and bytes are copied both ways until the shell ends.

use crate::api::types::ApiError;
use crate::cli::{EXIT_FAILED, EXIT_NO_AGENT, EXIT_OK};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::Path;

/// The terminal's size (rows, cols), of stdin or else stdout, or 24×80.
/// (It is taken once: a later resize does not reach the shell.)
fn size() -> (u16, u16) {
    for fd in [0, 1] {
        let mut ws = nix::pty::Winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes one winsize into `ws`.
        let r = unsafe { nix::libc::ioctl(fd, nix::libc::TIOCGWINSZ, &mut ws) };
        if r == 0 && ws.ws_row > 0 && ws.ws_col > 0 {
            return (ws.ws_row, ws.ws_col);
        }
    }
    (24, 80)
}

/// Raw mode for the life of the guard.
struct Raw(Option<nix::sys::termios::Termios>);

impl Raw {
    fn enter() -> Raw {
        let stdin = std::io::stdin();
        let Ok(saved) = nix::sys::termios::tcgetattr(stdin.as_fd()) else {
            return Raw(None); // not a terminal
        };
        let mut raw = saved.clone();
        nix::sys::termios::cfmakeraw(&mut raw);
        let _ =
            nix::sys::termios::tcsetattr(stdin.as_fd(), nix::sys::termios::SetArg::TCSANOW, &raw);
        Raw(Some(saved))
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin().as_fd(),
                nix::sys::termios::SetArg::TCSANOW,
                saved,
            );
        }
    }
}

fn term_name() -> String {
    std::env::var("TERM")
        .ok()
        .filter(|t| {
            !t.is_empty()
                && t.len() <= 64
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(&b))
        })
        .unwrap_or_else(|| "xterm".into())
}

pub fn run(sock: Option<&Path>, name: &str) -> i32 {
    let name = match super::name_or_exit(name) {
        Ok(n) => n,
        Err(code) => return code,
    };
    let socket = crate::cli::resolve_socket(sock);
    let mut conn = match UnixStream::connect(&socket) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "error: the devhost agent is not running (cannot connect to {}: {e})",
                socket.display()
            );
            return EXIT_NO_AGENT;
        }
    };
    let (rows, cols) = size();
    let request = format!(
        "POST /v1/containers/{name}/shell?rows={rows}&cols={cols}&term={} HTTP/1.1\r\nHost: devhost\r\nConnection: Upgrade\r\nUpgrade: {}\r\nContent-Length: 0\r\n\r\n",
        term_name(),
        crate::api::shell::UPGRADE
    );
    if let Err(e) = conn.write_all(request.as_bytes()) {
        eprintln!("error: talking to the agent: {e}");
        return EXIT_FAILED;
    }
    // The answer's head, byte by byte: what follows it is the terminal's.
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => {
                eprintln!("error: the agent closed the connection");
                return EXIT_FAILED;
            }
        }
        if head.len() > 64 * 1024 {
            eprintln!("error: the agent's answer is not HTTP");
            return EXIT_FAILED;
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    if !head.starts_with("HTTP/1.1 101") {
        // An error: its JSON body follows.
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        let mut body = vec![0u8; len.min(1 << 20)];
        let _ = conn.read_exact(&mut body);
        return match serde_json::from_slice::<ApiError>(&body) {
            Ok(e) => crate::cli::fail(&crate::api::client::ClientError::Api(e), false),
            Err(_) => {
                eprintln!("error: {}", head.lines().next().unwrap_or(""));
                EXIT_FAILED
            }
        };
    }
    let raw = Raw::enter();
    let Ok(mut reader) = conn.try_clone() else {
        return EXIT_FAILED;
    };
    // Keyboard to the shell, on a thread of its own: the process ends
    // with the shell's output, whatever this thread is waiting for.
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 4096];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = conn.shutdown(std::net::Shutdown::Write);
                    return;
                }
                Ok(n) => {
                    if conn.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let mut stdout = std::io::stdout();
    let mut buf = [0u8; 4096];
    loop {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if stdout
                    .write_all(&buf[..n])
                    .and_then(|_| stdout.flush())
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    drop(raw);
    EXIT_OK
}
