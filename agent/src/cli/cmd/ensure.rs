//! `devhost ensure NAME CHANNEL [ALIAS…]`.

use crate::api::types::EnsureBody;
use std::path::Path;

/// The body every ensure front-end sends; under sudo the container belongs
/// to the invoking user (honoured by the agent for root callers only).
pub fn body(channel: &str, aliases: &[String]) -> Vec<u8> {
    let owner_uid = std::env::var("SUDO_UID").ok().and_then(|s| s.parse().ok());
    serde_json::to_vec(&EnsureBody {
        channel: channel.to_string(),
        aliases: aliases.to_vec(),
        owner_uid,
    })
    .expect("serializes")
}

pub fn run(sock: Option<&Path>, json: bool, name: &str, channel: &str, aliases: &[String]) -> i32 {
    let name = match super::name_or_exit(name) {
        Ok(n) => n,
        Err(code) => return code,
    };
    let client = crate::cli::client(sock);
    crate::cli::run_streamed(
        &client,
        hyper::Method::POST,
        &format!("/v1/containers/{name}/ensure"),
        Some(body(channel, aliases)),
        json,
    )
}
