//! A developer is never root on the devhost: attacks by a channel, by
//! container root, by provisioning steps, by a sudoer and by a local user on
//! the API socket, each of which must fail (see docs/security.md).

mod common;

use common::*;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn write(p: &Path, body: &str, mode: u32) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, body).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A channel of the test's own: `default.nix` as `<nixpkgs/nixos>`, with
/// the fixture's static busybox beside it (`../busybox`).
fn make_channel(agent: &TestAgent, name: &str, default_nix: &str) -> PathBuf {
    let dir = agent.dir.join(name);
    write(&dir.join("nixpkgs/nixos/default.nix"), default_nix, 0o644);
    let bb = dir.join("nixpkgs/busybox/bin");
    std::fs::create_dir_all(&bb).unwrap();
    std::fs::copy(
        channel().unpacked.join("nixpkgs/busybox/bin/busybox"),
        bb.join("busybox"),
    )
    .unwrap();
    for d in [&dir, &dir.join("nixpkgs")] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}

/// `devhost ensure` by ALICE of container SUFFIX from the local channel `chan`.
fn ensure_as_alice(agent: &TestAgent, suffix: &str, chan: &Path) -> Output {
    agent.devhost_as(
        ALICE,
        users_gid(),
        &[
            "ensure",
            &agent.name(suffix),
            &format!("file://{}", chan.display()),
        ],
    )
}

fn store_paths() -> BTreeSet<String> {
    std::fs::read_dir("/nix/store")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Does `needle` appear in any file below the store paths `paths`?
fn in_store(paths: &BTreeSet<String>, needle: &str) -> Vec<String> {
    let mut hits = Vec::new();
    for p in paths {
        let out = Command::new("grep")
            .args(["-rlsF", needle, &format!("/nix/store/{p}")])
            .output()
            .unwrap();
        hits.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(String::from),
        );
    }
    hits
}

#[test]
fn a_channel_cannot_read_what_its_caller_cannot() {
    let Some(()) = prerequisites("a_channel_cannot_read_what_its_caller_cannot") else {
        return;
    };
    let agent = TestAgent::start(Options::default());
    let before = store_paths();
    let secret_value = format!("devhost-secret-{}", agent.tag);
    let secret = agent.dir.join("root-only-secret");
    write(&secret, &secret_value, 0o600);
    // Reads the secret by absolute path, and through a symlink of its own.
    let by_path = make_channel(
        &agent,
        "chan-path",
        &format!(
            "{{ ... }}: {{ system = throw \"leaked: ${{builtins.readFile {}}}\"; }}\n",
            secret.display()
        ),
    );
    let by_link = make_channel(
        &agent,
        "chan-link",
        "{ ... }: { system = throw \"leaked: ${builtins.readFile ./secret}\"; }\n",
    );
    std::os::unix::fs::symlink(&secret, by_link.join("nixpkgs/nixos/secret")).unwrap();
    let mut outputs: Vec<Output> = Vec::new();
    for (i, chan) in [&by_path, &by_link].into_iter().enumerate() {
        let url = format!("file://{}", chan.display());
        let name = agent.name(&format!("r{i}"));
        let as_root = agent.devhost(&["ensure", &name, &url]);
        let name = agent.name(&format!("a{i}"));
        let as_alice = agent.devhost_as(ALICE, users_gid(), &["ensure", &name, &url]);
        for out in [as_root, as_alice] {
            assert_eq!(out.status.code(), Some(1), "{}", text(&out));
            assert!(
                text(&out).contains("is forbidden in restricted mode"),
                "evaluation is restricted to the channel:\n{}",
                text(&out)
            );
            outputs.push(out);
        }
    }
    // A channel directory the caller cannot read is not read for them.
    let evaluated = format!("evaluated-{}", agent.tag);
    let private = make_channel(
        &agent,
        "chan-private",
        &format!("{{ ... }}: {{ system = throw \"{evaluated}\"; }}\n"),
    );
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = ensure_as_alice(&agent, "ap", &private);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!(
            "cannot use the local channel {} (read as uid {ALICE})",
            private.display()
        )) && text(&out).contains("Permission denied"),
        "{}",
        text(&out)
    );
    assert!(
        !text(&out).contains(&evaluated),
        "nothing of it was evaluated: {}",
        text(&out)
    );

    for out in &outputs {
        assert!(!text(out).contains(&secret_value), "{}", text(out));
    }
    let shared_logs = std::fs::read_dir(agent.dir.join("state/systems"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|d| std::fs::read_to_string(d.path()).unwrap_or_default());
    let logs = std::fs::read_dir(agent.dir.join("state/containers"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|d| std::fs::read_to_string(d.path().join("build.log")).unwrap_or_default())
        .chain(shared_logs)
        .collect::<String>();
    assert!(!logs.contains(&secret_value), "build logs: {logs}");
    assert!(
        !agent.log().contains(&secret_value),
        "agent log: {}",
        agent.log()
    );
    let new: BTreeSet<String> = store_paths().difference(&before).cloned().collect();
    assert_eq!(in_store(&new, &secret_value), Vec::<String>::new());
}

#[test]
fn a_channels_builder_runs_unprivileged_in_the_sandbox() {
    let Some(()) = prerequisites("a_channels_builder_runs_unprivileged_in_the_sandbox") else {
        return;
    };
    let agent = TestAgent::start(Options::default());
    // A directory anybody may write: a builder outside the sandbox could.
    let open = agent.dir.join("open");
    std::fs::create_dir_all(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let marker = open.join("escaped");
    let chan = make_channel(
        &agent,
        "chan-builder",
        &format!(
            r#"{{ ... }}: {{ system = derivation {{
  name = "escape-probe-{tag}";
  system = builtins.currentSystem;
  builder = "${{../busybox}}/bin/busybox";
  args = [ "sh" "-c" "echo builder-uid=$(${{../busybox}}/bin/busybox id -u) $(${{../busybox}}/bin/busybox head -n1 /proc/self/uid_map); ${{../busybox}}/bin/busybox touch {marker} && echo wrote-outside; exit 1" ];
}}; }}
"#,
            tag = agent.tag,
            marker = marker.display()
        ),
    );
    let out = ensure_as_alice(&agent, "bld", &chan);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    // Its uid, and the line of its uid map that maps it (inside, outside,
    // count): in Nix's sandbox the uid inside is not the host's.
    let said: Vec<u64> = t
        .lines()
        .find_map(|l| l.trim().strip_prefix("builder-uid="))
        .unwrap_or_else(|| panic!("the builder ran and said who it is:\n{t}"))
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    let [uid, inside, outside, _count] = said[..] else {
        panic!("{said:?}")
    };
    let host_uid = outside + (uid - inside);
    assert_ne!(host_uid, 0, "the builder ran as host root:\n{t}");
    assert_ne!(
        (inside, outside),
        (0, 0),
        "the builder ran outside a user namespace (no sandbox):\n{t}"
    );
    assert!(!t.contains("wrote-outside"), "{t}");
    assert!(!marker.exists(), "the builder wrote outside its build");
}

