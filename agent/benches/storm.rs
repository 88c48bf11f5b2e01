//! `cargo bench --bench storm` (as root): boot storms.
//!
//! 1. 50 new containers ensured at once (the fast fixture, the system built
//!    before), against a bare `systemd-nspawn` storm of the same 50 systems,
//!    interleaved over `BENCH_ROUNDS` rounds (default 2), with
//!    `fs.inotify.max_user_instances` raised (to 8192 if lower).
//! 2. The same ensure storm with `max_user_instances` at 128 (the kernel's
//!    default). The fixture's mini-init takes no inotify instance, so
//!    nothing can die of it here: what this shows is what the agent's
//!    preflight refuses up front.
//! 3. With `BENCH_STORM_FULL=1` (slow: every container copies the Debian
//!    tree of tests/fixtures/fullsystem into its root and boots systemd,
//!    ≈ 5 minutes more): the storm of the full system, whose systemd takes
//!    inotify instances, with the limit raised and then at 128 — how many
//!    are ready, refused up front (with the message) and died at boot.
//!
//! The sysctl is put back when the bench ends, also when it fails (and by
//! the next run when it was killed). Prints Markdown tables for
//! docs/benchmarks.md. `BENCH_STORM_N` sets the number (default 50).

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use common::*;
use std::time::Duration;
use support::bare::bare_storm;
use support::host::Sysctl;
use support::{at_once, destroy_all, env_or, max, median, Timed};

const INOTIFY: &str = "fs.inotify.max_user_instances";

/// How the containers of one ensure storm ended.
struct Outcome {
    total_ms: f64,
    /// Nix evaluations (nix-build runs) during the storm.
    evaluations: usize,
    ready_ms: Vec<f64>,
    /// Failed before their boot started: (message, ms).
    refused: Vec<(String, f64)>,
    /// Failed after systemd-nspawn had started: (message, ms).
    died: Vec<(String, f64)>,
    /// The end of the first death's output (what its console said last).
    died_tail: String,
}

