//! `devhost logs` against a real agent and real containers: `--follow`
//! prints what the console gets as it gets it (the console file under the
//! direct backend, the unit's journal under the systemd backend) and stops
//! reading when its client goes away; `--since` picks by time where the
//! log has times and is refused where it has none; `--agent` is the
//! agent's own log, for root and admins only.

mod common;

use common::*;
use std::io::Read;
use std::process::{Child, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A container of ALICE's on the fixture channel.
fn alices_container(agent: &TestAgent, suffix: &str) -> String {
    let name = agent.name(suffix);
    assert_ok(
        &agent.devhost_as(ALICE, users_gid(), &["ensure", &name, &channel().url]),
        "alice's ensure",
    );
    name
}

fn as_user(agent: &TestAgent, uid: u32, args: &[&str]) -> std::process::Command {
    use std::os::unix::process::CommandExt;
    let mut c = agent.command(DEVHOST, args);
    if uid != 0 {
        c.uid(uid).gid(users_gid());
    }
    c
}

/// A running `devhost logs … --follow` and what it printed so far.
struct Follower {
    child: Child,
    seen: Arc<Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Follower {
    fn start(agent: &TestAgent, uid: u32, args: &[&str]) -> Follower {
        let mut child = as_user(agent, uid, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut b = [0u8; 4096];
                while let Ok(n) = out.read(&mut b) {
                    if n == 0 {
                        break;
                    }
                    seen.lock().unwrap().extend_from_slice(&b[..n]);
                }
            })
        };
        Follower {
            child,
            seen,
            reader: Some(reader),
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }

    fn wait_for(&self, what: &str) {
        wait_until(
            Duration::from_secs(30),
            format!("{what:?} is printed"),
            || {
                let t = self.text();
                if t.contains(what) {
                    Ok(())
                } else {
                    Err(t)
                }
            },
        );
    }

    /// Still following (it never ends by itself).
    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// Something written to the container's console, from inside.
fn to_console(agent: &TestAgent, name: &str, line: &str) {
    let out = as_user(
        agent,
        ALICE,
        &[
            "exec",
            name,
            "--",
            "sh",
            "-c",
            &format!("echo {line} > /dev/console"),
        ],
    )
    .output()
    .unwrap();
    assert_ok(&out, "writing to the console");
}

/// Host processes whose command line has all of `words`.
fn processes_with(words: &[&str]) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let c = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            words.iter().all(|w| c.contains(w))
        })
        .collect()
}