/// Run `provision.sh` (its lines given) in container `name`.
fn provision(agent: &TestAgent, name: &str, script: &str) -> Output {
    let envdir = agent.dir.join(format!("env-{name}"));
    write(&envdir.join("provision.sh"), script, 0o644);
    agent.devhost(&["provision", name, envdir.to_str().unwrap()])
}

fn ensure_fixture(agent: &TestAgent, suffix: &str) -> String {
    let name = agent.name(suffix);
    assert_ok(&agent.devhost(&["ensure", &name, &channel().url]), "ensure");
    name
}

/// The lines of `out` that start with `prefix`, without it.
fn tagged(out: &Output, prefix: &str) -> Vec<String> {
    text(out)
        .lines()
        .filter_map(|l| l.strip_prefix(prefix).map(String::from))
        .collect()
}

fn run_has_the_privilege_of_the_containers_init(kind: Kind) {
    let Some(()) = prerequisites("run_has_the_privilege_of_the_containers_init") else {
        return;
    };
    let agent = TestAgent::start(Options {
        kind,
        ..Options::default()
    });
    let name = ensure_fixture(&agent, "priv");
    let fields = "^(Uid|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp|Seccomp_filters):";
    let out = provision(
        &agent,
        &name,
        &format!(
            "RUN 'grep -E \"{fields}\" /proc/self/status | sed \"s/^/RUN /\"; grep -E \"{fields}\" /proc/1/status | sed \"s/^/INIT /\"'\n"
        ),
    );
    assert_ok(&out, "provision");
    let run = tagged(&out, "RUN ");
    let init = tagged(&out, "INIT ");
    assert_eq!(run.len(), 9, "{}", text(&out));
    assert_eq!(run, init, "RUN has exactly its init's privilege");
    assert!(
        run.iter()
            .any(|l| l.starts_with("Seccomp:") && l.ends_with('2')),
        "under the init's seccomp filter: {run:?}"
    );
    // Seen from the host, the container's root is not root.
    let (init_pid, _) = init_of(&agent, &name);
    let host_uid = std::fs::metadata(format!("/proc/{init_pid}"))
        .unwrap()
        .uid();
    assert!(
        host_uid >= 65536,
        "the container's root is host uid {host_uid}"
    );
    assert_eq!(
        agent.status_json(&name).unwrap()["user_namespace"],
        true,
        "status says it is isolated"
    );
}

#[test]
fn run_has_the_privilege_of_the_containers_init_direct() {
    run_has_the_privilege_of_the_containers_init(Kind::Direct);
}

#[test]
fn run_has_the_privilege_of_the_containers_init_systemd() {
    run_has_the_privilege_of_the_containers_init(Kind::Systemd);
}

