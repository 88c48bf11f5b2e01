//! Persistent state on disk: one JSON record per container, written
//! atomically, plus per-container working files (generated configuration,
//! build and console logs), and the lock that keeps one agent per state dir.
//! Records that cannot be trusted are kept aside ([`quarantine`]); a reserve
//! of space lets stop and destroy save their phase on a full disk
//! ([`reserve`]).

pub mod quarantine;
pub mod reserve;

use crate::container::{ContainerName, Record};
use crate::sys::fs::{atomic_write, remove_tree_one_fs, FsError};
use nix::fcntl::{Flock, FlockArg};
pub use quarantine::Quarantined;
use std::fs::File;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("another devhost agent is already running with state dir {0}")]
    Locked(PathBuf),
    #[error("no quarantined record for {0}")]
    NotQuarantined(ContainerName),
    #[error("{path}: {why}; fix the file (or forget the container) and try again")]
    StillBad { path: PathBuf, why: String },
}

impl StateError {
    /// Whether the disk (or the quota) is full.
    pub fn is_full(&self) -> bool {
        match self {
            StateError::Fs(FsError::Io { source, .. }) | StateError::Io { source, .. } => {
                reserve::is_full(source)
            }
            _ => false,
        }
    }
}

/// What the state directory holds at start.
#[derive(Debug, Default)]
pub struct Loaded {
    pub records: Vec<Record>,
    /// Record files set aside, now or at an earlier start.
    pub quarantined: Vec<Quarantined>,
    /// What was found and done, for the log and `devhost info`.
    pub findings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Store {
    state_dir: PathBuf,
}

impl Store {
    pub fn new(state_dir: &Path) -> Store {
        Store {
            state_dir: state_dir.to_path_buf(),
        }
    }

    pub fn records_dir(&self) -> PathBuf {
        self.state_dir.join("records")
    }

    pub fn quarantine_dir(&self) -> PathBuf {
        self.state_dir.join("quarantine")
    }

    /// Where adopted or forgotten quarantined files are kept.
    fn resolved_dir(&self) -> PathBuf {
        self.quarantine_dir().join("resolved")
    }

    fn reserve_path(&self) -> PathBuf {
        self.state_dir.join("reserve")
    }

    fn record_path(&self, name: &ContainerName) -> PathBuf {
        self.records_dir().join(format!("{name}.json"))
    }

    /// Working files of one container (configuration.nix, logs).
    pub fn container_dir(&self, name: &ContainerName) -> PathBuf {
        self.state_dir.join("containers").join(name.as_str())
    }

    pub fn build_log(&self, name: &ContainerName) -> PathBuf {
        self.container_dir(name).join("build.log")
    }

    /// Every provisioning run's steps and output.
    pub fn provision_log(&self, name: &ContainerName) -> PathBuf {
        self.container_dir(name).join("provision.log")
    }

    pub fn console_log(&self, name: &ContainerName) -> PathBuf {
        self.container_dir(name).join("console.log")
    }

