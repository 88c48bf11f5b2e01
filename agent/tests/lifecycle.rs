//! The container lifecycle against the real programs: ensure → running →
//! reachable → re-ensure keeps it → stop/start → destroy leaves nothing;
//! compatible front-ends; concurrency; failures that leave nothing behind.

mod common;

use common::*;
use std::time::{Duration, Instant};

#[test]
fn lifecycle_end_to_end_direct() {
    lifecycle_end_to_end(Kind::Direct);
}

#[test]
fn lifecycle_end_to_end_systemd() {
    lifecycle_end_to_end(Kind::Systemd);
}

/// The backend the agent reports.
fn assert_backend(agent: &TestAgent, kind: Kind) {
    let info: serde_json::Value =
        serde_json::from_slice(&agent.devhost(&["--json", "info"]).stdout).unwrap();
    let want = match kind {
        Kind::Direct => "direct",
        Kind::Systemd => "systemd",
    };
    assert_eq!(
        info["backend"], want,
        "backend chosen automatically: {info}"
    );
}

fn lifecycle_end_to_end(kind: Kind) {
    let Some(()) = prerequisites("lifecycle_end_to_end") else {
        return;
    };
    let ch = channel();
    let agent = TestAgent::start(Options {
        kind,
        ..Options::default()
    });
    assert_backend(&agent, kind);
    let name = agent.name("life");

    // ensure, as batou ≤ 2.5.4 calls it: four arguments, aliases in one.
    let out = agent.fc_build(&["ensure", &name, &ch.url, "www API"]);
    assert_ok(&out, "fc-build-dev-container ensure");
    let s = agent.status_json(&name).unwrap();
    assert_eq!(s["state"], "running", "{s}");
    assert_eq!(s["aliases"], serde_json::json!(["www", "api"]));
    assert!(s["system_path"]
        .as_str()
        .unwrap()
        .starts_with("/nix/store/"));
    let addr = agent.address(&name);
    assert_eq!(
        http_get(addr, 80).unwrap().trim(),
        format!("hello from fc {name}"),
        "base import <fc/nixos> evaluated, host name set"
    );

    // What other tooling reads.
    assert!(
        agent.hosts().lines().any(|l| l == format!("{addr} {name}")),
        "hosts:\n{}",
        agent.hosts()
    );
    assert!(
        agent.hosts().starts_with("127.0.0.1 localhost\n"),
        "foreign lines kept"
    );
    let compat: serde_json::Value = serde_json::from_slice(
        &std::fs::read(agent.dir.join(format!("compat/{name}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(
        compat,
        serde_json::json!({"name": name, "ip": addr.to_string(), "aliases": ["www", "api"], "enabled": true})
    );
    let enc = std::fs::read_to_string(
        agent
            .dir
            .join(format!("containers/{name}/etc/nixos/enc.json")),
    )
    .unwrap();
    assert!(
        enc.contains(&ch.url) && enc.contains("\"environment\":\"container\""),
        "{enc}"
    );
    assert!(
        agent.nft_table().unwrap().contains(&addr.to_string()),
        "address in the NAT set"
    );
    assert!(
        std::fs::read_link(agent.dir.join(format!("profiles/{name}/system")))
            .unwrap()
            .starts_with("/nix/store")
    );

    let nc = agent.nixos_container(&["list"]);
    assert_ok(&nc, "nixos-container list");
    assert!(String::from_utf8_lossy(&nc.stdout)
        .lines()
        .any(|l| l == name));
    assert_eq!(
        String::from_utf8_lossy(&agent.nixos_container(&["status", &name]).stdout),
        "up\n"
    );
    assert_eq!(
        String::from_utf8_lossy(&agent.nixos_container(&["show-ip", &name]).stdout),
        format!("{addr}\n")
    );

    // Re-ensure: same process, refreshed aliases, later last deploy.
    let pid = s["pid"].as_u64().unwrap();
    let t = Instant::now();
    assert_ok(
        &agent.fc_build(&["ensure", &name, &ch.url, ""]),
        "re-ensure",
    );
    let re_ensure = t.elapsed();
    let s2 = agent.status_json(&name).unwrap();
    assert_eq!(
        s2["pid"].as_u64(),
        Some(pid),
        "re-ensure keeps the running container"
    );
    assert_eq!(s2["aliases"], serde_json::json!([]));
    // Shown to the second; that it moves with the clock is asserted
    // in-process, with a clock the test moves (supervisor::tests).
    assert!(
        s2["last_deploy"].as_str() >= s["last_deploy"].as_str(),
        "last deploy did not go back: {s2}"
    );
    eprintln!("re-ensure took {re_ensure:?}");

    // Stop: gone from the network, record kept.
    assert_ok(&agent.devhost(&["stop", &name]), "stop");
    assert_eq!(agent.status(&name).state.as_str(), "stopped");
    assert!(
        http_get(addr, 80).is_err(),
        "stopped container must not answer"
    );
    assert!(nspawn_pids(&agent.dir.join("containers"))
        .iter()
        .all(|(_, n)| n != &name));
    assert_eq!(
        String::from_utf8_lossy(&agent.nixos_container(&["status", &name]).stdout),
        "down\n"
    );
    let console = text(&agent.devhost(&["logs", &name]));
    assert!(
        console.contains("fixture init: powering off"),
        "stop was a graceful poweroff:\n{console}"
    );

    // Start again.
    assert_ok(&agent.devhost(&["start", &name]), "start");
    assert_eq!(
        http_get(addr, 80).unwrap().trim(),
        format!("hello from fc {name}")
    );
    let logs = agent.devhost(&["logs", &name]);
    assert!(
        text(&logs).contains("fixture init: serving on ports 80"),
        "{}",
        text(&logs)
    );
    let j: serde_json::Value =
        serde_json::from_slice(&agent.devhost(&["--json", "logs", &name]).stdout).unwrap();
    assert_eq!(j["kind"], "console");
    assert!(
        j["lines"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().contains("serving on ports 80")),
        "{j}"
    );
    let build_log = agent.devhost(&["logs", "--build", &name]);
    assert!(
        text(&build_log).contains("nix-build"),
        "{}",
        text(&build_log)
    );

    // Destroy leaves nothing; destroying again (or a name never used) is fine.
    assert_ok(&agent.fc_build(&["destroy", &name]), "destroy");
    assert_eq!(agent.traces_of(&name, addr), Vec::<String>::new());
    assert!(agent.try_status(&name).is_none());
    assert_eq!(
        String::from_utf8_lossy(&agent.nixos_container(&["status", &name]).stdout),
        "gone\n"
    );
    let again = agent.fc_build(&["destroy", &name]);
    assert_ok(&again, "destroy of a destroyed container");
    assert_ok(
        &agent.fc_build(&["destroy", &agent.name("never")]),
        "destroy of an unknown name",
    );
}

#[test]
fn containers_survive_agent_restart_and_crash_direct() {
    containers_survive_agent_restart_and_crash(Kind::Direct);
}

#[test]
fn containers_survive_agent_restart_and_crash_systemd() {
    containers_survive_agent_restart_and_crash(Kind::Systemd);
}

fn containers_survive_agent_restart_and_crash(kind: Kind) {
    let Some(()) = prerequisites("containers_survive_agent_restart_and_crash") else {
        return;
    };
    let ch = channel();
    let mut agent = TestAgent::start(Options {
        kind,
        ..Options::default()
    });
    let name = agent.name("keep");
    assert_ok(&agent.devhost(&["ensure", &name, &ch.url]), "ensure");
    let addr = agent.address(&name);
    let pid = agent.status_json(&name).unwrap()["pid"].as_u64().unwrap();

    for signal in [
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGKILL,
    ] {
        agent.stop_agent(signal);
        let down = agent.devhost(&["list"]);
        assert_eq!(
            down.status.code(),
            Some(3),
            "CLI exit code when the agent is down: {}",
            text(&down)
        );
        assert!(
            text(&down).contains("agent is not running"),
            "{}",
            text(&down)
        );
        assert!(
            http_get(addr, 80).is_ok(),
            "container keeps serving without the agent ({signal})"
        );
        agent.spawn();
        let s = agent.status_json(&name).unwrap();
        assert_eq!(s["state"], "running", "re-adopted after {signal}: {s}");
        assert_eq!(s["pid"].as_u64(), Some(pid), "same process after {signal}");
        let info = agent.devhost(&["info"]);
        assert!(
            text(&info).contains("everything consistent"),
            "{}",
            text(&info)
        );
    }
    // The adopted container is still fully manageable.
    assert_ok(&agent.devhost(&["stop", &name]), "stop adopted");
    assert!(http_get(addr, 80).is_err());
    assert_ok(&agent.devhost(&["destroy", &name]), "destroy");
    assert_eq!(agent.traces_of(&name, addr), Vec::<String>::new());
}

#[test]
fn sigkill_mid_ensure_rolls_back_and_retry_succeeds() {
    let Some(()) = prerequisites("sigkill_mid_ensure_rolls_back_and_retry_succeeds") else {
        return;
    };
    let ch = channel();
    // The tag finds this test's builders among all (systems are shared:
    // nothing in the build names the container).
    let tag = format!("kill-{}", std::process::id());
    let mut agent = TestAgent::start(Options {
        nix_extra_config: format!(
            "devhost.fixture.buildDelay = 6; devhost.fixture.tag = \"{tag}\";"
        ),
        ..Options::default()
    });
    let name = agent.name("kill");
    let mut ensure = std::process::Command::new(DEVHOST)
        .args(["ensure", &name, &ch.url])
        .env("DEVHOST_SOCKET", &agent.socket)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the build runs, then crash the agent.
    wait_until(Duration::from_secs(60), "ensure reaches the build", || {
        let phase = agent
            .status_json(&name)
            .map(|s| s["phase"].as_str().unwrap_or("").to_string());
        phase.as_deref() == Some("building")
            && std::fs::read_to_string(agent.dir.join(format!("state/containers/{name}/build.log")))
                .map(|l| l.contains("building '"))
                .unwrap_or(false)
    });
    agent.stop_agent(nix::sys::signal::Signal::SIGKILL);
    let st = ensure.wait().unwrap();
    assert!(
        !st.success(),
        "the interrupted ensure must not report success"
    );
    agent.spawn();
    let info = agent.devhost(&["info"]);
    assert!(
        text(&info).contains(&format!(
            "{name}: creation was interrupted in phase building; rolled back"
        )),
        "{}",
        text(&info)
    );
    let pool_first: std::net::Ipv4Addr = format!("10.231.{}.2", agent.subnet).parse().unwrap();
    assert_eq!(
        agent.traces_of(&name, pool_first),
        Vec::<String>::new(),
        "rollback left traces"
    );
    // No nix-build survived the agent.
    let builds = std::process::Command::new("pgrep")
        .args(["-f", &format!("nixos-config={}", agent.dir.display())])
        .output()
        .unwrap();
    assert!(
        builds.stdout.is_empty(),
        "orphaned nix-build: {}",
        text(&builds)
    );

    // Nor any builder of its system (single-user Nix leaves them running).
    let marker = format!("DEVHOST_FIXTURE_TAG={tag}\0");
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(env) = std::fs::read(entry.path().join("environ")) {
            let env = String::from_utf8_lossy(&env);
            assert!(
                !(env.contains("NIX_BUILD_TOP=") && env.contains(&marker)),
                "a builder of the rolled-back system survived: pid {:?}",
                entry.file_name()
            );
        }
    }
    // The retry succeeds (the slow build runs to the end this time).
    let out = agent.devhost(&["ensure", &name, &ch.url]);
    assert_ok(&out, "retry after crash");
    assert_eq!(
        http_get(agent.address(&name), 80).unwrap().trim(),
        format!("hello from fc {name}")
    );
}

#[test]
fn ensures_of_different_names_run_concurrently() {
    let Some(()) = prerequisites("ensures_of_different_names_run_concurrently") else {
        return;
    };
    let ch = channel();
    let agent = TestAgent::start(Options {
        nix_extra_config: "devhost.fixture.buildDelay = 3;".into(),
        ..Options::default()
    });
    let t = Instant::now();
    let names = [agent.name("cc"), agent.name("cd")];
    let threads: Vec<_> = names
        .iter()
        .map(|n| agent.ensure_in_thread(n, &ch.url))
        .collect();
    for th in threads {
        assert_ok(&th.join().unwrap(), "concurrent ensure");
    }
    let elapsed = t.elapsed();
    assert!(
        elapsed < Duration::from_secs(6),
        "two 3-second builds took {elapsed:?}: ensures of different names were serialized"
    );
    // Operations on one name queue behind each other: two ensures of the
    // same new name both succeed and make one container.
    let same = agent.name("cs");
    let threads: Vec<_> = (0..2)
        .map(|_| agent.ensure_in_thread(&same, &ch.url))
        .collect();
    for th in threads {
        assert_ok(&th.join().unwrap(), "ensure of the same name");
    }
    let procs = nspawn_pids(&agent.dir.join("containers"));
    assert_eq!(
        procs.iter().filter(|(_, n)| n == &same).count(),
        1,
        "{procs:?}"
    );

    let a = agent.address(&names[0]);
    let b = agent.address(&names[1]);
    assert_ne!(a, b);
    for (n, addr) in [(&names[0], a), (&names[1], b)] {
        assert_eq!(
            http_get(addr, 80).unwrap().trim(),
            format!("hello from fc {n}")
        );
    }
}
