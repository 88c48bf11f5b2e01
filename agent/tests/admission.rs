//! Admission against the real agent: an ensure the host has no room for is
//! refused up front — before its build — with the limits and the settings
//! that raise them named, and leaves nothing behind. And what one container
//! really takes of the limits the preflight estimates (inotify instances and
//! watches, threads), measured on its process tree, stays within the
//! defaults of `[admission]` (the figures are printed, for the docs).

mod common;

use common::*;
use std::collections::BTreeMap;

#[test]
fn an_ensure_the_host_has_no_room_for_is_refused_before_its_build_and_leaves_nothing() {
    let Some(()) = prerequisites(
        "an_ensure_the_host_has_no_room_for_is_refused_before_its_build_and_leaves_nothing",
    ) else {
        return;
    };
    // Limits no host meets: 1 PiB free, a million inotify instances each.
    // The machine's sysctls are only read.
    let agent = TestAgent::start(Options {
        extra_toml: "[admission]\nmin_free_disk_mib = 1073741824\ninotify_instances_per_container = 1048576\n".into(),
        ..Options::default()
    });
    let name = agent.name("full");
    let out = agent.devhost(&["ensure", &name, &channel().url]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let max = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_instances").unwrap();
    for want in [
        format!("error: {name} cannot boot on this host now: fs.inotify.max_user_instances = {}: ", max.trim()),
        "a container needs about 1048576; raise it (sysctl -w fs.inotify.max_user_instances=".into(),
        "; and ".into(),
        format!(
            "{} has ",
            agent.containers_dir.display()
        ),
        "free, less than admission.min_free_disk_mib (1024.0 TiB); free space there or lower admission.min_free_disk_mib".into(),
    ] {
        assert!(t.contains(&want), "{want:?} in:\n{t}");
    }
    assert!(
        !t.contains("building the system"),
        "refused before the build:\n{t}"
    );
    let first: std::net::Ipv4Addr = format!("10.231.{}.2", agent.subnet).parse().unwrap();
    assert_eq!(agent.traces_of(&name, first), Vec::<String>::new());
    // The compatible front-end fails the same way.
    let out = agent.fc_build(&["ensure", &name, &channel().url, "www"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("admission.min_free_disk_mib"),
        "{}",
        text(&out)
    );
    assert_eq!(agent.traces_of(&name, first), Vec::<String>::new());
}

/// What a process tree holds: inotify instances, their watches, threads.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Use {
    instances: u64,
    watches: u64,
    threads: u64,
}

/// The process tree from `root` (nspawn) down: the container's processes.
fn tree(root: u32) -> Vec<u32> {
    let mut children: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`; comm may hold spaces and parentheses.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let ppid: u32 = after.split_whitespace().nth(1).unwrap().parse().unwrap();
        children.entry(ppid).or_default().push(pid);
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        out.extend(children.get(&out[i]).cloned().unwrap_or_default());
        i += 1;
    }
    out
}

fn use_of(pids: &[u32]) -> Use {
    let mut u = Use::default();
    for pid in pids {
        u.threads += std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|d| d.count() as u64)
            .unwrap_or(0);
        for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if std::fs::read_link(fd.path()).is_ok_and(|t| t.as_os_str() == "anon_inode:inotify") {
                u.instances += 1;
                let info = std::fs::read_to_string(format!(
                    "/proc/{pid}/fdinfo/{}",
                    fd.file_name().to_string_lossy()
                ))
                .unwrap_or_default();
                u.watches += info
                    .lines()
                    .filter(|l| l.starts_with("inotify wd:"))
                    .count() as u64;
            }
        }
    }
    u
}

/// The most a running container holds over a few seconds after it is ready,
/// and who holds its inotify instances then.
fn measure(agent: &TestAgent, name: &str) -> Use {
    let (pid, _) = nspawn_pids(&agent.containers_dir)
        .into_iter()
        .find(|(_, n)| n == name)
        .expect("its nspawn runs");
    let mut most = Use::default();
    for _ in 0..20 {
        let u = use_of(&tree(pid));
        most.instances = most.instances.max(u.instances);
        most.watches = most.watches.max(u.watches);
        most.threads = most.threads.max(u.threads);
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    let holders: Vec<String> = tree(pid)
        .into_iter()
        .filter_map(|p| {
            let u = use_of(&[p]);
            let comm = std::fs::read_to_string(format!("/proc/{p}/comm")).ok()?;
            Some(format!(
                "{} {}/{}/{}",
                comm.trim(),
                u.instances,
                u.watches,
                u.threads
            ))
        })
        .collect();
    eprintln!(
        "{name}: by process (inotify instances/watches/threads): {}",
        holders.join(", ")
    );
    most
}

fn within_the_estimates(what: &str, u: Use) {
    eprintln!(
        "{what}: {} inotify instances, {} watches, {} threads (nspawn included)",
        u.instances, u.watches, u.threads
    );
    let defaults = Use {
        instances: devhost::config::admission::INOTIFY_INSTANCES_PER_CONTAINER,
        watches: devhost::config::admission::INOTIFY_WATCHES_PER_CONTAINER,
        threads: devhost::config::admission::THREADS_PER_CONTAINER,
    };
    assert!(
        u.instances <= defaults.instances
            && u.watches <= defaults.watches
            && u.threads <= defaults.threads,
        "{what} takes {u:?}, more than the [admission] defaults {defaults:?}"
    );
}

#[test]
fn a_mini_init_container_takes_no_more_than_the_estimates() {
    let Some(()) = prerequisites("a_mini_init_container_takes_no_more_than_the_estimates") else {
        return;
    };
    let agent = TestAgent::start(Options::default());
    let name = agent.name("mini");
    assert_ok(&agent.devhost(&["ensure", &name, &channel().url]), "ensure");
    within_the_estimates("the mini-init fixture", measure(&agent, &name));
}

#[test]
fn a_full_system_takes_no_more_than_the_estimates() {
    let Some(()) = prerequisites("a_full_system_takes_no_more_than_the_estimates") else {
        return;
    };
    let (tree, _) = full_system_tree();
    let agent = TestAgent::start(Options {
        nix_extra_config: format!("devhost.fixture.fullSystem = \"{tree}\";"),
        nix_allowed_paths: vec![tree.to_string()],
        ready_timeout_secs: 120,
        ..Options::default()
    });
    let name = agent.name("full");
    assert_ok(&agent.devhost(&["ensure", &name, &channel().url]), "ensure");
    within_the_estimates(
        "the full system (systemd, journald, logind, D-Bus, sshd)",
        measure(&agent, &name),
    );
}
