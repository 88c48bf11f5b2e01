//! Cleanup of unused containers: the old role's policy (stop and disable
//! after 7 days without a deploy, destroy after 30) with pins, extensions and
//! optional activity. The decision is the pure [`policy`]; the sweep runs in
//! the supervisor (each container through its own queue, like every other
//! operation); the timer that calls `devhost cleanup` daily is the NixOS
//! module's.

pub mod policy;

pub use policy::{deadlines, decide, stamp, Action, Deadlines, Decision, Policy, Usage};

use serde::{Deserialize, Serialize};

/// `POST /v1/cleanup`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CleanupBody {
    /// Decide and report, change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Decide as of this moment (RFC 3339) instead of the agent's clock:
    /// "what would happen on that date", and the tests' clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub now: Option<String>,
}

/// `POST /v1/containers/NAME/extend`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtendBody {
    pub days: u32,
}

/// What the sweep did with one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanupEntry {
    pub name: String,
    pub action: Action,
    pub reason: String,
    /// Whole days unused (what the log and the table show).
    pub unused_days: i64,
    pub result: SweepResult,
}

/// What came of the sweep's decision on one container; serialized as
/// `` (kept), `done`, `dry run`, `failed: WHY`, or what the operation said
/// when it found nothing to do (the container was destroyed meanwhile).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub enum SweepResult {
    Kept,
    Done,
    DryRun,
    Failed(String),
    Nothing(String),
}

impl From<SweepResult> for String {
    fn from(r: SweepResult) -> String {
        match r {
            SweepResult::Kept => String::new(),
            SweepResult::Done => "done".into(),
            SweepResult::DryRun => "dry run".into(),
            SweepResult::Failed(why) => format!("failed: {why}"),
            SweepResult::Nothing(what) => what,
        }
    }
}

impl From<String> for SweepResult {
    fn from(s: String) -> SweepResult {
        match s.as_str() {
            "" => SweepResult::Kept,
            "done" => SweepResult::Done,
            "dry run" => SweepResult::DryRun,
            _ => match s.strip_prefix("failed: ") {
                Some(why) => SweepResult::Failed(why.to_string()),
                None => SweepResult::Nothing(s),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanupReport {
    /// The moment decided against (RFC 3339).
    pub now: String,
    pub dry_run: bool,
    pub disable_after_days: u32,
    pub delete_after_days: u32,
    pub containers: Vec<CleanupEntry>,
}

impl CleanupReport {
    /// Containers the sweep tried to change and could not.
    pub fn failures(&self) -> usize {
        self.containers
            .iter()
            .filter(|c| matches!(c.result, SweepResult::Failed(_)))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_results_serialize_as_before() {
        for (r, s) in [
            (SweepResult::Kept, ""),
            (SweepResult::Done, "done"),
            (SweepResult::DryRun, "dry run"),
            (SweepResult::Failed("boom".into()), "failed: boom"),
            (
                SweepResult::Nothing("container x no longer exists".into()),
                "container x no longer exists",
            ),
        ] {
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(json, serde_json::to_string(s).unwrap());
            assert_eq!(serde_json::from_str::<SweepResult>(&json).unwrap(), r);
        }
    }
}
