//! The `[cleanup]` section: when unused containers are disabled and
//! deleted, whether use counts, and how long an owner may extend.

use super::error::{invalid, ConfigError};
use crate::cleanup::Policy;
use serde::Deserialize;

/// `[cleanup]` as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cleanup {
    /// Days without a deploy (or use) before a container is stopped and disabled.
    pub disable_after_days: u32,
    /// Days without a deploy (or use) before a container is destroyed.
    pub delete_after_days: u32,
    /// Count proxied requests and provisioning runs as use.
    pub count_activity: bool,
    /// The longest `devhost extend --days` an owner may ask for.
    pub max_extend_days: u32,
}

impl Default for Cleanup {
    fn default() -> Self {
        Cleanup {
            disable_after_days: 7,
            delete_after_days: 30,
            count_activity: false,
            max_extend_days: 90,
        }
    }
}

/// The validated section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanupConfig {
    pub policy: Policy,
    pub max_extend_days: u32,
}

const MAX_DAYS: u32 = 3650;

impl Cleanup {
    pub fn validate(self) -> Result<CleanupConfig, ConfigError> {
        if !(1..=MAX_DAYS).contains(&self.disable_after_days) {
            return Err(invalid(
                "cleanup.disable_after_days",
                format!("must be 1 to {MAX_DAYS} days"),
            ));
        }
        if self.delete_after_days <= self.disable_after_days || self.delete_after_days > MAX_DAYS {
            return Err(invalid(
                "cleanup.delete_after_days",
                format!(
                    "must be more than disable_after_days ({}) and at most {MAX_DAYS}",
                    self.disable_after_days
                ),
            ));
        }
        if !(1..=MAX_DAYS).contains(&self.max_extend_days) {
            return Err(invalid(
                "cleanup.max_extend_days",
                format!("must be 1 to {MAX_DAYS} days"),
            ));
        }
        Ok(CleanupConfig {
            policy: Policy::days(
                self.disable_after_days,
                self.delete_after_days,
                self.count_activity,
            ),
            max_extend_days: self.max_extend_days,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_old_roles() {
        let c = Cleanup::default().validate().unwrap();
        assert_eq!(c.policy, Policy::days(7, 30, false));
        assert_eq!(c.max_extend_days, 90);
    }

    #[test]
    fn bad_values_name_the_key() {
        let cases = [
            (
                Cleanup {
                    disable_after_days: 0,
                    ..Default::default()
                },
                "config key cleanup.disable_after_days: must be 1 to 3650 days",
            ),
            (
                Cleanup {
                    disable_after_days: 30,
                    delete_after_days: 30,
                    ..Default::default()
                },
                "config key cleanup.delete_after_days: must be more than disable_after_days (30) and at most 3650",
            ),
            (
                Cleanup {
                    max_extend_days: 0,
                    ..Default::default()
                },
                "config key cleanup.max_extend_days: must be 1 to 3650 days",
            ),
        ];
        for (c, want) in cases {
            assert_eq!(c.validate().unwrap_err().to_string(), want);
        }
    }
}
