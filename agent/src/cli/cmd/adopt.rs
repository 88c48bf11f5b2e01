//! `devhost adopt NAME`: take back a container whose record the agent
//! quarantined at start (it did not parse). An admin checks or repairs
//! `STATE/quarantine/NAME.json` first; the agent reads it again, and the
//! container's phase becomes what really runs.

use std::path::Path;

pub fn run(sock: Option<&Path>, json: bool, name: &str) -> i32 {
    super::container_action(sock, json, name, hyper::Method::POST, Some("adopt"))
}
