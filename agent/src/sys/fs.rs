//! File operations the agent's promises rest on: atomic replacement (temp +
//! fsync + rename + dir fsync), writes into a container root that never follow
//! a symlink out of it (the container may be hostile), and removal of a
//! container root that never crosses into another filesystem.

use nix::dir::{Dir, Type};
use nix::errno::Errno;
use nix::fcntl::{openat, renameat, OFlag};
use nix::sys::stat::{fchmod, fstat, fstatat, mkdirat, FileStat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};
use std::ffi::OsStr;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: path must be relative and plain (no '..', no root)")]
    BadRelativePath { path: PathBuf },
    #[error(
        "{path}: is a symlink or not a directory inside the container root; refusing to follow it"
    )]
    NotADirectory { path: PathBuf },
    #[error("{path}: another filesystem is mounted there; refusing to remove across it")]
    MountPoint { path: PathBuf },
    #[error("{path}: not a regular file inside the container root")]
    NotAFile { path: PathBuf },
    #[error("{path}: larger than {max} bytes")]
    TooLarge { path: PathBuf, max: u64 },
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(Errno) -> FsError + 'a {
    move |e| FsError::Io {
        op,
        path: path.to_path_buf(),
        source: std::io::Error::from(e),
    }
}

fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful open call and is owned by no one else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// The temporary name [`atomic_write`] uses for `name`: `.NAME.tmp-PID-TID`.
/// Unique per thread, and a write runs start to end on its thread (it never
/// yields), so two writers of one path never share their temporary file —
/// two tasks of the agent on two threads once renamed each other's away.
pub fn temp_name(name: &OsStr) -> String {
    format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        nix::unistd::gettid()
    )
}

/// Replace `path` with `contents` atomically: readers see the old or the new
/// file, never a part, also across a crash.
pub fn atomic_write(path: &Path, contents: &[u8], mode: u32) -> Result<(), FsError> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let name = path.file_name().unwrap_or(OsStr::new("file"));
    let tmp = dir.join(temp_name(name));
    let wrap = |op, p: &Path| {
        let p = p.to_path_buf();
        move |source| FsError::Io {
            op,
            path: p,
            source,
        }
    };
    let result = (|| {
        let mut f = File::create(&tmp).map_err(wrap("create", &tmp))?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(wrap("chmod", &tmp))?;
        f.write_all(contents).map_err(wrap("write", &tmp))?;
        f.sync_all().map_err(wrap("fsync", &tmp))?;
        std::fs::rename(&tmp, path).map_err(wrap("rename", path))?;
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Like [`atomic_write`], but for files that may be bind mounts (a container
/// runtime's `/etc/hosts`): when rename is refused (EBUSY), rewrite in place.
pub fn replace_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), FsError> {
    match atomic_write(path, contents, mode) {
        Err(FsError::Io {
            op: "rename",
            source,
            ..
        }) if source.raw_os_error() == Some(libc_ebusy()) => {
            let mut f = File::create(path).map_err(|source| FsError::Io {
                op: "rewrite",
                path: path.to_path_buf(),
                source,
            })?;
            f.write_all(contents)
                .and_then(|_| f.sync_all())
                .map_err(|source| FsError::Io {
                    op: "rewrite",
                    path: path.to_path_buf(),
                    source,
                })
        }
        other => other,
    }
}

fn libc_ebusy() -> i32 {
    Errno::EBUSY as i32
}

/// Plain components of a relative path; anything else is refused.
fn plain_components(rel: &Path) -> Result<Vec<&OsStr>, FsError> {
    let mut out = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::CurDir => {}
            _ => {
                return Err(FsError::BadRelativePath {
                    path: rel.to_path_buf(),
                })
            }
        }
    }
    if out.is_empty() {
        return Err(FsError::BadRelativePath {
            path: rel.to_path_buf(),
        });
    }
    Ok(out)
}

/// Who owns what a write into a container root creates: `None` is root
/// (the agent); `Some((uid, gid))` a user of the container, whose group is
/// replaced by the directory's where that directory is set-group-ID (as the
/// kernel does for files that user would create).
pub type Owner = Option<(u32, u32)>;

fn group_in(dir: &OwnedFd, shown: &Path, owner: (u32, u32)) -> Result<(u32, u32), FsError> {
    let st = fstat(dir.as_raw_fd()).map_err(io("stat", shown))?;
    Ok(if st.st_mode & 0o2000 != 0 {
        (owner.0, st.st_gid)
    } else {
        owner
    })
}

