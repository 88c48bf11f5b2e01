//! `devhost list`: a table for people, the full records with --json.

use crate::api::types::ListResponse;
use std::path::Path;

pub fn run(sock: Option<&Path>, json: bool) -> i32 {
    let client = crate::cli::client(sock);
    let list: ListResponse = match crate::cli::block_on(client.get_json("/v1/containers")) {
        Ok(l) => l,
        Err(e) => return crate::cli::fail(&e, json),
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&list).expect("serializes")
        );
        return 0;
    }
    println!(
        "{:<12} {:<11} {:<16} {:>6}  ALIASES",
        "NAME", "STATE", "ADDRESS", "OWNER"
    );
    for c in &list.containers {
        println!(
            "{:<12} {:<11} {:<16} {:>6}  {}",
            c.name,
            c.state,
            c.address,
            c.owner_uid,
            c.aliases.join(" ")
        );
    }
    0
}
