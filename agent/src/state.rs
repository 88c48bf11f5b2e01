//! Persistent state on disk: one JSON record per container, written
//! atomically, plus per-container working files (generated configuration,
//! build and console logs), and the lock that keeps one agent per state dir.

use crate::container::{ContainerName, Record};
use crate::sys::fs::{atomic_write, remove_tree_one_fs, FsError};
use nix::fcntl::{Flock, FlockArg};
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

    /// Every readable record, and a message for each file that is not one.
    pub fn load_all(&self) -> (Vec<Record>, Vec<String>) {
        let mut records = Vec::new();
        let mut problems = Vec::new();
        let Ok(rd) = std::fs::read_dir(self.records_dir()) else {
            return (records, problems);
        };
        let mut paths: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            let fname = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if fname.starts_with('.') {
                // A temp file from a write interrupted by a crash.
                let _ = std::fs::remove_file(&p);
                continue;
            }
            if !fname.ends_with(".json") {
                continue;
            }
            match std::fs::read(&p)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<Record>(&b).map_err(|e| e.to_string()))
            {
                Ok(r) if format!("{}.json", r.name) == fname => records.push(r),
                Ok(r) => problems.push(format!(
                    "{}: record is for {:?}; ignored",
                    p.display(),
                    r.name.as_str()
                )),
                Err(e) => problems.push(format!(
                    "{}: unreadable record ({e}); ignored, left in place",
                    p.display()
                )),
            }
        }
        (records, problems)
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
