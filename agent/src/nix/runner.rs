//! Runs a planned build: output lines go to the build log and to the caller's
//! progress as they come; the last lines are kept for the error message; a
//! build past its timeout (or whose caller went away) is killed, and with it
//! (the plan runs it in a PID namespace of its own) every builder it started.

use super::NixError;
use crate::cancel::{Cancel, Reason};
use crate::progress::Progress;
use async_trait::async_trait;
use std::collections::VecDeque;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

const TAIL_LINES: usize = 25;

/// Nix's global GC lock (single-user Nix and the daemon alike).
const GC_LOCK: &str = "/nix/var/nix/gc.lock";

/// A line saying a download failed (`unable to download 'URL': why`),
/// without Nix's `warning: `/`error: ` prefix: the real cause of a build
/// that then fails with "file 'nixpkgs/nixos' was not found".
pub fn fetch_failure(line: &str) -> Option<String> {
    let at = line.find("unable to download '")?;
    Some(line[at..].trim().to_string())
}

#[async_trait]
pub trait NixBuilder: Send + Sync {
    /// Run `program args…`; return the store path it printed.
    /// `started_by`: the container whose ensure started the build.
    #[allow(clippy::too_many_arguments)]
    async fn build(
        &self,
        program: &str,
        args: &[String],
        log_file: &Path,
        timeout: Duration,
        started_by: &crate::container::ContainerName,
        progress: &Progress,
        cancel: &Cancel,
    ) -> Result<String, NixError>;

    /// Is this store path (still) there?
    fn in_store(&self, path: &str) -> bool {
        Path::new(path).exists()
    }

    /// Make `link` point at the store path `system` and register it as an
    /// indirect GC root, as Nix registers a permanent root: holding Nix's GC
    /// lock shared (`/nix/var/nix/gc.lock`), which a garbage collection
    /// holds exclusively from reading the roots to deleting, so none can
    /// take the system meanwhile. False when it is not (any more) in the
    /// store.
    async fn add_root(&self, system: &str, link: &Path, gcroots_auto: &Path) -> bool;
}

pub struct NixBuild;

#[async_trait]
impl NixBuilder for NixBuild {
    async fn build(
        &self,
        program: &str,
        args: &[String],
        log_file: &Path,
        timeout: Duration,
        started_by: &crate::container::ContainerName,
        progress: &Progress,
        cancel: &Cancel,
    ) -> Result<String, NixError> {
        let spawn_err = |source| NixError::Spawn {
            program: program.to_string(),
            source,
        };
        let mut log = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_file)
            .await
            .map_err(spawn_err)?;
        let _ = log
            .write_all(
                format!(
                    "devhost: started for {started_by}\n$ {program} {}\n",
                    args.join(" ")
                )
                .as_bytes(),
            )
            .await;
        let mut cmd = Command::new(program);
        // The search path is exactly what the plan gives (`nix-path` is
        // empty there too); nothing of the agent's own NIX_PATH.
        cmd.args(args)
            .env("NIX_PATH", "")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // Unlike containers, a build must not outlive the agent: after a
        // crash, reconcile rolls the creation back, and an orphaned build
        // would recreate its out-link behind it. (`unshare --kill-child`
        // passes the kill on to nix-build, and its PID namespace's end to
        // every builder.)
        // SAFETY: prctl is async-signal-safe and touches no shared state.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)
            });
        }
        let mut child = cmd.spawn().map_err(|source| NixError::Spawn {
            program: program.to_string(),
            source,
        })?;
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let out_task = tokio::spawn(async move {
            let mut s = String::new();
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                s.push_str(&l);
                s.push('\n');
            }
            s
        });
        let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL_LINES);
        let mut cause = None;
        let mut lines = BufReader::new(stderr).lines();
        let run = async {
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = log.write_all(line.as_bytes()).await;
                let _ = log.write_all(b"\n").await;
                progress.log(line.clone());
                if cause.is_none() {
                    cause = fetch_failure(&line);
                }
                if tail.len() == TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
            child.wait().await
        };
        let stopped = async {
            tokio::select! {
                why = cancel.cancelled() => why,
                () = progress.gone() => Reason::CallerGone,
            }
        };
        let outcome = tokio::select! {
            r = tokio::time::timeout(timeout, run) => r.map_err(|_| NixError::Timeout(timeout.as_secs())),
            why = stopped => Err(NixError::Stopped(why)),
        };
        let status = match outcome {
            Ok(status) => status.map_err(spawn_err)?,
            Err(e) => {
                // SIGKILL to `unshare`; `--kill-child` and the end of the
                // PID namespace take nix-build and its builders with it.
                let _ = child.kill().await;
                let _ = log.write_all(format!("devhost: {e}\n").as_bytes()).await;
                return Err(e);
            }
        };
        let stdout = out_task.await.unwrap_or_default();
        let _ = log.flush().await;
        if !status.success() {
            let tail: Vec<String> = tail.into_iter().collect();
            return Err(NixError::BuildFailed {
                status: status.to_string(),
                cause,
                tail: tail.join("\n"),
            });
        }
        stdout
            .lines()
            .rev()
            .find(|l| l.starts_with("/nix/store/"))
            .map(|l| l.trim().to_string())
            .ok_or(NixError::NoOutput(stdout))
    }

    async fn add_root(&self, system: &str, link: &Path, gcroots_auto: &Path) -> bool {
        let (system, link, roots) = (
            system.to_string(),
            link.to_path_buf(),
            gcroots_auto.to_path_buf(),
        );
        tokio::task::spawn_blocking(move || {
            use nix::fcntl::{Flock, FlockArg};
            // Waits while a collection runs; none starts until released.
            let _lock = std::fs::File::open(GC_LOCK)
                .ok()
                .and_then(|f| Flock::lock(f, FlockArg::LockShared).ok());
            Path::new(&system).exists()
                && super::systems::link_system(&link, &system, &roots).is_ok()
        })
        .await
        .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_download_is_the_cause() {
        assert_eq!(
            fetch_failure("warning: unable to download 'http://nohost.invalid/x.tar.xz': Couldn't resolve host name (6)").as_deref(),
            Some("unable to download 'http://nohost.invalid/x.tar.xz': Couldn't resolve host name (6)")
        );
        assert_eq!(
            fetch_failure("\u{1b}[35;1mwarning:\u{1b}[0m unable to download 'https://x.test/c': HTTP error 404").as_deref(),
            Some("unable to download 'https://x.test/c': HTTP error 404")
        );
        assert_eq!(
            fetch_failure("error: file 'nixpkgs/nixos' was not found"),
            None
        );
    }
}
