//! What differs between the backends, tested on each: the systemd backend's
//! units, machines and limits (inside the booted stand-in), failing boots,
//! and starting containers again after a host boot.

mod common;

use common::*;

#[test]
fn systemd_unit_machine_and_live_limits() {
    let Some(()) = prerequisites("systemd_unit_machine_and_live_limits") else {
        return;
    };
    let agent = TestAgent::start(Options {
        kind: Kind::Systemd,
        ..Options::default()
    });
    let si = agent.standin.as_ref().unwrap();
    let name = agent.name("unit");
    let unit = format!("devhost-{name}.service");
    let out = agent.devhost(&[
        "ensure",
        &name,
        &channel().url,
        "--memory",
        "512M",
        "--cpu",
        "1.5",
        "--tasks",
        "512",
    ]);
    assert_ok(&out, "ensure with limits");

    for (prop, want) in [
        ("ActiveState", "active"),
        ("Type", "notify"),
        ("Slice", "machine.slice"),
        ("Delegate", "yes"),
        ("KillMode", "mixed"),
        ("DevicePolicy", "closed"),
        ("MemoryMax", "536870912"),
        ("CPUQuotaPerSecUSec", "1.500000s"),
        ("TasksMax", "512"),
    ] {
        assert_eq!(si.unit_property(&unit, prop), want, "{unit} {prop}");
    }
    assert!(si
        .unit_property(&unit, "RestartForceExitStatus")
        .contains("133"));
    let machines = si.machines();
    assert!(
        machines
            .lines()
            .any(|l| l.starts_with(&format!("{name} ")) && l.contains("container")),
        "machinectl list:\n{machines}"
    );
    let s = agent.status_json(&name).unwrap();
    assert_eq!(
        s["limits"],
        serde_json::json!({"memory_max": 536870912u64, "cpu_percent": 150, "tasks_max": 512})
    );
    let logs = text(&agent.devhost(&["logs", &name]));
    assert!(
        logs.contains("fixture init: serving on ports 80"),
        "console from the journal:\n{logs}"
    );

    // Limits change live: same process, new MemoryMax.
    let pid = si.unit_property(&unit, "MainPID");
    let out = agent.devhost(&["ensure", &name, &channel().url, "--memory", "1G"]);
    assert_ok(&out, "re-ensure with a new limit");
    assert!(
        text(&out).contains("applied to the running container"),
        "{}",
        text(&out)
    );
    assert_eq!(si.unit_property(&unit, "MemoryMax"), "1073741824");
    assert_eq!(
        si.unit_property(&unit, "CPUQuotaPerSecUSec"),
        "1.500000s",
        "other limits kept"
    );
    assert_eq!(
        si.unit_property(&unit, "MainPID"),
        pid,
        "applied without a restart"
    );

    let bad = agent.devhost(&["ensure", &name, &channel().url, "--memory", "lots"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad).contains("invalid memory \"lots\""),
        "{}",
        text(&bad)
    );

    let addr = agent.address(&name);
    assert_ok(&agent.devhost(&["destroy", &name]), "destroy");
    assert_eq!(agent.traces_of(&name, addr), Vec::<String>::new());
}

fn failed_boot(kind: Kind) {
    let Some(()) = prerequisites("failed_boot") else {
        return;
    };
    let agent = TestAgent::start(Options {
        kind,
        nix_extra_config: "devhost.fixture.failBoot = true;".into(),
        ..Options::default()
    });
    let name = agent.name("noboot");
    let out = agent.devhost(&["ensure", &name, &channel().url]);
    assert_eq!(out.status.code(), Some(1));
    let t = text(&out);
    assert!(t.contains("exited during boot"), "{t}");
    assert!(
        t.contains("fixture init: failing at boot as configured"),
        "the last console lines are in the error:\n{t}"
    );
    let first: std::net::Ipv4Addr = format!("10.231.{}.2", agent.subnet).parse().unwrap();
    assert_eq!(agent.traces_of(&name, first), Vec::<String>::new());
}

#[test]
fn failed_boot_direct() {
    failed_boot(Kind::Direct);
}

#[test]
fn failed_boot_systemd() {
    failed_boot(Kind::Systemd);
}

#[test]
fn a_failed_starts_message_has_no_lines_of_an_earlier_container_of_the_name() {
    let Some(()) =
        prerequisites("a_failed_starts_message_has_no_lines_of_an_earlier_container_of_the_name")
    else {
        return;
    };
    let agent = TestAgent::start(Options {
        kind: Kind::Systemd,
        nix_extra_config: "devhost.fixture.failBoot = true;".into(),
        ..Options::default()
    });
    let name = agent.name("noboot");
    let unit = format!("devhost-{name}.service");
    // What an earlier container of the name (another user's, destroyed
    // since) left in the unit's journal.
    let si = agent.standin.as_ref().unwrap();
    assert_ok(
        &si.exec(&[
            "systemd-run",
            "--unit",
            &unit,
            "--wait",
            "echo",
            "EARLIER-SECRET",
        ]),
        "an earlier unit of the name",
    );
    wait_until(
        std::time::Duration::from_secs(20),
        "it is in the journal",
        || text(&si.exec(&["journalctl", "-u", &unit, "--no-pager"])).contains("EARLIER-SECRET"),
    );
    wait_until(
        std::time::Duration::from_secs(10),
        "the earlier unit is gone",
        || si.unit_property(&unit, "LoadState") != "loaded",
    );
    let out = agent.devhost(&["ensure", &name, &channel().url]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("fixture init: failing at boot as configured"),
        "this start's lines are in the error:\n{t}"
    );
    assert!(
        !t.contains("EARLIER-SECRET"),
        "an earlier container's:\n{t}"
    );
}

