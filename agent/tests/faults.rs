//! Nothing is lost under faults: a full state disk refuses what needs room
//! and leaves no trace of it, while stop and destroy (which free room) still
//! work.

mod common;

use common::*;
use std::io::Write;

/// Fill the filesystem of `dir` with a file there (removed by the caller).
fn fill(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0x5au8; 64 << 10];
    loop {
        match f.write_all(&block) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    // Also the last few bytes a small write could use.
    while f.write_all(b"x").is_ok() {}
    path
}

#[test]
fn a_full_state_disk_refuses_a_creation_without_a_trace() {
    let Some(()) = prerequisites("a_full_state_disk_refuses_a_creation_without_a_trace") else {
        return;
    };
    let agent = TestAgent::start(Options {
        state_tmpfs: Some("32m"),
        ..Options::default()
    });
    let state = agent.dir.join("state");
    let filler = fill(&state);
    let name = agent.name("full");
    let out = agent.devhost(&["ensure", &name, &channel().url]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("No space left"), "{}", text(&out));
    assert!(agent.try_status(&name).is_none(), "no phantom in the list");
    std::fs::remove_file(filler).unwrap();
    assert_ok(
        &agent.devhost(&["ensure", &name, &channel().url]),
        "ensure once there is room",
    );
    assert_eq!(agent.status(&name).state.as_str(), "running");
}

#[test]
fn stop_and_destroy_work_on_a_full_state_disk() {
    let Some(()) = prerequisites("stop_and_destroy_work_on_a_full_state_disk") else {
        return;
    };
    let agent = TestAgent::start(Options {
        state_tmpfs: Some("32m"),
        ..Options::default()
    });
    let name = agent.name("free");
    assert_ok(&agent.devhost(&["ensure", &name, &channel().url]), "ensure");
    let addr = agent.address(&name);
    let filler = fill(&agent.dir.join("state"));
    assert_ok(&agent.devhost(&["stop", &name]), "stop on a full disk");
    assert_eq!(agent.status(&name).state.as_str(), "stopped");
    assert_ok(
        &agent.devhost(&["destroy", &name]),
        "destroy on a full disk",
    );
    assert_eq!(agent.traces_of(&name, addr), Vec::<String>::new());
    let out = agent.devhost(&["--json", "info"]);
    assert!(
        text(&out).contains("used the reserve to save the record of"),
        "{}",
        text(&out)
    );
    std::fs::remove_file(filler).unwrap();
}
