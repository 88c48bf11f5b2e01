//! `devhost forget NAME`: an admin gives up a container whose record was
//! quarantined: what it has on the host goes as with destroy, its name and
//! address are free again, and the quarantined file stays in
//! `STATE/quarantine/resolved/`.

use std::path::Path;

pub fn run(sock: Option<&Path>, json: bool, name: &str) -> i32 {
    super::container_action(sock, json, name, hyper::Method::POST, Some("forget"))
}
