//! A front-end run under sudo acts as the user who ran sudo. batou runs
//! `sudo fc-build-dev-container …` (the old tool needed root; the role keeps
//! a NOPASSWD rule for it), but the agent authorizes by the peer's uid: a
//! front-end that connected as root would let any sudoer act as root —
//! destroy another user's container, read root's files for `provision`.
//! So before it reads a file or connects, a front-end whose effective uid is
//! 0 and whose `SUDO_UID` names another user becomes that user (uid, gid,
//! groups, for good). sudo sets `SUDO_UID` and `SUDO_GID` itself and a
//! sudoer cannot forge them; root itself (no sudo, or `env -u SUDO_UID`)
//! stays root. `SUDO_UID` without `SUDO_GID` is no sudo but root's own
//! setting: root stays root and creates the container for that uid, as
//! admins may.

use crate::sys::identity::{become_user, Identity};
use std::sync::atomic::{AtomicU32, Ordering};

/// The uid a front-end acts as after leaving root (0: it did not).
static ACTING_AS: AtomicU32 = AtomicU32::new(0);

/// Whom a front-end with effective uid `euid` and sudo's variables acts as:
/// `None` to stay who it is.
pub fn invoking_user(
    euid: u32,
    sudo_uid: Option<&str>,
    sudo_gid: Option<&str>,
) -> Result<Option<(u32, u32)>, String> {
    if euid != 0 {
        return Ok(None);
    }
    let Some(u) = sudo_uid.filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let uid: u32 = u
        .parse()
        .map_err(|_| format!("SUDO_UID={u:?} is not a uid"))?;
    if uid == 0 {
        return Ok(None);
    }
    let gid: u32 = match sudo_gid.filter(|s| !s.is_empty()) {
        Some(g) => g
            .parse()
            .map_err(|_| format!("SUDO_GID={g:?} is not a gid"))?,
        None => return Ok(None),
    };
    Ok(Some((uid, gid)))
}

/// For whom root creates a container: the uid root set in `SUDO_UID` by
/// hand (without `SUDO_GID`, so not through sudo, which sets both and
/// makes the front-end that user instead).
pub fn owner_for_root() -> Option<u32> {
    if ACTING_AS.load(Ordering::Relaxed) != 0 || !nix::unistd::geteuid().is_root() {
        return None;
    }
    if std::env::var_os("SUDO_GID").is_some_and(|g| !g.is_empty()) {
        return None;
    }
    std::env::var("SUDO_UID")
        .ok()?
        .parse()
        .ok()
        .filter(|u| *u != 0)
}

/// Become the user who ran sudo, if that is what happened. An error means
/// the front-end must not go on (it would act as root).
pub fn act_as_invoking_user() -> Result<(), String> {
    let uid = std::env::var("SUDO_UID").ok();
    let gid = std::env::var("SUDO_GID").ok();
    let Some((uid, gid)) = invoking_user(
        nix::unistd::geteuid().as_raw(),
        uid.as_deref(),
        gid.as_deref(),
    )?
    else {
        return Ok(());
    };
    become_user(&Identity::lookup(uid, gid))
        .map_err(|e| format!("cannot act as uid {uid}, who ran sudo: {e}"))?;
    ACTING_AS.store(uid, Ordering::Relaxed);
    Ok(())
}

/// For a refusal: why the agent saw this uid and not root.
pub fn hint() -> Option<String> {
    match ACTING_AS.load(Ordering::Relaxed) {
        0 => None,
        uid => Some(format!(
            "(run under sudo, this command acts as uid {uid}, who ran it, not as root; root itself can run it with `env -u SUDO_UID`)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sudo_by_a_user_acts_as_that_user() {
        assert_eq!(
            invoking_user(0, Some("1000"), Some("100")),
            Ok(Some((1000, 100)))
        );
    }

    #[test]
    fn root_and_non_root_stay_who_they_are() {
        assert_eq!(invoking_user(0, None, None), Ok(None), "root, no sudo");
        assert_eq!(
            invoking_user(0, Some("0"), Some("0")),
            Ok(None),
            "sudo by root"
        );
        assert_eq!(
            invoking_user(1000, Some("0"), Some("0")),
            Ok(None),
            "a user's own SUDO_UID means nothing"
        );
        assert_eq!(invoking_user(0, Some(""), None), Ok(None));
    }

    #[test]
    fn garbled_sudo_variables_stop_the_front_end() {
        assert_eq!(
            invoking_user(0, Some("alice"), Some("100")),
            Err("SUDO_UID=\"alice\" is not a uid".into())
        );
        assert_eq!(
            invoking_user(0, Some("1000"), None),
            Ok(None),
            "no sudo, but root's own SUDO_UID: root stays root"
        );
        assert_eq!(
            invoking_user(0, Some("1000"), Some("x")),
            Err("SUDO_GID=\"x\" is not a gid".into())
        );
    }
}
