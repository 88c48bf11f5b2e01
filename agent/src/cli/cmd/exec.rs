//! `devhost exec NAME -- COMMAND [ARG…]` (and `nixos-container run`): a
//! command in a running container, for its owner or an admin, without a
//! terminal. stdin goes to the command (its end too, so `echo hi | devhost
//! exec NAME -- cat` ends), stdout and stderr come back apart, and the exit
//! status is the command's (128 + N when signal N ended it). Before the
//! command runs the usual codes apply (2 bad usage, 3 no agent, 1 refused);
//! 255 when the connection to the agent broke before the command ended.
//! The stream is the exec protocol of `api::exec` and `api::frame`.

use crate::api::exec::{ExecArgv, ExecBody, UPGRADE};
use crate::api::frame::{self, Frame};
use crate::cli::EXIT_USAGE;
use std::io::{Read, Write};
use std::path::Path;

/// The connection to the agent broke before the command's status came.
pub const EXIT_LOST: i32 = 255;

pub fn run(sock: Option<&Path>, name: &str, command: &[String]) -> i32 {
    let name = match super::name_or_exit(name) {
        Ok(n) => n,
        Err(code) => return code,
    };
    let argv = match ExecArgv::try_from(command.to_vec()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let body = serde_json::to_vec(&ExecBody {
        argv: argv.as_slice().to_vec(),
    })
    .expect("serializes");
    let conn = match crate::cli::upgrade::open(
        sock,
        &format!("/v1/containers/{name}/exec"),
        UPGRADE,
        &body,
    ) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Ok(mut writer) = conn.try_clone() else {
        eprintln!("error: cannot use the connection to the agent");
        return EXIT_LOST;
    };
    // stdin to the command, on a thread of its own: the process ends with
    // the command's status, whatever this thread is waiting for.
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let frame = match stdin.read(&mut buf) {
                Ok(0) => Frame::StdinEof,
                Ok(n) => Frame::Stdin(buf[..n].to_vec()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => Frame::StdinEof,
            };
            let end = frame == Frame::StdinEof;
            if writer.write_all(&frame.encode()).is_err() || end {
                return;
            }
        }
    });
    let mut reader = std::io::BufReader::new(conn);
    let (mut stdout, mut stderr) = (std::io::stdout(), std::io::stderr());
    loop {
        match frame::read(&mut reader) {
            Ok(Some(Frame::Stdout(d))) => {
                if stdout.write_all(&d).and_then(|_| stdout.flush()).is_err() {
                    // Nobody reads any more (`| head`): as a shell's
                    // command killed by SIGPIPE. Leaving ends the command.
                    return 128 + nix::libc::SIGPIPE;
                }
            }
            Ok(Some(Frame::Stderr(d))) => {
                let _ = stderr.write_all(&d).and_then(|_| stderr.flush());
            }
            Ok(Some(Frame::Exit(code))) => return code.clamp(0, 255),
            Ok(Some(other)) => {
                eprintln!("error: the agent sent {other:?}");
                return EXIT_LOST;
            }
            Ok(None) => {
                eprintln!("error: the connection to the agent ended before the command did");
                return EXIT_LOST;
            }
            Err(e) => {
                eprintln!("error: the connection to the agent: {e}");
                return EXIT_LOST;
            }
        }
    }
}
