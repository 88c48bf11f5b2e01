//! `devhost cleanup [--dry-run] [--now TIME]`: stop and disable containers
//! unused for `cleanup.disable_after_days`, destroy those unused for
//! `cleanup.delete_after_days`; what the daily timer runs. Prints one line
//! per container; exits 1 when any container could not be cleaned up.

use crate::api::types::{CleanupBody, CleanupReport, SweepResult};
use crate::cleanup::Action;
use std::path::Path;

pub fn run(sock: Option<&Path>, json: bool, dry_run: bool, now: Option<String>) -> i32 {
    let client = crate::cli::client(sock);
    let body = CleanupBody { dry_run, now };
    let report: CleanupReport = match crate::cli::block_on(client.post_json("/v1/cleanup", &body)) {
        Ok(r) => r,
        Err(e) => return crate::cli::fail(&e, json),
    };
    if json {
        println!("{}", serde_json::to_string(&report).expect("serializes"));
    } else {
        print!("{}", table(&report));
    }
    match report.failures() {
        0 => crate::cli::EXIT_OK,
        _ => crate::cli::EXIT_FAILED,
    }
}

/// The report for people: a header, then one line per container.
pub fn table(r: &CleanupReport) -> String {
    let mut out = format!(
        "cleanup as of {}{}: disable after {} days, delete after {} days unused\n",
        r.now,
        if r.dry_run {
            " (dry run, nothing changed)"
        } else {
            ""
        },
        r.disable_after_days,
        r.delete_after_days
    );
    if r.containers.is_empty() {
        out.push_str("no containers\n");
    }
    let width = r.containers.iter().map(|c| c.name.len()).max().unwrap_or(0);
    for c in &r.containers {
        let verb = match (c.action, r.dry_run) {
            (Action::Keep, _) => "keep",
            (Action::Disable, true) => "would disable",
            (Action::Delete, true) => "would delete",
            (Action::Disable, false) => "disable",
            (Action::Delete, false) => "delete",
        };
        let result = match &c.result {
            SweepResult::Kept | SweepResult::DryRun => String::new(),
            other => format!(" [{}]", String::from(other.clone())),
        };
        out.push_str(&format!(
            "{:width$}  {verb:13}  {}{result}\n",
            c.name, c.reason
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::types::CleanupEntry;

    #[test]
    fn table_shows_each_decision() {
        let r = CleanupReport {
            now: "2026-02-01T03:00:00Z".into(),
            dry_run: false,
            disable_after_days: 7,
            delete_after_days: 30,
            containers: vec![
                CleanupEntry {
                    name: "a".into(),
                    action: Action::Delete,
                    reason: "last deploy 31 days ago".into(),
                    unused_days: 31,
                    result: SweepResult::Done,
                },
                CleanupEntry {
                    name: "bbb".into(),
                    action: Action::Disable,
                    reason: "last deploy 8 days ago".into(),
                    unused_days: 8,
                    result: SweepResult::Failed("boom".into()),
                },
                CleanupEntry {
                    name: "cc".into(),
                    action: Action::Keep,
                    reason: "pinned".into(),
                    unused_days: 0,
                    result: SweepResult::Kept,
                },
            ],
        };
        assert_eq!(
            table(&r),
            "cleanup as of 2026-02-01T03:00:00Z: disable after 7 days, delete after 30 days unused\n\
             a    delete         last deploy 31 days ago [done]\n\
             bbb  disable        last deploy 8 days ago [failed: boom]\n\
             cc   keep           pinned\n"
        );
        assert_eq!(r.failures(), 1);
    }
}
