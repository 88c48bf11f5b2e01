//! Built systems shared between containers. The generated configuration
//! names no container, so every container whose channel and configuration
//! are the same runs the same system: it is built once and found again by
//! its [`SystemKey`] — the channel's identity (the store path of its
//! content, never its URL), the configuration's text, the Nix arguments and
//! the content of every path outside the store that evaluation may read.
//! A moved channel has another store path, an edited `base.nix` other
//! content: either is another key, and a new build.
//!
//! The cache is one small JSON file per key in `STATE/systems/`; it keeps
//! nothing alive. Each container's profile link is its own GC root
//! ([`link_system`]), so a system lives as long as one container uses it,
//! and a cached key whose system was collected is simply built again.

use crate::container::ContainerName;
use crate::sys::fs::atomic_write;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What identifies a built system: a SHA-256 in hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SystemKey(String);

impl SystemKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex digits: enough to tell keys apart in messages.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }

    fn parse(s: &str) -> Option<SystemKey> {
        (s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
        .then(|| SystemKey(s.to_string()))
    }
}

impl std::fmt::Display for SystemKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Everything a build's result depends on.
#[derive(Debug, Clone, Copy)]
pub struct KeyInputs<'a> {
    /// The channel as Nix reads it: a store path, or a `file://` URL of a
    /// tarball in the store — content-addressed either way.
    pub channel_entry: &'a str,
    pub configuration: &'a str,
    /// The operator's `nix.extra_args`.
    pub extra_args: &'a [String],
    /// Paths outside the channel evaluation may read.
    pub allowed_paths: &'a [PathBuf],
    /// URI prefixes evaluation may fetch.
    pub allowed_uris: &'a [String],
    /// Set when systems are not shared (`nix.share_systems = false`): the
    /// key is then the container's own.
    pub container: Option<&'a ContainerName>,
}

/// How much of the allowed paths is read to identify them.
const MAX_ENTRIES: usize = 20_000;
const MAX_BYTES: u64 = 256 << 20;
/// Directories and links followed deep (a link loop ends here).
const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} is too large to identify (more than {MAX_ENTRIES} entries, {} MiB or {MAX_DEPTH} levels): its system is built every time", path.display(), MAX_BYTES >> 20)]
pub struct Unidentifiable {
    pub path: PathBuf,
}

struct Budget {
    entries: usize,
    bytes: u64,
}

/// The key of the system these inputs build.
pub fn key(inputs: &KeyInputs) -> Result<SystemKey, Unidentifiable> {
    use ring::digest::{Context, SHA256};
    let mut h = Context::new(&SHA256);
    let field = |h: &mut Context, tag: &str, bytes: &[u8]| {
        h.update(tag.as_bytes());
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(&mut h, "devhost-system-v1", b"");
    field(&mut h, "channel", inputs.channel_entry.as_bytes());
    field(&mut h, "configuration", inputs.configuration.as_bytes());
    for a in inputs.extra_args {
        field(&mut h, "arg", a.as_bytes());
    }
    for u in inputs.allowed_uris {
        field(&mut h, "uri", u.as_bytes());
    }
    let mut budget = Budget {
        entries: 0,
        bytes: 0,
    };
    for p in inputs.allowed_paths {
        field(&mut h, "path", p.as_os_str().as_encoded_bytes());
        if !in_store(p) {
            digest_tree(&mut h, p, &mut budget, 0)
                .map_err(|()| Unidentifiable { path: p.clone() })?;
        }
    }
    if let Some(name) = inputs.container {
        field(&mut h, "container", name.as_str().as_bytes());
    }
    let d = h.finish();
    Ok(SystemKey(
        d.as_ref().iter().map(|b| format!("{b:02x}")).collect(),
    ))
}

/// Store paths never change: their name identifies them.
fn in_store(p: &Path) -> bool {
    p.starts_with("/nix/store/") && !p.components().any(|c| c.as_os_str() == "..")
}

/// Names, kinds, link targets and file contents below `p`, in order.
fn digest_tree(
    h: &mut ring::digest::Context,
    p: &Path,
    budget: &mut Budget,
    depth: usize,
) -> Result<(), ()> {
    budget.entries += 1;
    if budget.entries > MAX_ENTRIES || depth > MAX_DEPTH {
        return Err(());
    }
    let mut tag = |t: &str, bytes: &[u8]| {
        h.update(t.as_bytes());
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    let meta = match std::fs::symlink_metadata(p) {
        Ok(m) => m,
        Err(e) => {
            tag("unreadable", format!("{:?}", e.kind()).as_bytes());
            return Ok(());
        }
    };
    if meta.is_symlink() {
        // Nix follows the link: what it points to is what is read (on
        // NixOS `/etc/devhost/base.nix` is a link whose target's name
        // never changes while its content does). A loop runs out of budget.
        let target = std::fs::read_link(p).unwrap_or_default();
        tag("link", target.as_os_str().as_encoded_bytes());
        match std::fs::canonicalize(p) {
            Ok(real) if in_store(&real) => tag("store", real.as_os_str().as_encoded_bytes()),
            Ok(real) => digest_tree(h, &real, budget, depth + 1)?,
            Err(e) => tag("dangling", format!("{:?}", e.kind()).as_bytes()),
        }
    } else if meta.is_dir() {
        let mut names: Vec<std::ffi::OsString> = match std::fs::read_dir(p) {
            Ok(d) => d.flatten().map(|e| e.file_name()).collect(),
            Err(e) => {
                tag("unreadable", format!("{:?}", e.kind()).as_bytes());
                return Ok(());
            }
        };
        names.sort();
        tag("dir", &(names.len() as u64).to_le_bytes());
        for n in names {
            h.update(b"entry");
            h.update(&(n.len() as u64).to_le_bytes());
            h.update(n.as_encoded_bytes());
            digest_tree(h, &p.join(&n), budget, depth + 1)?;
        }
    } else if meta.is_file() {
        budget.bytes += meta.len();
        if budget.bytes > MAX_BYTES {
            return Err(());
        }
        match std::fs::read(p) {
            Ok(content) => tag("file", &content),
            Err(e) => tag("unreadable", format!("{:?}", e.kind()).as_bytes()),
        }
    } else {
        tag("special", b"");
    }
    Ok(())
}

/// A built system as the cache keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Built {
    pub key: String,
    /// The channel as the first container asked for it.
    pub channel: String,
    /// The channel as Nix read it.
    pub entry: String,
    pub system: String,
    pub built: DateTime<Utc>,
    /// The container whose ensure started the build.
    pub by: String,
}

/// `STATE/systems`.
pub fn cache_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("systems")
}

