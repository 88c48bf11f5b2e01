//! Nothing is lost under faults: a full state disk refuses what needs room
//! and leaves no trace of it, while stop and destroy (which free room) still
//! work; a channel server that never answers costs a bounded wait, a fetch
//! stops when its client goes away or its container is destroyed, a channel
//! is downloaded once and then revalidated, and one too large is refused.

mod common;

use common::*;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

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

/// A channel server that accepts connections and never answers; its
/// address, and how many connections it accepted. It lives as long as the
/// test process.
fn silent_server() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let a = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in l.incoming().flatten() {
            held.push(c);
            a.fetch_add(1, SeqCst);
        }
    });
    (addr, accepted)
}

fn hung_channel_agent(stall_secs: u64) -> (TestAgent, String, Arc<AtomicUsize>) {
    let agent = TestAgent::start(Options {
        nix_toml: format!(
            "fetch_connect_timeout_secs = 2\nfetch_stall_timeout_secs = {stall_secs}\nfetch_attempts = 1\n"
        ),
        ..Options::default()
    });
    let (addr, accepted) = silent_server();
    (agent, format!("http://{addr}/nixexprs.tar.xz"), accepted)
}

/// `devhost ensure NAME URL` running in the background.
fn ensure_in_background(agent: &TestAgent, name: &str, url: &str) -> std::process::Child {
    std::process::Command::new(DEVHOST)
        .args(["ensure", name, url])
        .env("DEVHOST_SOCKET", &agent.socket)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// The pids of nix-build processes building container `name`.
fn builds_of(name: &str) -> Vec<u32> {
    let needle = format!("/{name}/system");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            cmd.contains("nix-build") && cmd.contains(&needle)
        })
        .collect()
}

/// Until the ensure of `name` waits for the silent channel server.
fn wait_for_fetch(agent: &TestAgent, name: &str, accepted: &AtomicUsize) {
    wait_until(Duration::from_secs(60), "the channel fetch runs", || {
        accepted.load(SeqCst) > 0
            && agent.status_json(name).map(|s| s["phase"] == "building") == Some(true)
    });
}

#[test]
fn a_channel_server_that_never_answers_fails_the_build_with_its_url() {
    let Some(()) =
        prerequisites("a_channel_server_that_never_answers_fails_the_build_with_its_url")
    else {
        return;
    };
    let (agent, url, _) = hung_channel_agent(2);
    let name = agent.name("hung");
    // Without the stall timeout this would wait for the hour of
    // build_timeout_secs.
    let out = agent.devhost(&["ensure", &name, &url]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains(&format!(
            "cannot fetch the channel {url}: 127.0.0.1 accepts connections but did not answer within 2 s"
        )),
        "{t}"
    );
    assert!(agent.try_status(&name).is_none());
}

#[test]
fn a_fetch_stops_when_its_client_goes_away() {
    let Some(()) = prerequisites("a_fetch_stops_when_its_client_goes_away") else {
        return;
    };
    let (agent, url, accepted) = hung_channel_agent(600);
    let name = agent.name("gone");
    let mut client = ensure_in_background(&agent, &name, &url);
    wait_for_fetch(&agent, &name, &accepted);
    client.kill().unwrap();
    client.wait().unwrap();
    wait_until(
        Duration::from_secs(30),
        "the fetch stopped and the creation rolled back",
        || agent.try_status(&name).is_none(),
    );
    assert!(builds_of(&name).is_empty());
}

#[test]
fn a_destroy_stops_a_fetch_instead_of_waiting_behind_it() {
    let Some(()) = prerequisites("a_destroy_stops_a_fetch_instead_of_waiting_behind_it") else {
        return;
    };
    let (agent, url, accepted) = hung_channel_agent(600);
    let name = agent.name("dstr");
    let client = ensure_in_background(&agent, &name, &url);
    wait_for_fetch(&agent, &name, &accepted);
    assert_ok(&agent.devhost(&["destroy", &name]), "destroy");
    let out = client.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("the fetch was stopped: the container is being destroyed"),
        "{}",
        text(&out)
    );
    assert!(builds_of(&name).is_empty());
    assert!(agent.try_status(&name).is_none());
}

