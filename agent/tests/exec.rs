//! `devhost exec NAME -- COMMAND…` and `nixos-container run`/`root-login`
//! against a real agent and real containers: stdin (and its end) reaches
//! the command, stdout and stderr come back apart, the exit status is the
//! command's (128 + N after signal N), a command whose client goes away is
//! killed with what it started, and only the container's owner or an admin
//! may run anything in it.

mod common;

use common::*;
use std::io::Write;
use std::process::{Command, Output, Stdio};
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

/// `program ARGS` as `uid` (group users), with `input` on stdin.
fn run_as(agent: &TestAgent, uid: u32, program: &str, args: &[&str], input: &[u8]) -> Output {
    use std::os::unix::process::CommandExt;
    let mut child = agent
        .command(program, args)
        .uid(uid)
        .gid(users_gid())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    // Written on a thread of its own: the output is read meanwhile.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

fn exec(agent: &TestAgent, name: &str, command: &[&str], input: &[u8]) -> Output {
    let mut args = vec!["exec", name, "--"];
    args.extend_from_slice(command);
    run_as(agent, ALICE, DEVHOST, &args, input)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn exec_passes_input_output_and_the_exit_status_through() {
    let Some(()) = prerequisites("exec_passes_input_output_and_the_exit_status_through") else {
        return;
    };
    let agent = TestAgent::start(Options::default());
    let name = alices_container(&agent, "ex");

    // `echo hi | devhost exec NAME -- cat`: the end of stdin ends cat.
    let out = exec(&agent, &name, &["cat"], b"hi\n");
    assert_eq!(
        (out.status.code(), stdout(&out).as_str()),
        (Some(0), "hi\n"),
        "{}",
        text(&out)
    );

    // Inside the container, as its root; stdout and stderr apart.
    let out = exec(
        &agent,
        &name,
        &[
            "sh",
            "-c",
            "echo out $(id -u) $(hostname); echo err >&2; exit 3",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert_eq!(stdout(&out), format!("out 0 {name}\n"));
    assert_eq!(stderr(&out), "err\n");

    // Arguments arrive as they were given, none split or expanded.
    let out = exec(
        &agent,
        &name,
        &["printf", "[%s]", "a b", "$HOME", "*", ""],
        b"",
    );
    assert_eq!(stdout(&out), "[a b][$HOME][*][]", "{}", text(&out));

    // Killed by a signal: 128 + N, as a shell reports it.
    let out = exec(&agent, &name, &["sh", "-c", "kill -9 $$"], b"");
    assert_eq!(out.status.code(), Some(137), "{}", text(&out));

    // A program that is not there: 127, and the shell says so.
    let out = exec(&agent, &name, &["no-such-program"], b"");
    assert_eq!(out.status.code(), Some(127), "{}", text(&out));
    assert!(stderr(&out).contains("no-such-program"), "{}", text(&out));

    // More than a frame's worth both ways, in a pipe.
    let big: Vec<u8> = (0..3 * 65536 + 17).map(|i| (i % 251) as u8).collect();
    let out = exec(&agent, &name, &["cat"], &big);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        out.stdout == big,
        "{} bytes came back of {}",
        out.stdout.len(),
        big.len()
    );

    // No command: a usage error, nothing sent.
    let out = run_as(&agent, ALICE, DEVHOST, &["exec", &name], b"");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr(&out).contains("give one after `--`"),
        "{}",
        text(&out)
    );
}

#[test]
fn another_users_exec_is_refused_and_runs_nothing() {
    let Some(()) = prerequisites("another_users_exec_is_refused_and_runs_nothing") else {
        return;
    };
    let agent = TestAgent::start(Options::default());
    let name = alices_container(&agent, "ea");
    let marker = agent.containers_dir.join(&name).join("root/marker");
    let _ = std::fs::remove_file(&marker);
    let touch = ["exec", &name, "--", "touch", "/root/marker"];
    // Bob (a user, not the owner) and a stranger (in neither group).
    for (who, uid) in [("bob", BOB), ("a stranger", STRANGER)] {
        let out = {
            use std::os::unix::process::CommandExt;
            let gid = if uid == BOB { users_gid() } else { uid };
            agent
                .command(DEVHOST, &touch)
                .uid(uid)
                .gid(gid)
                .output()
                .unwrap()
        };
        assert_eq!(out.status.code(), Some(1), "{who}: {}", text(&out));
        assert!(
            text(&out).contains("may not run commands")
                || text(&out).contains(&format!("belongs to uid {ALICE}")),
            "{who}: {}",
            text(&out)
        );
        assert!(!marker.exists(), "{who}'s command never ran");
    }
    // The owner's does (so the check above could have seen it).
    let out = run_as(&agent, ALICE, DEVHOST, &touch, b"");
    assert_ok(&out, "alice's exec");
    assert!(marker.exists(), "the owner's command ran");
}

/// Processes on the host whose command line is `argv`.
fn processes(argv: &[&str]) -> Vec<u32> {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want))
        .collect()
}