fn exec_has_the_privilege_of_the_containers_init(kind: Kind) {
    let Some(()) = prerequisites("exec_has_the_privilege_of_the_containers_init") else {
        return;
    };
    let agent = TestAgent::start(Options {
        kind,
        ..Options::default()
    });
    let name = ensure_fixture(&agent, "xpriv");
    let fields = "^(Uid|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp|Seccomp_filters):";
    let read = |status: &str| {
        let out = agent.devhost(&["exec", &name, "--", "grep", "-E", fields, status]);
        assert_ok(&out, "exec");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    // /proc/self is the command itself, run through `devhost exec`.
    let (exec, init) = (read("/proc/self/status"), read("/proc/1/status"));
    assert_eq!(exec.len(), 9, "{exec:?}");
    assert_eq!(exec, init, "exec has exactly its init's privilege");
    assert!(
        exec.iter()
            .any(|l| l.starts_with("Seccomp:") && l.ends_with('2')),
        "under the init's seccomp filter: {exec:?}"
    );
}

#[test]
fn exec_has_the_privilege_of_the_containers_init_direct() {
    exec_has_the_privilege_of_the_containers_init(Kind::Direct);
}

#[test]
fn exec_has_the_privilege_of_the_containers_init_systemd() {
    exec_has_the_privilege_of_the_containers_init(Kind::Systemd);
}

fn container_root_cannot_reach_the_host(kind: Kind) {
    let Some(()) = prerequisites("container_root_cannot_reach_the_host") else {
        return;
    };
    let agent = TestAgent::start(Options {
        kind,
        ..Options::default()
    });
    let name = ensure_fixture(&agent, "esc");
    let host_file = agent.dir.join("host-file");
    write(&host_file, "host data\n", 0o644);
    let dev = std::fs::metadata("/").unwrap().dev();
    let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    let core_pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    let out = provision(
        &agent,
        &name,
        &format!(
            "RUN 'mknod /tmp/disk b {major} {minor} && mkdir -p /tmp/disk-mnt && mount /tmp/disk /tmp/disk-mnt && echo HOSTDISK mounted || echo HOSTDISK refused'\n\
             RUN 'mkdir -p /tmp/proc && mount -t proc proc /tmp/proc; echo \"|/tmp/pwn %p\" > /tmp/proc/sys/kernel/core_pattern && echo CORE written || echo CORE refused'\n\
\
             RUN 'cat {host} && echo HOSTFILE read || echo HOSTFILE refused'\n",
            host = host_file.display()
        ),
    );
    assert_ok(&out, "provision");
    for (what, verdict) in [
        ("HOSTDISK ", "refused"),
        ("CORE ", "refused"),
        ("HOSTFILE ", "refused"),
    ] {
        assert_eq!(
            tagged(&out, what),
            vec![verdict.to_string()],
            "{what}:\n{}",
            text(&out)
        );
    }
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap(),
        core_pattern
    );
}

#[test]
fn container_root_cannot_reach_the_host_direct() {
    container_root_cannot_reach_the_host(Kind::Direct);
}

#[test]
fn container_root_cannot_reach_the_host_systemd() {
    container_root_cannot_reach_the_host(Kind::Systemd);
}

#[test]
fn set_user_id_files_of_a_container_are_out_of_host_users_reach() {
    let Some(()) = prerequisites("set_user_id_files_of_a_container_are_out_of_host_users_reach")
    else {
        return;
    };
    let agent = TestAgent::start(Options::default());
    let name = ensure_fixture(&agent, "suid");
    let out = provision(
        &agent,
        &name,
        "RUN 'cp -L /bin/sh /nix/var/nix/profiles/rootshell && chmod 4755 /nix/var/nix/profiles/rootshell && chmod 755 /nix/var/nix/profiles && cp -L /bin/sh /rootshell && chmod 4755 /rootshell && echo planted'\n",
    );
    assert_ok(&out, "provision");
    assert!(text(&out).contains("planted"), "{}", text(&out));
    for planted in [
        agent.dir.join("profiles").join(&name).join("rootshell"),
        agent.dir.join("containers").join(&name).join("rootshell"),
    ] {
        let m = std::fs::metadata(&planted).unwrap();
        assert_eq!(
            (m.uid(), m.mode() & 0o4000),
            (0, 0o4000),
            "{}: set-user-ID root on the disk",
            planted.display()
        );
        let tried = Command::new(&planted)
            .args(["-c", "id -u"])
            .uid(ALICE)
            .gid(users_gid())
            .output();
        match tried {
            Err(e) => assert_eq!(
                e.kind(),
                std::io::ErrorKind::PermissionDenied,
                "{}",
                planted.display()
            ),
            Ok(o) => panic!("a host user ran {}: {}", planted.display(), text(&o)),
        }
    }
}

#[test]
fn copy_and_echo_write_where_the_container_looks() {
    let Some(()) = prerequisites("copy_and_echo_write_where_the_container_looks") else {
        return;
    };
    let agent = TestAgent::start(Options::default());
    let name = ensure_fixture(&agent, "tmp");
    let envdir = agent.dir.join("env-tmp");
    write(&envdir.join("notes.txt"), "copied into a tmpfs\n", 0o640);
    write(
        &envdir.join("provision.sh"),
        "COPY notes.txt /tmp/dir/\n\
         ECHO echoed /tmp/echoed\n\
         RUN 'cat /tmp/dir/notes.txt /tmp/echoed; stat -c \"MODE %a\" /tmp/dir/notes.txt'\n",
        0o644,
    );
    let out = agent.devhost(&["provision", &name, envdir.to_str().unwrap()]);
    assert_ok(&out, "provision");
    let t = text(&out);
    assert!(t.contains("copied into a tmpfs"), "{t}");
    assert!(t.contains("echoed"), "{t}");
    assert_eq!(tagged(&out, "MODE "), vec!["640".to_string()], "{t}");
    let beside = agent.dir.join("containers").join(&name).join("tmp");
    assert!(
        !beside.join("dir").exists() && !beside.join("echoed").exists(),
        "nothing went into the root directory under the container's /tmp"
    );
}

