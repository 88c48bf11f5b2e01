//! `devhost pin NAME` / `devhost unpin NAME`: keep a container from cleanup
//! for good, or hand it back to the policy.

use std::path::Path;

pub fn run(sock: Option<&Path>, json: bool, name: &str, pinned: bool) -> i32 {
    let name = match super::name_or_exit(name) {
        Ok(n) => n,
        Err(code) => return code,
    };
    let verb = if pinned { "pin" } else { "unpin" };
    crate::cli::run_streamed(
        &crate::cli::client(sock),
        hyper::Method::POST,
        &format!("/v1/containers/{name}/{verb}"),
        None,
        json,
    )
}
