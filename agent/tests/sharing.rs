//! Containers on one channel share one built system (real Nix, real
//! nspawn): one `nix-build` for many containers, counted by a wrapper that
//! records every run; each container's profile is a GC root of its own; a
//! changed local channel is built again; a failed shared build reaches
//! every container that waited for it and leaves nothing.

mod common;

use common::*;
use std::path::{Path, PathBuf};

fn agent_with(nix: &NixCounter, extra: &str) -> TestAgent {
    TestAgent::start(Options {
        nix_toml: nix.nix_toml(),
        nix_extra_config: extra.into(),
        ..Options::default()
    })
}

fn system_of(agent: &TestAgent, name: &str) -> String {
    agent.status_json(name).unwrap()["system_path"]
        .as_str()
        .unwrap()
        .to_string()
}

fn profile_link(agent: &TestAgent, name: &str) -> PathBuf {
    agent.dir.join("profiles").join(name).join("system")
}

/// The GC roots Nix itself reports for `path`.
fn roots_of(path: &str) -> String {
    let out = std::process::Command::new("nix-store")
        .args(["--query", "--roots", path])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn two_containers_on_one_channel_share_one_system_built_once() {
    let Some(()) = prerequisites("two_containers_on_one_channel_share_one_system_built_once")
    else {
        return;
    };
    let nix = NixCounter::new();
    let agent = agent_with(&nix, "");
    let ch = channel();
    let (a, b) = (agent.name("sha"), agent.name("shb"));
    assert_ok(&agent.devhost(&["ensure", &a, &ch.url]), "ensure a");
    let out = agent.devhost(&["ensure", &b, &ch.url]);
    assert_ok(&out, "ensure b");
    assert!(
        text(&out).contains("reused (built for"),
        "the second ensure says it reused: {}",
        text(&out)
    );
    assert_eq!(nix.count(), 1, "one nix-build for both");
    assert_eq!(system_of(&agent, &a), system_of(&agent, &b));
    // Both answer with their own name: it is not in the system.
    for n in [&a, &b] {
        assert_eq!(
            http_get(agent.address(n), 80).unwrap().trim(),
            format!("hello from fc {n}")
        );
    }
}

#[test]
fn destroying_one_container_leaves_the_others_system_gc_rooted() {
    let Some(()) = prerequisites("destroying_one_container_leaves_the_others_system_gc_rooted")
    else {
        return;
    };
    let nix = NixCounter::new();
    let agent = agent_with(&nix, "");
    let ch = channel();
    let (a, b) = (agent.name("gca"), agent.name("gcb"));
    assert_ok(&agent.devhost(&["ensure", &a, &ch.url]), "ensure a");
    assert_ok(&agent.devhost(&["ensure", &b, &ch.url]), "ensure b");
    let system = system_of(&agent, &b);
    assert_ok(&agent.devhost(&["destroy", &a]), "destroy a");
    assert!(Path::new(&system).exists());
    let roots = roots_of(&system);
    let (la, lb) = (profile_link(&agent, &a), profile_link(&agent, &b));
    assert!(
        roots.contains(&lb.display().to_string()),
        "b's profile roots the system: {roots}"
    );
    assert!(
        !roots.contains(&la.display().to_string()),
        "a's root went with it: {roots}"
    );
    assert!(
        !roots.contains(&agent.dir.join("state/systems").display().to_string()),
        "no root of the build itself is left: {roots}"
    );
}

#[test]
fn simultaneous_ensures_of_one_system_run_one_build() {
    let Some(()) = prerequisites("simultaneous_ensures_of_one_system_run_one_build") else {
        return;
    };
    let nix = NixCounter::new();
    let agent = agent_with(&nix, "devhost.fixture.buildDelay = 2;");
    let ch = channel();
    let names: Vec<String> = (1..=4).map(|i| agent.name(&format!("sim{i}"))).collect();
    let threads: Vec<_> = names
        .iter()
        .map(|n| agent.ensure_in_thread(n, &ch.url))
        .collect();
    for (t, n) in threads.into_iter().zip(&names) {
        assert_ok(&t.join().unwrap(), n);
    }
    assert_eq!(nix.count(), 1, "one nix-build for four containers");
    let systems: std::collections::BTreeSet<String> =
        names.iter().map(|n| system_of(&agent, n)).collect();
    assert_eq!(systems.len(), 1, "{systems:?}");
}

#[test]
fn a_changed_local_channel_is_built_again() {
    let Some(()) = prerequisites("a_changed_local_channel_is_built_again") else {
        return;
    };
    let nix = NixCounter::new();
    let agent = agent_with(&nix, "");
    // A copy of the channel the test may change, readable by its caller.
    let copy = agent.dir.join("channel");
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(&channel().unpacked)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(st.success());
    let url = format!("file://{}", copy.display());
    let (a, b, c) = (agent.name("mva"), agent.name("mvb"), agent.name("mvc"));
    assert_ok(&agent.devhost(&["ensure", &a, &url]), "ensure a");
    assert_ok(&agent.devhost(&["ensure", &b, &url]), "ensure b");
    assert_eq!(nix.count(), 1, "unchanged: shared");
    let fc = copy.join("fc/nixos/default.nix");
    let s = std::fs::read_to_string(&fc).unwrap();
    std::fs::write(&fc, s.replace("hello from fc", "hello from the moved fc")).unwrap();
    assert_ok(&agent.devhost(&["ensure", &c, &url]), "ensure c");
    assert_eq!(nix.count(), 2, "changed: built again");
    assert_ne!(system_of(&agent, &a), system_of(&agent, &c));
    assert_eq!(
        http_get(agent.address(&c), 80).unwrap().trim(),
        format!("hello from the moved fc {c}")
    );
    // Only what changes the result is a new system: a comment is another
    // channel, evaluated once more, giving the same system.
    let d = agent.name("mvd");
    let s = std::fs::read_to_string(&fc).unwrap();
    std::fs::write(&fc, format!("{s}# a comment\n")).unwrap();
    assert_ok(&agent.devhost(&["ensure", &d, &url]), "ensure d");
    assert_eq!(nix.count(), 3);
    assert_eq!(system_of(&agent, &c), system_of(&agent, &d));
}

#[test]
fn a_failed_shared_build_reaches_every_waiter_and_leaves_nothing() {
    let Some(()) = prerequisites("a_failed_shared_build_reaches_every_waiter_and_leaves_nothing")
    else {
        return;
    };
    let nix = NixCounter::new();
    let agent = agent_with(
        &nix,
        "devhost.fixture.buildDelay = 2; devhost.fixture.failBuild = true;",
    );
    let ch = channel();
    let names: Vec<String> = (1..=3).map(|i| agent.name(&format!("fl{i}"))).collect();
    let threads: Vec<_> = names
        .iter()
        .map(|n| agent.ensure_in_thread(n, &ch.url))
        .collect();
    let first: std::net::Ipv4Addr = format!("10.231.{}.2", agent.subnet).parse().unwrap();
    for (t, n) in threads.into_iter().zip(&names) {
        let out = t.join().unwrap();
        assert_eq!(out.status.code(), Some(1), "{n}: {}", text(&out));
        let t = text(&out);
        assert!(
            t.contains("the build fails as configured") && t.contains("its log, for root: "),
            "{n} gets the build's error and its log:\n{t}"
        );
        assert_eq!(agent.traces_of(n, first), Vec::<String>::new(), "{n}");
    }
    assert_eq!(nix.count(), 1, "one build failed for all");
    let leftovers: Vec<String> = std::fs::read_dir(agent.dir.join("state/systems"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".link") || n.ends_with(".json"))
        .collect();
    assert_eq!(leftovers, Vec::<String>::new());
}