    pub fn ensure_dirs(&self) -> Result<(), StateError> {
        for d in [
            self.state_dir.clone(),
            self.records_dir(),
            self.state_dir.join("containers"),
        ] {
            std::fs::create_dir_all(&d).map_err(|source| StateError::Io {
                path: d.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// Hold this for the agent's life: a second agent on the same state
    /// would corrupt it.
    pub fn lock(&self) -> Result<Flock<File>, StateError> {
        let p = self.state_dir.join("agent.lock");
        let f = File::create(&p).map_err(|source| StateError::Io {
            path: p.clone(),
            source,
        })?;
        Flock::lock(f, FlockArg::LockExclusiveNonblock)
            .map_err(|_| StateError::Locked(self.state_dir.clone()))
    }

    /// Every record that can be trusted; every other record file moved to
    /// the quarantine (never deleted), with those quarantined before.
    pub fn load_all(&self, now_secs: i64) -> Loaded {
        let mut out = Loaded::default();
        let mut paths: Vec<PathBuf> = std::fs::read_dir(self.records_dir())
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        paths.sort();
        for p in paths {
            let fname = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if fname.starts_with('.') {
                // A temp file from a write interrupted by a crash.
                let _ = std::fs::remove_file(&p);
                continue;
            }
            let Some(stem) = fname.strip_suffix(".json") else {
                continue;
            };
            let read = std::fs::read(&p);
            let why = match &read {
                Ok(bytes) => match quarantine::verdict(stem, bytes) {
                    Ok(r) => {
                        out.records.push(r);
                        continue;
                    }
                    Err(why) => why,
                },
                Err(e) => format!("unreadable: {e}"),
            };
            let dir = self.quarantine_dir();
            let dest = quarantine::destination(&dir, stem, now_secs);
            match std::fs::create_dir_all(&dir).and_then(|()| std::fs::rename(&p, &dest)) {
                Ok(()) => out.findings.push(format!(
                    "{}: {why}; moved to {} — nothing of {stem} is touched and the name and address stay held until an admin runs `devhost adopt {stem}` or `devhost forget {stem}`",
                    p.display(),
                    dest.display()
                )),
                Err(e) => {
                    // Left where it is: still held below, as a quarantined file.
                    out.findings.push(format!(
                        "{}: {why}; moving it to {} failed ({e}): left in place",
                        p.display(),
                        dir.display()
                    ));
                    out.quarantined.push(Quarantined {
                        name: quarantine::name_of(&p),
                        index: read.as_deref().ok().and_then(quarantine::index_hint),
                        file: p.clone(),
                        why,
                    });
                }
            }
        }
        out.quarantined.extend(self.quarantined());
        out
    }

    /// The files in the quarantine, each with why it is there.
    pub fn quarantined(&self) -> Vec<Quarantined> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.quarantine_dir())
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|file| {
                let bytes = std::fs::read(&file);
                let name = quarantine::name_of(&file);
                let why = match (&bytes, &name) {
                    (Err(e), _) => format!("unreadable: {e}"),
                    (Ok(_), None) => "not named for a container".to_string(),
                    (Ok(b), Some(n)) => match quarantine::verdict(n.as_str(), b) {
                        Err(why) => why,
                        Ok(_) => "readable now; adopt it to take it back".to_string(),
                    },
                };
                Quarantined {
                    index: bytes.as_deref().ok().and_then(quarantine::index_hint),
                    name,
                    file,
                    why,
                }
            })
            .collect()
    }

    /// The record in `quarantine/NAME.json`, if it is one now (an admin may
    /// have repaired it).
    pub fn quarantined_record(&self, name: &ContainerName) -> Result<Record, StateError> {
        let path = self.quarantine_dir().join(format!("{name}.json"));
        let bytes = std::fs::read(&path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => StateError::NotQuarantined(name.clone()),
            _ => StateError::Io {
                path: path.clone(),
                source,
            },
        })?;
        quarantine::verdict(name.as_str(), &bytes).map_err(|why| StateError::StillBad { path, why })
    }

    /// Every quarantined file of `name` moved to `quarantine/resolved/`
    /// (kept for the record), `record` (adopted) saved as its record.
    pub fn resolve(
        &self,
        name: &ContainerName,
        record: Option<&Record>,
        now_secs: i64,
    ) -> Result<Vec<PathBuf>, StateError> {
        if let Some(r) = record {
            self.save(r)?;
        }
        let resolved = self.resolved_dir();
        let mut moved = Vec::new();
        for q in self.quarantined() {
            if q.name.as_ref() != Some(name) {
                continue;
            }
            std::fs::create_dir_all(&resolved).map_err(|source| StateError::Io {
                path: resolved.clone(),
                source,
            })?;
            let dest = quarantine::destination(&resolved, name.as_str(), now_secs);
            std::fs::rename(&q.file, &dest).map_err(|source| StateError::Io {
                path: q.file.clone(),
                source,
            })?;
            moved.push(dest);
        }
        Ok(moved)
    }

    /// Did the host boot since the last agent start? Compares the kernel's
    /// boot id with the one recorded (and records the current one). A
    /// missing record counts as a boot.
    pub fn host_booted_since_last_start(&self) -> bool {
        let current =
            std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
        let path = self.state_dir.join("boot-id");
        let last = std::fs::read_to_string(&path).ok();
        let _ = atomic_write(&path, current.as_bytes(), 0o644);
        last.as_deref().map(str::trim) != Some(current.trim())
    }

    pub fn save(&self, r: &Record) -> Result<(), StateError> {
        let mut json = serde_json::to_vec_pretty(r).expect("records serialize");
        json.push(b'\n');
        atomic_write(&self.record_path(&r.name), &json, 0o644)?;
        Ok(())
    }

    /// Save for an operation that frees space (stop, destroy): on a full
    /// disk, give up the reserve and try once more. True when the reserve
    /// was used.
    pub fn save_freeing(&self, r: &Record) -> Result<bool, StateError> {
        match self.save(r) {
            Err(e) if e.is_full() && reserve::release(&self.reserve_path()) => {
                self.save(r).map(|()| true)
            }
            other => other.map(|()| false),
        }
    }

    /// Make the reserve of space if it is missing (after start, and after
    /// an operation freed space). An error means the disk is still full.
    pub fn keep_reserve(&self) -> std::io::Result<()> {
        reserve::ensure(&self.reserve_path())
    }

    /// Remove the record and the container's working files.
    pub fn remove(&self, name: &ContainerName) -> Result<(), StateError> {
        match std::fs::remove_file(self.record_path(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(StateError::Io {
                    path: self.record_path(name),
                    source,
                })
            }
        }
        remove_tree_one_fs(&self.container_dir(name))?;
        Ok(())
    }
}
