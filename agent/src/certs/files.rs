//! The certificates on disk, below the state dir: `live/NAME/` holds a
//! container's key, chain and meta. A new certificate is written beside it
//! and swapped in, so a crash never leaves half of one (nor loses the one
//! that was served).

use super::{io, load, CertError, Issued, Loaded, Meta};
use crate::sys::fs::atomic_write;
use std::path::{Path, PathBuf};

/// The certificates on disk, below the state dir.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub dir: PathBuf,
}

impl CertFiles {
    fn live(&self, container: &str) -> PathBuf {
        self.dir.join("live").join(container)
    }

    /// `live/.NAME.new` and `live/.NAME.old`: a certificate being
    /// written, and the one it replaces while they are swapped.
    fn staged(&self, container: &str, what: &str) -> PathBuf {
        self.dir.join("live").join(format!(".{container}.{what}"))
    }

    /// Write all three files into a directory of their own, then swap it
    /// for the old one: at any moment `live/NAME` is a whole certificate
    /// (the old or the new), or after a crash in the swap [`Self::recover`]
    /// makes it one.
    pub fn save(&self, container: &str, issued: &Issued, meta: &Meta) -> Result<(), CertError> {
        let live = self.live(container);
        let new = self.staged(container, "new");
        let old = self.staged(container, "old");
        let _ = std::fs::remove_dir_all(&new);
        std::fs::create_dir_all(&new).map_err(io(new.display()))?;
        let write = |file: &str, body: &[u8], mode| {
            atomic_write(&new.join(file), body, mode).map_err(|e| CertError::Io {
                what: new.join(file).display().to_string(),
                source: e.into(),
            })
        };
        write("key.pem", issued.key_pem.as_bytes(), 0o600)?;
        write("cert.pem", issued.chain_pem.as_bytes(), 0o644)?;
        write(
            "meta.json",
            &serde_json::to_vec_pretty(meta).expect("serializes"),
            0o644,
        )?;
        let _ = std::fs::remove_dir_all(&old);
        match std::fs::rename(&live, &old) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(live.display())(e)),
        }
        std::fs::rename(&new, &live).map_err(io(live.display()))?;
        if let Ok(d) = std::fs::File::open(self.dir.join("live")) {
            let _ = d.sync_all();
        }
        let _ = std::fs::remove_dir_all(&old);
        Ok(())
    }

    /// Finish or undo a swap a crash interrupted: a whole new certificate
    /// whose old one was moved aside goes live; an old one whose new one
    /// never arrived goes back; a half-written new one is dropped. What it
    /// did, for the log.
    pub fn recover(&self) -> Vec<String> {
        let mut done = Vec::new();
        let live_dir = self.dir.join("live");
        let staged: Vec<String> = std::fs::read_dir(&live_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                let c = n.strip_prefix('.')?;
                let c = c.strip_suffix(".new").or_else(|| c.strip_suffix(".old"))?;
                Some(c.to_string())
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        for c in staged {
            let (live, new, old) = (
                self.live(&c),
                self.staged(&c, "new"),
                self.staged(&c, "old"),
            );
            let whole = |d: &Path| {
                ["key.pem", "cert.pem", "meta.json"]
                    .iter()
                    .all(|f| d.join(f).exists())
            };
            if !live.exists() && old.exists() {
                // The old one was moved aside: the new one goes live if it
                // is whole, else the old one comes back.
                let (from, what) = if whole(&new) {
                    (&new, "an interrupted swap finished")
                } else {
                    (&old, "an interrupted swap undone; the previous one kept")
                };
                if std::fs::rename(from, &live).is_ok() {
                    done.push(format!("certificate for {c}: {what}"));
                }
            }
            let _ = std::fs::remove_dir_all(&new);
            let _ = std::fs::remove_dir_all(&old);
        }
        done
    }

    /// Every stored certificate (unreadable ones are reported, not served).
    pub fn load_all(&self) -> (Vec<(String, Loaded)>, Vec<String>) {
        let mut ok = Vec::new();
        let mut problems = Vec::new();
        let Ok(rd) = std::fs::read_dir(self.dir.join("live")) else {
            return (ok, problems);
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue; // staged (see `recover`)
            }
            match self.load_one(&name, &e.path()) {
                Ok(l) => ok.push((name, l)),
                Err(err) => problems.push(err.to_string()),
            }
        }
        ok.sort_by(|a, b| a.0.cmp(&b.0));
        (ok, problems)
    }

    fn load_one(&self, name: &str, d: &Path) -> Result<Loaded, CertError> {
        let read = |f: &str| std::fs::read_to_string(d.join(f)).map_err(io(d.join(f).display()));
        let meta: Meta =
            serde_json::from_str(&read("meta.json")?).map_err(|e| CertError::Invalid {
                container: name.to_string(),
                why: format!("meta.json: {e}"),
            })?;
        let issued = Issued {
            chain_pem: read("cert.pem")?,
            key_pem: read("key.pem")?,
        };
        load(name, &issued, &meta.issuer, &meta.names)
    }

    pub fn remove(&self, container: &str) -> Result<(), CertError> {
        let d = self.live(container);
        match std::fs::remove_dir_all(&d) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(d.display())(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issued(dir: &Path, names: &[String]) -> (Issued, Meta) {
        let ca = super::super::local_ca::LocalCa::load_or_create(&dir.join("ca"), "t").unwrap();
        let issued = ca.issue(names, 30).unwrap();
        let meta = load("web01", &issued, "local-ca", names).unwrap().meta;
        (issued, meta)
    }

    #[test]
    fn a_crash_at_any_point_of_a_swap_leaves_a_whole_certificate() {
        let names = vec!["web01.dev.test".to_string()];
        // The states a crash can leave, and what must be live afterwards.
        for (state, expect) in [
            ("new half-written", "old"),
            ("new whole, old still live", "old"),
            ("old moved aside, new whole", "new"),
            ("old moved aside, no new", "old"),
        ] {
            let d = tempfile::tempdir().unwrap();
            let files = CertFiles {
                dir: d.path().join("certs"),
            };
            let (a, ma) = issued(d.path(), &names);
            files.save("web01", &a, &ma).unwrap();
            let (b, mb) = issued(d.path(), &names);
            let live = files.live("web01");
            let new = files.staged("web01", "new");
            let old = files.staged("web01", "old");
            std::fs::create_dir_all(&new).unwrap();
            std::fs::write(new.join("key.pem"), &b.key_pem).unwrap();
            if state != "new half-written" {
                std::fs::write(new.join("cert.pem"), &b.chain_pem).unwrap();
                std::fs::write(new.join("meta.json"), serde_json::to_vec(&mb).unwrap()).unwrap();
            }
            if state.starts_with("old moved aside") {
                std::fs::rename(&live, &old).unwrap();
            }
            if state == "old moved aside, no new" {
                std::fs::remove_dir_all(&new).unwrap();
            }
            files.recover();
            let (loaded, problems) = files.load_all();
            assert!(problems.is_empty(), "{state}: {problems:?}");
            let want = if expect == "new" { &b } else { &a };
            assert_eq!(loaded.len(), 1, "{state}");
            assert_eq!(
                std::fs::read_to_string(live.join("cert.pem")).unwrap(),
                want.chain_pem,
                "{state}"
            );
            assert!(
                !new.exists() && !old.exists(),
                "{state}: nothing staged left"
            );
        }
    }

    #[test]
    fn a_saved_certificate_replaces_the_old_whole() {
        let d = tempfile::tempdir().unwrap();
        let names = vec!["web01.dev.test".to_string()];
        let files = CertFiles {
            dir: d.path().join("certs"),
        };
        let (a, ma) = issued(d.path(), &names);
        files.save("web01", &a, &ma).unwrap();
        let (b, mb) = issued(d.path(), &names);
        files.save("web01", &b, &mb).unwrap();
        let (loaded, problems) = files.load_all();
        assert!(problems.is_empty());
        assert_eq!(loaded.len(), 1);
        assert_eq!(
            std::fs::read_to_string(files.live("web01").join("key.pem")).unwrap(),
            b.key_pem
        );
        let entries: Vec<_> = std::fs::read_dir(d.path().join("certs/live"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(entries, vec![std::ffi::OsString::from("web01")]);
    }
}
