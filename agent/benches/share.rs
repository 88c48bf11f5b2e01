//! `cargo bench --bench share` (as root): ten new containers on one channel
//! whose evaluation costs what a small NixOS evaluation does (the fixture's
//! `devhost.fixture.evalWork`, the same for every container through
//! `nix.extra_config`), one after another and then all ten at once — with
//! built systems shared (`[nix] share_systems = true`) and, in the same run,
//! without (`false`: each container evaluates for itself, the reference) —
//! next to a bare `systemd-nspawn` boot of the same system. Each of the four
//! runs has an agent of its own, so each starts with nothing built for it.
//! Evaluations are counted, not timed: the agent's `nix-build` is a wrapper
//! that notes every run. Prints Markdown tables for docs/benchmarks.md.
//!
//! `BENCH_EVAL_WORK` (default 16) sets the fixture's work; `BENCH_N`
//! (default 10) the number of containers.

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use common::*;
use std::time::Instant;
use support::bare::bare_boot;
use support::{at_once, destroy_all, env_or, max, median, ms_since};

/// What one run (a mode, in order or at once) measured.
struct Run {
    /// Each container's ensure-to-ready (ms), in the order started.
    per_ms: Vec<f64>,
    /// Whether each one got ready.
    ok: Vec<bool>,
    /// The first ensure to the last one ready (ms); in order, the sum of
    /// the ensures' times.
    total_ms: f64,
    /// nix-build (and nix-instantiate) runs.
    evaluations: usize,
    /// "building the system of" lines in the ensures' progress.
    build_lines: usize,
    /// Ensures that failed: their output.
    failures: Vec<String>,
    /// Bare boots of the same system, interleaved with the ensures (ms).
    bare_ms: Vec<f64>,
}

/// Whether this agent knows `[nix] share_systems` (its config refuses
/// unknown keys).
fn has_share_key() -> bool {
    devhost::config::Config::from_toml("[nix]\nshare_systems = true\n").is_ok()
}

fn run(share: Option<bool>, at_once_: bool, work: u32, n: usize) -> Run {
    let counter = NixCounter::new();
    let mut nix_toml = counter.nix_toml();
    if let Some(s) = share {
        nix_toml.push_str(&format!("share_systems = {s}\n"));
    }
    let agent = TestAgent::start(Options {
        nix_extra_config: format!("devhost.fixture.evalWork = {work};"),
        nix_toml,
        ready_timeout_secs: 120,
        ..Options::default()
    });
    let url = &channel().url;
    let names: Vec<String> = (0..n).map(|i| agent.name(&format!("s{i}"))).collect();
    let mut per_ms = Vec::new();
    let mut outs = Vec::new();
    let mut bare_ms = Vec::new();
    let total_ms;
    if at_once_ {
        let cmds = names
            .iter()
            .map(|name| agent.command(DEVHOST, &["ensure", name, url]))
            .collect();
        let (done, total) = at_once(cmds);
        total_ms = total;
        for d in done {
            per_ms.push(d.ms);
            outs.push(d.out);
        }
    } else {
        let bare_root = agent.dir.join("bare-root");
        let mut system: Option<String> = None;
        for name in &names {
            // A bare boot of the same system before each later ensure:
            // the reference, interleaved so that both see the same machine.
            if let Some(s) = &system {
                bare_ms.push(bare_boot(s, &bare_root, &agent.name("bare"), true));
            }
            let t = Instant::now();
            let out = agent.devhost(&["ensure", name, url]);
            per_ms.push(ms_since(t));
            if system.is_none() && out.status.success() {
                system = agent
                    .status_json(name)
                    .and_then(|s| s["system_path"].as_str().map(str::to_string));
            }
            outs.push(out);
        }
        // The ensures' own times: the bare boots between them do not count.
        total_ms = per_ms.iter().sum();
    }
    let evaluations = counter.count();
    let mut build_lines = 0;
    let mut failures = Vec::new();
    let ok = outs.iter().map(|o| o.status.success()).collect();
    for (out, name) in outs.iter().zip(&names) {
        let t = text(out);
        build_lines += t.matches("building the system of").count();
        if !out.status.success() {
            failures.push(format!("{name}: {}", t.trim()));
        }
    }
    destroy_all(&agent, &names, 10);
    Run {
        per_ms,
        ok,
        total_ms,
        evaluations,
        build_lines,
        failures,
        bare_ms,
    }
}

