//! The cleanup policy as a pure function: from what a record says about a
//! container's use (last deploy, optional activity, pin, extension) and a
//! moment "now", the deadlines and what the sweep does. No I/O and no clock
//! of its own, so every case is tested by exact equality and the sweep can be
//! run "as of" any moment.

use crate::clock::stamp;
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// The configured policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Unused this long: stopped and disabled.
    pub disable_after: TimeDelta,
    /// Unused this long: destroyed.
    pub delete_after: TimeDelta,
    /// Count proxied requests and provisioning runs as use.
    pub count_activity: bool,
}

impl Policy {
    pub fn days(disable: u32, delete: u32, count_activity: bool) -> Policy {
        Policy {
            disable_after: TimeDelta::days(disable.into()),
            delete_after: TimeDelta::days(delete.into()),
            count_activity,
        }
    }
}

/// What the policy needs to know about one container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub last_deploy: DateTime<Utc>,
    /// Last proxied request or provisioning run (counted only when the
    /// policy says so).
    pub last_activity: Option<DateTime<Utc>>,
    /// `devhost extend`: not disabled before this moment.
    pub keep_until: Option<DateTime<Utc>>,
    pub pinned: bool,
    pub enabled: bool,
    /// A process runs for it now (a disabled container must not).
    pub running: bool,
}

/// When a container will be disabled and deleted (`None`: pinned, never).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// The moment its unused time is counted from.
    pub since: DateTime<Utc>,
    pub disable_at: DateTime<Utc>,
    pub delete_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Keep,
    Disable,
    Delete,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Keep => "keep",
            Action::Disable => "disable",
            Action::Delete => "delete",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    /// Why, in words a user reads in the log and the report.
    pub reason: String,
    /// Time since `since` (zero when pinned).
    pub unused: TimeDelta,
}

/// The deadlines: unused time counts from the last deploy (or the last
/// activity, when counted), and an extension moves the disabling to its end,
/// keeping the usual gap between disabling and deleting.
pub fn deadlines(u: &Usage, p: &Policy) -> Option<Deadlines> {
    if u.pinned {
        return None;
    }
    let since = match (p.count_activity, u.last_activity) {
        (true, Some(a)) => a.max(u.last_deploy),
        _ => u.last_deploy,
    };
    let mut disable_at = since + p.disable_after;
    let mut delete_at = since + p.delete_after;
    if let Some(k) = u.keep_until {
        disable_at = disable_at.max(k);
        delete_at = delete_at.max(k + (p.delete_after - p.disable_after));
    }
    Some(Deadlines {
        since,
        disable_at,
        delete_at,
    })
}

/// "3 days 4 hours", "5 hours", "12 minutes": an age for people.
pub fn human(d: TimeDelta) -> String {
    let s = d.num_seconds().max(0);
    let (days, hours, minutes) = (s / 86_400, (s % 86_400) / 3_600, (s % 3_600) / 60);
    let unit = |n: i64, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    match (days, hours) {
        (0, 0) => unit(minutes, "minute"),
        (0, h) => unit(h, "hour"),
        (d, 0) => unit(d, "day"),
        (d, h) => format!("{} {}", unit(d, "day"), unit(h, "hour")),
    }
}

