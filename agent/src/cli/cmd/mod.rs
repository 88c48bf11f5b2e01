//! One file per `devhost` subcommand.

pub mod adopt;
pub mod agent;
pub mod cleanup;
pub mod completions;
pub mod deploy;
pub mod destroy;
pub mod ensure;
pub mod exec;
pub mod extend;
pub mod forget;
pub mod info;
pub mod list;
pub mod logs;
pub mod man;
pub mod pin;
pub mod provision;
pub mod shell;
pub mod start;
pub mod status;
pub mod stop;
pub mod wake;

use crate::container::ContainerName;
use std::path::Path;

/// Validate a name before anything is sent, with the same message the agent gives.
pub fn name_or_exit(name: &str) -> Result<ContainerName, i32> {
    name.parse().map_err(|e| {
        eprintln!("error: {e}");
        super::EXIT_USAGE
    })
}

/// A request about one container that takes no body and streams its answer
/// (`devhost start`, `stop`, `wake`, `destroy`, `pin`, `unpin`): `verb` is what
/// follows `/v1/containers/NAME/` in the path, or `None` for the container
/// itself.
pub fn container_action(
    sock: Option<&Path>,
    json: bool,
    name: &str,
    method: hyper::Method,
    verb: Option<&str>,
) -> i32 {
    let name = match name_or_exit(name) {
        Ok(n) => n,
        Err(code) => return code,
    };
    let path = match verb {
        Some(verb) => format!("/v1/containers/{name}/{verb}"),
        None => format!("/v1/containers/{name}"),
    };
    crate::cli::run_streamed(&crate::cli::client(sock), method, &path, None, json)
}
