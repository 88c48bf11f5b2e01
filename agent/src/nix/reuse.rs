//! Reusing a built system: a second ensure with the same channel URL and the
//! same generated configuration skips Nix entirely, within a TTL. Only
//! http(s) channels qualify — Nix itself caches their tarballs per URL for
//! `tarball-ttl` — while a local path can change at any moment and is always
//! evaluated. The link to the reused system is registered as an indirect GC
//! root, as `nix-build -o` would have done.

use crate::container::{ChannelUrl, ContainerName};
use crate::sys::fs::atomic_write;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Built {
    pub channel: String,
    pub configuration: String,
    pub system: String,
    pub built: DateTime<Utc>,
}

pub fn cache_path(state_dir: &Path, name: &ContainerName) -> PathBuf {
    state_dir.join("build-cache").join(format!("{name}.json"))
}

/// The system built earlier for exactly this channel and configuration, if
/// it may be reused now and is still in the store (`in_store`).
pub fn lookup(
    state_dir: &Path,
    name: &ContainerName,
    channel: &ChannelUrl,
    configuration: &str,
    now: DateTime<Utc>,
    ttl: std::time::Duration,
    in_store: impl Fn(&str) -> bool,
) -> Option<String> {
    if ttl.is_zero()
        || !(channel.as_str().starts_with("https://") || channel.as_str().starts_with("http://"))
    {
        return None;
    }
    let b: Built =
        serde_json::from_slice(&std::fs::read(cache_path(state_dir, name)).ok()?).ok()?;
    let fresh = now.signed_duration_since(b.built).num_seconds() < ttl.as_secs() as i64;
    let same = b.channel == channel.as_str() && b.configuration == configuration;
    (fresh && same && b.system.starts_with("/nix/store/") && in_store(&b.system))
        .then_some(b.system)
}

pub fn remember(state_dir: &Path, name: &ContainerName, b: &Built) -> std::io::Result<()> {
    let p = cache_path(state_dir, name);
    std::fs::create_dir_all(p.parent().expect("has parent"))?;
    let json = serde_json::to_vec_pretty(b).expect("serializes");
    atomic_write(&p, &json, 0o644).map_err(std::io::Error::other)
}

/// The indirect GC root Nix would register for `link` (stable name).
pub fn auto_root(gcroots_auto: &Path, link: &Path) -> PathBuf {
    // FNV-1a: stable across builds, so destroy finds what ensure made.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in link.as_os_str().as_encoded_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    gcroots_auto.join(format!("devhost-{h:016x}"))
}

/// Point `link` at `system` atomically and register it as an indirect root.
pub fn link_system(link: &Path, system: &str, gcroots_auto: &Path) -> std::io::Result<()> {
    let tmp = link.with_extension("devhost-tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(system, &tmp)?;
    std::fs::rename(&tmp, link)?;
    std::fs::create_dir_all(gcroots_auto)?;
    let root = auto_root(gcroots_auto, link);
    let rtmp = root.with_extension("tmp");
    let _ = std::fs::remove_file(&rtmp);
    std::os::unix::fs::symlink(link, &rtmp)?;
    std::fs::rename(&rtmp, &root)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: std::time::Duration = std::time::Duration::from_secs(3600);

    #[test]
    fn reuse_rules() {
        let d = tempfile::tempdir().unwrap();
        let name: ContainerName = "web01".parse().unwrap();
        let url: ChannelUrl = "https://hydra.example/build/1/nixexprs.tar.xz"
            .parse()
            .unwrap();
        let now = Utc::now();
        let sys = "/nix/store/abc-nixos-system-web01";
        let b = Built {
            channel: url.to_string(),
            configuration: "conf".into(),
            system: sys.into(),
            built: now,
        };
        remember(d.path(), &name, &b).unwrap();
        let there = |p: &str| p == sys;
        assert_eq!(
            lookup(d.path(), &name, &url, "conf", now, HOUR, there).as_deref(),
            Some(sys)
        );
        assert_eq!(
            lookup(d.path(), &name, &url, "conf", now, HOUR, |_| false),
            None,
            "collected: rebuild"
        );
        assert_eq!(
            lookup(d.path(), &name, &url, "other conf", now, HOUR, there),
            None
        );
        let other: ChannelUrl = "https://hydra.example/build/2/nixexprs.tar.xz"
            .parse()
            .unwrap();
        assert_eq!(
            lookup(d.path(), &name, &other, "conf", now, HOUR, there),
            None
        );
        let later = now + chrono::Duration::seconds(3601);
        assert_eq!(
            lookup(d.path(), &name, &url, "conf", later, HOUR, there),
            None,
            "expired"
        );
        assert_eq!(
            lookup(
                d.path(),
                &name,
                &url,
                "conf",
                now,
                std::time::Duration::ZERO,
                there
            ),
            None,
            "disabled"
        );
        let local: ChannelUrl = "/srv/channel".parse().unwrap();
        let bl = Built {
            channel: local.to_string(),
            ..b
        };
        remember(d.path(), &name, &bl).unwrap();
        assert_eq!(
            lookup(d.path(), &name, &local, "conf", now, HOUR, there),
            None,
            "local channels are always evaluated"
        );
    }

    #[test]
    fn auto_root_name_is_stable() {
        let a = auto_root(
            Path::new("/nix/var/nix/gcroots/auto"),
            Path::new("/x/web01/system"),
        );
        assert_eq!(
            a,
            auto_root(
                Path::new("/nix/var/nix/gcroots/auto"),
                Path::new("/x/web01/system")
            )
        );
        assert_ne!(
            a,
            auto_root(
                Path::new("/nix/var/nix/gcroots/auto"),
                Path::new("/x/web02/system")
            )
        );
        assert!(a
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("devhost-"));
    }
}
