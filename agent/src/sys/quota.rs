//! Disk size limits of container roots by project quota: where the
//! filesystem of the container roots is XFS or ext4 mounted with project
//! quotas (`prjquota`), a container's root directory gets a project of its
//! own (inherited by everything made below it) and that project a hard
//! limit. Which mounts qualify is decided purely from mountinfo; the rest
//! are the `FS_IOC_FS[GS]ETXATTR` ioctls and `quotactl_fd`.

use nix::libc;
use std::io::{Error, Result};
use std::os::fd::AsRawFd;
use std::path::Path;

/// The filesystem holding `path` can enforce project quotas: its type, as
/// the mount table names it.
pub fn project_quota_fs(mountinfo: &str, path: &Path) -> Option<String> {
    let mut best: Option<(usize, String, bool)> = None;
    for l in mountinfo.lines() {
        let f: Vec<&str> = l.split(' ').collect();
        let Some(dash) = f.iter().position(|x| *x == "-") else {
            continue;
        };
        let (Some(mountpoint), Some(fstype), Some(opts)) =
            (f.get(4), f.get(dash + 1), f.get(dash + 3))
        else {
            continue;
        };
        let mp = Path::new(mountpoint);
        if !path.starts_with(mp) {
            continue;
        }
        let len = mp.as_os_str().len();
        if best.as_ref().is_some_and(|(b, _, _)| *b > len) {
            continue;
        }
        let quota = matches!(*fstype, "xfs" | "ext4")
            && opts
                .split(',')
                .any(|o| matches!(o, "prjquota" | "pquota" | "pqnoenforce"));
        let enforced = quota && !opts.split(',').any(|o| o == "pqnoenforce");
        best = Some((len, fstype.to_string(), enforced));
    }
    best.and_then(|(_, t, q)| q.then_some(t))
}

/// The project of a container: stable for its life (its address block
/// index), in a range of its own.
pub fn project_id(index: u32) -> u32 {
    0x6468_0000 + index
}

#[repr(C)]
#[derive(Default)]
struct FsXattr {
    xflags: u32,
    extsize: u32,
    nextents: u32,
    projid: u32,
    cowextsize: u32,
    pad: [u8; 8],
}

const FS_IOC_FSGETXATTR: libc::c_ulong = 0x801c_581f;
const FS_IOC_FSSETXATTR: libc::c_ulong = 0x401c_5820;
const FS_XFLAG_PROJINHERIT: u32 = 0x0000_0200;

/// Put the directory `dir` (opened without following a symlink) into
/// project `id`, inherited by what is made below it. True when it was in
/// another project before (its existing contents are not in `id` yet).
pub fn set_project(dir: &Path, id: u32) -> Result<bool> {
    let fd = crate::sys::ns::open(
        dir.to_str()
            .ok_or_else(|| Error::other("path is not UTF-8"))?,
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
    )?;
    let mut x = FsXattr::default();
    // SAFETY: the ioctl fills one fsxattr.
    if unsafe { libc::ioctl(fd.as_raw_fd(), FS_IOC_FSGETXATTR, &mut x as *mut FsXattr) } < 0 {
        return Err(Error::last_os_error());
    }
    if x.projid == id && x.xflags & FS_XFLAG_PROJINHERIT != 0 {
        return Ok(false);
    }
    let moved = x.projid != id;
    x.projid = id;
    x.xflags |= FS_XFLAG_PROJINHERIT;
    // SAFETY: the ioctl reads one fsxattr.
    if unsafe { libc::ioctl(fd.as_raw_fd(), FS_IOC_FSSETXATTR, &x as *const FsXattr) } < 0 {
        return Err(Error::last_os_error());
    }
    Ok(moved)
}

/// Put everything below `dir` (directories and regular files, on its
/// filesystem, never through a symlink) into project `id`: what a container
/// had before it got a disk size.
pub fn set_project_tree(dir: &Path, id: u32) -> Result<()> {
    use nix::dir::Dir;
    use nix::fcntl::OFlag;
    use nix::sys::stat::Mode;
    let top = Dir::open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(Error::from)?;
    let dev = nix::sys::stat::fstat(top.as_raw_fd())
        .map_err(Error::from)?
        .st_dev;
    walk(top, dev, id)
}

fn set_fd_project(fd: i32, id: u32, inherit: bool) -> Result<()> {
    let mut x = FsXattr::default();
    // SAFETY: the ioctls read and fill one fsxattr.
    unsafe {
        if libc::ioctl(fd, FS_IOC_FSGETXATTR, &mut x as *mut FsXattr) < 0 {
            return Err(Error::last_os_error());
        }
        x.projid = id;
        if inherit {
            x.xflags |= FS_XFLAG_PROJINHERIT;
        }
        if libc::ioctl(fd, FS_IOC_FSSETXATTR, &x as *const FsXattr) < 0 {
            return Err(Error::last_os_error());
        }
    }
    Ok(())
}

