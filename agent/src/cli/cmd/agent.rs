//! `devhost agent`: run the daemon in the foreground, logging to stderr and
//! to `STATE/agent.log` ([`crate::logs::agentlog`]).

use crate::config::Config;
use std::path::Path;

pub fn run(config: Option<&Path>) -> i32 {
    let cfg = match config {
        Some(p) => match Config::load(p) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return super::super::EXIT_USAGE;
            }
        },
        None => Config::defaults(),
    };
    // To stderr (the journal under systemd) and to STATE/agent.log, which
    // `devhost logs --agent` reads.
    use tracing_subscriber::prelude::*;
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::EnvFilter::try_from_env("DEVHOST_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(crate::logs::agentlog::AgentLog::new(&cfg.paths.state_dir)),
        )
        .init();
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    match rt.block_on(crate::daemon::run(cfg)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}
