//! Opening an upgraded connection to the agent from a blocking front-end
//! (a shell's terminal, an exec's frames): one request on the API socket,
//! its answer's head read byte by byte so that nothing after it is taken
//! from the stream; an error answer is reported as every front-end does.

use super::{EXIT_FAILED, EXIT_NO_AGENT};
use crate::api::types::ApiError;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

/// `POST path` asking for an upgrade to `token`, with `body` (JSON). The
/// stream once the agent agreed (`101`), or the exit code.
pub fn open(sock: Option<&Path>, path: &str, token: &str, body: &[u8]) -> Result<UnixStream, i32> {
    let socket = super::resolve_socket(sock);
    let mut conn = UnixStream::connect(&socket).map_err(|e| {
        eprintln!(
            "error: the devhost agent is not running (cannot connect to {}: {e})",
            socket.display()
        );
        EXIT_NO_AGENT
    })?;
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: devhost\r\nConnection: Upgrade\r\nUpgrade: {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    if let Err(e) = conn.write_all(&request) {
        eprintln!("error: talking to the agent: {e}");
        return Err(EXIT_FAILED);
    }
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => {
                eprintln!("error: the agent closed the connection");
                return Err(EXIT_FAILED);
            }
        }
        if head.len() > 64 * 1024 {
            eprintln!("error: the agent's answer is not HTTP");
            return Err(EXIT_FAILED);
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    if head.starts_with("HTTP/1.1 101") {
        return Ok(conn);
    }
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
    Err(match serde_json::from_slice::<ApiError>(&body) {
        Ok(e) => super::fail(&crate::api::client::ClientError::Api(e), false),
        Err(_) => {
            eprintln!("error: {}", head.lines().next().unwrap_or(""));
            EXIT_FAILED
        }
    })
}
