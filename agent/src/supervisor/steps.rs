//! The side-effecting steps jobs and reconcile share: preparing a root,
//! bringing the network up and down, starting a container, removing
//! everything a container left on the host. Each step is idempotent, so a
//! retry after a crash finishes what was half done.

use super::{StepError, Subsystems};
use crate::container::Record;
use crate::net::compat;
use crate::net::plan::{IpBatch, NetPlan};
use crate::nspawn::argv::{nspawn_argv, NspawnSpec};
use crate::nspawn::backend::{Running, StartRequest};
use crate::progress::Progress;
use crate::sys::fs::{remove_tree_one_fs, write_in_root};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub fn root_dir(env: &Subsystems, r: &Record) -> PathBuf {
    env.cfg.paths.containers_dir.join(r.name.as_str())
}

pub fn profile_dir(env: &Subsystems, r: &Record) -> PathBuf {
    env.cfg.paths.profiles_dir.join(r.name.as_str())
}

pub fn gcroots_dir(env: &Subsystems, r: &Record) -> PathBuf {
    env.cfg.paths.gcroots_dir.join(r.name.as_str())
}

pub fn net_plan(env: &Subsystems, r: &Record) -> NetPlan {
    NetPlan::new(&env.cfg.network.netns_prefix, &r.name, r.addresses)
}

fn mkdir(p: &Path, mode: u32) -> Result<(), StepError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(p)
        .map_err(|source| StepError::Mkdir {
            path: p.to_path_buf(),
            source,
        })
}

/// A directory only root may enter, whatever mode it had.
fn private_dir(p: &Path) -> Result<(), StepError> {
    use std::os::unix::fs::PermissionsExt;
    mkdir(p, 0o700)?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700)).map_err(|source| {
        StepError::Chmod {
            path: p.to_path_buf(),
            source,
        }
    })
}

/// The nearly empty root NixOS containers start from, plus the files the old
/// tooling kept inside (`/etc/nixos/enc.json`, `/etc/nixos/local.nix`).
/// Written without following symlinks the container may have planted.
///
/// What a container writes reaches the disk with the uids it has inside
/// (the idmapped root and binds): its root may make set-user-ID files owned
/// by uid 0 there. So the directories holding container roots, profiles and
/// GC roots are kept at mode 0700: no host user can reach those files.
pub fn prepare_root(env: &Subsystems, r: &Record) -> Result<(), StepError> {
    let root = root_dir(env, r);
    for d in [
        &env.cfg.paths.containers_dir,
        &env.cfg.paths.profiles_dir,
        &env.cfg.paths.gcroots_dir,
    ] {
        private_dir(d)?;
    }
    if !root.exists() && roots_on_btrfs(env) {
        // A subvolume of its own: its quota group can limit its size.
        crate::sys::quota::create_subvolume(&root)?;
    }
    mkdir(&root, 0o755)?;
    let write = |rel: &str, body: &[u8], mode: u32| {
        write_in_root(&root, Path::new(rel), body, mode).map_err(StepError::Fs)
    };
    // Looked at without following the container's symlinks (which would
    // tell it whether a host path exists); only a missing file is made.
    let missing = matches!(
        crate::sys::fs::read_in_root(&root, Path::new("etc/os-release"), 1 << 20),
        Err(crate::sys::fs::FsError::Io { ref source, .. }) if source.kind() == std::io::ErrorKind::NotFound
    );
    if missing {
        write("etc/os-release", b"", 0o644)?;
    }
    crate::sys::fs::open_dir_in_root(&root, &[std::ffi::OsStr::new("usr")], 0o755)?;
    write("etc/nixos/enc.json", compat::enc_json(r).as_bytes(), 0o644)?;
    write(
        "etc/nixos/local.nix",
        compat::local_nix(r).as_bytes(),
        0o644,
    )?;
    mkdir(&profile_dir(env, r), 0o755)?;
    mkdir(&gcroots_dir(env, r), 0o755)?;
    Ok(())
}

/// Are the container roots on btrfs (each root a subvolume of its own)?
pub fn roots_on_btrfs(env: &Subsystems) -> bool {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    crate::sys::quota::on_btrfs(&mountinfo, &env.cfg.paths.containers_dir)
}

/// The disk size asked for, enforced where the roots' filesystem can: on
/// btrfs with quotas enabled, as the limit of the root subvolume's quota
/// group (no disk size: no limit). Applies at once, also to a running
/// container. Returns why it is not enforced, when it is not.
pub fn apply_disk_size(env: &Subsystems, r: &Record) -> Option<String> {
    let root = root_dir(env, r);
    if !roots_on_btrfs(env) {
        return r.disk_size.map(|_| {
            "not enforced: the container roots are not on btrfs (quota groups enforce it there)"
                .to_string()
        });
    }
    if !crate::sys::quota::is_subvolume(&root) {
        return r.disk_size.map(|_| {
            format!(
                "not enforced: {} was made before devhost made roots btrfs subvolumes",
                root.display()
            )
        });
    }
    match crate::sys::quota::set_limit(&root, r.disk_size) {
        Ok(()) => None,
        Err(e) if r.disk_size.is_some() => Some(format!(
            "not enforced: {e} (enable quotas: btrfs quota enable MOUNT)"
        )),
        Err(_) => None,
    }
}

