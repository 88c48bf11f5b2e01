//! `devhost wake NAME`: start a container that was put to sleep (what a
//! request through the proxy does by itself; an SSH session cannot, so
//! batou's ensure — and this — wake it first).

use std::path::Path;

pub fn run(sock: Option<&Path>, json: bool, name: &str) -> i32 {
    super::container_action(sock, json, name, hyper::Method::POST, Some("wake"))
}
