//! `devhost ensure NAME CHANNEL [ALIAS…]`.

use crate::api::types::EnsureBody;
use crate::container::limits::{parse_cpu, parse_memory, Limits};
use std::path::Path;

/// The body every ensure front-end sends; under sudo the container belongs
/// to the invoking user (honoured by the agent for root callers only).
pub fn body(channel: &str, aliases: &[String], limits: Option<Limits>) -> Vec<u8> {
    let owner_uid = std::env::var("SUDO_UID").ok().and_then(|s| s.parse().ok());
    serde_json::to_vec(&EnsureBody {
        channel: channel.to_string(),
        aliases: aliases.to_vec(),
        owner_uid,
        limits,
    })
    .expect("serializes")
}

/// Limits from the command line, validated before anything is sent.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct LimitArgs {
    /// Memory limit (MemoryMax), e.g. 2G.
    #[arg(long)]
    pub memory: Option<String>,
    /// CPU quota in CPUs, e.g. 2 or 0.5.
    #[arg(long)]
    pub cpu: Option<String>,
    /// Maximum number of tasks (TasksMax).
    #[arg(long)]
    pub tasks: Option<u64>,
    /// IO weight, 1–10000 (IOWeight).
    #[arg(long)]
    pub io_weight: Option<u64>,
}

impl LimitArgs {
    pub fn parse(&self) -> Result<Option<Limits>, String> {
        let l = Limits {
            memory_max: self
                .memory
                .as_deref()
                .map(parse_memory)
                .transpose()
                .map_err(|e| e.to_string())?,
            cpu_percent: self
                .cpu
                .as_deref()
                .map(parse_cpu)
                .transpose()
                .map_err(|e| e.to_string())?,
            tasks_max: self.tasks,
            io_weight: self.io_weight,
        };
        l.validate().map_err(|e| e.to_string())?;
        Ok((!l.is_empty()).then_some(l))
    }
}

pub fn run(
    sock: Option<&Path>,
    json: bool,
    name: &str,
    channel: &str,
    aliases: &[String],
    limits: &LimitArgs,
) -> i32 {
    let limits = match limits.parse() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return crate::cli::EXIT_USAGE;
        }
    };
    let name = match super::name_or_exit(name) {
        Ok(n) => n,
        Err(code) => return code,
    };
    let client = crate::cli::client(sock);
    crate::cli::run_streamed(
        &client,
        hyper::Method::POST,
        &format!("/v1/containers/{name}/ensure"),
        Some(body(channel, aliases, limits)),
        json,
    )
}
