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
        "RUN 'cat /proc/self/cgroup > /root/run-cgroup; cat /proc/1/cgroup > /root/init-cgroup'\n",
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

#[test]
fn full_system_direct() {
    full_system(Kind::Direct);
}

#[test]
fn full_system_systemd() {
    full_system(Kind::Systemd);
}