/// `t` without terminal colour sequences (systemd's console has them).
fn plain(t: &str) -> String {
    let mut out = String::with_capacity(t.len());
    let mut chars = t.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ parameters… final letter
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// What a failed ensure said, the same for every container (its name
/// replaced): its error line, and the first line of the container's log
/// that names a cause.
fn failure_message(t: &str, name: &str) -> String {
    let error = t
        .lines()
        .find(|l| l.trim_start().starts_with("error"))
        .or_else(|| t.lines().rev().find(|l| !l.trim().is_empty()))
        .unwrap_or("")
        .trim();
    // The most telling line of the container's log, by kind.
    let cause = ["Too many open files", "inotify", "refus", "Failed to"]
        .iter()
        .find_map(|w| t.lines().find(|l| l.contains(w)));
    let m = match cause {
        Some(c) if c.trim() != error => format!("{error} … {}", c.trim()),
        _ => error.to_string(),
    };
    m.replace(name, "NAME").chars().take(400).collect()
}

/// Ensure `names` at once on `agent`; destroy them after.
fn ensure_storm(agent: &TestAgent, nix: &NixCounter, names: &[String], url: &str) -> Outcome {
    let before = nix.count();
    let cmds = names
        .iter()
        .map(|n| agent.command(DEVHOST, &["ensure", n, url]))
        .collect();
    let (done, total_ms): (Vec<Timed>, f64) = at_once(cmds);
    let mut o = Outcome {
        total_ms,
        evaluations: nix.count() - before,
        ready_ms: Vec::new(),
        refused: Vec::new(),
        died: Vec::new(),
        died_tail: String::new(),
    };
    for (d, n) in done.iter().zip(names) {
        let t = plain(&text(&d.out));
        if d.out.status.success() {
            o.ready_ms.push(d.ms);
        } else if t.contains("systemd-nspawn started") || t.contains("started devhost-") {
            o.died.push((failure_message(&t, n), d.ms));
            if o.died_tail.is_empty() {
                let lines: Vec<&str> = t.lines().collect();
                o.died_tail = lines[lines.len().saturating_sub(15)..].join("\n    ");
            }
        } else {
            o.refused.push((failure_message(&t, n), d.ms));
        }
    }
    destroy_all(agent, names, 10);
    o
}

fn print_failures(label: &str, o: &Outcome) {
    for (what, list) in [("refused up front", &o.refused), ("died at boot", &o.died)] {
        if list.is_empty() {
            continue;
        }
        let times: Vec<f64> = list.iter().map(|(_, ms)| *ms).collect();
        println!(
            "\n{label}: {} {what} (their ensures ended after {:.1}–{:.1} s); messages:",
            list.len(),
            times.iter().copied().fold(f64::INFINITY, f64::min) / 1000.0,
            max(&times) / 1000.0
        );
        let mut seen: Vec<(&str, usize)> = Vec::new();
        for (m, _) in list {
            match seen.iter_mut().find(|(s, _)| *s == m.as_str()) {
                Some((_, k)) => *k += 1,
                None => seen.push((m, 1)),
            }
        }
        for (m, k) in seen.iter().take(5) {
            println!("    {k} × {m}");
        }
    }
    if !o.died_tail.is_empty() {
        println!(
            "  the first death's output ended with:\n    {}",
            o.died_tail
        );
    }
    let some_failed = !o.refused.is_empty() || !o.died.is_empty();
    if some_failed && !o.ready_ms.is_empty() {
        println!(
            "{label}: the {} ready took {:.1}–{:.1} s",
            o.ready_ms.len(),
            o.ready_ms.iter().copied().fold(f64::INFINITY, f64::min) / 1000.0,
            max(&o.ready_ms) / 1000.0
        );
    }
}

fn main() {
    if support::listing() {
        return;
    }
    let Some(()) = prerequisites("bench storm") else {
        return;
    };
    let n: usize = env_or("BENCH_STORM_N", 50);
    let rounds: usize = env_or("BENCH_ROUNDS", 2).max(1);
    let full = std::env::var("BENCH_STORM_FULL").is_ok_and(|v| v == "1");
    let ch = channel();
    let raised = {
        let now: u64 = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_instances")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        Sysctl::set(INOTIFY, &now.max(8192).to_string())
    };
    let nix = NixCounter::new();
    let agent = TestAgent::start(Options {
        wide_pool: true,
        ready_timeout_secs: 120,
        nix_toml: nix.nix_toml(),
        ..Options::default()
    });
    // The system, built once.
    let warm = agent.name("warm");
    assert_ok(&agent.devhost(&["ensure", &warm, &ch.url]), "first ensure");
    let system = agent.status_json(&warm).unwrap()["system_path"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ok(&agent.devhost(&["destroy", &warm]), "destroy");

    // 1. Bare storm and ensure storm, interleaved. New names in every
    // storm: the agent reuses a system for the same name without Nix.
    let names_of = |storm: usize| -> Vec<String> {
        let letter = (b'a' + storm as u8) as char;
        (0..n)
            .map(|i| agent.name(&format!("{letter}{i}")))
            .collect()
    };
    let bare_dir = agent.dir.join("bare");
    let (mut bares, mut storms) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        let names = names_of(r);
        let tag = agent.tag.clone();
        bares.push(bare_storm(
            &system,
            &bare_dir,
            n,
            |i| format!("b{tag}{i}"),
            Duration::from_secs(120),
        ));
        storms.push(ensure_storm(&agent, &nix, &names, &ch.url));
    }

    // 2. At 128.
    let low = Sysctl::set(INOTIFY, "128");
    let at128 = ensure_storm(&agent, &nix, &names_of(rounds), &ch.url);
    drop(low);

    // 3. The full system (opt-in): with the limit raised, then at 128.
    let full_storms = full.then(|| {
        let (tree, _) = full_system_tree();
        let fagent = TestAgent::start(Options {
            wide_pool: true,
            nix_toml: nix.nix_toml(),
            nix_extra_config: format!("devhost.fixture.fullSystem = \"{tree}\";"),
            nix_allowed_paths: vec![tree.to_string()],
            ready_timeout_secs: 300,
            ..Options::default()
        });
        let warm = fagent.name("warm");
        assert_ok(
            &fagent.devhost(&["ensure", &warm, &ch.url]),
            "first ensure (full system)",
        );
        assert_ok(&fagent.devhost(&["destroy", &warm]), "destroy");
        let fnames = |letter: char| -> Vec<String> {
            (0..n)
                .map(|i| fagent.name(&format!("{letter}{i}")))
                .collect()
        };
        let high = ensure_storm(&fagent, &nix, &fnames('f'), &ch.url);
        let low = Sysctl::set(INOTIFY, "128");
        let at128 = ensure_storm(&fagent, &nix, &fnames('g'), &ch.url);
        drop(low);
        (high, at128)
    });
    drop(raised);

    println!(
        "\nstorm bench: {n} new containers at once, {rounds} rounds, {}\n",
        support::machine()
    );
    println!("| {n} at once, `max_user_instances` ≥ 8192 | ready | first ensure/boot to the last ready (s) | per container: median (ms) | max (ms) | evaluations |\n|---|---:|---:|---:|---:|---:|");
    for r in 0..rounds {
        let b = &bares[r];
        println!(
            "| round {}: bare systemd-nspawn storm (reference) | {}/{n} | {:.2} | {:.0} | {:.0} | |",
            r + 1,
            b.ready_ms.len(),
            b.total_ms / 1000.0,
            median(b.ready_ms.clone()),
            max(&b.ready_ms)
        );
        let s = &storms[r];
        println!(
            "| round {}: **devhost ensure storm** | **{}/{n}** | **{:.2}** | {:.0} | {:.0} | {} |",
            r + 1,
            s.ready_ms.len(),
            s.total_ms / 1000.0,
            median(s.ready_ms.clone()),
            max(&s.ready_ms),
            s.evaluations
        );
    }
    let bare_total = median(bares.iter().map(|b| b.total_ms).collect());
    let storm_total = median(storms.iter().map(|s| s.total_ms).collect());
    println!(
        "\n- ensure storm / bare storm (medians of the rounds' totals): **{:.2}** (goal ≤ 1.3); per round: {}",
        storm_total / bare_total,
        bares
            .iter()
            .zip(&storms)
            .map(|(b, s)| format!("{:.2}", s.total_ms / b.total_ms))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for b in &bares {
        for f in b.failed.iter().take(3) {
            println!("- a bare boot failed: {f}");
        }
    }
    println!("\n| {n} at once | ready | refused up front | died at boot | total (s) | evaluations |\n|---|---:|---:|---:|---:|---:|");
    let line = |label: &str, o: &Outcome| {
        println!(
            "| {label} | {}/{n} | {} | {} | {:.2} | {} |",
            o.ready_ms.len(),
            o.refused.len(),
            o.died.len(),
            o.total_ms / 1000.0,
            o.evaluations
        )
    };
    line(
        "fast fixture (mini-init: no inotify instance), `max_user_instances` = 128",
        &at128,
    );
    match &full_storms {
        Some((high, low)) => {
            line(
                "full system (Debian, systemd), `max_user_instances` ≥ 8192",
                high,
            );
            line(
                "**full system (Debian, systemd), `max_user_instances` = 128**",
                low,
            );
        }
        None => println!("| full system (Debian, systemd) | not run: BENCH_STORM_FULL=1 | | | | |"),
    }
    for (r, s) in storms.iter().enumerate() {
        print_failures(&format!("round {}", r + 1), s);
    }
    print_failures("at 128, fast fixture", &at128);
    if let Some((high, low)) = &full_storms {
        print_failures("full system, limit raised", high);
        print_failures("full system at 128", low);
    }
}