/// Real users (sudo wants passwd entries), removed again with the sudo rule.
struct SudoUsers {
    names: Vec<String>,
    sudoers: PathBuf,
}

impl SudoUsers {
    fn create(tag: &str, names: &[&str]) -> SudoUsers {
        let sudoers = PathBuf::from(format!("/etc/sudoers.d/devhost-test-{tag}"));
        let mut me = SudoUsers {
            names: Vec::new(),
            sudoers: sudoers.clone(),
        };
        for n in names {
            let user = format!("dht{tag}{n}");
            let st = Command::new("useradd")
                .args(["--no-create-home", "--gid", "users", &user])
                .status()
                .unwrap();
            assert!(st.success(), "useradd {user}");
            me.names.push(user);
        }
        // What the NixOS role grants the user group, plus the test socket.
        write(
            &sudoers,
            &format!(
                "Defaults:%users env_keep += \"DEVHOST_SOCKET\"\n%users ALL=(root) NOPASSWD: {FC_BUILD}\n"
            ),
            0o440,
        );
        me
    }

    fn uid(&self, i: usize) -> u32 {
        nix::unistd::User::from_name(&self.names[i])
            .unwrap()
            .unwrap()
            .uid
            .as_raw()
    }

    /// `sudo -n fc-build-dev-container ARGS` as user `i`.
    fn sudo_fc_build(&self, agent: &TestAgent, i: usize, args: &[&str]) -> Output {
        Command::new("sudo")
            .arg("-n")
            .arg(FC_BUILD)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("DEVHOST_SOCKET", &agent.socket)
            .uid(self.uid(i))
            .gid(users_gid())
            .output()
            .unwrap()
    }
}

impl Drop for SudoUsers {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.sudoers);
        for n in &self.names {
            let _ = Command::new("userdel").arg(n).status();
        }
    }
}

#[test]
fn a_sudoer_cannot_touch_another_users_container() {
    let Some(()) = prerequisites_and("a_sudoer_cannot_touch_another_users_container", &["sudo"])
    else {
        return;
    };
    let agent = TestAgent::start(Options::default());
    let users = SudoUsers::create(&agent.tag, &["a", "b"]);
    let name = agent.name("own");
    let ch = channel();
    assert_ok(
        &users.sudo_fc_build(&agent, 0, &["ensure", &name, &ch.url, "www"]),
        "A's sudo ensure",
    );
    assert_eq!(
        agent.status(&name).owner_uid,
        users.uid(0),
        "the container is A's, not root's"
    );
    for args in [
        vec!["destroy", name.as_str()],
        vec!["ensure", name.as_str(), ch.url.as_str(), "evil"],
    ] {
        let out = users.sudo_fc_build(&agent, 1, &args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "B could {args:?}: {}",
            text(&out)
        );
        assert!(
            text(&out).contains(&format!("belongs to uid {}", users.uid(0))),
            "{}",
            text(&out)
        );
    }
    let s = agent.status_json(&name).unwrap();
    assert_eq!(s["state"], "running", "A's container survived");
    assert_eq!(s["aliases"], serde_json::json!(["www"]));
    assert_ok(
        &users.sudo_fc_build(&agent, 0, &["destroy", &name]),
        "A's own destroy",
    );
}

#[test]
fn new_names_are_lower_case() {
    let Some(()) = prerequisites("new_names_are_lower_case") else {
        return;
    };
    let agent = TestAgent::start(Options::default());
    let name = agent.name("pa");
    assert_ok(
        &agent.devhost_as(ALICE, users_gid(), &["ensure", &name, &channel().url]),
        "alice's ensure",
    );
    let upper = name.to_uppercase();
    let out = agent.devhost_as(BOB, users_gid(), &["ensure", &upper, &channel().url]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("new container names are lower case"),
        "{}",
        text(&out)
    );
    assert!(agent.status_json(&upper).is_none());
    let lines: Vec<String> = agent
        .hosts()
        .lines()
        .filter(|l| l.to_lowercase().contains(&name))
        .map(String::from)
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
}

/// The agent's resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap()
}

/// A connection to the agent's socket as `uid`/`gid`: a thread of its own
/// takes those credentials (the raw system calls change only the calling
/// thread, unlike libc's setuid) and connects — SO_PEERCRED records the
/// connecting thread's credentials — and then ends.
fn connect_as(agent: &TestAgent, uid: u32, gid: u32) -> std::os::unix::net::UnixStream {
    let socket = agent.socket.clone();
    std::thread::spawn(move || {
        use nix::libc;
        // SAFETY: per-thread credential changes by raw system call.
        unsafe {
            assert_eq!(
                libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<u32>()),
                0
            );
            assert_eq!(libc::syscall(libc::SYS_setresgid, gid, gid, gid), 0);
            assert_eq!(libc::syscall(libc::SYS_setresuid, uid, uid, uid), 0);
        }
        std::os::unix::net::UnixStream::connect(&socket).unwrap()
    })
    .join()
    .unwrap()
}

