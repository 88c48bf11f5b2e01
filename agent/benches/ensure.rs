//! `cargo bench --bench ensure` (as root): ensure-to-ready of a new container
//! whose system is already built, broken into phases, next to a bare
//! `systemd-nspawn` boot of the same system in the same run; and re-ensure of
//! a running container. Prints a table for docs/benchmarks.md.

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use std::io::Read;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ROUNDS: usize = 15;
const RE_ENSURE_ROUNDS: usize = 50;

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let med = v[v.len() / 2];
    let p90 = v[((v.len() as f64) * 0.9) as usize - 1];
    (med, p90, v[0])
}

/// The number right after `marker` in the progress output ("built in 12 ms").
fn ms_in(out: &str, marker: &str) -> f64 {
    out.lines()
        .find_map(|l| l.split(marker).nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|x| x.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Boot the system with bare systemd-nspawn until READY=1, with a user
/// namespace (as devhost's containers) or without; ms.
fn bare_boot(system: &str, root: &std::path::Path, name: &str, userns: bool) -> f64 {
    let _ = std::fs::remove_dir_all(root);
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("usr")).unwrap();
    std::fs::write(root.join("etc/os-release"), "").unwrap();
    let sock_path = root.with_extension("notify");
    let _ = std::fs::remove_file(&sock_path);
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let t = Instant::now();
    let mut child = Command::new("systemd-nspawn")
        .args(["--keep-unit", "--register=no", "-M", name, "-D"])
        .arg(root)
        .args([
            "--notify-ready=yes",
            "--kill-signal=SIGRTMIN+3",
            "--console=read-only",
            "--bind-ro=/nix/store",
            "--private-network",
        ])
        .args(if userns {
            &["--private-users=pick", "--private-users-ownership=map"][..]
        } else {
            &[][..]
        })
        .arg(format!("{system}/init"))
        .env("NOTIFY_SOCKET", &sock_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 4096];
    loop {
        let n = sock.recv(&mut buf).expect("READY=1 from bare nspawn");
        if String::from_utf8_lossy(&buf[..n])
            .lines()
            .any(|l| l == "READY=1")
        {
            break;
        }
    }
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let kids = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id()))
                .unwrap_or_default();
            for k in kids
                .split_whitespace()
                .filter_map(|k| k.parse::<i32>().ok())
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(k),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = std::fs::remove_file(&sock_path);
    let _ = std::fs::remove_dir_all(root);
    ms
}

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
