//! What the benchmarks share: bare `systemd-nspawn` boots (the reference
//! for every ensure), wrk and nginx, counting Nix evaluations, sysctls set
//! for a run and always put back, and small statistics. Each bench's crate
//! root includes it with `mod support;` next to the tests' `common`.

#![allow(dead_code)] // not every bench uses every helper

pub mod bare;
pub mod host;
pub mod wrk;

use std::time::Instant;

/// Milliseconds since `t`.
pub fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// (median, p90, min) of `v`.
pub fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let med = v[v.len() / 2];
    let p90 = v[(((v.len() as f64) * 0.9) as usize).max(1) - 1];
    (med, p90, v[0])
}

/// The median of `v` (of an even number: the mean of the middle two; NaN
/// when empty).
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let h = v.len() / 2;
    if v.len().is_multiple_of(2) {
        (v[h - 1] + v[h]) / 2.0
    } else {
        v[h]
    }
}

/// The largest of `v` (NaN when empty).
pub fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NAN, f64::max)
}

/// The number right after `marker` in the progress output ("built in 12 ms").
pub fn ms_in(out: &str, marker: &str) -> f64 {
    out.lines()
        .find_map(|l| l.split(marker).nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|x| x.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Resident memory of a process, KiB (0 when it is gone).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A process and its children (nginx's master and workers), KiB.
pub fn tree_rss_kib(pid: u32) -> u64 {
    let kids =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    rss_kib(pid)
        + kids
            .split_whitespace()
            .filter_map(|k| k.parse().ok())
            .map(tree_rss_kib)
            .sum::<u64>()
}

/// The line about the machine every table starts with: kernel, cores,
/// memory.
pub fn machine() -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    format!(
        "kernel {}, {} cores, {} GiB memory",
        kernel.trim(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        (mem_kib + 512 * 1024) / (1024 * 1024)
    )
}

/// `--list` (what `cargo test --benches` passes): nothing to run.
pub fn listing() -> bool {
    std::env::args().any(|a| a == "--list")
}

/// A number from the environment (`BENCH_…`), or `default`.
pub fn env_or<T: std::str::FromStr>(var: &str, default: T) -> T {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What one of [`at_once`]'s commands did: its time from the common start
/// (ms) and its output.
pub struct Timed {
    pub ms: f64,
    pub out: std::process::Output,
}

/// Run the commands at once (a thread each, released together): each
/// one's [`Timed`] in the order given, and the time until the last ended (ms).
pub fn at_once(cmds: Vec<std::process::Command>) -> (Vec<Timed>, f64) {
    let n = cmds.len();
    let go = std::sync::Arc::new(std::sync::Barrier::new(n + 1));
    let handles: Vec<_> = cmds
        .into_iter()
        .map(|mut c| {
            let go = go.clone();
            std::thread::spawn(move || {
                go.wait();
                let t = Instant::now();
                let out = c.output().expect("run a command");
                (ms_since(t), out)
            })
        })
        .collect();
    go.wait();
    let t = Instant::now();
    let done: Vec<Timed> = handles
        .into_iter()
        .map(|h| {
            let (ms, out) = h.join().expect("a command thread");
            Timed { ms, out }
        })
        .collect();
    (done, ms_since(t))
}

/// Destroy the named containers, `batch` at a time (a bench's own cleanup,
/// faster than the agent's drop, which destroys one by one).
pub fn destroy_all(agent: &crate::common::TestAgent, names: &[String], batch: usize) {
    for chunk in names.chunks(batch.max(1)) {
        let cmds = chunk
            .iter()
            .map(|n| agent.command(crate::common::DEVHOST, &["destroy", n]))
            .collect();
        let (done, _) = at_once(cmds);
        for (d, n) in done.iter().zip(chunk) {
            if !d.out.status.success() {
                eprintln!("destroy {n}: {}", crate::common::text(&d.out).trim());
            }
        }
    }
}
