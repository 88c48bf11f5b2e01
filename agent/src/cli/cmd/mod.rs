//! One file per `devhost` subcommand.

pub mod agent;
pub mod cleanup;
pub mod deploy;
pub mod destroy;
pub mod ensure;
pub mod extend;
pub mod info;
pub mod list;
pub mod logs;
pub mod pin;
pub mod provision;
pub mod shell;
pub mod start;
pub mod status;
pub mod stop;

use crate::container::ContainerName;

/// Validate a name before anything is sent, with the same message the agent gives.
pub fn name_or_exit(name: &str) -> Result<ContainerName, i32> {
    name.parse().map_err(|e| {
        eprintln!("error: {e}");
        super::EXIT_USAGE
    })
}
