//! The systemd-nspawn command line, as NixOS's `container@.service` builds it
//! (`-D ROOT`, the store read-only, the system's `init` as PID 1,
//! `--notify-ready`, `--kill-signal=SIGRTMIN+3`), joined to the network
//! namespace the agent prepared.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NspawnSpec<'a> {
    pub program: &'a str,
    pub name: &'a str,
    pub root: &'a Path,
    pub system_path: &'a str,
    pub netns_path: &'a Path,
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
        "--console=read-only".into(),
        "--bind-ro=/nix/store".into(),
    ];
    for b in s.ro_binds {
        a.push(format!("--bind-ro={}", b.display()));
    }
    a.push(format!(
        "--bind={}:/nix/var/nix/profiles",
        s.profile_dir.display()
    ));
    a.push(format!(
        "--bind={}:/nix/var/nix/gcroots",
        s.gcroots_dir.display()
    ));
    a.push("--link-journal=try-guest".into());
    a.push(format!(
        "--network-namespace-path={}",
        s.netns_path.display()
    ));
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
            netns_path: Path::new("/run/netns/devhost-web01"),
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
                "--console=read-only",
                "--bind-ro=/nix/store",
                "--bind-ro=/nix/var/nix/db",
                "--bind=/nix/var/nix/profiles/per-container/web01:/nix/var/nix/profiles",
                "--bind=/nix/var/nix/gcroots/per-container/web01:/nix/var/nix/gcroots",
                "--link-journal=try-guest",
                "--network-namespace-path=/run/netns/devhost-web01",
                "/nix/store/abc-nixos-system-web01/init",
            ]
        );
    }
}
