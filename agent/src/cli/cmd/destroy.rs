//! `devhost destroy NAME`: succeeds for a name that does not exist.

use std::path::Path;

pub fn run(sock: Option<&Path>, json: bool, name: &str) -> i32 {
    let name = match super::name_or_exit(name) {
        Ok(n) => n,
        Err(code) => return code,
    };
    let client = crate::cli::client(sock);
    crate::cli::run_streamed(
        &client,
        hyper::Method::DELETE,
        &format!("/v1/containers/{name}"),
        None,
        json,
    )
}