/// How many times the kill -9 loop kills the agent (`KILL_LOOPS`, default 8).
fn kill_loops() -> usize {
    std::env::var("KILL_LOOPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8)
}

/// The agent is killed with SIGKILL at a random moment of an ensure or a
/// destroy, again and again; after each restart the records agree with the
/// world and the container can be ensured and destroyed.
#[test]
fn kill_9_at_random_moments_of_ensure_and_destroy_loses_nothing() {
    let Some(()) = prerequisites("kill_9_at_random_moments_of_ensure_and_destroy_loses_nothing")
    else {
        return;
    };
    let ch = channel();
    let mut agent = TestAgent::start(Options::default());
    let name = agent.name("k9");
    let loops = kill_loops();
    for i in 0..loops {
        let destroying = agent.try_status(&name).is_some();
        let args: Vec<&str> = if destroying {
            vec!["destroy", &name]
        } else {
            vec!["ensure", &name, &ch.url]
        };
        let mut client = std::process::Command::new(DEVHOST)
            .args(&args)
            .env("DEVHOST_SOCKET", &agent.socket)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // The kill point: anywhere in the first ~600 ms of the operation.
        let mut b = [0u8; 2];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").unwrap(), &mut b)
            .unwrap();
        std::thread::sleep(Duration::from_millis(
            u64::from(u16::from_le_bytes(b)) % 600,
        ));
        agent.stop_agent(nix::sys::signal::Signal::SIGKILL);
        client.wait().unwrap();
        agent.spawn();
        let what = format!("loop {i} ({})", args[0]);
        match agent.try_status(&name) {
            None => assert_eq!(
                agent.traces_of(&name, std::net::Ipv4Addr::UNSPECIFIED),
                Vec::<String>::new(),
                "{what}: no record, nothing left"
            ),
            Some(st) => {
                let runs = nspawn_pids(&agent.dir.join("containers"))
                    .iter()
                    .any(|(_, n)| n == &name);
                match st.state.as_str() {
                    "running" => assert!(runs, "{what}: recorded running, no process"),
                    "stopped" => assert!(!runs, "{what}: recorded stopped, runs"),
                    s => panic!("{what}: left {s}"),
                }
            }
        }
    }
    // Whatever the last kill left, the name works.
    assert_ok(
        &agent.devhost(&["ensure", &name, &ch.url]),
        "ensure at the end",
    );
    assert_eq!(agent.status(&name).state.as_str(), "running");
    let addr = agent.address(&name);
    assert_ok(&agent.devhost(&["destroy", &name]), "destroy at the end");
    assert_eq!(agent.traces_of(&name, addr), Vec::<String>::new());
    eprintln!("kill -9 loops with nothing lost: {loops}");
}

#[test]
fn a_channel_is_downloaded_once_and_then_revalidated() {
    let Some(()) = prerequisites("a_channel_is_downloaded_once_and_then_revalidated") else {
        return;
    };
    let agent = TestAgent::start(Options::default());
    let (url, counts) = serve_counted();
    let first = agent.name("rv1");
    let second = agent.name("rv2");
    assert_ok(&agent.devhost(&["ensure", &first, &url]), "first ensure");
    let out = agent.devhost(&["ensure", &second, &url]);
    assert_ok(&out, "second ensure");
    assert!(
        text(&out).contains(&format!("channel {url} unchanged since its last download")),
        "{}",
        text(&out)
    );
    assert_eq!(
        (counts.full.load(SeqCst), counts.unchanged.load(SeqCst)),
        (1, 1),
        "one download, one revalidation"
    );
}

#[test]
fn a_channel_larger_than_the_limit_is_refused() {
    let Some(()) = prerequisites("a_channel_larger_than_the_limit_is_refused") else {
        return;
    };
    let agent = TestAgent::start(Options {
        nix_toml: "max_channel_bytes = 1000\n".into(),
        ..Options::default()
    });
    let (url, _) = serve_counted();
    let name = agent.name("big");
    let out = agent.devhost(&["ensure", &name, &url]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!(
            "cannot fetch the channel {url}: it is larger than 1000 bytes (nix.max_channel_bytes)"
        )),
        "{}",
        text(&out)
    );
    assert!(agent.try_status(&name).is_none());
}