/// How a disk size is enforced and what the root uses, when it is.
pub fn disk_enforcement(on_btrfs: bool, root: &Path) -> (Option<String>, Option<u64>) {
    if !on_btrfs || !crate::sys::quota::is_subvolume(root) {
        return (None, None);
    }
    match crate::sys::quota::usage(root) {
        Ok(used) => (Some("btrfs quota group".into()), Some(used)),
        Err(_) => (None, None),
    }
}

/// Refresh `enc.json` after the channel changed (container exists).
pub fn write_enc_json(env: &Subsystems, r: &Record) -> Result<(), StepError> {
    Ok(write_in_root(
        &root_dir(env, r),
        Path::new("etc/nixos/enc.json"),
        compat::enc_json(r).as_bytes(),
        0o644,
    )?)
}

/// (Re)create the container's network from nothing. Only called while the
/// container does not run, so a stale namespace can be replaced.
pub async fn net_up(env: &Subsystems, r: &Record) -> Result<(), StepError> {
    let plan = net_plan(env, r);
    net_down(env, r).await?;
    let result = match env.netlink.run(&plan.setup()).await {
        Ok(()) => env.netlink.set_sysctls(&plan.netns, &plan.sysctls()).await,
        Err(e) => Err(e),
    };
    if let Err(source) = result {
        let _ = net_down(env, r).await;
        return Err(StepError::NetUp {
            name: r.name.clone(),
            source,
        });
    }
    Ok(())
}

/// Remove the namespace (and with it the veth pair); a host-side veth left
/// without its namespace is deleted too. Nothing there is fine.
pub async fn net_down(env: &Subsystems, r: &Record) -> Result<(), StepError> {
    let plan = net_plan(env, r);
    if env.netlink.netns_exists(&plan.netns) {
        env.netlink
            .run(&plan.teardown())
            .await
            .map_err(|source| StepError::NetDown {
                name: r.name.clone(),
                source,
            })?;
    }
    // The kernel removes the veth pair with the namespace, but not at once.
    for _ in 0..100 {
        if !env.netlink.link_exists(&plan.host_if) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let delete = IpBatch::host(vec![format!("link delete {}", plan.host_if)]);
    if let Err(source) = env.netlink.run(&[delete]).await {
        if env.netlink.link_exists(&plan.host_if) {
            return Err(StepError::Link {
                link: plan.host_if.clone(),
                source,
            });
        }
    }
    Ok(())
}

pub async fn start_container(
    env: &Subsystems,
    r: &Record,
    progress: &Progress,
) -> Result<Running, StepError> {
    let system = r
        .system_path
        .as_deref()
        .ok_or_else(|| StepError::NoSystem(r.name.clone()))?;
    let ro_binds: Vec<PathBuf> = env
        .cfg
        .nspawn
        .optional_ro_binds
        .iter()
        .filter(|p| p.exists())
        .cloned()
        .collect();
    let plan = net_plan(env, r);
    let root = root_dir(env, r);
    let profile = profile_dir(env, r);
    let gcroots = gcroots_dir(env, r);
    let argv = nspawn_argv(&NspawnSpec {
        program: &env.cfg.nspawn.program,
        name: r.name.as_str(),
        root: &root,
        system_path: system,
        profile_dir: &profile,
        gcroots_dir: &gcroots,
        ro_binds: &ro_binds,
        notify_ready: env.cfg.nspawn.ready == crate::nspawn::ready::ReadyCheck::Notify,
        // machined registration is what the systemd backend is for.
        register: env.backend.kind() == "systemd",
        extra_args: &env.cfg.nspawn.extra_args,
    });
    mkdir(&env.store.container_dir(&r.name), 0o700)?;
    let req = StartRequest {
        name: r.name.clone(),
        argv,
        console_log: env.store.console_log(&r.name),
        netns_path: Path::new("/run/netns").join(&plan.netns),
        address: r.addresses.local,
        limits: r.limits.clone(),
    };
    Ok(env.backend.start(&req, progress).await?)
}

pub async fn stop_container(
    env: &Subsystems,
    r: &Record,
    progress: &Progress,
) -> Result<(), StepError> {
    Ok(env
        .backend
        .stop(&r.name, env.cfg.nspawn.stop_timeout, progress)
        .await?)
}

/// Everything a container has on the host except its record: process,
/// network, root directory (never crossing into another filesystem),
/// profile and GC roots. Idempotent.
pub async fn remove_everything(
    env: &Subsystems,
    r: &Record,
    progress: &Progress,
) -> Result<(), StepError> {
    stop_container(env, r, progress).await?;
    net_down(env, r).await?;
    let root = root_dir(env, r);
    remove_tree_one_fs(&root).map_err(|source| StepError::Remove {
        what: "root ",
        path: root.clone(),
        source,
    })?;
    let link = crate::nix::plan::system_link(&env.cfg.paths.profiles_dir, &r.name);
    let _ = std::fs::remove_file(crate::nix::systems::auto_root(
        &env.cfg.nix.gcroots_auto_dir,
        &link,
    ));
    for d in [profile_dir(env, r), gcroots_dir(env, r)] {
        remove_tree_one_fs(&d).map_err(|source| StepError::Remove {
            what: "",
            path: d.clone(),
            source,
        })?;
    }
    Ok(())
}
