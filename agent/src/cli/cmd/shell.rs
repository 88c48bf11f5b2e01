//! `devhost shell NAME` (and `fc-devhost login NAME`): a root shell in a
//! running container, for its owner or an admin. The request upgrades the
//! API connection to a terminal stream (see `api::shell`); the terminal is
//! put into raw mode while the shell runs (when stdin is one) and restored
//! afterwards, and bytes are copied both ways until the shell ends.

use crate::cli::{EXIT_FAILED, EXIT_OK};
use std::io::{Read, Write};
use std::os::fd::AsFd;
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
    let (rows, cols) = size();
    let path = format!(
        "/v1/containers/{name}/shell?rows={rows}&cols={cols}&term={}",
        term_name()
    );
    let mut conn = match crate::cli::upgrade::open(sock, &path, crate::api::shell::UPGRADE, b"") {
        Ok(c) => c,
        Err(code) => return code,
    };
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