fn walk(mut dir: nix::dir::Dir, dev: u64, id: u32) -> Result<()> {
    use nix::dir::Type;
    use nix::fcntl::{openat, OFlag};
    use nix::sys::stat::{fstat, Mode};
    let raw = dir.as_raw_fd();
    let mut entries = Vec::new();
    for e in dir.iter() {
        let e = e.map_err(Error::from)?;
        let name = e.file_name().to_owned();
        if name.as_bytes() == b"." || name.as_bytes() == b".." {
            continue;
        }
        entries.push((name, e.file_type()));
    }
    for (name, ty) in entries {
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
        match ty {
            Some(Type::Directory) => {
                let Ok(sub) = nix::dir::Dir::openat(
                    Some(raw),
                    name.as_c_str(),
                    flags | OFlag::O_DIRECTORY,
                    Mode::empty(),
                ) else {
                    continue;
                };
                let st = fstat(sub.as_raw_fd()).map_err(Error::from)?;
                if st.st_dev != dev {
                    continue; // another filesystem mounted there
                }
                set_fd_project(sub.as_raw_fd(), id, true)?;
                walk(sub, dev, id)?;
            }
            Some(Type::File) => {
                let Ok(fd) = openat(Some(raw), name.as_c_str(), flags, Mode::empty()) else {
                    continue;
                };
                // SAFETY: fd was just opened and is ours.
                let fd =
                    unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
                set_fd_project(fd.as_raw_fd(), id, false)?;
            }
            _ => {} // symlinks, devices, fifos, sockets: not opened
        }
    }
    Ok(())
}

#[repr(C)]
#[derive(Default)]
struct IfDqblk {
    bhardlimit: u64,
    bsoftlimit: u64,
    curspace: u64,
    ihardlimit: u64,
    isoftlimit: u64,
    curinodes: u64,
    btime: u64,
    itime: u64,
    valid: u32,
}

const Q_GETQUOTA: u32 = 0x80_0007;
const Q_SETQUOTA: u32 = 0x80_0008;
const PRJQUOTA: u32 = 2;
const QIF_BLIMITS: u32 = 1;
const SYS_QUOTACTL_FD: libc::c_long = 443;

fn quotactl(on: &Path, cmd: u32, id: u32, q: &mut IfDqblk) -> Result<()> {
    let fd = crate::sys::ns::open(
        on.to_str()
            .ok_or_else(|| Error::other("path is not UTF-8"))?,
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
    )?;
    let qcmd = (cmd << 8) | PRJQUOTA;
    // SAFETY: quotactl_fd reads or fills one if_dqblk.
    let r = unsafe { libc::syscall(SYS_QUOTACTL_FD, fd.as_raw_fd(), qcmd, id, q as *mut IfDqblk) };
    if r < 0 {
        return Err(Error::last_os_error());
    }
    Ok(())
}

/// Limit project `id` on the filesystem of `on` to `bytes` (0: no limit).
pub fn set_limit(on: &Path, id: u32, bytes: u64) -> Result<()> {
    let mut q = IfDqblk {
        bhardlimit: bytes.div_ceil(1024),
        bsoftlimit: 0,
        valid: QIF_BLIMITS,
        ..IfDqblk::default()
    };
    quotactl(on, Q_SETQUOTA, id, &mut q)
}

/// What project `id` uses on the filesystem of `on`, in bytes.
pub fn usage(on: &Path, id: u32) -> Result<u64> {
    let mut q = IfDqblk::default();
    quotactl(on, Q_GETQUOTA, id, &mut q)?;
    Ok(q.curspace)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTS: &str = "\
22 1 254:0 / / rw,relatime - ext4 /dev/vda rw
40 22 7:0 / /var/lib/nixos-containers rw - xfs /dev/loop0 rw,attr2,inode64,prjquota
41 22 7:1 / /srv/q rw - ext4 /dev/loop1 rw,prjquota
42 22 7:2 / /srv/noenforce rw - xfs /dev/loop2 rw,pqnoenforce
";

    #[test]
    fn which_filesystems_enforce_project_quotas() {
        assert_eq!(
            project_quota_fs(MOUNTS, Path::new("/var/lib/nixos-containers/web01")),
            Some("xfs".into())
        );
        assert_eq!(
            project_quota_fs(MOUNTS, Path::new("/srv/q/c")),
            Some("ext4".into())
        );
        assert_eq!(
            project_quota_fs(MOUNTS, Path::new("/var/lib/devhost")),
            None
        );
        assert_eq!(
            project_quota_fs(MOUNTS, Path::new("/srv/noenforce/c")),
            None
        );
    }

    #[test]
    fn projects_are_per_address_block() {
        assert_eq!(project_id(0), 0x6468_0000);
        assert_ne!(project_id(1), project_id(2));
    }
}
