//! Host settings a bench changes for its run and always puts back, and
//! counting the agent's Nix evaluations.

use std::path::{Path, PathBuf};

/// Where a changed sysctl's old value is kept while a bench runs, so that a
/// run killed outright (no unwinding) is undone by the next one.
const SAVED: &str = "/run/devhost-bench-sysctl";

/// A sysctl set for a bench, put back when dropped (also when the bench
/// panics); a value left by a bench that was killed is put back first.
pub struct Sysctl {
    file: PathBuf,
    /// The file keeping the value to put back if this run is killed; `None`
    /// when an outer guard of this run keeps it.
    saved: Option<PathBuf>,
    old: String,
}

fn proc_file(key: &str) -> PathBuf {
    Path::new("/proc/sys").join(key.replace('.', "/"))
}

impl Sysctl {
    /// Put back what an earlier bench process that is gone left changed.
    pub fn recover() {
        for e in std::fs::read_dir(SAVED).into_iter().flatten().flatten() {
            let Ok(t) = std::fs::read_to_string(e.path()) else {
                continue;
            };
            let mut it = t.splitn(2, '\n');
            let (pid, old) = (it.next().unwrap_or(""), it.next().unwrap_or(""));
            if !pid.is_empty() && Path::new("/proc").join(pid).exists() {
                continue; // still running
            }
            let key = e.file_name().to_string_lossy().into_owned();
            if std::fs::write(proc_file(&key), old).is_ok() {
                eprintln!("put {key} back to {} (left by a killed bench)", old.trim());
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    /// Set `key` (`fs.inotify.max_user_instances`) to `value` until drop.
    pub fn set(key: &str, value: &str) -> Sysctl {
        Sysctl::recover();
        let file = proc_file(key);
        let old = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        std::fs::create_dir_all(SAVED).unwrap();
        let saved = Path::new(SAVED).join(key);
        // Nested guards: the outermost keeps what the host had.
        let saved = (!saved.exists()).then(|| {
            std::fs::write(&saved, format!("{}\n{old}", std::process::id())).unwrap();
            saved
        });
        let guard = Sysctl { file, saved, old };
        std::fs::write(&guard.file, value)
            .unwrap_or_else(|e| panic!("setting {key} = {value}: {e}"));
        guard
    }

    /// The value it had before.
    pub fn old(&self) -> &str {
        self.old.trim()
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        match std::fs::write(&self.file, &self.old) {
            Ok(()) => {
                if let Some(s) = &self.saved {
                    let _ = std::fs::remove_file(s);
                }
            }
            Err(e) => eprintln!(
                "COULD NOT PUT BACK {} = {}: {e}",
                self.file.display(),
                self.old.trim()
            ),
        }
    }
}
