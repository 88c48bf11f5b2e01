//! The one store of certificates: what the proxy serves (in rustls form),
//! what is under way per container, and their files on disk. The TLS
//! resolver and `devhost status` read it; the records' update path (the
//! local CA, at once) and the certificate worker (ACME) write it. Neither
//! side knows the other: both hold this.

use super::local_ca::LocalCa;
use super::manager::Why;
use super::{CertError, CertFiles, CertInfo, Issued, Loaded, Meta, Work};
use crate::shared::Shared;
use rustls::sign::CertifiedKey;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

#[derive(Default)]
struct Held {
    served: HashMap<String, Loaded>,
    /// Issuance under way, failed or held back.
    work: BTreeMap<String, Work>,
    /// Containers whose certificates stay although nothing wants them
    /// (their records are quarantined): never dropped.
    kept: BTreeSet<String>,
}

pub struct Certificates {
    held: Shared<Held>,
    files: CertFiles,
    ca: LocalCa,
    local_ca_days: u32,
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificates")
            .field("dir", &self.files.dir)
            .finish_non_exhaustive()
    }
}

impl Certificates {
    /// Open the store in `dir`: the local CA (made on first use, named
    /// after `label`) and every stored certificate; those that cannot be
    /// served are reported, not served.
    pub fn open(
        dir: &Path,
        label: &str,
        local_ca_days: u32,
    ) -> Result<(Certificates, Vec<String>), CertError> {
        let files = CertFiles {
            dir: dir.to_path_buf(),
        };
        let ca = LocalCa::load_or_create(&dir.join("local-ca"), label)?;
        for done in files.recover() {
            tracing::warn!("{done}");
        }
        let (loaded, problems) = files.load_all();
        let held = Held {
            served: loaded.into_iter().collect(),
            work: BTreeMap::new(),
            kept: BTreeSet::new(),
        };
        Ok((
            Certificates {
                held: Shared::new(held),
                files,
                ca,
                local_ca_days,
            },
            problems,
        ))
    }

    /// The local CA's root certificate (what clients trust).
    pub fn root_path(&self) -> &Path {
        &self.ca.root_path
    }

    /// The key a handshake for `container`'s names is served with.
    pub fn key_for(&self, container: &str) -> Option<Arc<CertifiedKey>> {
        self.held
            .read()
            .served
            .get(container)
            .map(|l| l.key.clone())
    }

    /// Every served certificate's names and validity.
    pub fn held(&self) -> BTreeMap<String, Meta> {
        self.held
            .read()
            .served
            .iter()
            .map(|(c, l)| (c.clone(), l.meta.clone()))
            .collect()
    }

    /// What a user sees of `container`'s certificate; `None` when nothing
    /// is held or under way and it is not `wanted`.
    pub fn info(&self, container: &str, wanted: bool) -> Option<CertInfo> {
        let h = self.held.read();
        let held = h.served.get(container).map(|l| &l.meta);
        let work = h.work.get(container);
        if held.is_none() && work.is_none() && !wanted {
            return None;
        }
        Some(CertInfo::new(held, work))
    }

    /// Issue a certificate from the local CA, keep it and serve it.
    pub fn issue_local(
        &self,
        container: &str,
        names: &[String],
        why: &Why,
    ) -> Result<(), CertError> {
        let issued = self.ca.issue(names, self.local_ca_days)?;
        self.install(container, &issued, "local-ca", names)?;
        tracing::info!(
            "certificate for {container} ({}) issued by the local CA ({why:?})",
            names.join(", ")
        );
        Ok(())
    }

    /// Keep a fresh certificate (on disk first) and serve it.
    pub fn install(
        &self,
        container: &str,
        issued: &Issued,
        issuer: &str,
        names: &[String],
    ) -> Result<(), CertError> {
        let loaded = super::load(container, issued, issuer, names)?;
        self.files.save(container, issued, &loaded.meta)?;
        self.held
            .write()
            .served
            .insert(container.to_string(), loaded);
        Ok(())
    }

    /// Keep these containers' certificates even when nothing wants them.
    pub fn keep(&self, containers: BTreeSet<String>) {
        self.held.write().kept = containers;
    }

    /// Whether `container`'s certificate is kept although not wanted.
    pub fn is_kept(&self, container: &str) -> bool {
        self.held.read().kept.contains(container)
    }

    /// No longer keep `container`'s certificate; delete it.
    pub fn release(&self, container: &str) -> Result<(), CertError> {
        self.held.write().kept.remove(container);
        self.remove(container)
    }

    /// Stop serving a container's certificate and delete it.
    pub fn remove(&self, container: &str) -> Result<(), CertError> {
        {
            let mut h = self.held.write();
            h.served.remove(container);
            h.work.remove(container);
        }
        self.files.remove(container)
    }

    /// Record what is under way for `container` (`None`: nothing).
    pub fn set_work(&self, container: &str, work: Option<Work>) {
        let mut h = self.held.write();
        match work {
            Some(x) => h.work.insert(container.to_string(), x),
            None => h.work.remove(container),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::CertState;

    #[test]
    fn issued_certificates_are_served_kept_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (c, problems) = Certificates::open(dir.path(), "test", 30).unwrap();
        assert!(problems.is_empty());
        let names = vec!["c1.dev.test".to_string(), "*.c1.dev.test".to_string()];
        assert!(c.info("c1", false).is_none());
        assert_eq!(c.info("c1", true).unwrap().state, CertState::None);
        c.issue_local("c1", &names, &Why::New).unwrap();
        assert!(c.key_for("c1").is_some());
        assert_eq!(c.held()["c1"].names, names);
        assert_eq!(c.info("c1", false).unwrap().state, CertState::Valid);
        // A second store on the same directory serves what was kept.
        let (again, _) = Certificates::open(dir.path(), "test", 30).unwrap();
        assert!(again.key_for("c1").is_some());
        c.set_work("c1", Some(Work::Ordering { since: 0 }));
        assert_eq!(c.info("c1", false).unwrap().state, CertState::Ordering);
        c.remove("c1").unwrap();
        assert!(c.key_for("c1").is_none() && c.info("c1", false).is_none());
        let (gone, _) = Certificates::open(dir.path(), "test", 30).unwrap();
        assert!(gone.key_for("c1").is_none());
    }
}
