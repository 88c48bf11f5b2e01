//! `--since TIME` of `devhost logs`: an RFC 3339 time or an age (`30s`,
//! `10m`, `2h`, `1d`, `1w`), parsed into a typed value at the command line
//! and turned into a moment against "now" there; the agent gets the moment
//! in seconds since the epoch. Also the test of a timestamped log line
//! against that moment (the agent's own log starts each line with one).

use chrono::{DateTime, TimeDelta, Utc};

/// What `--since` said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// This long before now.
    Ago(TimeDelta),
    /// This moment.
    At(DateTime<Utc>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid time {0:?}: give an RFC 3339 time (2026-12-01T10:00:00Z) or an age like 30s, 10m, 2h, 1d or 1w")]
pub struct SinceError(pub String);

/// Ages up to ten years.
const MAX_AGE_SECS: i64 = 10 * 366 * 86_400;

impl std::str::FromStr for Since {
    type Err = SinceError;
    fn from_str(s: &str) -> Result<Since, SinceError> {
        let bad = || SinceError(s.to_string());
        if let Ok(t) = DateTime::parse_from_rfc3339(s) {
            return Ok(Since::At(t.with_timezone(&Utc)));
        }
        let unit_at = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (digits, unit) = s.split_at(unit_at);
        if digits.is_empty() || digits.len() > 12 {
            return Err(bad());
        }
        let n: i64 = digits.parse().map_err(|_| bad())?;
        let per: i64 = match unit {
            "s" => 1,
            "m" | "min" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            _ => return Err(bad()),
        };
        let secs = n
            .checked_mul(per)
            .filter(|s| *s <= MAX_AGE_SECS)
            .ok_or_else(bad)?;
        Ok(Since::Ago(TimeDelta::seconds(secs)))
    }
}

impl Since {
    /// The moment meant, as of `now`.
    pub fn resolve(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Since::Ago(d) => now - *d,
            Since::At(t) => *t,
        }
    }
}

/// The RFC 3339 time a log line starts with, if any.
pub fn line_time(line: &str) -> Option<DateTime<Utc>> {
    let first = line.split_whitespace().next()?;
    DateTime::parse_from_rfc3339(first)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The lines of `text` logged at or after `since`: a line without a time
/// of its own (a continuation) goes with the line before it.
pub fn lines_since(text: &str, since: DateTime<Utc>) -> Vec<&str> {
    let mut keep = false;
    text.lines()
        .filter(|l| {
            if let Some(t) = line_time(l) {
                keep = t >= since;
            }
            keep
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn ages_and_times() {
        assert_eq!("10m".parse(), Ok(Since::Ago(TimeDelta::minutes(10))));
        assert_eq!("2h".parse(), Ok(Since::Ago(TimeDelta::hours(2))));
        assert_eq!("1d".parse(), Ok(Since::Ago(TimeDelta::days(1))));
        assert_eq!("30s".parse(), Ok(Since::Ago(TimeDelta::seconds(30))));
        assert_eq!("1w".parse(), Ok(Since::Ago(TimeDelta::days(7))));
        assert_eq!("0s".parse(), Ok(Since::Ago(TimeDelta::zero())));
        assert_eq!(
            "2026-12-01T10:00:00+01:00".parse(),
            Ok(Since::At(at("2026-12-01T09:00:00Z")))
        );
        let now = at("2026-12-01T12:00:00Z");
        assert_eq!(
            "2h".parse::<Since>().unwrap().resolve(now),
            at("2026-12-01T10:00:00Z")
        );
        assert_eq!(
            "2026-12-01T10:00:00Z"
                .parse::<Since>()
                .unwrap()
                .resolve(now),
            at("2026-12-01T10:00:00Z")
        );
    }

    #[test]
    fn anything_else_is_refused_naming_the_forms() {
        for bad in [
            "",
            "10",
            "m",
            "-1h",
            "1.5h",
            "10 m",
            "1y",
            "yesterday",
            "2026-12-01",
            "99999999999999d",
            "5000w",
        ] {
            assert_eq!(bad.parse::<Since>(), Err(SinceError(bad.into())), "{bad:?}");
        }
        assert!(SinceError("x".into())
            .to_string()
            .contains("RFC 3339 time (2026-12-01T10:00:00Z) or an age like 30s, 10m"));
    }

    #[test]
    fn lines_since_a_moment_with_their_continuations() {
        let log = "\
2026-12-01T09:59:59.000001Z  INFO old
  continued old
2026-12-01T10:00:00.000000Z  INFO new
  continued new
2026-12-01T10:05:00Z  WARN newer
";
        assert_eq!(
            lines_since(log, at("2026-12-01T10:00:00Z")),
            [
                "2026-12-01T10:00:00.000000Z  INFO new",
                "  continued new",
                "2026-12-01T10:05:00Z  WARN newer"
            ]
        );
        assert!(lines_since(log, at("2026-12-02T00:00:00Z")).is_empty());
        assert_eq!(lines_since(log, at("2000-01-01T00:00:00Z")).len(), 5);
    }
}
