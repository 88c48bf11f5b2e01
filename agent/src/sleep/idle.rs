//! "Idle long enough to sleep?" as a pure function of what was seen of a
//! running container (a [`Snapshot`]), its idle period and a moment; the
//! sweep that applies it and `devhost status` both ask it.

use crate::clock::stamp;
use chrono::{DateTime, TimeDelta, Utc};
use std::time::Duration;

/// What is known of one running container's use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// Activity under way: proxied requests and connections (websockets
    /// included), shell and exec sessions, provisioning runs.
    pub open: u64,
    /// Established SSH connections into it (to its port 22).
    pub ssh: usize,
    /// The last activity: the last proxied request or connection's end,
    /// session's end, provisioning run, start or wake, deploy, or the
    /// agent's start, whichever is latest.
    pub last: DateTime<Utc>,
}

/// What to do with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Its setting is off.
    Off,
    /// In use now: it stays awake whatever the time.
    Busy { open: u64, ssh: usize },
    /// Idle since `since`; asleep at `at` unless used before.
    Awake {
        since: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// Idle since `since`, for its whole period: put it to sleep.
    Sleep { since: DateTime<Utc> },
}

/// The verdict on `s` at `now` for an idle period `period` (`None`: off).
pub fn decide(s: &Snapshot, period: Option<Duration>, now: DateTime<Utc>) -> Verdict {
    let Some(period) = period else {
        return Verdict::Off;
    };
    if s.open > 0 || s.ssh > 0 {
        return Verdict::Busy {
            open: s.open,
            ssh: s.ssh,
        };
    }
    let at = s.last + TimeDelta::from_std(period).unwrap_or(TimeDelta::MAX);
    if now >= at {
        Verdict::Sleep { since: s.last }
    } else {
        Verdict::Awake { since: s.last, at }
    }
}

fn count(n: u64, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

impl Verdict {
    /// In words, for `devhost status`.
    pub fn describe(&self) -> String {
        match self {
            Verdict::Off => "never sleeps".into(),
            Verdict::Busy { open, ssh } => {
                let mut parts = Vec::new();
                if *open > 0 {
                    parts.push(count(*open, "open request or session"));
                }
                if *ssh > 0 {
                    parts.push(count(*ssh as u64, "SSH connection"));
                }
                format!("awake: {}", parts.join(", "))
            }
            Verdict::Awake { since, at } => {
                format!("idle since {}; sleeps at {}", stamp(*since), stamp(*at))
            }
            Verdict::Sleep { since } => {
                format!("idle since {}; about to sleep", stamp(*since))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    const HOUR: Option<Duration> = Some(Duration::from_secs(3_600));

    fn idle_since(last: &str) -> Snapshot {
        Snapshot {
            open: 0,
            ssh: 0,
            last: at(last),
        }
    }

    #[test]
    fn off_never_sleeps() {
        let s = idle_since("2026-01-01T00:00:00Z");
        assert_eq!(decide(&s, None, at("2026-02-01T00:00:00Z")), Verdict::Off);
    }

    #[test]
    fn idle_for_the_whole_period_sleeps_and_not_a_second_before() {
        let s = idle_since("2026-01-31T03:00:00Z");
        assert_eq!(
            decide(&s, HOUR, at("2026-01-31T03:59:59Z")),
            Verdict::Awake {
                since: at("2026-01-31T03:00:00Z"),
                at: at("2026-01-31T04:00:00Z")
            }
        );
        assert_eq!(
            decide(&s, HOUR, at("2026-01-31T04:00:00Z")),
            Verdict::Sleep {
                since: at("2026-01-31T03:00:00Z")
            }
        );
    }

    #[test]
    fn open_activity_or_ssh_keeps_it_awake_however_long_ago_it_began() {
        let now = at("2026-02-28T00:00:00Z");
        let mut s = idle_since("2026-01-01T00:00:00Z");
        s.open = 2;
        assert_eq!(decide(&s, HOUR, now), Verdict::Busy { open: 2, ssh: 0 });
        s.open = 0;
        s.ssh = 1;
        assert_eq!(decide(&s, HOUR, now), Verdict::Busy { open: 0, ssh: 1 });
    }

    #[test]
    fn verdicts_in_words() {
        assert_eq!(Verdict::Off.describe(), "never sleeps");
        assert_eq!(
            Verdict::Busy { open: 1, ssh: 2 }.describe(),
            "awake: 1 open request or session, 2 SSH connections"
        );
        assert_eq!(
            Verdict::Busy { open: 0, ssh: 1 }.describe(),
            "awake: 1 SSH connection"
        );
        assert_eq!(
            Verdict::Awake {
                since: at("2026-01-31T03:00:00Z"),
                at: at("2026-01-31T05:00:00Z")
            }
            .describe(),
            "idle since 2026-01-31T03:00:00Z; sleeps at 2026-01-31T05:00:00Z"
        );
    }
}