/// After a host boot (a new kernel boot id), the agent starts the enabled
/// containers that were running; after a mere agent restart it does not.
fn started_after_host_boot(kind: Kind) {
    let Some(()) = prerequisites("started_after_host_boot") else {
        return;
    };
    let ch = channel();
    let mut agent = TestAgent::start(Options {
        kind,
        ..Options::default()
    });
    let up = agent.name("up");
    let down = agent.name("down");
    assert_ok(&agent.devhost(&["ensure", &up, &ch.url]), "ensure");
    assert_ok(&agent.devhost(&["ensure", &down, &ch.url]), "ensure");
    assert_ok(&agent.devhost(&["stop", &down]), "stop (stays stopped)");
    agent.stop_agent(nix::sys::signal::Signal::SIGTERM);
    // The "reboot": containers are gone and the boot id changed.
    match &agent.standin {
        Some(si) => assert!(si
            .exec(&["systemctl", "stop", &format!("devhost-{up}.service")])
            .status
            .success()),
        None => {
            for (pid, n) in nspawn_pids(&agent.dir.join("containers")) {
                if n == up {
                    nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGTERM,
                    )
                    .unwrap();
                }
            }
            agent.wait_no_process(&up);
        }
    }
    std::fs::write(
        agent.dir.join("state/boot-id"),
        "00000000-0000-0000-0000-000000000000\n",
    )
    .unwrap();
    agent.spawn();
    wait_until(
        std::time::Duration::from_secs(30),
        format!("{up} is started after the boot"),
        || match agent.status(&up).state.as_str() {
            "running" => Ok(()),
            state => Err(format!("{state}; agent log:\n{}", agent.log())),
        },
    );
    assert_eq!(
        http_get(agent.address(&up), 80).unwrap().trim(),
        format!("hello from fc {up}")
    );
    assert_eq!(
        agent.status(&down).state.as_str(),
        "stopped",
        "a container stopped by its owner stays stopped"
    );
    wait_until(
        std::time::Duration::from_secs(10),
        "devhost info reports the start after the boot",
        || {
            let info = text(&agent.devhost(&["info"]));
            if info.contains(&format!("{up}: started after host boot")) {
                Ok(())
            } else {
                Err(info)
            }
        },
    );
}

#[test]
fn started_after_host_boot_direct() {
    started_after_host_boot(Kind::Direct);
}

#[test]
fn started_after_host_boot_systemd() {
    started_after_host_boot(Kind::Systemd);
}

#[test]
fn systemd_reconcile_vanished_unit_and_unit_without_record() {
    let Some(()) = prerequisites("systemd_reconcile_vanished_unit_and_unit_without_record") else {
        return;
    };
    let ch = channel();
    let mut agent = TestAgent::start(Options {
        kind: Kind::Systemd,
        ..Options::default()
    });
    let gone = agent.name("gone");
    let kept = agent.name("kept");
    assert_ok(&agent.devhost(&["ensure", &gone, &ch.url]), "ensure");
    assert_ok(&agent.devhost(&["ensure", &kept, &ch.url]), "ensure");
    let kept_pid = agent.status_json(&kept).unwrap()["pid"].clone();
    let system = agent.status_json(&kept).unwrap()["system_path"]
        .as_str()
        .unwrap()
        .to_string();
    agent.stop_agent(nix::sys::signal::Signal::SIGTERM);
    let si = agent.standin.as_ref().unwrap();
    // While the agent is away: one container's unit is stopped by hand, and
    // a container unit the agent never made appears.
    assert!(si
        .exec(&["systemctl", "stop", &format!("devhost-{gone}.service")])
        .status
        .success());
    let stray = agent.name("stray");
    let root = agent.dir.join(format!("stray-{stray}"));
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("usr")).unwrap();
    std::fs::write(root.join("etc/os-release"), "").unwrap();
    let out = si.exec(&[
        "systemd-run",
        &format!("--unit=devhost-{stray}"),
        &format!("--description=devhost container {stray}"),
        "--property=Type=notify",
        "/usr/bin/systemd-nspawn",
        "--keep-unit",
        "--register=no",
        "-M",
        &stray,
        "-D",
        root.to_str().unwrap(),
        "--notify-ready=yes",
        "--bind-ro=/nix/store",
        "--private-network",
        &format!("{system}/init"),
    ]);
    assert_ok(&out, "stray unit");
    agent.spawn();
    let info = text(&agent.devhost(&["info"]));
    assert!(
        info.contains(&format!(
            "{gone}: recorded as running but not running; marked stopped"
        )),
        "{info}"
    );
    assert!(
        info.contains(&format!("runs container {stray}")) && info.contains("without a record"),
        "{info}"
    );
    assert_eq!(agent.status(&gone).state.as_str(), "stopped");
    let k = agent.status_json(&kept).unwrap();
    assert_eq!(
        (k["state"].clone(), k["pid"].clone()),
        (serde_json::json!("running"), kept_pid),
        "adopted as it was"
    );
    let si = agent.standin.as_ref().unwrap();
    let _ = si.exec(&["systemctl", "stop", &format!("devhost-{stray}.service")]);
    assert_ok(
        &agent.devhost(&["start", &gone]),
        "start the stopped one again",
    );
}
