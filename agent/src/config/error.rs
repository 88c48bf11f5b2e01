//! The error every configuration section reports, naming the key. A leaf:
//! each section imports it, it imports none of them.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("config file {0}: {1}")]
    Parse(PathBuf, String),
    #[error("config key {key}: {why}")]
    Invalid { key: &'static str, why: String },
}

/// A `ConfigError::Invalid` naming `key` (used by every section's checks).
pub fn invalid(key: &'static str, why: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        why: why.into(),
    }
}
