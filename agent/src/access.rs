//! Who is calling, and what they may do. The peer's uid/gid come from the
//! socket (SO_PEERCRED), group membership from the user database: root and
//! the admin group may do anything; the user group may create containers and
//! manage its own; everybody may list and read status.

use crate::config::AccessConfig;
use nix::unistd::{getgrouplist, Gid, Group, Uid, User};
use std::ffi::CString;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub admin: bool,
    pub user: bool,
}

impl Caller {
    /// Resolve the peer's groups against the configured admin and user groups.
    pub fn resolve(uid: u32, gid: u32, cfg: &AccessConfig) -> Caller {
        if uid == 0 {
            return Caller {
                uid,
                gid,
                admin: true,
                user: true,
            };
        }
        let groups = groups_of(uid, gid);
        let member = |name: &str| {
            Group::from_name(name)
                .ok()
                .flatten()
                .map(|g| groups.contains(&g.gid.as_raw()))
                .unwrap_or(false)
        };
        let admin = member(&cfg.admin_group);
        let user = admin || member(&cfg.user_group);
        Caller {
            uid,
            gid,
            admin,
            user,
        }
    }

    pub fn root() -> Caller {
        Caller {
            uid: 0,
            gid: 0,
            admin: true,
            user: true,
        }
    }

    pub fn may_create(&self) -> bool {
        self.user
    }

    pub fn may_manage(&self, owner_uid: u32) -> bool {
        self.admin || (self.user && owner_uid == self.uid)
    }

    /// The uid a new container belongs to: admins may create for another
    /// user (sudo from a login shell), everybody else for themselves.
    pub fn owner_for(&self, requested: Option<u32>) -> u32 {
        match requested {
            Some(uid) if self.admin => uid,
            _ => self.uid,
        }
    }
}

fn groups_of(uid: u32, gid: u32) -> Vec<u32> {
    let mut out = vec![gid];
    if let Ok(Some(user)) = User::from_uid(Uid::from_raw(uid)) {
        if let Ok(cname) = CString::new(user.name) {
            if let Ok(gs) = getgrouplist(&cname, Gid::from_raw(gid)) {
                out.extend(gs.into_iter().map(|g| g.as_raw()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        let owner = Caller {
            uid: 1000,
            gid: 100,
            admin: false,
            user: true,
        };
        let other = Caller {
            uid: 1001,
            gid: 100,
            admin: false,
            user: true,
        };
        let stranger = Caller {
            uid: 1002,
            gid: 1002,
            admin: false,
            user: false,
        };
        let admin = Caller {
            uid: 1003,
            gid: 10,
            admin: true,
            user: true,
        };
        assert!(owner.may_manage(1000));
        assert!(!other.may_manage(1000));
        assert!(!stranger.may_create());
        assert!(!stranger.may_manage(1002));
        assert!(admin.may_manage(1000));
        assert_eq!(owner.owner_for(Some(0)), 1000);
        assert_eq!(admin.owner_for(Some(1000)), 1000);
        assert_eq!(Caller::root().owner_for(None), 0);
        assert!(Caller::resolve(0, 0, &crate::config::Access::default().validate().unwrap()).admin);
    }
}