fn follow_prints_the_console_as_it_grows(kind: Kind) {
    let Some(()) = prerequisites("follow_prints_the_console_as_it_grows") else {
        return;
    };
    let agent = TestAgent::start(Options {
        kind,
        ..Options::default()
    });
    let name = alices_container(&agent, "lf");
    let mut f = Follower::start(&agent, ALICE, &["logs", &name, "--follow"]);
    f.wait_for("fixture init: serving on ports");
    to_console(&agent, &name, "FOLLOWED-ONE");
    f.wait_for("FOLLOWED-ONE");
    to_console(&agent, &name, "FOLLOWED-TWO");
    f.wait_for("FOLLOWED-TWO");
    assert!(f.running(), "--follow does not end by itself");
    let unit = format!("devhost-{name}.service");
    if kind == Kind::Systemd {
        assert_eq!(
            processes_with(&["journalctl", &unit, "--follow"]).len(),
            1,
            "the agent follows the unit's journal"
        );
    }
    drop(f);
    if kind == Kind::Systemd {
        wait_until(
            Duration::from_secs(20),
            "the agent stops following when its client is gone",
            || processes_with(&["journalctl", &unit, "--follow"]).is_empty(),
        );
    }
    // Not a stranger's to read, following or not.
    let out: Output = as_user(&agent, BOB, &["logs", &name, "--follow"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("may hold secrets"), "{}", text(&out));
}

#[test]
fn follow_prints_the_console_as_it_grows_direct() {
    follow_prints_the_console_as_it_grows(Kind::Direct);
}

#[test]
fn follow_prints_the_console_as_it_grows_systemd() {
    follow_prints_the_console_as_it_grows(Kind::Systemd);
}

#[test]
fn since_picks_the_journal_by_time() {
    let Some(()) = prerequisites("since_picks_the_journal_by_time") else {
        return;
    };
    let agent = TestAgent::start(Options {
        kind: Kind::Systemd,
        ..Options::default()
    });
    let name = alices_container(&agent, "ls");
    to_console(&agent, &name, "SINCE-MARK");
    let logs = |args: &[&str]| {
        let mut a = vec!["logs", name.as_str()];
        a.extend_from_slice(args);
        as_user(&agent, ALICE, &a).output().unwrap()
    };
    // The mark reaches the journal as nspawn relays it.
    wait_until(
        Duration::from_secs(30),
        "the mark is in the journal",
        || text(&logs(&["--since", "1h"])).contains("SINCE-MARK"),
    );
    let out = logs(&["--since", "1h"]);
    assert_ok(&out, "--since 1h");
    assert!(
        text(&out).contains("fixture init: serving"),
        "{}",
        text(&out)
    );
    let tomorrow = (chrono::Utc::now() + chrono::TimeDelta::days(1)).to_rfc3339();
    let out = logs(&["--since", &tomorrow]);
    assert_ok(&out, "--since tomorrow");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "", "nothing yet");
    let out = logs(&["--since", "yesterday"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("an age like 30s"), "{}", text(&out));
}

#[test]
fn since_is_refused_for_a_log_without_times() {
    let Some(()) = prerequisites("since_is_refused_for_a_log_without_times") else {
        return;
    };
    let agent = TestAgent::start(Options::default());
    let name = alices_container(&agent, "lt");
    for extra in [&[][..], &["--build"], &["--provision"]] {
        let mut args = vec!["logs", name.as_str(), "--since", "10m"];
        args.extend_from_slice(extra);
        let out = as_user(&agent, ALICE, &args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {}", text(&out));
        assert!(
            text(&out).contains("has no times in it"),
            "{extra:?}: {}",
            text(&out)
        );
    }
    // Without it the console is there.
    let out = as_user(&agent, ALICE, &["logs", &name]).output().unwrap();
    assert!(
        text(&out).contains("fixture init: serving"),
        "{}",
        text(&out)
    );
}

#[test]
fn the_agents_own_log_is_for_admins() {
    let Some(()) = prerequisites("the_agents_own_log_is_for_admins") else {
        return;
    };
    let agent = TestAgent::start(Options::default());
    let name = alices_container(&agent, "la");
    let agent_log = |uid: u32, args: &[&str]| {
        let mut a = vec!["logs", "--agent"];
        a.extend_from_slice(args);
        as_user(&agent, uid, &a).output().unwrap()
    };
    // A user may not read it.
    let out = agent_log(ALICE, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("may not read the agent's log"),
        "{}",
        text(&out)
    );
    // Root follows it and sees what the agent does as it does it.
    let mut f = Follower::start(&agent, 0, &["logs", "--agent", "--follow", "--lines", "0"]);
    let out = as_user(&agent, ALICE, &["exec", &name, "--", "true"])
        .output()
        .unwrap();
    assert_ok(&out, "exec");
    f.wait_for("exec started");
    assert!(
        f.text().contains(&format!("container={name}")),
        "{}",
        f.text()
    );
    assert!(f.running());
    drop(f);
    // By time: its entries carry them.
    let out = agent_log(0, &["--since", "1h"]);
    assert_ok(&out, "--since 1h");
    assert!(text(&out).contains("exec started"), "{}", text(&out));
    let out = agent_log(0, &["--since", "2099-01-01T00:00:00Z"]);
    assert_ok(&out, "--since 2099");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    // It is a file of root's beside the state.
    let meta = std::fs::metadata(agent.dir.join("state/agent.log"));
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&meta.expect("STATE/agent.log").permissions());
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn a_new_owner_of_a_name_never_reads_the_journal_of_its_former_container() {
    let Some(()) =
        prerequisites("a_new_owner_of_a_name_never_reads_the_journal_of_its_former_container")
    else {
        return;
    };
    let agent = TestAgent::start(Options {
        kind: Kind::Systemd,
        ..Options::default()
    });
    // Alice's container prints a secret to its console, then is gone.
    let name = alices_container(&agent, "lr");
    to_console(&agent, &name, "ALICES-SECRET");
    wait_until(
        Duration::from_secs(30),
        "the secret is in alice's log",
        || {
            let out = as_user(&agent, ALICE, &["logs", &name]).output().unwrap();
            text(&out).contains("ALICES-SECRET")
        },
    );
    assert_ok(
        &agent.devhost_as(ALICE, users_gid(), &["destroy", &name]),
        "alice's destroy",
    );
    // Bob takes the name: the unit's journal is his container's only.
    assert_ok(
        &agent.devhost_as(BOB, users_gid(), &["ensure", &name, &channel().url]),
        "bob's ensure",
    );
    for args in [
        &["--lines", "100000"][..],
        &["--since", "1d"],
        &["--since", "1d", "--follow"],
    ] {
        let mut a = vec!["logs", name.as_str()];
        a.extend_from_slice(args);
        let seen = if args.contains(&"--follow") {
            let f = Follower::start(&agent, BOB, &a);
            f.wait_for("fixture init: serving on ports");
            f.text()
        } else {
            let out = as_user(&agent, BOB, &a).output().unwrap();
            assert_ok(&out, "bob's logs");
            text(&out)
        };
        assert!(
            seen.contains("fixture init: serving on ports"),
            "{args:?}: bob's own container is there: {seen}"
        );
        assert!(
            !seen.contains("ALICES-SECRET"),
            "{args:?}: bob reads alice's former container: {seen}"
        );
    }
}
