//! `devhost stop NAME`.

use std::path::Path;

pub fn run(sock: Option<&Path>, json: bool, name: &str) -> i32 {
    super::container_action(sock, json, name, hyper::Method::POST, Some("stop"))
}
