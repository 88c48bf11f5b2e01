//! The `[sleep]` section: the host's default idle period before a running
//! container is put to sleep (off unless set), how long the proxy holds a
//! request for a sleeping container while it wakes, and how often idleness
//! is checked.

use super::error::{invalid, ConfigError};
use crate::sleep::SleepAfter;
use serde::Deserialize;
use std::time::Duration;

/// `[sleep]` as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sleep {
    /// Containers whose own setting is `default` sleep after this long
    /// idle: `off`, or a period such as `30m`, `2h`, `1d`.
    pub after: String,
    /// A request for a sleeping container waits this long for it to answer
    /// on its upstream; then the proxy answers 503 "starting, retry".
    pub wake_timeout_secs: u64,
    /// How often running containers are checked for idleness.
    pub check_interval_secs: u64,
}

impl Default for Sleep {
    fn default() -> Self {
        Sleep {
            after: "off".into(),
            wake_timeout_secs: 30,
            check_interval_secs: 60,
        }
    }
}

/// The validated section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SleepConfig {
    /// `Off` or `After(period)`, never `Default`.
    pub after: SleepAfter,
    pub wake_timeout: Duration,
    pub check_interval: Duration,
}

impl Sleep {
    pub fn validate(self) -> Result<SleepConfig, ConfigError> {
        let after = match SleepAfter::parse(&self.after) {
            Ok(SleepAfter::Default) => {
                return Err(invalid(
                    "sleep.after",
                    "\"default\" names this key itself: use off or a period like 2h",
                ))
            }
            Ok(a) => a,
            Err(e) => return Err(invalid("sleep.after", e.to_string())),
        };
        for (key, v, max) in [
            ("sleep.wake_timeout_secs", self.wake_timeout_secs, 3_600),
            (
                "sleep.check_interval_secs",
                self.check_interval_secs,
                86_400,
            ),
        ] {
            if !(1..=max).contains(&v) {
                return Err(invalid(key, format!("must be 1 to {max} seconds")));
            }
        }
        Ok(SleepConfig {
            after,
            wake_timeout: Duration::from_secs(self.wake_timeout_secs),
            check_interval: Duration::from_secs(self.check_interval_secs),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default() {
        assert_eq!(
            Sleep::default().validate().unwrap(),
            SleepConfig {
                after: SleepAfter::Off,
                wake_timeout: Duration::from_secs(30),
                check_interval: Duration::from_secs(60),
            }
        );
    }

    #[test]
    fn a_period_is_the_hosts_default() {
        let c = Sleep {
            after: "2h".into(),
            ..Sleep::default()
        }
        .validate()
        .unwrap();
        assert_eq!(c.after, SleepAfter::After(Duration::from_secs(7_200)));
    }

    #[test]
    fn bad_values_name_the_key() {
        let cases = [
            (
                Sleep {
                    after: "default".into(),
                    ..Sleep::default()
                },
                "config key sleep.after: \"default\" names this key itself: use off or a period like 2h",
            ),
            (
                Sleep {
                    after: "2".into(),
                    ..Sleep::default()
                },
                "config key sleep.after: sleep after \"2\": a number without its unit",
            ),
            (
                Sleep {
                    wake_timeout_secs: 0,
                    ..Sleep::default()
                },
                "config key sleep.wake_timeout_secs: must be 1 to 3600 seconds",
            ),
            (
                Sleep {
                    check_interval_secs: 0,
                    ..Sleep::default()
                },
                "config key sleep.check_interval_secs: must be 1 to 86400 seconds",
            ),
        ];
        for (c, want) in cases {
            let e = c.validate().unwrap_err().to_string();
            assert!(e.starts_with(want), "{e}");
        }
    }
}