fn chown_fd(fd: &OwnedFd, shown: &Path, ids: (u32, u32)) -> Result<(), FsError> {
    nix::unistd::fchown(
        fd.as_raw_fd(),
        Some(nix::unistd::Uid::from_raw(ids.0)),
        Some(nix::unistd::Gid::from_raw(ids.1)),
    )
    .map_err(io("chown", shown))
}

/// Open (creating with `dir_mode` where missing) the directory `rel` below
/// `root`, never following a symlink: each step is `openat(O_NOFOLLOW)`.
pub fn open_dir_in_root(root: &Path, rel: &[&OsStr], dir_mode: u32) -> Result<OwnedFd, FsError> {
    open_dir_in_root_as(root, rel, dir_mode, None)
}

/// [`open_dir_in_root`], with the directories it creates owned by `owner`.
pub fn open_dir_in_root_as(
    root: &Path,
    rel: &[&OsStr],
    dir_mode: u32,
    owner: Owner,
) -> Result<OwnedFd, FsError> {
    let flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY;
    let mut cur = owned(openat(None, root, flags, Mode::empty()).map_err(io("open", root))?);
    let mut shown = root.to_path_buf();
    for comp in rel {
        shown.push(comp);
        let created = match mkdirat(
            Some(cur.as_raw_fd()),
            *comp,
            Mode::from_bits_truncate(dir_mode),
        ) {
            Ok(()) => true,
            Err(Errno::EEXIST) => false,
            Err(e) => return Err(io("mkdir", &shown)(e)),
        };
        let next = match openat(Some(cur.as_raw_fd()), *comp, flags, Mode::empty()) {
            Ok(fd) => owned(fd),
            Err(Errno::ELOOP) | Err(Errno::ENOTDIR) => {
                return Err(FsError::NotADirectory { path: shown })
            }
            Err(e) => return Err(io("open", &shown)(e)),
        };
        if let (true, Some(o)) = (created, owner) {
            let ids = group_in(&cur, &shown, o)?;
            chown_fd(&next, &shown, ids)?;
            // A directory in a set-group-ID one inherits the bit (chown
            // may have dropped it); otherwise the mode is what was asked.
            let inherit = fstat(cur.as_raw_fd()).map_err(io("stat", &shown))?.st_mode & 0o2000;
            fchmod(
                next.as_raw_fd(),
                Mode::from_bits_truncate(dir_mode | inherit),
            )
            .map_err(io("chmod", &shown))?;
        }
        cur = next;
    }
    Ok(cur)
}

/// Write `contents` to `root/rel` atomically with `mode`, creating parent
/// directories (0755), without following any symlink in the container.
pub fn write_in_root(root: &Path, rel: &Path, contents: &[u8], mode: u32) -> Result<(), FsError> {
    write_in_root_as(root, rel, contents, mode, None)
}

