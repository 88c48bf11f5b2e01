//! `devhost info`: agent version, backend, host warnings, reconcile findings.

use crate::api::types::AgentInfo;
use std::path::Path;

pub fn run(sock: Option<&Path>, json: bool) -> i32 {
    let client = crate::cli::client(sock);
    let info: AgentInfo = match crate::cli::block_on(client.get_json("/v1/agent")) {
        Ok(i) => i,
        Err(e) => return crate::cli::fail(&e, json),
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&info).expect("serializes")
        );
        return 0;
    }
    println!("devhost agent {} ({} backend)", info.version, info.backend);
    for w in &info.warnings {
        println!("warning: {w}");
    }
    for q in &info.quarantined {
        println!(
            "quarantined: {} ({}): {} — `devhost adopt {}` or `devhost forget {}`",
            if q.name.is_empty() { "-" } else { &q.name },
            q.file,
            q.why,
            q.name,
            q.name
        );
    }
    if info.findings.is_empty() {
        println!("reconcile at start: everything consistent");
    } else {
        println!("reconcile at start:");
        for f in &info.findings {
            println!("  - {f}");
        }
    }
    0
}