/// How many bytes wait in the pipe that is descriptor `fd` of process
/// `pid` (read through a descriptor of our own, without taking them).
fn pipe_holds(pid: u32, fd: u32) -> usize {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(pipe) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(format!("/proc/{pid}/fd/{fd}"))
    else {
        return 0;
    };
    let mut n: nix::libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    unsafe { nix::libc::ioctl(pipe.as_raw_fd(), nix::libc::FIONREAD, &mut n) };
    n.max(0) as usize
}

#[test]
fn a_command_whose_client_goes_away_is_killed_with_what_it_started() {
    let Some(()) = prerequisites("a_command_whose_client_goes_away_is_killed_with_what_it_started")
    else {
        return;
    };
    let agent = TestAgent::start(Options::default());
    let name = alices_container(&agent, "eg");
    let (child_secs, main_secs) = ("4242", "4243");
    let mut client = agent
        .command(
            DEVHOST,
            &[
                "exec",
                &name,
                "--",
                "sh",
                "-c",
                &format!("sleep {child_secs} & echo started; sleep {main_secs}"),
            ],
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(client.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line, "started\n");
    for secs in [child_secs, main_secs] {
        wait_until(
            Duration::from_secs(20),
            format!("sleep {secs} runs"),
            || processes(&["sleep", secs]).len() == 1,
        );
    }
    client.kill().unwrap();
    client.wait().unwrap();
    wait_until(
        Duration::from_secs(20),
        "the command and its child are gone",
        || {
            let left: Vec<u32> = [child_secs, main_secs]
                .iter()
                .flat_map(|s| processes(&["sleep", s]))
                .collect();
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("still running: {left:?}"))
            }
        },
    );
}

#[test]
fn nixos_container_runs_commands_and_points_elsewhere_for_the_rest() {
    let Some(()) = prerequisites("nixos_container_runs_commands_and_points_elsewhere_for_the_rest")
    else {
        return;
    };
    let agent = TestAgent::start(Options::default());
    let name = alices_container(&agent, "nc");
    for args in [
        vec!["run", name.as_str(), "--", "sh", "-c", "cat; exit 4"],
        vec!["run", name.as_str(), "sh", "-c", "cat; exit 4"],
    ] {
        let out = run_as(&agent, ALICE, NIXOS_CONTAINER, &args, b"piped\n");
        assert_eq!(out.status.code(), Some(4), "{args:?}: {}", text(&out));
        assert_eq!(stdout(&out), "piped\n");
    }
    for (verb, pointer) in [
        ("update", "devhost ensure"),
        ("create", "devhost ensure"),
        ("login", "root-login"),
    ] {
        let out = agent.nixos_container(&[verb, &name]);
        assert_eq!(out.status.code(), Some(2), "{verb}: {}", text(&out));
        assert!(text(&out).contains(pointer), "{verb}: {}", text(&out));
    }
    // Bob may not run anything in alice's container through it either.
    let out = run_as(
        &agent,
        BOB,
        NIXOS_CONTAINER,
        &["run", &name, "--", "true"],
        b"",
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("belongs to uid {ALICE}")),
        "{}",
        text(&out)
    );
}

#[test]
fn exec_in_a_stopped_container_says_so() {
    let Some(()) = prerequisites("exec_in_a_stopped_container_says_so") else {
        return;
    };
    let agent = TestAgent::start(Options::default());
    let name = alices_container(&agent, "es");
    assert_ok(&agent.devhost(&["stop", &name]), "stop");
    let out = exec(&agent, &name, &["true"], b"");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("is not running"), "{}", text(&out));
    let out = Command::new(DEVHOST)
        .args(["exec", "bad/name", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn a_command_that_reads_no_input_is_killed_when_its_client_goes_away() {
    let Some(()) =
        prerequisites("a_command_that_reads_no_input_is_killed_when_its_client_goes_away")
    else {
        return;
    };
    let agent = TestAgent::start(Options::default());
    let name = alices_container(&agent, "ei");
    let secs = "4244";
    let mut client = agent
        .command(
            DEVHOST,
            &[
                "exec",
                &name,
                "--",
                "sh",
                "-c",
                &format!("echo started; exec sleep {secs}"),
            ],
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // More input than the command's pipe holds, which it never reads.
    let mut stdin = client.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&vec![b'x'; 4 << 20]);
    });
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(client.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line, "started\n");
    wait_until(Duration::from_secs(20), "the command runs", || {
        processes(&["sleep", secs]).len() == 1
    });
    // The client goes while the agent waits for the command to take its
    // input: the command's pipe is full.
    let pid = processes(&["sleep", secs])[0];
    wait_until(
        Duration::from_secs(20),
        "the command's input is full",
        || pipe_holds(pid, 0) >= 64 * 1024,
    );
    client.kill().unwrap();
    client.wait().unwrap();
    writer.join().unwrap();
    wait_until(Duration::from_secs(20), "the command is gone", || {
        let left = processes(&["sleep", secs]);
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("still running: {left:?}"))
        }
    });
}