/// What the sweep does with one container at `now`.
pub fn decide(u: &Usage, p: &Policy, now: DateTime<Utc>) -> Decision {
    let Some(d) = deadlines(u, p) else {
        return Decision {
            action: Action::Keep,
            reason: "pinned".into(),
            unused: TimeDelta::zero(),
        };
    };
    let unused = now - d.since;
    let what = match (p.count_activity, u.last_activity) {
        (true, Some(a)) if a > u.last_deploy => "use",
        _ => "deploy",
    };
    let age = format!("last {what} {} ago ({})", human(unused), stamp(d.since));
    let (action, reason) = if now >= d.delete_at {
        (
            Action::Delete,
            format!("{age}; deleted after {}", stamp(d.delete_at)),
        )
    } else if now >= d.disable_at {
        if u.enabled || u.running {
            (
                Action::Disable,
                format!("{age}; disabled after {}", stamp(d.disable_at)),
            )
        } else {
            (
                Action::Keep,
                format!("{age}; disabled, to be deleted at {}", stamp(d.delete_at)),
            )
        }
    } else {
        (
            Action::Keep,
            format!("{age}; to be disabled at {}", stamp(d.disable_at)),
        )
    };
    Decision {
        action,
        reason,
        unused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn usage(last_deploy: &str) -> Usage {
        Usage {
            last_deploy: t(last_deploy),
            last_activity: None,
            keep_until: None,
            pinned: false,
            enabled: true,
            running: true,
        }
    }

    const P: Policy = Policy {
        disable_after: TimeDelta::days(7),
        delete_after: TimeDelta::days(30),
        count_activity: false,
    };

    #[test]
    fn ages_into_disable_then_delete() {
        let u = usage("2026-01-01T00:00:00Z");
        let keep = decide(&u, &P, t("2026-01-07T23:59:59Z"));
        assert_eq!(keep.action, Action::Keep);
        assert_eq!(
            keep.reason,
            "last deploy 6 days 23 hours ago (2026-01-01T00:00:00Z); to be disabled at 2026-01-08T00:00:00Z"
        );
        let dis = decide(&u, &P, t("2026-01-08T00:00:00Z"));
        assert_eq!(dis.action, Action::Disable);
        assert_eq!(
            dis.reason,
            "last deploy 7 days ago (2026-01-01T00:00:00Z); disabled after 2026-01-08T00:00:00Z"
        );
        assert_eq!(dis.unused, TimeDelta::days(7));
        let del = decide(&u, &P, t("2026-01-31T00:00:00Z"));
        assert_eq!(del.action, Action::Delete);
        assert_eq!(
            del.reason,
            "last deploy 30 days ago (2026-01-01T00:00:00Z); deleted after 2026-01-31T00:00:00Z"
        );
    }

    #[test]
    fn a_disabled_stopped_container_waits_for_deletion() {
        let u = Usage {
            enabled: false,
            running: false,
            ..usage("2026-01-01T00:00:00Z")
        };
        let d = decide(&u, &P, t("2026-01-10T00:00:00Z"));
        assert_eq!(d.action, Action::Keep);
        assert!(d
            .reason
            .ends_with("disabled, to be deleted at 2026-01-31T00:00:00Z"));
        // Disabled but still running (a stop failed): disable again.
        let u = Usage { running: true, ..u };
        assert_eq!(
            decide(&u, &P, t("2026-01-10T00:00:00Z")).action,
            Action::Disable
        );
    }

    #[test]
    fn pinned_is_never_touched() {
        let u = Usage {
            pinned: true,
            ..usage("2020-01-01T00:00:00Z")
        };
        assert_eq!(deadlines(&u, &P), None);
        let d = decide(&u, &P, t("2026-01-01T00:00:00Z"));
        assert_eq!((d.action, d.reason.as_str()), (Action::Keep, "pinned"));
    }

    #[test]
    fn extension_moves_disable_and_keeps_the_gap_to_delete() {
        let u = Usage {
            keep_until: Some(t("2026-03-01T00:00:00Z")),
            ..usage("2026-01-01T00:00:00Z")
        };
        let d = deadlines(&u, &P).unwrap();
        assert_eq!(d.disable_at, t("2026-03-01T00:00:00Z"));
        assert_eq!(d.delete_at, t("2026-03-24T00:00:00Z"));
        assert_eq!(
            decide(&u, &P, t("2026-02-28T00:00:00Z")).action,
            Action::Keep
        );
        // An extension that ends before the usual deadline changes nothing.
        let u = Usage {
            keep_until: Some(t("2026-01-02T00:00:00Z")),
            ..usage("2026-01-01T00:00:00Z")
        };
        let d = deadlines(&u, &P).unwrap();
        assert_eq!(d.disable_at, t("2026-01-08T00:00:00Z"));
        assert_eq!(d.delete_at, t("2026-01-31T00:00:00Z"));
    }

    #[test]
    fn activity_counts_only_when_configured() {
        let u = Usage {
            last_activity: Some(t("2026-01-20T00:00:00Z")),
            ..usage("2026-01-01T00:00:00Z")
        };
        let now = t("2026-01-22T00:00:00Z");
        assert_eq!(decide(&u, &P, now).action, Action::Disable);
        let counted = Policy {
            count_activity: true,
            ..P
        };
        let d = decide(&u, &counted, now);
        assert_eq!(d.action, Action::Keep);
        assert_eq!(
            d.reason,
            "last use 2 days ago (2026-01-20T00:00:00Z); to be disabled at 2026-01-27T00:00:00Z"
        );
        // Activity older than the deploy does not count.
        let old = Usage {
            last_activity: Some(t("2025-12-01T00:00:00Z")),
            ..usage("2026-01-01T00:00:00Z")
        };
        assert_eq!(
            deadlines(&old, &counted).unwrap().since,
            t("2026-01-01T00:00:00Z")
        );
    }

    #[test]
    fn human_ages() {
        assert_eq!(human(TimeDelta::minutes(1)), "1 minute");
        assert_eq!(human(TimeDelta::minutes(59)), "59 minutes");
        assert_eq!(human(TimeDelta::hours(5)), "5 hours");
        assert_eq!(human(TimeDelta::days(1)), "1 day");
        assert_eq!(human(TimeDelta::hours(49)), "2 days 1 hour");
        assert_eq!(human(TimeDelta::seconds(-5)), "0 minutes");
    }
}
