//! `cargo bench --bench ensure` (as root): ensure-to-ready of a new container
//! whose system is already built, broken into phases, next to a bare
//! `systemd-nspawn` boot of the same system in the same run; and re-ensure of
//! a running container. Prints a table for docs/benchmarks.md.

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use common::*;
use std::io::Read;
use std::time::Instant;
use support::bare::bare_boot;
use support::{ms_in, stats};

const ROUNDS: usize = 15;
const RE_ENSURE_ROUNDS: usize = 50;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists targets; nothing to run then.
    }
    let Some(()) = prerequisites("bench ensure") else {
        return;
    };
    let ch = channel();
    let agent = TestAgent::start(Options::default());
    let name = agent.name("bench");

    // Build once; every later ensure of the same name reuses the system.
    assert_ok(&agent.devhost(&["ensure", &name, &ch.url]), "first ensure");
    let system = agent.status_json(&name).unwrap()["system_path"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ok(&agent.devhost(&["destroy", &name]), "destroy");

    let (mut total, mut eval, mut net, mut boot, mut bare, mut bare_shared) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let bare_root = agent.dir.join("bare-root");
    for _ in 0..ROUNDS {
        bare.push(bare_boot(&system, &bare_root, &agent.name("bare"), true));
        bare_shared.push(bare_boot(&system, &bare_root, &agent.name("bare"), false));
        let t = Instant::now();
        let out = agent.devhost(&["ensure", &name, &ch.url]);
        total.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_ok(&out, "ensure");
        let o = String::from_utf8_lossy(&out.stdout).into_owned();
        eval.push(ms_in(&o, "built in"));
        net.push(ms_in(&o, "network ready in"));
        boot.push(ms_in(&o, "ready after"));
        assert_ok(&agent.devhost(&["destroy", &name]), "destroy");
    }
    // The same through the systemd backend, inside the booted stand-in.
    let sagent = TestAgent::start(Options {
        kind: Kind::Systemd,
        ..Options::default()
    });
    let sname = sagent.name("bench");
    assert_ok(
        &sagent.devhost(&["ensure", &sname, &ch.url]),
        "first ensure (systemd)",
    );
    assert_ok(&sagent.devhost(&["destroy", &sname]), "destroy (systemd)");
    let (mut s_total, mut s_boot) = (vec![], vec![]);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let out = sagent.devhost(&["ensure", &sname, &ch.url]);
        s_total.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_ok(&out, "ensure (systemd)");
        let o = String::from_utf8_lossy(&out.stdout).into_owned();
        s_boot.push(ms_in(&o, "start job done after"));
        assert_ok(&sagent.devhost(&["destroy", &sname]), "destroy (systemd)");
    }
    drop(sagent);

    assert_ok(
        &agent.devhost(&["ensure", &name, &ch.url]),
        "ensure for re-ensure",
    );
    let mut re = vec![];
    for _ in 0..RE_ENSURE_ROUNDS {
        let t = Instant::now();
        assert_ok(
            &agent.fc_build(&["ensure", &name, &ch.url, "www"]),
            "re-ensure",
        );
        re.push(t.elapsed().as_secs_f64() * 1000.0);
    }

    let mut kernel = String::new();
    let _ = std::fs::File::open("/proc/sys/kernel/osrelease")
        .and_then(|mut f| f.read_to_string(&mut kernel));
    println!("devhost ensure benchmark ({ROUNDS} rounds, {RE_ENSURE_ROUNDS} re-ensures; kernel {}; {} cores)", kernel.trim(), std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0));
    println!(
        "{:<52} {:>9} {:>9} {:>9}",
        "measure (ms)", "median", "p90", "min"
    );
    let row = |label: &str, v: &Vec<f64>| {
        let (m, p, mn) = stats(v.clone());
        println!("{label:<52} {m:>9.1} {p:>9.1} {mn:>9.1}");
        m
    };
    let bare_m = row("bare systemd-nspawn boot to READY=1 (reference)", &bare);
    row("  the same without a user namespace", &bare_shared);
    let total_m = row("devhost ensure, new container, system built", &total);
    row("  phase: nix-build (evaluation, system cached)", &eval);
    row("  phase: network (netns, veth, addresses, routes)", &net);
    row("  phase: boot to READY=1", &boot);
    let s_m = row(
        "devhost ensure through the systemd backend (stand-in)",
        &s_total,
    );
    row(
        "  phase: transient unit start job to done (READY=1)",
        &s_boot,
    );
    row("devhost re-ensure of a running container", &re);
    println!(
        "ratio new ensure / bare boot: {:.2} (target <= 1.3)",
        total_m / bare_m
    );
    println!(
        "ratio systemd-backend ensure / bare boot: {:.2}",
        s_m / bare_m
    );
}
