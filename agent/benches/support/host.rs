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

/// A directory of Nix programs for the agent's `nix.nix_build`: `nix-build`
/// and `nix-instantiate` note each run in a log before they exec the real
/// ones, so a bench counts evaluations whatever the agent prints;
/// `nix-store` and `nix` are the real ones (the agent takes them from next
/// to `nix_build`).
pub struct NixCounter {
    dir: tempfile::TempDir,
}

fn which(program: &str) -> String {
    let out = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .unwrap();
    let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(!p.is_empty(), "{program} not found");
    p
}

impl NixCounter {
    pub fn new() -> NixCounter {
        use std::os::unix::fs::PermissionsExt;
        // Not under /tmp, like the test agents' directories.
        std::fs::create_dir_all("/var/lib/devhost-test").unwrap();
        let dir = tempfile::Builder::new()
            .prefix("bench-nix-")
            .tempdir_in("/var/lib/devhost-test")
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let log = dir.path().join("runs.log");
        std::fs::write(&log, "").unwrap();
        for p in ["nix-build", "nix-instantiate"] {
            let f = dir.path().join(p);
            std::fs::write(
                &f,
                format!(
                    "#!/bin/sh\necho \"{p} $$\" >> '{}'\nexec '{}' \"$@\"\n",
                    log.display(),
                    which(p)
                ),
            )
            .unwrap();
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        for p in ["nix-store", "nix"] {
            std::os::unix::fs::symlink(which(p), dir.path().join(p)).unwrap();
        }
        NixCounter { dir }
    }

    /// The `[nix]` key that makes an agent use these programs.
    pub fn nix_toml(&self) -> String {
        format!("nix_build = \"{}/nix-build\"\n", self.dir.path().display())
    }

    /// Evaluations (nix-build and nix-instantiate runs) so far.
    pub fn count(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("runs.log"))
            .unwrap_or_default()
            .lines()
            .count()
    }
}
