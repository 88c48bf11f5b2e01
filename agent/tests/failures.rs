//! Failures say what happened and leave nothing behind; the readiness
//! fallback and local channels work.

mod common;

use common::*;

#[test]
fn failed_build_reports_nix_error_and_leaves_nothing() {
    let Some(()) = prerequisites("failed_build_reports_nix_error_and_leaves_nothing") else {
        return;
    };
    let agent = TestAgent::start(Options {
        nix_extra_config: "devhost.fixture.httpPorts = throw \"broken on purpose\";".into(),
        ..Options::default()
    });
    let ch = channel();
    let name = agent.name("nobld");
    let out = agent.fc_build(&["ensure", &name, &ch.url, "www"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("nix-build failed") && t.contains("broken on purpose"),
        "the Nix error reaches the user:\n{t}"
    );
    let first: std::net::Ipv4Addr = format!("10.231.{}.2", agent.subnet).parse().unwrap();
    assert_eq!(agent.traces_of(&name, first), Vec::<String>::new());

    // A channel that is not there at all.
    let missing = ch.url.replace("nixexprs.tar.xz", "missing.tar.xz");
    let out = agent.fc_build(&["ensure", &name, &missing, ""]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains(&format!(
            "cannot fetch the channel {missing}: the server answered HTTP 404 (for {missing})"
        )),
        "{}",
        text(&out)
    );
    assert_eq!(agent.traces_of(&name, first), Vec::<String>::new());
}

#[test]
fn ready_timeout_says_what_happened() {
    let Some(()) = prerequisites("ready_timeout_says_what_happened") else {
        return;
    };
    // An init that never notifies, with the agent waiting for READY=1.
    let agent = TestAgent::start(Options {
        nix_extra_config: "devhost.fixture.notify = false;".into(),
        ready_timeout_secs: 3,
        ..Options::default()
    });
    let name = agent.name("slow");
    let out = agent.devhost(&["ensure", &name, &channel().url]);
    assert_eq!(out.status.code(), Some(1));
    let t = text(&out);
    assert!(
        t.contains("was not ready after 3 s (waiting for READY=1 from the container's init)"),
        "{t}"
    );
    assert!(
        t.contains("fixture init: serving on ports 80"),
        "last log lines included:\n{t}"
    );
    let first: std::net::Ipv4Addr = format!("10.231.{}.2", agent.subnet).parse().unwrap();
    assert_eq!(agent.traces_of(&name, first), Vec::<String>::new());
}

#[test]
fn tcp_readiness_fallback_and_file_channel() {
    let Some(()) = prerequisites("tcp_readiness_fallback_and_file_channel") else {
        return;
    };
    let agent = TestAgent::start(Options {
        nix_extra_config: "devhost.fixture.notify = false;".into(),
        extra_toml: "readiness = \"tcp\"\nready_tcp_port = 80\n".into(),
        ..Options::default()
    });
    let ch = channel();
    let name = agent.name("tcp");
    let url = format!("file://{}", ch.unpacked.display());
    let out = agent.devhost(&["ensure", &name, &url, "www"]);
    assert_ok(&out, "ensure with TCP readiness from a file:// channel");
    assert!(
        text(&out).contains("waiting for TCP port 80"),
        "{}",
        text(&out)
    );
    // Ready means reachable, at once.
    assert_eq!(
        http_get(agent.address(&name), 80).unwrap().trim(),
        format!("hello from fc {name}")
    );
    let plain = agent.name("plain");
    assert_ok(
        &agent.devhost(&["ensure", &plain, ch.unpacked.to_str().unwrap()]),
        "plain path channel",
    );
}

fn stop_kills_a_container_that_ignores_poweroff(kind: Kind) {
    let Some(()) = prerequisites("stop_kills_a_container_that_ignores_poweroff") else {
        return;
    };
    let agent = TestAgent::start(Options {
        kind,
        nix_extra_config: "devhost.fixture.ignorePoweroff = true;".into(),
        stop_timeout_secs: 2,
        ..Options::default()
    });
    let name = agent.name("stub");
    assert_ok(&agent.devhost(&["ensure", &name, &channel().url]), "ensure");
    let addr = agent.address(&name);
    let t = std::time::Instant::now();
    let out = agent.devhost(&["stop", &name]);
    assert_ok(&out, "stop");
    assert!(
        t.elapsed() >= std::time::Duration::from_secs(2),
        "the poweroff got its timeout"
    );
    if kind == Kind::Direct {
        assert!(
            text(&out).contains(&format!("{name} did not power off within 2 s; killing it")),
            "{}",
            text(&out)
        );
    }
    assert!(text(&agent.devhost(&["logs", &name])).contains("fixture init: ignoring poweroff"));
    assert!(http_get(addr, 80).is_err());
    assert!(nspawn_pids(&agent.dir.join("containers")).is_empty());
    assert_eq!(agent.status(&name).state.as_str(), "stopped");
}

#[test]
fn stop_kills_a_container_that_ignores_poweroff_direct() {
    stop_kills_a_container_that_ignores_poweroff(Kind::Direct);
}

#[test]
fn stop_kills_a_container_that_ignores_poweroff_systemd() {
    stop_kills_a_container_that_ignores_poweroff(Kind::Systemd);
}

/// Unmounts on drop, so a failing test leaves no mount behind.
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn destroy_never_crosses_into_a_mount() {
    let Some(()) = prerequisites("destroy_never_crosses_into_a_mount") else {
        return;
    };
    let agent = TestAgent::start(Options::default());
    let name = agent.name("mnt");
    assert_ok(&agent.devhost(&["ensure", &name, &channel().url]), "ensure");
    let addr = agent.address(&name);
    assert_ok(&agent.devhost(&["stop", &name]), "stop");
    // Something of the host's mounted inside the container root.
    let mp = agent.dir.join(format!("containers/{name}/srv/host-data"));
    std::fs::create_dir_all(&mp).unwrap();
    assert!(std::process::Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(&mp)
        .status()
        .unwrap()
        .success());
    let guard = Mounted(mp.clone());
    std::fs::write(mp.join("precious"), "keep me").unwrap();

    let out = agent.devhost(&["destroy", &name]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("another filesystem is mounted there; refusing to remove across it"),
        "{}",
        text(&out)
    );
    assert_eq!(
        std::fs::read_to_string(mp.join("precious")).unwrap(),
        "keep me"
    );

    drop(guard);
    assert_ok(
        &agent.devhost(&["destroy", &name]),
        "destroy retried after unmount",
    );
    assert_eq!(agent.traces_of(&name, addr), Vec::<String>::new());
}
