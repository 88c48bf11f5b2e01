//! Acting as another user: a process that must have exactly an ordinary
//! user's rights (reading a `file://` channel for its owner, a front-end run
//! under sudo) drops to that user's uid, gid and supplementary groups, with
//! no way back. The kernel then checks every file access as for that user.

use nix::unistd::{Gid, Uid, User};
use std::ffi::CString;

/// Whose rights a process takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (the user database's, plus `gid`).
    pub groups: Vec<u32>,
}

impl Identity {
    /// `uid` with primary group `gid` and the groups the user database
    /// gives that user (only `gid` for a uid without a passwd entry).
    pub fn lookup(uid: u32, gid: u32) -> Identity {
        let mut groups = vec![gid];
        if let Ok(Some(user)) = User::from_uid(Uid::from_raw(uid)) {
            if let Ok(name) = CString::new(user.name) {
                if let Ok(gs) = nix::unistd::getgrouplist(&name, Gid::from_raw(gid)) {
                    for g in gs {
                        if !groups.contains(&g.as_raw()) {
                            groups.push(g.as_raw());
                        }
                    }
                }
            }
        }
        Identity { uid, gid, groups }
    }

    pub fn is_root(&self) -> bool {
        self.uid == 0
    }
}

/// Become `id` for good: groups, then gid, then uid (real, effective and
/// saved), and check that root cannot be regained; no descriptor but 0–2
/// survives the coming exec. Only raw system calls on data prepared
/// beforehand, so it may run between fork and exec.
pub fn become_user(id: &Identity) -> std::io::Result<()> {
    use nix::libc;
    crate::sys::fs::cloexec_from(3)?;
    let groups: &[u32] = &id.groups;
    // SAFETY: plain system calls; `groups` outlives them.
    unsafe {
        if libc::setgroups(groups.len(), groups.as_ptr()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::setresgid(id.gid, id.gid, id.gid) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::setresuid(id.uid, id.uid, id.uid) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if id.uid != 0 && libc::setuid(0) == 0 {
            return Err(std::io::Error::other("root could be regained"));
        }
    }
    Ok(())
}
