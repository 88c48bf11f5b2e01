//! Nix programs that count their runs: a test or bench points an agent's
//! `nix.nix_build` at them to count evaluations, not time them.

/// A directory of Nix programs for the agent's `nix.nix_build`: `nix-build`
/// and `nix-instantiate` note each run in a log before they exec the real
/// ones, so a test or bench counts evaluations whatever the agent prints;
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