fn main() {
    if support::listing() {
        return;
    }
    let Some(()) = prerequisites("bench share") else {
        return;
    };
    let work: u32 = env_or("BENCH_EVAL_WORK", 16);
    let n: usize = env_or("BENCH_N", 10).max(2);
    let keyed = has_share_key();
    if !keyed {
        eprintln!(
            "NOTE: this agent has no [nix] share_systems: both columns run without the key \
             (no sharing exists), so they measure the same thing"
        );
    }
    let (on, off) = if keyed {
        (Some(true), Some(false))
    } else {
        (None, None)
    };
    channel();
    // Interleaved: in order shared, in order reference, at once shared, at
    // once reference.
    let seq_on = run(on, false, work, n);
    let seq_off = run(off, false, work, n);
    let par_on = run(on, true, work, n);
    let par_off = run(off, true, work, n);

    let mut bare = seq_on.bare_ms.clone();
    bare.extend(&seq_off.bare_ms);
    let bare_m = median(bare.clone());
    println!(
        "\nshare bench: {n} new containers, fixture evalWork = {work}, {}{}\n",
        support::machine(),
        if keyed {
            ""
        } else {
            "; NO share_systems KEY: both columns without sharing"
        }
    );
    println!("| measure | sharing on (`share_systems = true`) | reference: `share_systems = false` |\n|---|---:|---:|");
    // Times of the ensures that got ready (a failure is listed below).
    let ready = |r: &Run| -> Vec<f64> {
        r.per_ms
            .iter()
            .zip(&r.ok)
            .filter(|(_, ok)| **ok)
            .map(|(ms, _)| *ms)
            .collect()
    };
    let later = |r: &Run| -> Vec<f64> {
        r.per_ms[1..]
            .iter()
            .zip(&r.ok[1..])
            .filter(|(_, ok)| **ok)
            .map(|(ms, _)| *ms)
            .collect()
    };
    let count = |r: &Run| format!("{}/{n}", r.ok.iter().filter(|o| **o).count());
    let row = |label: &str, a: String, b: String| println!("| {label} | {a} | {b} |");
    let s = |ms: f64| format!("{:.1}", ms / 1000.0);
    let m = |ms: f64| format!("{ms:.0}");
    row(
        &format!("**one after another**: total, {n} containers (s)"),
        s(seq_on.total_ms),
        s(seq_off.total_ms),
    );
    row("— ready", count(&seq_on), count(&seq_off));
    row(
        "— first container (ms)",
        m(seq_on.per_ms[0]),
        m(seq_off.per_ms[0]),
    );
    row(
        "— each later container: median (ms)",
        format!("**{}**", m(median(later(&seq_on)))),
        m(median(later(&seq_off))),
    );
    row(
        "— each later container: max (ms)",
        m(max(&later(&seq_on))),
        m(max(&later(&seq_off))),
    );
    row(
        "— evaluations (nix-build runs)",
        format!("**{}**", seq_on.evaluations),
        seq_off.evaluations.to_string(),
    );
    row(
        &format!("**all {n} at once**: first ensure to the last ready (s)"),
        s(par_on.total_ms),
        s(par_off.total_ms),
    );
    row("— ready", count(&par_on), count(&par_off));
    row(
        "— per container: median (ms)",
        m(median(ready(&par_on))),
        m(median(ready(&par_off))),
    );
    row(
        "— per container: max (ms)",
        m(max(&ready(&par_on))),
        m(max(&ready(&par_off))),
    );
    row(
        "— evaluations (nix-build runs)",
        format!("**{}**", par_on.evaluations),
        par_off.evaluations.to_string(),
    );
    println!(
        "| bare systemd-nspawn boot of the same system: median of {} (ms) | {} | |",
        bare.len(),
        m(bare_m)
    );
    println!(
        "\n- each later container, sharing on / bare boot: **{:.2}** (goal ≤ 1.3); reference: {:.2}",
        median(later(&seq_on)) / bare_m,
        median(later(&seq_off)) / bare_m
    );
    println!(
        "- evaluations with sharing: {} in order + {} at once (goal: 1 each; every run starts with nothing built); \
         \"building the system of\" lines: {} / {} / {} / {}",
        seq_on.evaluations,
        par_on.evaluations,
        seq_on.build_lines,
        seq_off.build_lines,
        par_on.build_lines,
        par_off.build_lines
    );
    let failures: Vec<&String> = [&seq_on, &seq_off, &par_on, &par_off]
        .iter()
        .flat_map(|r| &r.failures)
        .collect();
    if !failures.is_empty() {
        println!("\n{} ensures FAILED:", failures.len());
        for f in failures {
            println!("{f}\n");
        }
        std::process::exit(1);
    }
}