/// [`write_in_root`], with the file (and the directories it creates) owned
/// by `owner`.
pub fn write_in_root_as(
    root: &Path,
    rel: &Path,
    contents: &[u8],
    mode: u32,
    owner: Owner,
) -> Result<(), FsError> {
    let comps = plain_components(rel)?;
    let (file, parents) = comps.split_last().expect("non-empty");
    let dir = open_dir_in_root_as(root, parents, 0o755, owner)?;
    let shown = root.join(rel);
    let tmp_name = format!(".{}.devhost-tmp", file.to_string_lossy());
    let _ = unlinkat(
        Some(dir.as_raw_fd()),
        tmp_name.as_str(),
        UnlinkatFlags::NoRemoveDir,
    );
    let fd = owned(
        openat(
            Some(dir.as_raw_fd()),
            tmp_name.as_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(io("create", &shown))?,
    );
    if let Some(o) = owner {
        chown_fd(&fd, &shown, group_in(&dir, &shown, o)?)?;
    }
    fchmod(fd.as_raw_fd(), Mode::from_bits_truncate(mode)).map_err(io("chmod", &shown))?;
    let mut f = File::from(fd);
    f.write_all(contents)
        .and_then(|_| f.sync_all())
        .map_err(|source| FsError::Io {
            op: "write",
            path: shown.clone(),
            source,
        })?;
    renameat(
        Some(dir.as_raw_fd()),
        tmp_name.as_str(),
        Some(dir.as_raw_fd()),
        *file,
    )
    .map_err(io("rename", &shown))?;
    Ok(())
}

/// Read the regular file `root/rel` (at most `max` bytes) without following
/// any symlink and without creating anything.
pub fn read_in_root(root: &Path, rel: &Path, max: u64) -> Result<Vec<u8>, FsError> {
    use std::io::Read;
    let comps = plain_components(rel)?;
    let (file, parents) = comps.split_last().expect("non-empty");
    let dflags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY;
    let mut cur = owned(openat(None, root, dflags, Mode::empty()).map_err(io("open", root))?);
    let mut shown = root.to_path_buf();
    for comp in parents {
        shown.push(comp);
        cur = match openat(Some(cur.as_raw_fd()), *comp, dflags, Mode::empty()) {
            Ok(fd) => owned(fd),
            Err(Errno::ELOOP) | Err(Errno::ENOTDIR) => {
                return Err(FsError::NotADirectory { path: shown })
            }
            Err(e) => return Err(io("open", &shown)(e)),
        };
    }
    shown.push(file);
    let fd = owned(
        openat(
            Some(cur.as_raw_fd()),
            *file,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
            Mode::empty(),
        )
        .map_err(io("open", &shown))?,
    );
    let st = fstat(fd.as_raw_fd()).map_err(io("stat", &shown))?;
    if st.st_mode & SFlag::S_IFMT.bits() != SFlag::S_IFREG.bits() {
        return Err(FsError::NotAFile { path: shown });
    }
    let mut out = Vec::new();
    File::from(fd)
        .take(max + 1)
        .read_to_end(&mut out)
        .map_err(|source| FsError::Io {
            op: "read",
            path: shown.clone(),
            source,
        })?;
    if out.len() as u64 > max {
        return Err(FsError::TooLarge { path: shown, max });
    }
    Ok(out)
}

/// Remove `path` and everything below it without following symlinks and
/// without descending into another filesystem (a bind mount left inside a
/// container root must never take the host's files with it). Missing is fine.
pub fn remove_tree_one_fs(path: &Path) -> Result<(), FsError> {
    let top = match nix::sys::stat::lstat(path) {
        Ok(st) => st,
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(io("stat", path)(e)),
    };
    if SFlag::from_bits_truncate(top.st_mode) & SFlag::S_IFMT != SFlag::S_IFDIR {
        return std::fs::remove_file(path).map_err(|source| FsError::Io {
            op: "remove",
            path: path.to_path_buf(),
            source,
        });
    }
    let fd = owned(
        openat(
            None,
            path,
            OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY,
            Mode::empty(),
        )
        .map_err(io("open", path))?,
    );
    let st = fstat(fd.as_raw_fd()).map_err(io("stat", path))?;
    remove_contents(fd, st.st_dev, path)?;
    std::fs::remove_dir(path).map_err(|source| FsError::Io {
        op: "rmdir",
        path: path.to_path_buf(),
        source,
    })
}

fn remove_contents(dirfd: OwnedFd, dev: u64, shown: &Path) -> Result<(), FsError> {
    let raw = dirfd.as_raw_fd();
    // Close-on-exec from the start: a process the agent starts meanwhile
    // (as a user, or in a container) must never inherit a directory of a
    // container root.
    let dup = owned(
        nix::fcntl::fcntl(raw, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(0))
            .map_err(io("dup", shown))?,
    );
    let mut dir =
        Dir::from_fd(std::os::fd::IntoRawFd::into_raw_fd(dup)).map_err(io("opendir", shown))?;
    let mut names = Vec::new();
    for entry in dir.iter() {
        let entry = entry.map_err(io("readdir", shown))?;
        let name = entry.file_name().to_owned();
        if name.as_bytes() == b"." || name.as_bytes() == b".." {
            continue;
        }
        names.push((name, entry.file_type()));
    }
    for (name, ty) in names {
        let child = shown.join(<OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(
            name.as_bytes(),
        ));
        let is_dir = match ty {
            Some(Type::Directory) => true,
            Some(_) => false,
            None => {
                let st: FileStat = fstatat(
                    Some(raw),
                    name.as_c_str(),
                    nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(io("stat", &child))?;
                SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
            }
        };
        if is_dir {
            let sub = owned(
                openat(
                    Some(raw),
                    name.as_c_str(),
                    OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY,
                    Mode::empty(),
                )
                .map_err(io("open", &child))?,
            );
            let st = fstat(sub.as_raw_fd()).map_err(io("stat", &child))?;
            // Another device number is another filesystem — or, on btrfs,
            // a subvolume of the same mount (systemd in a container makes
            // some), which goes like a directory: only a mount is refused.
            let sub_dev = if st.st_dev == dev {
                dev
            } else if !is_mount_root(&sub) {
                // One its container made read-only is made writable.
                clear_btrfs_readonly(&sub);
                st.st_dev
            } else {
                return Err(FsError::MountPoint { path: child });
            };
            remove_contents(sub, sub_dev, &child)?;
            unlinkat(Some(raw), name.as_c_str(), UnlinkatFlags::RemoveDir)
                .map_err(io("rmdir", &child))?;
        } else {
            unlinkat(Some(raw), name.as_c_str(), UnlinkatFlags::NoRemoveDir)
                .map_err(io("unlink", &child))?;
        }
    }
    Ok(())
}

/// Clear the read-only flag of the btrfs subvolume `fd` (nothing happens
/// when it is not one).
fn clear_btrfs_readonly(fd: &OwnedFd) {
    use nix::libc;
    const GETFLAGS: libc::c_ulong = 0x8008_9419; // BTRFS_IOC_SUBVOL_GETFLAGS
    const SETFLAGS: libc::c_ulong = 0x4008_941a; // BTRFS_IOC_SUBVOL_SETFLAGS
    const RDONLY: u64 = 1 << 1; // BTRFS_SUBVOL_RDONLY
    let mut flags: u64 = 0;
    // SAFETY: the ioctls read and write one u64.
    unsafe {
        if libc::ioctl(fd.as_raw_fd(), GETFLAGS, &mut flags as *mut u64) == 0 && flags & RDONLY != 0
        {
            flags &= !RDONLY;
            libc::ioctl(fd.as_raw_fd(), SETFLAGS, &flags as *const u64);
        }
    }
}

/// Is the directory `fd` the root of a mount (`STATX_ATTR_MOUNT_ROOT`)?
/// When the kernel cannot say, it counts as one (nothing is removed).
fn is_mount_root(fd: &OwnedFd) -> bool {
    use nix::libc;
    // SAFETY: statx fills one struct statx for the fd itself (empty path).
    unsafe {
        let mut stx: libc::statx = std::mem::zeroed();
        let r = libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_BASIC_STATS,
            &mut stx,
        );
        if r != 0 || stx.stx_attributes_mask & libc::STATX_ATTR_MOUNT_ROOT as u64 == 0 {
            return true;
        }
        stx.stx_attributes & libc::STATX_ATTR_MOUNT_ROOT as u64 != 0
    }
}

/// Write "0" (this process) to a `cgroup.procs` file: join that cgroup.
/// Only raw system calls, so it may run between fork and exec.
pub fn write_pid_zero(procs: &std::ffi::CStr) -> std::io::Result<()> {
    use nix::libc;
    // SAFETY: plain system calls on a NUL-terminated path and a static byte.
    unsafe {
        let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let n = libc::write(fd, b"0".as_ptr().cast(), 1);
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if n != 1 {
            return Err(err);
        }
    }
    Ok(())
}

/// Mark every descriptor from `first` on close-on-exec, so that a process
/// about to exec as someone else (a user, a container) inherits nothing but
/// what it was given. Only a raw system call, so it may run between fork
/// and exec.
pub fn cloexec_from(first: u32) -> std::io::Result<()> {
    const CLOSE_RANGE_CLOEXEC: u32 = 1 << 2;
    close_range(first, CLOSE_RANGE_CLOEXEC)
}

/// Close every descriptor from `first` on.
pub fn close_from(first: u32) -> std::io::Result<()> {
    close_range(first, 0)
}

fn close_range(first: u32, flags: u32) -> std::io::Result<()> {
    use nix::libc;
    // SAFETY: a plain system call with integer arguments.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, flags) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writers_of_one_path_on_many_threads_never_take_each_others_file() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("x.json");
        std::thread::scope(|s| {
            for t in 0..8u8 {
                let path = &path;
                s.spawn(move || {
                    for _ in 0..200 {
                        atomic_write(path, &[t; 64], 0o644).unwrap();
                    }
                });
            }
        });
        let content = std::fs::read(&path).unwrap();
        assert_eq!(content.len(), 64);
        assert!(content.iter().all(|b| *b == content[0]), "one write, whole");
        assert_eq!(
            std::fs::read_dir(d.path()).unwrap().count(),
            1,
            "no temporary left"
        );
    }

    #[test]
    fn atomic_write_replaces_and_sets_mode() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("rec.json");
        atomic_write(&p, b"one", 0o600).unwrap();
        atomic_write(&p, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::read_dir(d.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }

    #[test]
    fn write_in_root_refuses_symlinks_out() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        let outside = d.path().join("outside");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("etc/nixos")).unwrap();
        let e = write_in_root(&root, Path::new("etc/nixos/enc.json"), b"{}", 0o644).unwrap_err();
        assert!(matches!(e, FsError::NotADirectory { .. }), "{e}");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);

        // A symlink as the final component is replaced, not followed.
        std::os::unix::fs::symlink(outside.join("victim"), root.join("etc/hostname")).unwrap();
        write_in_root(&root, Path::new("etc/hostname"), b"c1\n", 0o644).unwrap();
        assert!(!outside.join("victim").exists());
        assert_eq!(std::fs::read(root.join("etc/hostname")).unwrap(), b"c1\n");
        assert!(!std::fs::symlink_metadata(root.join("etc/hostname"))
            .unwrap()
            .file_type()
            .is_symlink());

        write_in_root(&root, Path::new("a/b/c.txt"), b"x", 0o640).unwrap();
        assert_eq!(
            std::fs::metadata(root.join("a/b/c.txt"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o640
        );
        assert!(write_in_root(&root, Path::new("../x"), b"x", 0o644).is_err());
        assert!(write_in_root(&root, Path::new("/etc/x"), b"x", 0o644).is_err());
    }

    #[test]
    fn writes_as_a_container_user_take_setgid_groups() {
        if !nix::unistd::geteuid().is_root() {
            assert!(std::env::var("CI").is_err(), "needs root under CI");
            eprintln!("SKIP writes_as_a_container_user: needs root for chown");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir_all(root.join("etc/local")).unwrap();
        // /etc/local/nixos as the platform has it: root:service (gid 500), 2775.
        std::fs::create_dir(root.join("etc/local/nixos")).unwrap();
        std::os::unix::fs::chown(root.join("etc/local/nixos"), Some(0), Some(500)).unwrap();
        std::fs::set_permissions(
            root.join("etc/local/nixos"),
            std::fs::Permissions::from_mode(0o2775),
        )
        .unwrap();
        let owner = Some((1001, 1001));
        let rel = Path::new("etc/local/nixos/site/index.html");
        write_in_root_as(&root, rel, b"<h1>", 0o644, owner).unwrap();
        write_in_root_as(&root, Path::new("srv/x/y"), b"y", 0o600, owner).unwrap();
        use std::os::unix::fs::MetadataExt;
        let ids = |p: &str| {
            let m = std::fs::metadata(root.join(p)).unwrap();
            (m.uid(), m.gid(), m.mode() & 0o7777)
        };
        assert_eq!(ids("etc/local/nixos/site"), (1001, 500, 0o2755));
        assert_eq!(ids("etc/local/nixos/site/index.html"), (1001, 500, 0o644));
        assert_eq!(ids("srv/x"), (1001, 1001, 0o755));
        assert_eq!(ids("srv/x/y"), (1001, 1001, 0o600));
        assert_eq!(
            ids("etc/local/nixos"),
            (0, 500, 0o2775),
            "existing dirs keep theirs"
        );
    }

    #[test]
    fn read_in_root_follows_no_symlink() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(d.path().join("secret"), b"host").unwrap();
        std::fs::write(root.join("etc/passwd"), b"root:x:0:0::/root:/bin/sh\n").unwrap();
        assert_eq!(
            read_in_root(&root, Path::new("etc/passwd"), 1024).unwrap(),
            b"root:x:0:0::/root:/bin/sh\n"
        );
        std::os::unix::fs::symlink(d.path().join("secret"), root.join("etc/group")).unwrap();
        assert!(read_in_root(&root, Path::new("etc/group"), 1024).is_err());
        std::os::unix::fs::symlink(d.path(), root.join("outside")).unwrap();
        let e = read_in_root(&root, Path::new("outside/secret"), 1024).unwrap_err();
        assert!(matches!(e, FsError::NotADirectory { .. }), "{e}");
        let e = read_in_root(&root, Path::new("etc/passwd"), 4).unwrap_err();
        assert!(matches!(e, FsError::TooLarge { .. }), "{e}");
        assert!(matches!(
            read_in_root(&root, Path::new("etc"), 1024),
            Err(FsError::Io { .. }) | Err(FsError::NotAFile { .. })
        ));
    }

    #[test]
    fn remove_tree_does_not_follow_symlinks() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        let keep = d.path().join("keep");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::create_dir_all(&keep).unwrap();
        std::fs::write(keep.join("precious"), b"x").unwrap();
        std::fs::write(root.join("a/b/f"), b"x").unwrap();
        std::os::unix::fs::symlink(&keep, root.join("a/link")).unwrap();
        remove_tree_one_fs(&root).unwrap();
        assert!(!root.exists());
        assert!(keep.join("precious").exists());
        remove_tree_one_fs(&root).unwrap();
    }
}
