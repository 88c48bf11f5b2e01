//! `devhost extend NAME --days N`: cleanup does not disable the container
//! before N days from now (deploying it resets the clock as well). N is at
//! least 1 (checked by the parser); the agent checks its maximum.

use crate::api::types::ExtendBody;
use std::path::Path;

pub fn run(sock: Option<&Path>, json: bool, name: &str, days: u32) -> i32 {
    let name = match super::name_or_exit(name) {
        Ok(n) => n,
        Err(code) => return code,
    };
    let body = serde_json::to_vec(&ExtendBody { days }).expect("serializes");
    crate::cli::run_streamed(
        &crate::cli::client(sock),
        hyper::Method::POST,
        &format!("/v1/containers/{name}/extend"),
        Some(body),
        json,
    )
}