fn entry_path(dir: &Path, key: &SystemKey) -> PathBuf {
    dir.join(format!("{key}.json"))
}

/// Where the build of `key` writes its configuration and its log (its
/// out-links, `KEY-N.link`, live beside them while the build's result is
/// being linked by the containers that waited for it).
pub fn work_paths(dir: &Path, key: &SystemKey) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{key}.nix")),
        dir.join(format!("{key}.log")),
    )
}

/// The system built earlier for `key`, if it is younger than `max_age`
/// (zero: never reused) and still in the store (`in_store`).
pub fn lookup(
    dir: &Path,
    key: &SystemKey,
    now: DateTime<Utc>,
    max_age: std::time::Duration,
    in_store: impl Fn(&str) -> bool,
) -> Option<Built> {
    if max_age.is_zero() {
        return None;
    }
    let b: Built = serde_json::from_slice(&std::fs::read(entry_path(dir, key)).ok()?).ok()?;
    let age = now.signed_duration_since(b.built).num_seconds();
    let fresh = age < max_age.as_secs().min(i64::MAX as u64) as i64;
    let valid = b.key == key.as_str()
        && b.system.starts_with("/nix/store/")
        && !b.system.contains("..")
        && in_store(&b.system);
    (fresh && valid).then_some(b)
}

pub fn remember(dir: &Path, b: &Built) -> std::io::Result<()> {
    let key = SystemKey::parse(&b.key)
        .ok_or_else(|| std::io::Error::other(format!("not a system key: {:?}", b.key)))?;
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_vec_pretty(b).expect("serializes");
    atomic_write(&entry_path(dir, &key), &json, 0o644).map_err(std::io::Error::other)
}

/// What builds left behind when the agent stopped: out-links and their GC
/// roots (the entries, configurations and logs stay).
pub fn clear_work(dir: &Path, gcroots_auto: &Path) {
    let Ok(d) = std::fs::read_dir(dir) else {
        return;
    };
    for e in d.flatten() {
        let p = e.path();
        match p.extension().and_then(|x| x.to_str()) {
            Some("link") => {
                let _ = std::fs::remove_file(auto_root(gcroots_auto, &p));
                let _ = std::fs::remove_file(&p);
            }
            Some("devhost-tmp") => {
                let _ = std::fs::remove_file(&p);
            }
            _ => {}
        }
    }
}