fn status_line(s: &mut std::os::unix::net::UnixStream) -> String {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    while !buf.ends_with(b"\r\n") {
        match s.read(&mut b) {
            Ok(1) => buf.push(b[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&buf).trim().to_string()
}

#[test]
fn a_strangers_large_body_is_refused_before_it_is_read() {
    let Some(()) = prerequisites("a_strangers_large_body_is_refused_before_it_is_read") else {
        return;
    };
    let agent = TestAgent::start(Options::default());
    let name = ensure_fixture(&agent, "big");
    let pid = agent.pid().unwrap();
    let rss_before = rss_kib(pid);
    let len: usize = 100 << 20;
    let mut conns: Vec<_> = (0..4)
        .map(|_| connect_as(&agent, STRANGER, STRANGER))
        .collect();
    for s in &mut conns {
        s.write_all(
            format!(
                "POST /v1/containers/{name}/provision HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
    }
    // The answer comes before a byte of the body is sent.
    for s in &mut conns {
        let line = status_line(s);
        assert!(line.contains(" 403 "), "{line}");
    }
    // Whatever is sent now is not kept.
    let chunk = vec![b'x'; 1 << 20];
    for s in &mut conns {
        s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
        for _ in 0..(len >> 20) {
            if s.write_all(&chunk).is_err() {
                break;
            }
        }
    }
    let grown = rss_kib(pid).saturating_sub(rss_before);
    assert!(
        grown < 32 * 1024,
        "the agent grew by {grown} KiB while strangers sent 400 MiB"
    );
}

#[test]
fn a_stalled_request_is_closed() {
    let Some(()) = prerequisites("a_stalled_request_is_closed") else {
        return;
    };
    let agent = TestAgent::start(Options {
        access_toml: "header_timeout_secs = 1\nbody_timeout_secs = 1\n".into(),
        ..Options::default()
    });
    // Headers that never end, and a body that never comes.
    let mut head = connect_as(&agent, ALICE, users_gid());
    head.write_all(b"GET /v1/containers HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut body = connect_as(&agent, ALICE, users_gid());
    body.write_all(
        format!(
            "POST /v1/containers/{}/ensure HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{{",
            agent.name("st")
        )
        .as_bytes(),
    )
    .unwrap();
    let t = Instant::now();
    for (what, s) in [("headers", &mut head), ("body", &mut body)] {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut rest = String::new();
        let _ = s.read_to_string(&mut rest);
        assert!(
            rest.is_empty() || rest.contains(" 400 ") || rest.contains(" 408 "),
            "stalled {what}: {rest}"
        );
    }
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "closed after {:?}",
        t.elapsed()
    );
    assert!(agent.try_status(&agent.name("st")).is_none());
}

#[test]
fn a_uids_connections_are_bounded() {
    let Some(()) = prerequisites("a_uids_connections_are_bounded") else {
        return;
    };
    let agent = TestAgent::start(Options {
        access_toml: "max_connections_per_uid = 3\n".into(),
        ..Options::default()
    });
    let held: Vec<_> = (0..3)
        .map(|_| connect_as(&agent, STRANGER, STRANGER))
        .collect();
    let mut extra = connect_as(&agent, STRANGER, STRANGER);
    let line = status_line(&mut extra);
    assert!(line.contains(" 503 "), "{line}");
    // Others are not affected, and a closed connection frees its slot.
    assert_ok(
        &agent.devhost_as(ALICE, users_gid(), &["list"]),
        "alice's list",
    );
    drop(held);
    wait_until(Duration::from_secs(10), "the slots are freed", || {
        let mut again = connect_as(&agent, STRANGER, STRANGER);
        again
            .write_all(b"GET /v1/containers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let line = status_line(&mut again);
        if line.contains(" 200 ") {
            Ok(())
        } else {
            Err(line)
        }
    });
}

#[test]
fn a_build_never_stops_another_containers_build() {
    let Some(()) = prerequisites("a_build_never_stops_another_containers_build") else {
        return;
    };
    let agent = TestAgent::start(Options {
        nix_extra_config: "devhost.fixture.buildDelay = 3;".into(),
        ..Options::default()
    });
    let ch = channel();
    // `pk` is a prefix of `pkx`: a build of one once killed the other's.
    let long = agent.ensure_in_thread(&agent.name("pkx"), &ch.url);
    let build_log = agent
        .dir
        .join(format!("state/containers/{}/build.log", agent.name("pkx")));
    wait_until(Duration::from_secs(30), "the first build starts", || {
        std::fs::read_to_string(&build_log)
            .unwrap_or_default()
            .contains("building '")
    });
    assert_ok(
        &agent.devhost(&["ensure", &agent.name("pk"), &ch.url]),
        "ensure pk",
    );
    assert_ok(&long.join().unwrap(), "ensure pkx, built meanwhile");
}

#[test]
fn without_build_users_only_admins_may_build() {
    let Some(()) = prerequisites("without_build_users_only_admins_may_build") else {
        return;
    };
    let agent = TestAgent::start(Options {
        agent_env: vec![("NIX_CONFIG".into(), "build-users-group =".into())],
        ..Options::default()
    });
    let info = text(&agent.devhost(&["info"]));
    assert!(
        info.contains("warning: Nix's build-users-group is empty: builders run as root"),
        "{info}"
    );
    let out = agent.devhost_as(
        ALICE,
        users_gid(),
        &["ensure", &agent.name("nb"), &channel().url],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("this host's Nix builds as root (no build users)"),
        "{}",
        text(&out)
    );
    assert!(agent.try_status(&agent.name("nb")).is_none());
    assert_ok(
        &agent.devhost(&["ensure", &agent.name("rb"), &channel().url]),
        "root may still build",
    );
}

/// The container's init as the host sees it: (pid, start time).
fn init_of(agent: &TestAgent, name: &str) -> (u32, u64) {
    let nspawn = nspawn_pids(&agent.dir.join("containers"))
        .into_iter()
        .find(|(_, n)| n == name)
        .expect("the container's nspawn")
        .0;
    let pid: u32 = std::fs::read_to_string(format!("/proc/{nspawn}/task/{nspawn}/children"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let start = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .nth(19)
        .unwrap()
        .parse()
        .unwrap();
    (pid, start)
}

#[test]
fn the_enter_helper_is_the_agents_alone() {
    let Some(()) = prerequisites("the_enter_helper_is_the_agents_alone") else {
        return;
    };
    let agent = TestAgent::start(Options::default());
    let name = ensure_fixture(&agent, "hlp");
    let (pid, start) = init_of(&agent, &name);
    let req = serde_json::json!({
        "leader": {"pid": pid, "start_time": start},
        "cgroup_procs": [],
        "action": {"run": {"command": "echo ENTERED"}},
    })
    .to_string();
    // Root, but not started by the agent; and a sudoer through the
    // multi-call binary installed as fc-build-dev-container.
    let link = agent.dir.join("fc-build-dev-container");
    std::os::unix::fs::symlink(DEVHOST, &link).unwrap();
    let direct = Command::new(DEVHOST)
        .args(["__enter", &req])
        .output()
        .unwrap();
    let sudoer = Command::new(&link)
        .args(["__enter", &req])
        .env("SUDO_UID", ALICE.to_string())
        .env("SUDO_GID", users_gid().to_string())
        .output()
        .unwrap();
    for out in [direct, sudoer] {
        assert_eq!(out.status.code(), Some(125), "{}", text(&out));
        assert!(
            text(&out).contains("only the devhost agent runs this")
                && !text(&out).contains("ENTERED"),
            "{}",
            text(&out)
        );
    }
}

#[test]
fn a_users_own_local_channel_builds() {
    let Some(()) = prerequisites("a_users_own_local_channel_builds") else {
        return;
    };
    let agent = TestAgent::start(Options::default());
    let ch = channel();
    // The unpacked directory and the tarball, both readable by the user.
    for (suffix, url) in [
        ("dir", format!("file://{}", ch.unpacked.display())),
        (
            "tar",
            format!("file://{}", ch.dir.join("nixexprs.tar.xz").display()),
        ),
    ] {
        let name = agent.name(suffix);
        let out = agent.devhost_as(ALICE, users_gid(), &["ensure", &name, &url]);
        assert_ok(&out, &format!("alice's ensure from {url}"));
        assert!(
            text(&out).contains(&format!("read the local channel as uid {ALICE}")),
            "{}",
            text(&out)
        );
        assert_eq!(
            http_get(agent.address(&name), 80).unwrap().trim(),
            format!("hello from fc {name}")
        );
    }
}

#[test]
fn a_users_process_is_never_taken_for_a_container() {
    let Some(()) = prerequisites("a_users_process_is_never_taken_for_a_container") else {
        return;
    };
    let agent = TestAgent::start(Options::default());
    let name = agent.name("fk");
    assert_ok(
        &agent.devhost_as(ALICE, users_gid(), &["ensure", &name, &channel().url]),
        "alice's ensure",
    );
    assert_ok(&agent.devhost(&["stop", &name]), "stop");
    // A process of a user's with the command line of the container's nspawn,
    // and a child where the init would be.
    let root = agent.dir.join("containers").join(&name);
    let mut fake = Command::new("sh")
        .arg0("systemd-nspawn")
        .args(["-c", "sleep 60", "-M", &name, "-D"])
        .arg(&root)
        .uid(ALICE)
        .gid(users_gid())
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(10), "the fake's child runs", || {
        !std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", fake.id()))
            .unwrap_or_default()
            .trim()
            .is_empty()
    });
    assert_eq!(agent.status(&name).state.as_str(), "stopped");
    let out = provision(&agent, &name, "RUN 'echo PROVISIONED $(id -u)'\n");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("is not running"), "{}", text(&out));
    assert_ok(&agent.devhost(&["start", &name]), "start");
    assert_eq!(
        http_get(agent.address(&name), 80).unwrap().trim(),
        format!("hello from fc {name}"),
        "the real container was started"
    );
    let _ = fake.kill();
    let _ = fake.wait();
}

#[test]
fn a_uids_shells_are_bounded() {
    let Some(()) = prerequisites("a_uids_shells_are_bounded") else {
        return;
    };
    let agent = TestAgent::start(Options::default());
    let name = agent.name("shl");
    assert_ok(
        &agent.devhost_as(ALICE, users_gid(), &["ensure", &name, &channel().url]),
        "alice's ensure",
    );
    let request = format!(
        "POST /v1/containers/{name}/shell?rows=24&cols=80&term=dumb HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: devhost-shell\r\nContent-Length: 0\r\n\r\n"
    );
    let open = || {
        let mut s = connect_as(&agent, ALICE, users_gid());
        s.write_all(request.as_bytes()).unwrap();
        let line = status_line(&mut s);
        (s, line)
    };
    let shells: Vec<_> = (0..4)
        .map(|_| {
            let (s, line) = open();
            assert!(line.contains(" 101 "), "{line}");
            s
        })
        .collect();
    let (_, line) = open();
    assert!(line.contains(" 503 "), "a fifth shell: {line}");
    // A closed one frees its place.
    drop(shells);
    wait_until(Duration::from_secs(20), "a place is freed", || {
        let (_, line) = open();
        if line.contains(" 101 ") {
            Ok(())
        } else {
            Err(line)
        }
    });
}

#[test]
fn a_uids_execs_are_bounded() {
    let Some(()) = prerequisites("a_uids_execs_are_bounded") else {
        return;
    };
    let agent = TestAgent::start(Options::default());
    let name = agent.name("exb");
    assert_ok(
        &agent.devhost_as(ALICE, users_gid(), &["ensure", &name, &channel().url]),
        "alice's ensure",
    );
    let body = r#"{"argv":["sleep","600"]}"#;
    let request = format!(
        "POST /v1/containers/{name}/exec HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: devhost-exec\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let open = || {
        let mut s = connect_as(&agent, ALICE, users_gid());
        s.write_all(request.as_bytes()).unwrap();
        let line = status_line(&mut s);
        (s, line)
    };
    let execs: Vec<_> = (0..8)
        .map(|_| {
            let (s, line) = open();
            assert!(line.contains(" 101 "), "{line}");
            s
        })
        .collect();
    let (_, line) = open();
    assert!(line.contains(" 503 "), "a ninth exec: {line}");
    // Closed ones free their places (their commands are killed).
    drop(execs);
    wait_until(Duration::from_secs(20), "a place is freed", || {
        let (_, line) = open();
        if line.contains(" 101 ") {
            Ok(())
        } else {
            Err(line)
        }
    });
}

#[test]
fn a_shared_system_is_never_handed_to_a_user_who_cannot_read_its_channel() {
    let Some(()) =
        prerequisites("a_shared_system_is_never_handed_to_a_user_who_cannot_read_its_channel")
    else {
        return;
    };
    use std::os::unix::fs::{chown, PermissionsExt};
    let agent = TestAgent::start(Options::default());
    // Alice's own channel, in a directory only she can enter.
    let private = agent.dir.join("alice-only");
    std::fs::create_dir(&private).unwrap();
    let st = Command::new("cp")
        .arg("-a")
        .arg(&channel().unpacked)
        .arg(private.join("channel"))
        .status()
        .unwrap();
    assert!(st.success());
    let st = Command::new("chown")
        .args(["-R", &format!("{ALICE}:{}", users_gid())])
        .arg(&private)
        .status()
        .unwrap();
    assert!(st.success());
    chown(&private, Some(ALICE), Some(users_gid())).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let url = format!("file://{}", private.join("channel").display());
    let mine = agent.name("prva");
    assert_ok(
        &agent.devhost_as(ALICE, users_gid(), &["ensure", &mine, &url]),
        "alice's ensure from her channel",
    );
    // The same path, built and cached: Bob still has to read it himself.
    let theirs = agent.name("prvb");
    let out = agent.devhost_as(BOB, users_gid(), &["ensure", &theirs, &url]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!(
            "cannot use the local channel {}",
            private.join("channel").display()
        )) && text(&out).contains(&format!("read as uid {BOB}")),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains("reused"), "{}", text(&out));
    assert!(agent.try_status(&theirs).is_none());
}

/// `devhost ARGS` as ALICE (group users) until it exits, while the
/// agent's resident memory is watched: should it grow by 1 GiB the agent
/// is killed (a failing test must not take the host's memory) and that is
/// the answer. Else the exit status, and by how many MiB the agent's peak
/// memory grew meanwhile.
fn run_watching_the_agent(
    agent: &mut TestAgent,
    args: &[&str],
    within: Duration,
) -> Result<(Option<i32>, u64), String> {
    let pid = agent.pid().unwrap();
    let (rss, peak) = (rss_kib(pid), peak_kib(pid));
    let mut client = agent
        .command(DEVHOST, args)
        .uid(ALICE)
        .gid(users_gid())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let outcome = loop {
        if let Some(st) = client.try_wait().unwrap() {
            break Ok((st.code(), peak_kib(pid).saturating_sub(peak.max(rss)) >> 10));
        }
        let grown = rss_kib(pid).saturating_sub(rss) >> 10;
        if grown > 1024 {
            break Err(format!("the agent's memory grew by {grown} MiB"));
        }
        if started.elapsed() > within {
            break Err(format!(
                "no exit within {within:?} (the agent grew by {grown} MiB)"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if outcome.is_err() {
        agent.stop_agent(nix::sys::signal::Signal::SIGKILL);
        let _ = client.kill();
        let _ = client.wait();
    }
    outcome
}

/// The agent's peak resident memory (VmHWM), in KiB.
fn peak_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn what_an_exec_leaves_writing_does_not_fill_the_agents_memory() {
    let Some(()) = prerequisites("what_an_exec_leaves_writing_does_not_fill_the_agents_memory")
    else {
        return;
    };
    let mut agent = TestAgent::start(Options::default());
    let name = agent.name("exw");
    assert_ok(
        &agent.devhost_as(ALICE, users_gid(), &["ensure", &name, &channel().url]),
        "alice's ensure",
    );
    // The command ends at once; what it started keeps writing to the
    // output it left them, as fast as it can: container root's own
    // program, spinning on a non-blocking stdout so that the pipe is
    // never found empty.
    let src = agent.dir.join("spin.c");
    std::fs::write(
        &src,
        "#define _GNU_SOURCE\n#include <fcntl.h>\n#include <unistd.h>\n\
         int main(void) { static char b[65536]; fcntl(1, F_SETFL, O_NONBLOCK);\n\
         fcntl(1, F_SETPIPE_SZ, 1 << 20); for (;;) write(1, b, sizeof b); }\n",
    )
    .unwrap();
    let spin = agent.containers_dir.join(&name).join("spin");
    let cc = Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(&spin)
        .arg(&src)
        .output()
        .unwrap();
    assert_ok(&cc, "gcc -static spin.c");
    let script = "for i in 1 2 3 4; do /spin & done; sleep 1; exit 3";
    // How much the agent reads before it finds the pipe empty is a race:
    // a few rounds.
    for round in 1..=3 {
        let got = run_watching_the_agent(
            &mut agent,
            &["exec", &name, "--", "sh", "-c", script],
            Duration::from_secs(60),
        );
        let (code, grown) = got.unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(code, Some(3), "round {round}: the command's status");
        assert!(
            grown < 64,
            "round {round}: the agent's peak memory grew by {grown} MiB"
        );
    }
}

#[test]
fn a_huge_console_log_is_read_from_its_end() {
    let Some(()) = prerequisites("a_huge_console_log_is_read_from_its_end") else {
        return;
    };
    let agent = TestAgent::start(Options::default());
    let name = agent.name("hlog");
    assert_ok(
        &agent.devhost_as(ALICE, users_gid(), &["ensure", &name, &channel().url]),
        "alice's ensure",
    );
    // What container root can print to its console, as much as it likes:
    // here 512 MiB (a hole in the file, so that it costs no disk), then
    // three lines.
    let console = agent
        .dir
        .join("state/containers")
        .join(&name)
        .join("console.log");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&console)
        .unwrap();
    f.set_len(f.metadata().unwrap().len() + (512 << 20))
        .unwrap();
    f.write_all(b"\none\ntwo\nthree\n").unwrap();
    let pid = agent.pid().unwrap();
    let peak = peak_kib(pid).max(rss_kib(pid));
    let out = agent.devhost_as(ALICE, users_gid(), &["logs", &name, "--lines", "2"]);
    assert_ok(&out, "logs --lines 2");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "two\nthree\n");
    let grown = peak_kib(pid).saturating_sub(peak) >> 10;
    assert!(
        grown < 64,
        "the agent read the log whole: its peak memory grew by {grown} MiB"
    );
}

#[test]
fn an_exec_whose_body_comes_late_is_checked_against_the_container_then() {
    let Some(()) =
        prerequisites("an_exec_whose_body_comes_late_is_checked_against_the_container_then")
    else {
        return;
    };
    let agent = TestAgent::start(Options::default());
    let name = agent.name("exl");
    let ensure = |uid| {
        assert_ok(
            &agent.devhost_as(uid, users_gid(), &["ensure", &name, &channel().url]),
            "ensure",
        )
    };
    ensure(ALICE);
    // Alice asks for an exec in her container, and holds its body back …
    let body = r#"{"argv":["touch","/alice-was-here"]}"#;
    let mut s = connect_as(&agent, ALICE, users_gid());
    write!(
        s,
        "POST /v1/containers/{name}/exec HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: devhost-exec\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    // … while her container goes, and Bob makes one of the same name.
    assert_ok(
        &agent.devhost_as(ALICE, users_gid(), &["destroy", &name]),
        "alice's destroy",
    );
    ensure(BOB);
    s.write_all(body.as_bytes()).unwrap();
    let line = status_line(&mut s);
    assert!(line.contains(" 403 "), "bob's container now: {line}");
    drop(s);
    assert!(
        !agent
            .containers_dir
            .join(&name)
            .join("alice-was-here")
            .exists(),
        "nothing ran in bob's container"
    );
}
