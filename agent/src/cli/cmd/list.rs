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
    let states: Vec<String> = list.containers.iter().map(state).collect();
    let w = states.iter().map(String::len).max().unwrap_or(0).max(11);
    println!(
        "{:<12} {:<w$} {:<16} {:>6}  ALIASES",
        "NAME", "STATE", "ADDRESS", "OWNER"
    );
    for (c, s) in list.containers.iter().zip(&states) {
        println!(
            "{:<12} {:<w$} {:<16} {:>6}  {}",
            c.name,
            s,
            c.address,
            c.owner_uid,
            c.aliases.join(" ")
        );
    }
    0
}

/// The state as `list` and `status` show it: `sleeping (since …)` for a
/// container put to sleep.
pub fn state(c: &crate::api::types::ContainerInfo) -> String {
    match (&c.state, &c.asleep_since) {
        (crate::api::types::State::Sleeping, Some(t)) => format!("sleeping (since {t})"),
        (s, _) => s.to_string(),
    }
}
