//! Command-line front-ends. Each is thin: parse arguments into a request,
//! call the agent over its socket, print the answer. The native CLI is
//! [`devhost`]; [`compat`] holds `fc-build-dev-container` and
//! `nixos-container` with the exact behaviour older tools rely on.

pub mod args;
pub mod cmd;
pub mod compat;
pub mod devhost;
pub mod sudo;
pub mod upgrade;

use crate::api::client::{Client, ClientError};
use crate::api::types::Event;
use crate::config::Config;
use std::path::{Path, PathBuf};

/// Exit codes shared by every front-end.
pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_NO_AGENT: i32 = 3;

pub const DEFAULT_CONFIG: &str = "/etc/devhost/agent.toml";

/// Where the agent listens: `--socket`, else `$DEVHOST_SOCKET`, else the
/// socket named in the agent's config (`$DEVHOST_CONFIG` or
/// /etc/devhost/agent.toml), else the built-in default.
pub fn resolve_socket(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("DEVHOST_SOCKET").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let cfg_path = std::env::var_os("DEVHOST_CONFIG")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    if let Ok(cfg) = Config::load(&cfg_path) {
        return cfg.paths.socket;
    }
    Config::defaults().paths.socket
}

pub fn client(flag: Option<&Path>) -> Client {
    Client::new(&resolve_socket(flag))
}

/// A single-threaded runtime is plenty for one request.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

/// Leave root for the user who ran sudo, before anything is read or sent
/// (see [`sudo`]); `Err` is the exit code when that is impossible.
pub fn drop_sudo() -> Result<(), i32> {
    sudo::act_as_invoking_user().map_err(|e| {
        eprintln!("error: {e}");
        EXIT_FAILED
    })
}

/// Print an error the way every front-end does and give its exit code.
pub fn fail(e: &ClientError, json: bool) -> i32 {
    if json {
        let err = match e {
            ClientError::Api(a) => serde_json::to_value(a).unwrap_or_default(),
            other => serde_json::json!({"kind": "unavailable", "message": other.to_string()}),
        };
        println!("{}", serde_json::json!({ "error": err }));
    } else {
        eprintln!("error: {e}");
        if matches!(e, ClientError::Api(a) if a.kind == crate::api::types::ErrorKind::Forbidden) {
            if let Some(h) = sudo::hint() {
                eprintln!("{h}");
            }
        }
    }
    match e {
        ClientError::NotRunning { .. } => EXIT_NO_AGENT,
        // The agent refused the input itself: bad input, as in the CLI.
        ClientError::Api(a)
            if matches!(
                a.kind,
                crate::api::types::ErrorKind::BadRequest | crate::api::types::ErrorKind::TooLarge
            ) =>
        {
            EXIT_USAGE
        }
        _ => EXIT_FAILED,
    }
}

/// Show a streamed event: progress as it happens, for people or as JSON.
pub fn show_event(ev: &Event, json: bool) {
    if json {
        println!("{}", serde_json::to_string(ev).expect("events serialize"));
        return;
    }
    match ev {
        Event::Log { line } => println!("{line}"),
        Event::Phase { phase } => println!("==> {}", phase.as_str()),
        Event::Done { message, .. } => println!("{message}"),
        Event::Error { .. } => {}
    }
}

/// Run a streamed operation and turn its result into an exit code.
pub fn run_streamed(
    client: &Client,
    method: hyper::Method,
    path: &str,
    body: Option<Vec<u8>>,
    json: bool,
) -> i32 {
    match block_on(client.stream(method, path, body, |ev| show_event(ev, json))) {
        Ok(_) => EXIT_OK,
        Err(e) => fail(&e, json),
    }
}
