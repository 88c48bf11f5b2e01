//! `devhost ensure NAME CHANNEL [ALIAS…] [--memory …] [--upstream [ALIAS=]SCHEME:PORT]…
//! [--sleep-after PERIOD|off|default]`.

use crate::api::types::EnsureBody;
use crate::cli::args::whole;
use crate::container::limits::{parse_cpu, parse_memory, Limits, IO_WEIGHT_MAX, TASKS_MAX};
use std::collections::BTreeMap;
use std::path::Path;

/// The body every ensure front-end sends. Under sudo the front-end already
/// acts as the invoking user (see `cli::sudo`), so the container is theirs;
/// root may name an owner in `SUDO_UID` itself.
pub fn body(
    channel: &str,
    aliases: &[String],
    limits: Option<Limits>,
    upstreams: Option<BTreeMap<String, String>>,
    sleep_after: Option<String>,
) -> Vec<u8> {
    serde_json::to_vec(&EnsureBody {
        channel: channel.to_string(),
        hydra_eval: None,
        aliases: aliases.to_vec(),
        owner_uid: crate::cli::sudo::owner_for_root(),
        limits,
        upstreams,
        disk_size: None,
        image_url: None,
        update_channel: None,
        sleep_after,
    })
    .expect("serializes")
}

/// Limits and upstreams from the command line, checked before anything is sent.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct EnsureArgs {
    /// Memory limit (MemoryMax), 16M–1024T, e.g. 2G.
    #[arg(long, allow_negative_numbers = true)]
    pub memory: Option<String>,
    /// CPU quota in CPUs, 0.01–1024, e.g. 2 or 0.5.
    #[arg(long, allow_negative_numbers = true)]
    pub cpu: Option<String>,
    /// Maximum number of tasks (TasksMax), 1–4194304.
    #[arg(long, allow_negative_numbers = true, value_parser = whole::<u64>(1, TASKS_MAX))]
    pub tasks: Option<u64>,
    /// IO weight, 1–10000 (IOWeight).
    #[arg(long, allow_negative_numbers = true, value_parser = whole::<u64>(1, IO_WEIGHT_MAX))]
    pub io_weight: Option<u64>,
    /// Where the proxy sends requests for the container (`http:8080`) or one
    /// alias (`api=http:8080`) instead of the agent's `edge.upstream`
    /// (repeatable; given ones replace the recorded set).
    #[arg(long = "upstream", value_name = "[ALIAS=]SCHEME:PORT")]
    pub upstreams: Vec<String>,
    /// Put the container to sleep after this long without use (`30m`,
    /// `2h`, `1d`), `off`, or `default` (the host's `[sleep] after`); the
    /// next request through the proxy wakes it. Kept when not given.
    #[arg(long, value_name = "PERIOD|off|default")]
    pub sleep_after: Option<String>,
}

impl EnsureArgs {
    /// `--upstream`s as the API takes them (checked there too).
    pub fn upstreams(&self) -> Result<Option<BTreeMap<String, String>>, String> {
        if self.upstreams.is_empty() {
            return Ok(None);
        }
        let mut out = BTreeMap::new();
        for u in &self.upstreams {
            let (key, value) = match u.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (String::new(), u.clone()),
            };
            value
                .parse::<crate::container::Upstream>()
                .map_err(|e| format!("--upstream {u:?}: {e}"))?;
            out.insert(key, value);
        }
        Ok(Some(out))
    }

    /// `--sleep-after` as the API takes it (checked there too).
    pub fn sleep_after(&self) -> Result<Option<String>, String> {
        let Some(s) = &self.sleep_after else {
            return Ok(None);
        };
        crate::sleep::SleepAfter::parse(s).map_err(|e| format!("--sleep-after: {e}"))?;
        Ok(Some(s.clone()))
    }

    pub fn limits(&self) -> Result<Option<Limits>, String> {
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
    args: &EnsureArgs,
) -> i32 {
    let (limits, upstreams, sleep_after) =
        match (args.limits(), args.upstreams(), args.sleep_after()) {
            (Ok(l), Ok(u), Ok(s)) => (l, u, s),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
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
        Some(body(channel, aliases, limits, upstreams, sleep_after)),
        json,
    )
}