/// Forget what can no longer be reused: entries whose system is gone from
/// the store or older than `max_age`, with their configuration and log;
/// logs of builds that failed, once older than `max_age`.
pub fn prune(
    dir: &Path,
    now: DateTime<Utc>,
    max_age: std::time::Duration,
    in_store: impl Fn(&str) -> bool,
) -> usize {
    let Ok(d) = std::fs::read_dir(dir) else {
        return 0;
    };
    let old = |t: DateTime<Utc>| {
        now.signed_duration_since(t).num_seconds() >= max_age.as_secs().min(i64::MAX as u64) as i64
    };
    let mut pruned = 0;
    for e in d.flatten() {
        let p = e.path();
        let Some(key) = p
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(SystemKey::parse)
        else {
            continue;
        };
        let stale = match p.extension().and_then(|x| x.to_str()) {
            Some("json") => match std::fs::read(&p)
                .ok()
                .and_then(|b| serde_json::from_slice::<Built>(&b).ok())
            {
                Some(b) => old(b.built) || !in_store(&b.system),
                // Not ours to judge: kept.
                None => false,
            },
            Some("log") if !entry_path(dir, &key).exists() => e
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| old(DateTime::<Utc>::from(t))),
            _ => false,
        };
        if stale {
            let (nix, log) = work_paths(dir, &key);
            for f in [entry_path(dir, &key), nix, log] {
                let _ = std::fs::remove_file(f);
            }
            pruned += 1;
        }
    }
    pruned
}

/// The indirect GC root the agent registers for `link` in
/// `gcroots/auto`, under a name of its own that is stable, so that destroy
/// finds what ensure made (`nix-build -o` registers its own, under Nix's
/// name; Nix's collection drops that one once the link is gone).
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

