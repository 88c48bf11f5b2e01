//! A full NixOS-like system in a container (the fixture's Debian tree with
//! systemd, sshd, sudo, python3, rsync): what batou needs of a container.
//! systemd itself reports READY=1; `developer` logs in by ssh with a key and
//! has passwordless sudo, also to the service user.

mod common;

use common::*;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

fn ssh(key: &str, addr: std::net::Ipv4Addr, command: &str) -> std::process::Output {
    Command::new("ssh")
        .args([
            "-i",
            key,
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
        ])
        .args(["-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR"])
        .arg(format!("developer@{addr}"))
        .arg(command)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

fn full_system(kind: Kind) {
    let Some(()) = prerequisites("full_system") else {
        return;
    };
    let (tree, key) = full_system_tree();
    let agent = TestAgent::start(Options {
        kind,
        nix_extra_config: format!("devhost.fixture.fullSystem = \"{tree}\";"),
        nix_allowed_paths: vec![tree.to_string()],
        ready_timeout_secs: 120,
        ..Options::default()
    });
    let name = agent.name("full");
    let out = agent.devhost(&["ensure", &name, &channel().url]);
    assert_ok(&out, "ensure of a full system");
    assert!(text(&out).contains("waiting for READY=1"), "{}", text(&out));
    let addr = agent.address(&name);
    let out = ssh(key, addr, "sudo -n true && sudo -ni -u s-dev python3 -c 'print(6*7)' && rsync --version | head -1 && cat /etc/hostname");
    assert_ok(&out, "ssh as developer");
    let t = text(&out);
    assert!(
        t.contains("42") && t.contains("rsync") && t.contains(&name),
        "{t}"
    );
    // The container's root (sudo in it, as every batou user has) is not
    // the host's: the host's disk and sysctls are out of its reach.
    let dev = std::fs::metadata("/").unwrap().dev();
    let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    let core_pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    let out = ssh(
        key,
        addr,
        &format!(
            "sudo -n sh -c 'mknod /tmp/disk b {major} {minor} && mkdir -p /tmp/m && mount /tmp/disk /tmp/m && echo HOSTDISK mounted || echo HOSTDISK refused; \
             mkdir -p /tmp/p && mount -t proc proc /tmp/p; echo x > /tmp/p/sys/kernel/core_pattern && echo CORE written || echo CORE refused' 2>&1"
        ),
    );
    let t = text(&out);
    assert!(
        t.contains("HOSTDISK refused") && t.contains("CORE refused"),
        "as the container's root:\n{t}"
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap(),
        core_pattern
    );
    let perms = ssh(key, addr, "stat -c '%a %U:%G' /etc/local/nixos");
    assert_eq!(
        text(&perms).trim(),
        "2775 root:service",
        "batou's COPY of provision.nix needs this"
    );
    if let Some(si) = &agent.standin {
        let out = si.exec(&[
            "systemd-run",
            "-M",
            &name,
            "--wait",
            "--pipe",
            "--quiet",
            "/bin/cat",
            "/etc/hostname",
        ]);
        assert_eq!(
            text(&out).trim(),
            name,
            "machined runs commands in it: {}",
            text(&out)
        );
    }
    // RUN in a systemd container: with the systemd backend a transient unit
    // of the container's own systemd, otherwise its namespaces and cgroups.
    let envdir = agent.dir.join("env");
    std::fs::create_dir_all(&envdir).unwrap();
    std::fs::write(
        envdir.join("provision.sh"),
        "RUN 'cat /proc/self/cgroup > /root/run-cgroup; cat /proc/1/cgroup > /root/init-cgroup'\nRUN 'x=inner; echo \"$x ${x}-$$\" > /root/run-dollar'\n",
    )
    .unwrap();
    assert_ok(
        &agent.devhost(&["provision", &name, envdir.to_str().unwrap()]),
        "provision",
    );
    let read = |f: &str| {
        std::fs::read_to_string(agent.dir.join("containers").join(&name).join(f)).unwrap()
    };
    let run_cgroup = read("root/run-cgroup");
    // The container's shell expands `$` in RUN, not systemd on the way in.
    let dollar = read("root/run-dollar");
    let (words, pid) = dollar.trim().rsplit_once('-').unwrap();
    assert_eq!(
        words, "inner inner",
        "RUN's shell expanded its own variables: {dollar:?}"
    );
    assert!(
        pid.parse::<u32>().is_ok(),
        "`$$` is the shell's pid: {dollar:?}"
    );
    if kind == Kind::Systemd {
        assert!(
            run_cgroup.contains("/system.slice/run-"),
            "a transient unit inside:\n{run_cgroup}"
        );
    } else {
        // Seen through the container's cgroup namespace: where its init is.
        assert_eq!(
            run_cgroup,
            read("root/init-cgroup"),
            "the container's cgroup:\n{run_cgroup}"
        );
    }
    // A graceful poweroff of a real systemd.
    assert_ok(&agent.devhost(&["stop", &name]), "stop");
    let logs = text(&agent.devhost(&["logs", &name]));
    assert!(
        logs.contains(&format!("Container {name} has been shut down")),
        "graceful poweroff:\n{logs}"
    );
    assert_ok(
        &agent.devhost(&["start", &name]),
        "start again (tree already copied)",
    );
    assert_ok(&ssh(key, addr, "true"), "ssh after restart");
    assert_ok(&agent.devhost(&["destroy", &name]), "destroy");
    assert_eq!(agent.traces_of(&name, addr), Vec::<String>::new());
}

/// `devhost exec` as root with `input`.
fn exec(agent: &TestAgent, name: &str, command: &[&str], input: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut args = vec!["exec", name, "--"];
    args.extend_from_slice(command);
    let mut child = agent
        .command(DEVHOST, &args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// Host processes whose command line is `argv`.
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

/// `devhost exec` and `devhost shell` in a container whose init is
/// systemd: under the systemd backend through machined (a transient unit
/// of the container's systemd), otherwise through the enter helper; either
/// way as its root with its init's privilege, the status passed back, and
/// what a departed client left killed.
fn sessions_in_a_systemd_container(kind: Kind) {
    let Some(()) = prerequisites_and("sessions_in_a_systemd_container", &["script"]) else {
        return;
    };
    let (tree, _) = full_system_tree();
    let agent = TestAgent::start(Options {
        kind,
        nix_extra_config: format!("devhost.fixture.fullSystem = \"{tree}\";"),
        nix_allowed_paths: vec![tree.to_string()],
        ready_timeout_secs: 120,
        ..Options::default()
    });
    let name = agent.name("fse");
    assert_ok(&agent.devhost(&["ensure", &name, &channel().url]), "ensure");
    let out = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).into_owned();

    let cgroup = exec(&agent, &name, &["cat", "/proc/self/cgroup"], b"");
    assert_ok(&cgroup, "exec cat");
    if kind == Kind::Systemd {
        assert!(
            out(&cgroup).contains("/system.slice/devhost-exec-"),
            "a transient unit of the container's systemd:\n{}",
            text(&cgroup)
        );
    } else {
        let init = exec(&agent, &name, &["cat", "/proc/1/cgroup"], b"");
        assert_eq!(out(&cgroup), out(&init), "the init's cgroup");
    }
    let piped = exec(
        &agent,
        &name,
        &["sh", "-c", "cat; echo err >&2; exit 7"],
        b"through\n",
    );
    assert_eq!(piped.status.code(), Some(7), "{}", text(&piped));
    assert_eq!(out(&piped), "through\n");
    assert_eq!(String::from_utf8_lossy(&piped.stderr), "err\n");
    // Arguments as given: no `$` or `%` taken by systemd on the way.
    let literal = exec(
        &agent,
        &name,
        &["printf", "[%s]", "$HOME", "%n", "$$", "${X}"],
        b"",
    );
    assert_eq!(out(&literal), "[$HOME][%n][$$][${X}]", "{}", text(&literal));
    let killed = exec(&agent, &name, &["sh", "-c", "kill -9 $$"], b"");
    assert_eq!(killed.status.code(), Some(137), "{}", text(&killed));

    let fields = "^(Uid|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):";
    let own = exec(
        &agent,
        &name,
        &["grep", "-E", fields, "/proc/self/status"],
        b"",
    );
    let init = exec(
        &agent,
        &name,
        &["grep", "-E", fields, "/proc/1/status"],
        b"",
    );
    assert_eq!(out(&own).lines().count(), 8, "{}", text(&own));
    // No more than the init: each capability set within the init's (a
    // service of its systemd has an empty inheritable set), the same uid,
    // seccomp mode and no_new_privs.
    for (mine, its) in out(&own).lines().zip(out(&init).lines()) {
        let (key, a) = mine.split_once(':').unwrap();
        let (key2, b) = its.split_once(':').unwrap();
        assert_eq!(key, key2);
        if key.starts_with("Cap") {
            let a = u64::from_str_radix(a.trim(), 16).unwrap();
            let b = u64::from_str_radix(b.trim(), 16).unwrap();
            assert_eq!(a & !b, 0, "{key}: {a:x} is within the init's {b:x}");
        } else {
            assert_eq!(a, b, "{key} as the init's");
        }
    }

    // The client goes away: the command and what it started are killed.
    let mut client = agent
        .command(
            DEVHOST,
            &["exec", &name, "--", "sh", "-c", "sleep 4244 & sleep 4245"],
        )
        .spawn()
        .unwrap();
    for secs in ["4244", "4245"] {
        wait_until(
            std::time::Duration::from_secs(30),
            format!("sleep {secs} runs"),
            || processes(&["sleep", secs]).len() == 1,
        );
    }
    client.kill().unwrap();
    client.wait().unwrap();
    wait_until(
        std::time::Duration::from_secs(30),
        "the sleeps are gone",
        || processes(&["sleep", "4244"]).is_empty() && processes(&["sleep", "4245"]).is_empty(),
    );

    // A shell, typed into once it is there (through machined, what is
    // typed before the unit's terminal is set up is lost).
    use std::io::{Read, Write};
    let mut script = agent
        .command(
            "script",
            &[
                "-q",
                "-e",
                "-c",
                &format!("{DEVHOST} shell {name}"),
                "/dev/null",
            ],
        )
        .env("TERM", "dumb")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut stdout = script.stdout.take().unwrap();
    let reader = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut b = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut b) {
                if n == 0 {
                    break;
                }
                seen.lock().unwrap().extend_from_slice(&b[..n]);
            }
        })
    };
    let shown = || String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    wait_until(
        std::time::Duration::from_secs(60),
        "the shell's prompt",
        || {
            let s = shown();
            if s.contains("# ") {
                Ok(())
            } else {
                Err(s)
            }
        },
    );
    let mut keys = script.stdin.take().unwrap();
    keys.write_all(b"echo SHELL-$((6 * 7)) $(id -u); cat /proc/self/cgroup\n")
        .unwrap();
    wait_until(
        std::time::Duration::from_secs(60),
        "the shell's answer",
        || {
            let s = shown();
            if s.contains("SHELL-42 0") {
                Ok(())
            } else {
                Err(s)
            }
        },
    );
    keys.write_all(b"exit\n").unwrap();
    let status = script.wait().unwrap();
    reader.join().unwrap();
    let t = shown();
    assert!(status.success(), "the shell ended by itself: {t}");
    if kind == Kind::Systemd {
        assert!(
            t.contains("/system.slice/devhost-shell-"),
            "through machined:\n{t}"
        );
    }
}

#[test]
fn sessions_in_a_systemd_container_direct() {
    sessions_in_a_systemd_container(Kind::Direct);
}

#[test]
fn sessions_in_a_systemd_container_systemd() {
    sessions_in_a_systemd_container(Kind::Systemd);
}

#[test]
fn full_system_direct() {
    full_system(Kind::Direct);
}

#[test]
fn full_system_systemd() {
    full_system(Kind::Systemd);
}
