//! Disk size limits of container roots by btrfs quota groups: where the
//! container roots live on btrfs, each root is a subvolume of its own, and
//! with quotas enabled on that filesystem (`btrfs quota enable MOUNT`, the
//! operator's choice) a disk size becomes the limit of the subvolume's
//! quota group. Whether a path is on btrfs and what `btrfs qgroup show`
//! says are read purely; the rest runs the `btrfs` program.

use std::path::Path;
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    #[error("cannot run btrfs: {0}")]
    Run(#[source] std::io::Error),
    /// `btrfs ARGS` failed; its last line of error output.
    #[error("btrfs {args}: {message}")]
    Failed { args: String, message: String },
    #[error("no quota group in: {0}")]
    NoQuotaGroup(String),
}

/// Is the filesystem holding `path` btrfs (the mount with the longest
/// mount point above it)?
pub fn on_btrfs(mountinfo: &str, path: &Path) -> bool {
    let mut best: Option<(usize, bool)> = None;
    for l in mountinfo.lines() {
        let f: Vec<&str> = l.split(' ').collect();
        let Some(dash) = f.iter().position(|x| *x == "-") else {
            continue;
        };
        let (Some(mountpoint), Some(fstype)) = (f.get(4), f.get(dash + 1)) else {
            continue;
        };
        let mp = Path::new(mountpoint);
        let len = mp.as_os_str().len();
        if path.starts_with(mp) && best.is_none_or(|(b, _)| len >= b) {
            best = Some((len, *fstype == "btrfs"));
        }
    }
    best.is_some_and(|(_, b)| b)
}

/// The bytes the subvolume's own quota group (`0/ID`, the first one in
/// `btrfs qgroup show --raw -f` output) references.
pub fn referenced(qgroup_show: &str) -> Option<u64> {
    qgroup_show
        .lines()
        .find(|l| l.trim_start().starts_with("0/"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
}

/// Is `dir` the top of a btrfs subvolume (inode 256)?
pub fn is_subvolume(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir() && m.ino() == 256)
}

fn btrfs(args: &[&str], path: &Path) -> Result<String, QuotaError> {
    let out = Command::new("btrfs")
        .args(args)
        .arg(path)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .map_err(QuotaError::Run)?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(QuotaError::Failed {
            args: args.join(" "),
            message: err
                .lines()
                .rfind(|l| !l.trim().is_empty())
                .unwrap_or("failed")
                .trim()
                .to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Make `dir` (which must not exist) a subvolume.
pub fn create_subvolume(dir: &Path) -> Result<(), QuotaError> {
    btrfs(&["subvolume", "create"], dir).map(|_| ())
}

/// Limit the subvolume `dir` to `bytes` (`None`: no limit).
pub fn set_limit(dir: &Path, bytes: Option<u64>) -> Result<(), QuotaError> {
    let size = bytes
        .map(|b| b.to_string())
        .unwrap_or_else(|| "none".into());
    btrfs(&["qgroup", "limit", &size], dir).map(|_| ())
}

/// The bytes the subvolume `dir` references; an error when quotas are off.
pub fn usage(dir: &Path) -> Result<u64, QuotaError> {
    let out = btrfs(&["qgroup", "show", "--raw", "-f"], dir)?;
    referenced(&out).ok_or(QuotaError::NoQuotaGroup(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_paths_are_on_btrfs() {
        let mounts = "\
22 1 254:0 / / rw,relatime - ext4 /dev/vda rw
40 22 0:45 / /var/lib/nixos-containers rw - btrfs /dev/loop0 rw,space_cache=v2
41 40 0:46 / /var/lib/nixos-containers/x/mnt rw - ext4 /dev/loop1 rw
";
        assert!(on_btrfs(
            mounts,
            Path::new("/var/lib/nixos-containers/web01")
        ));
        assert!(!on_btrfs(
            mounts,
            Path::new("/var/lib/nixos-containers/x/mnt/y")
        ));
        assert!(!on_btrfs(mounts, Path::new("/var/lib/devhost")));
    }

    #[test]
    fn the_subvolumes_own_quota_group() {
        let show = "\
Qgroupid    Referenced    Exclusive   Path 
--------    ----------    ---------   ---- 
0/256         33538048     33538048   c1
";
        assert_eq!(referenced(show), Some(33_538_048));
        assert_eq!(
            referenced("ERROR: can't list qgroups: quotas not enabled\n"),
            None
        );
    }
}