/// Remove a link made by [`link_system`] or `nix-build -o`, with its root.
pub fn unlink_system(link: &Path, gcroots_auto: &Path) {
    let _ = std::fs::remove_file(auto_root(gcroots_auto, link));
    let _ = std::fs::remove_file(link);
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: std::time::Duration = std::time::Duration::from_secs(3600);

    fn inputs<'a>(entry: &'a str, conf: &'a str, paths: &'a [PathBuf]) -> KeyInputs<'a> {
        KeyInputs {
            channel_entry: entry,
            configuration: conf,
            extra_args: &[],
            allowed_paths: paths,
            allowed_uris: &[],
            container: None,
        }
    }

    #[test]
    fn the_key_is_the_same_for_the_same_inputs_and_differs_for_any_other() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().join("base.nix");
        std::fs::write(&base, "{ }").unwrap();
        let paths = vec![base.clone(), PathBuf::from("/nix/store/abc-tree")];
        let k = key(&inputs("/nix/store/a-ch", "conf", &paths)).unwrap();
        assert_eq!(k, key(&inputs("/nix/store/a-ch", "conf", &paths)).unwrap());
        assert_eq!(k.as_str().len(), 64);
        assert_ne!(k, key(&inputs("/nix/store/b-ch", "conf", &paths)).unwrap());
        assert_ne!(k, key(&inputs("/nix/store/a-ch", "conf2", &paths)).unwrap());
        assert_ne!(k, key(&inputs("/nix/store/a-ch", "conf", &[])).unwrap());
        let args = vec!["--option".to_string()];
        assert_ne!(
            k,
            key(&KeyInputs {
                extra_args: &args,
                ..inputs("/nix/store/a-ch", "conf", &paths)
            })
            .unwrap()
        );
        let name: ContainerName = "web01".parse().unwrap();
        assert_ne!(
            k,
            key(&KeyInputs {
                container: Some(&name),
                ..inputs("/nix/store/a-ch", "conf", &paths)
            })
            .unwrap(),
            "not shared: a key of its own"
        );
        std::fs::write(&base, "{ x = 1; }").unwrap();
        assert_ne!(
            k,
            key(&inputs("/nix/store/a-ch", "conf", &paths)).unwrap(),
            "an allowed file's content is part of the key"
        );
    }

    #[test]
    fn an_allowed_directory_is_identified_by_its_whole_content() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("nix");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/a.nix"), "1").unwrap();
        let paths = vec![dir.clone()];
        let k = key(&inputs("e", "c", &paths)).unwrap();
        std::fs::write(dir.join("sub/a.nix"), "2").unwrap();
        let k2 = key(&inputs("e", "c", &paths)).unwrap();
        assert_ne!(k, k2, "a nested file changed");
        std::os::unix::fs::symlink("a.nix", dir.join("sub/b.nix")).unwrap();
        assert_ne!(k2, key(&inputs("e", "c", &paths)).unwrap(), "a new link");
        let missing = vec![d.path().join("gone")];
        assert!(key(&inputs("e", "c", &missing)).is_ok(), "a missing path");
    }

    #[test]
    fn a_linked_file_is_identified_by_the_content_it_points_to() {
        // As NixOS's /etc/devhost/base.nix -> /etc/static/devhost/base.nix.
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("static-base.nix");
        std::fs::write(&target, "{ a = 1; }").unwrap();
        let link = d.path().join("base.nix");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let paths = vec![link];
        let k = key(&inputs("e", "c", &paths)).unwrap();
        std::fs::write(&target, "{ a = 2; }").unwrap();
        assert_ne!(k, key(&inputs("e", "c", &paths)).unwrap());
        let looping = d.path().join("loop");
        std::fs::create_dir(&looping).unwrap();
        std::os::unix::fs::symlink(&looping, looping.join("again")).unwrap();
        assert!(
            key(&inputs("e", "c", &[looping])).is_err(),
            "a loop runs out of budget"
        );
        let uris = vec!["https://x.test/".to_string()];
        assert_ne!(
            key(&inputs("e", "c", &[])).unwrap(),
            key(&KeyInputs {
                allowed_uris: &uris,
                ..inputs("e", "c", &[])
            })
            .unwrap(),
            "what evaluation may fetch is part of the key"
        );
    }

    #[test]
    fn a_cached_system_is_found_by_key_while_in_the_store_and_young_enough() {
        let d = tempfile::tempdir().unwrap();
        let k = key(&inputs("/nix/store/a-ch", "conf", &[])).unwrap();
        let now = Utc::now();
        let sys = "/nix/store/abc-nixos-system-unnamed";
        let b = Built {
            key: k.to_string(),
            channel: "https://x.test/c.tar.xz".into(),
            entry: "file:///nix/store/a-ch".into(),
            system: sys.into(),
            built: now,
            by: "web01".into(),
        };
        remember(d.path(), &b).unwrap();
        let there = |p: &str| p == sys;
        assert_eq!(lookup(d.path(), &k, now, HOUR, there), Some(b.clone()));
        assert_eq!(
            lookup(d.path(), &k, now, HOUR, |_| false),
            None,
            "collected"
        );
        let later = now + chrono::Duration::seconds(3601);
        assert_eq!(lookup(d.path(), &k, later, HOUR, there), None, "too old");
        assert_eq!(
            lookup(d.path(), &k, now, std::time::Duration::ZERO, there),
            None,
            "reuse off"
        );
        let other = key(&inputs("/nix/store/b-ch", "conf", &[])).unwrap();
        assert_eq!(lookup(d.path(), &other, now, HOUR, there), None);
        assert!(remember(
            d.path(),
            &Built {
                key: "../x".into(),
                ..b
            }
        )
        .is_err());
    }

    #[test]
    fn leftovers_of_an_interrupted_build_are_cleared_and_entries_kept() {
        let d = tempfile::tempdir().unwrap();
        let roots = d.path().join("auto");
        let dir = d.path().join("systems");
        std::fs::create_dir_all(&dir).unwrap();
        let k = key(&inputs("e", "c", &[])).unwrap();
        let (nix, log) = work_paths(&dir, &k);
        let link = dir.join(format!("{k}-0.link"));
        std::fs::write(&nix, "{}").unwrap();
        std::fs::write(&log, "log").unwrap();
        link_system(&link, "/nix/store/abc-x", &roots).unwrap();
        std::fs::write(dir.join(format!("{k}.json")), "{}").unwrap();
        clear_work(&dir, &roots);
        assert!(link.symlink_metadata().is_err());
        assert!(auto_root(&roots, &link).symlink_metadata().is_err());
        assert!(nix.exists() && log.exists() && dir.join(format!("{k}.json")).exists());
    }

    #[test]
    fn entries_of_collected_or_old_systems_are_pruned_with_their_files() {
        let d = tempfile::tempdir().unwrap();
        let now = Utc::now();
        let mk = |entry: &str, system: &str, age: i64| {
            let k = key(&inputs(entry, "c", &[])).unwrap();
            let b = Built {
                key: k.to_string(),
                channel: "u".into(),
                entry: entry.into(),
                system: system.into(),
                built: now - chrono::Duration::seconds(age),
                by: "web01".into(),
            };
            remember(d.path(), &b).unwrap();
            let (nix, log) = work_paths(d.path(), &k);
            std::fs::write(nix, "{}").unwrap();
            std::fs::write(log, "").unwrap();
            k
        };
        let live = mk("a", "/nix/store/a-sys", 10);
        let gone = mk("b", "/nix/store/b-sys", 10);
        let old = mk("c", "/nix/store/c-sys", 7200);
        std::fs::write(d.path().join("notes.txt"), "mine").unwrap();
        let n = prune(d.path(), now, HOUR, |p| p != "/nix/store/b-sys");
        assert_eq!(n, 2);
        assert!(lookup(d.path(), &live, now, HOUR, |_| true).is_some());
        for k in [gone, old] {
            let (nix, log) = work_paths(d.path(), &k);
            assert!(!entry_path(d.path(), &k).exists() && !nix.exists() && !log.exists());
        }
        assert!(d.path().join("notes.txt").exists(), "not ours: kept");
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
    }
}
