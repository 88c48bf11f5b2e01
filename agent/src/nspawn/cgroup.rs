//! Cgroups of the direct backend's containers. A container with systemd
//! inside manages the cgroup it starts in, and with a user namespace it may
//! only do so in one delegated to it: nspawn hands its own cgroup over to
//! the container's root. So the direct backend starts each nspawn in a
//! cgroup of its own, `devhost-NAME` below the agent's, in every hierarchy
//! systemd uses (cgroup2, and the v1 `name=systemd` one on hybrid hosts),
//! and removes it again when the container is gone. (The systemd backend
//! gets the same from its transient unit, `Delegate=yes`.) Planned purely
//! from `/proc/self/mountinfo` and `/proc/self/cgroup`.

use std::path::{Path, PathBuf};

/// The directories of container `name`'s cgroups.
pub fn container_cgroups(mountinfo: &str, own_cgroup: &str, name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for l in mountinfo.lines() {
        let f: Vec<&str> = l.split(' ').collect();
        let Some(dash) = f.iter().position(|x| *x == "-") else {
            continue;
        };
        let (Some(root), Some(mountpoint), Some(fstype), Some(opts)) =
            (f.get(3), f.get(4), f.get(dash + 1), f.get(dash + 3))
        else {
            continue;
        };
        // The line of /proc/self/cgroup for this hierarchy.
        let wanted: fn(&str) -> bool = match *fstype {
            "cgroup2" => |c| c.is_empty(),
            "cgroup" if opts.split(',').any(|o| o == "name=systemd") => |c| c == "name=systemd",
            _ => continue,
        };
        let Some(own) = own_cgroup.lines().find_map(|line| {
            let mut p = line.splitn(3, ':');
            let (_, controllers, path) = (p.next()?, p.next()?, p.next()?);
            wanted(controllers).then_some(path)
        }) else {
            continue;
        };
        let rel = if *root == "/" {
            own
        } else {
            match own.strip_prefix(root) {
                Some(r) if r.is_empty() || r.starts_with('/') => r,
                _ => continue,
            }
        };
        let mut p = PathBuf::from(mountpoint);
        p.push(rel.trim_start_matches('/'));
        p.push(format!("devhost-{name}"));
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// Remove a cgroup and the ones below it (cgroups go with rmdir, bottom
/// up). One that still has processes stays, and so do its parents.
pub fn remove(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_a_hybrid_host() {
        let mountinfo = "\
30 25 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
33 30 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
";
        let own = "12:memory:/\n1:name=systemd:/\n0::/\n";
        assert_eq!(
            container_cgroups(mountinfo, own, "web01"),
            [
                PathBuf::from("/sys/fs/cgroup/unified/devhost-web01"),
                PathBuf::from("/sys/fs/cgroup/systemd/devhost-web01"),
            ]
        );
    }

    #[test]
    fn on_a_unified_host_below_the_agents_cgroup() {
        let mountinfo =
            "25 1 0:23 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            container_cgroups(mountinfo, "0::/system.slice/devhost.service\n", "web01"),
            [PathBuf::from(
                "/sys/fs/cgroup/system.slice/devhost.service/devhost-web01"
            )]
        );
    }

    #[test]
    fn a_hierarchy_mounted_from_elsewhere_is_left_out() {
        let mountinfo =
            "32 30 0:28 /ci /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n";
        assert_eq!(
            container_cgroups(mountinfo, "1:name=systemd:/ci/agent\n", "w"),
            [PathBuf::from("/sys/fs/cgroup/systemd/agent/devhost-w")]
        );
        assert_eq!(
            container_cgroups(mountinfo, "1:name=systemd:/other\n", "w"),
            Vec::<PathBuf>::new()
        );
    }
}
