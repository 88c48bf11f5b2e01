//! The systemd-nspawn command line, as NixOS's `container@.service` builds it
//! (`-D ROOT`, the store read-only, the system's `init` as PID 1,
//! `--notify-ready`, `--kill-signal=SIGRTMIN+3`). It runs *in* the network
//! namespace the agent prepared (the backend puts nspawn there: nspawn's
//! `--network-namespace-path` cannot join a namespace of the host from
//! inside the container's user namespace), with a user namespace of its own
//! (`--private-users=pick`): container root is an unprivileged range of
//! host uids, so a process that escapes the container's mounts, or creates
//! device nodes, or writes a fresh proc's sysctls, has no power over the
//! host. The root directory is mapped into that range by an idmapped mount
//! (`--private-users-ownership=map`), so its files keep the uids they have
//! on disk (container uid N is disk uid N: roots made before user
//! namespaces start as they are, and what the agent writes as root is the
//! container's root's); the per-container profile and GC-root binds are
//! idmapped the same way, the store appears read-only and owned by
//! `nobody`.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NspawnSpec<'a> {
    pub program: &'a str,
    pub name: &'a str,
    pub root: &'a Path,
    pub system_path: &'a str,
    /// Per-container profile dir, bound to /nix/var/nix/profiles.
    pub profile_dir: &'a Path,
    /// Per-container GC roots dir, bound to /nix/var/nix/gcroots.
    pub gcroots_dir: &'a Path,
    /// Optional read-only binds whose source exists on this host.
    pub ro_binds: &'a [PathBuf],
    /// The init can send READY=1 (else nspawn reports ready at exec).
    pub notify_ready: bool,
    /// Register with machined (systemd backend) or not (direct backend).
    pub register: bool,
    pub extra_args: &'a [String],
}

pub fn nspawn_argv(s: &NspawnSpec) -> Vec<String> {
    let mut a: Vec<String> = vec![
        s.program.to_string(),
        "--keep-unit".into(),
        format!("--register={}", if s.register { "yes" } else { "no" }),
        "-M".into(),
        s.name.to_string(),
        "-D".into(),
        s.root.display().to_string(),
        format!(
            "--notify-ready={}",
            if s.notify_ready { "yes" } else { "no" }
        ),
        "--kill-signal=SIGRTMIN+3".into(),
        "--private-users=pick".into(),
        "--private-users-ownership=map".into(),
        "--console=read-only".into(),
        "--bind-ro=/nix/store".into(),
    ];
    for b in s.ro_binds {
        a.push(format!("--bind-ro={}", b.display()));
    }
    a.push(format!(
        "--bind={}:/nix/var/nix/profiles:idmap",
        s.profile_dir.display()
    ));
    a.push(format!(
        "--bind={}:/nix/var/nix/gcroots:idmap",
        s.gcroots_dir.display()
    ));
    a.push("--link-journal=try-guest".into());
    a.extend(s.extra_args.iter().cloned());
    a.push(format!("{}/init", s.system_path));
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_nixos_containers() {
        let binds = vec![PathBuf::from("/nix/var/nix/db")];
        let argv = nspawn_argv(&NspawnSpec {
            program: "systemd-nspawn",
            name: "web01",
            root: Path::new("/var/lib/nixos-containers/web01"),
            system_path: "/nix/store/abc-nixos-system-web01",
            profile_dir: Path::new("/nix/var/nix/profiles/per-container/web01"),
            gcroots_dir: Path::new("/nix/var/nix/gcroots/per-container/web01"),
            ro_binds: &binds,
            notify_ready: true,
            register: false,
            extra_args: &[],
        });
        assert_eq!(
            argv,
            vec![
                "systemd-nspawn",
                "--keep-unit",
                "--register=no",
                "-M",
                "web01",
                "-D",
                "/var/lib/nixos-containers/web01",
                "--notify-ready=yes",
                "--kill-signal=SIGRTMIN+3",
                "--private-users=pick",
                "--private-users-ownership=map",
                "--console=read-only",
                "--bind-ro=/nix/store",
                "--bind-ro=/nix/var/nix/db",
                "--bind=/nix/var/nix/profiles/per-container/web01:/nix/var/nix/profiles:idmap",
                "--bind=/nix/var/nix/gcroots/per-container/web01:/nix/var/nix/gcroots:idmap",
                "--link-journal=try-guest",
                "/nix/store/abc-nixos-system-web01/init",
            ]
        );
    }
}
