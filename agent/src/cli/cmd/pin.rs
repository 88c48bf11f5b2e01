//! `devhost pin NAME` / `devhost unpin NAME`: keep a container from cleanup
//! for good, or hand it back to the policy.

use std::path::Path;

pub fn run(sock: Option<&Path>, json: bool, name: &str, pinned: bool) -> i32 {
    let verb = if pinned { "pin" } else { "unpin" };
    super::container_action(sock, json, name, hyper::Method::POST, Some(verb))
}
