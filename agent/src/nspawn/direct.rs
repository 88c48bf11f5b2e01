//! The direct backend: the agent runs `systemd-nspawn --register=no
//! --keep-unit` itself, in its own session with output to a log file, so the
//! container keeps running when the agent exits or crashes. A pid file (pid +
//! kernel start time) and a /proc scan find it again after a restart.

use super::backend::{Backend, Running, StartRequest};
use super::ready::{bind_notify, tail_lines, wait_ready, ReadyCheck};
use super::NspawnError;
use crate::container::{ContainerName, Limits};
use crate::progress::Progress;
use crate::sys::proc::{self, ProcessId};
use async_trait::async_trait;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::Command;

pub struct DirectBackend {
    containers_dir: PathBuf,
    run_dir: PathBuf,
    ready: ReadyCheck,
    ready_timeout: Duration,
}

impl DirectBackend {
    pub fn new(
        containers_dir: PathBuf,
        run_dir: PathBuf,
        ready: ReadyCheck,
        ready_timeout: Duration,
    ) -> Self {
        super::ready::clear_stale(&run_dir.join("notify"));
        DirectBackend {
            containers_dir,
            run_dir,
            ready,
            ready_timeout,
        }
    }

    fn pid_file(&self, name: &ContainerName) -> PathBuf {
        self.run_dir.join("pids").join(name.as_str())
    }

    fn notify_path(&self, name: &ContainerName) -> PathBuf {
        self.run_dir.join("notify").join(name.as_str())
    }

    /// The container's own cgroups (see [`super::cgroup`]).
    fn cgroups(&self, name: &ContainerName) -> Vec<PathBuf> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        super::cgroup::container_cgroups(&mountinfo, &own, name.as_str())
    }

    fn remove_cgroups(&self, name: &ContainerName) {
        for d in self.cgroups(name) {
            super::cgroup::remove(&d);
        }
    }

    /// Is `pid` the main systemd-nspawn of container `name` of this agent?
    /// Its command line says so, and — since any user can start a process
    /// with such a command line — it runs the nspawn program as root.
    fn is_ours(&self, pid: u32, name: &str) -> bool {
        let argv = proc::cmdline(pid);
        let root = self.containers_dir.join(name);
        proc::runs_as_root(pid)
            && proc::exe_name(pid).is_some_and(|n| n == "systemd-nspawn")
            && matches_nspawn(&argv, name, &root)
            && !proc::ppid(pid)
                .map(|pp| matches_nspawn(&proc::cmdline(pp), name, &root))
                .unwrap_or(false)
    }

    fn scan(&self) -> Vec<Running> {
        let mut out = Vec::new();
        for pid in proc::all_pids() {
            let argv = proc::cmdline(pid);
            let Some(name) = nspawn_machine(&argv) else {
                continue;
            };
            let Ok(name) = name.parse::<ContainerName>() else {
                continue;
            };
            if self.is_ours(pid, name.as_str()) {
                out.push(Running { name, pid });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    fn write_pid_file(&self, name: &ContainerName, id: ProcessId) -> std::io::Result<()> {
        let p = self.pid_file(name);
        crate::sys::fs::atomic_write(
            &p,
            format!("{} {}\n", id.pid, id.start_time).as_bytes(),
            0o644,
        )
        .map_err(std::io::Error::other)
    }

    fn read_pid_file(&self, name: &ContainerName) -> Option<ProcessId> {
        let s = std::fs::read_to_string(self.pid_file(name)).ok()?;
        let mut it = s.split_whitespace();
        let pid = it.next()?.parse().ok()?;
        let start_time = it.next()?.parse().ok()?;
        Some(ProcessId { pid, start_time })
    }
}

/// The `-M` value of a systemd-nspawn argv.
fn nspawn_machine(argv: &[String]) -> Option<&str> {
    let prog = argv.first()?;
    if !(prog == "systemd-nspawn" || prog.ends_with("/systemd-nspawn")) {
        return None;
    }
    argv.iter()
        .position(|a| a == "-M")
        .and_then(|i| argv.get(i + 1))
        .map(|s| s.as_str())
}

fn matches_nspawn(argv: &[String], name: &str, root: &Path) -> bool {
    nspawn_machine(argv) == Some(name)
        && argv
            .iter()
            .position(|a| a == "-D")
            .and_then(|i| argv.get(i + 1))
            .map(|d| Path::new(d) == root)
            .unwrap_or(false)
}

fn io_err<'a>(
    name: &'a ContainerName,
    what: &'static str,
) -> impl FnOnce(std::io::Error) -> NspawnError + 'a {
    move |source| NspawnError::Io {
        name: name.to_string(),
        what,
        source,
    }
}

#[async_trait]
impl Backend for DirectBackend {
    fn kind(&self) -> &'static str {
        "direct"
    }

    async fn start(&self, req: &StartRequest, progress: &Progress) -> Result<Running, NspawnError> {
        let name = &req.name;
        for d in ["pids", "notify"] {
            std::fs::create_dir_all(self.run_dir.join(d))
                .map_err(io_err(name, "creating run dir"))?;
        }
        let notify_path = self.notify_path(name);
        let notify = match self.ready {
            ReadyCheck::Notify => {
                Some(bind_notify(&notify_path).map_err(io_err(name, "binding notify socket"))?)
            }
            _ => None,
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&req.console_log)
            .map_err(io_err(name, "opening console log"))?;
        let log2 = log
            .try_clone()
            .map_err(io_err(name, "opening console log"))?;
        let mut cmd = Command::new(&req.argv[0]);
        cmd.args(&req.argv[1..])
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .kill_on_drop(false);
        if notify.is_some() {
            cmd.env("NOTIFY_SOCKET", &notify_path);
        } else {
            cmd.env_remove("NOTIFY_SOCKET");
        }
        // nspawn runs in the container's network namespace (opened here,
        // joined in the child; close-on-exec), and in cgroups of its own.
        let netns = std::fs::File::open(&req.netns_path)
            .map_err(io_err(name, "opening the network namespace"))?;
        self.remove_cgroups(name);
        let mut procs = Vec::new();
        for d in self.cgroups(name) {
            std::fs::create_dir_all(&d).map_err(io_err(name, "creating its cgroup"))?;
            procs.push(
                std::ffi::CString::new(
                    d.join("cgroup.procs").into_os_string().into_encoded_bytes(),
                )
                .map_err(|e| io_err(name, "naming its cgroup")(std::io::Error::other(e)))?,
            );
        }
        // Own session: no signal aimed at the agent's process group or
        // terminal reaches the container, and it outlives the agent.
        // SAFETY: setsid, setns, open and write are async-signal-safe
        // system calls on an fd and strings made before the fork.
        unsafe {
            cmd.pre_exec(move || {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                crate::sys::fs::cloexec_from(3)?;
                for p in &procs {
                    crate::sys::fs::write_pid_zero(p)?;
                }
                nix::sched::setns(&netns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(std::io::Error::from)?;
                Ok(())
            });
        }
        let started = Instant::now();
        let mut child = cmd.spawn().map_err(|source| NspawnError::Spawn {
            name: name.to_string(),
            source,
        })?;
        let pid = child.id().expect("just spawned");
        if let Some(id) = ProcessId::of(pid) {
            self.write_pid_file(name, id)
                .map_err(io_err(name, "writing pid file"))?;
        }
        progress.log(format!(
            "systemd-nspawn started (pid {pid}); waiting for {}",
            self.ready.describe()
        ));
        let outcome = tokio::select! {
            _ = wait_ready(self.ready, notify.as_ref().map(|n| &n.sock), req.address) => Ok(()),
            status = child.wait() => Err(status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string())),
            _ = tokio::time::sleep(self.ready_timeout) => Err(String::new()),
        };
        drop(notify);
        match outcome {
            Ok(()) => {
                progress.log(format!(
                    "{name} ready after {} ms",
                    started.elapsed().as_millis()
                ));
                // Dropping the handle lets tokio reap the process whenever it exits.
                drop(child);
                Ok(Running {
                    name: name.clone(),
                    pid,
                })
            }
            Err(status) if !status.is_empty() => {
                let _ = std::fs::remove_file(self.pid_file(name));
                Err(NspawnError::ExitedDuringBoot {
                    name: name.to_string(),
                    status,
                    tail: tail_lines(&req.console_log, 20),
                })
            }
            Err(_) => {
                let _ = self.stop(name, Duration::from_secs(5), progress).await;
                Err(NspawnError::ReadyTimeout {
                    name: name.to_string(),
                    secs: self.ready_timeout.as_secs(),
                    waiting_for: self.ready.describe(),
                    tail: tail_lines(&req.console_log, 20),
                })
            }
        }
    }

    async fn find(&self, name: &ContainerName) -> Option<Running> {
        if let Some(id) = self.read_pid_file(name) {
            if id.is_alive() && self.is_ours(id.pid, name.as_str()) {
                return Some(Running {
                    name: name.clone(),
                    pid: id.pid,
                });
            }
        }
        let found = self.scan().into_iter().find(|r| &r.name == name)?;
        if let Some(id) = ProcessId::of(found.pid) {
            let _ = self.write_pid_file(name, id);
        }
        Some(found)
    }

    async fn list(&self) -> Vec<Running> {
        self.scan()
    }

    async fn set_limits(
        &self,
        _name: &ContainerName,
        _limits: &Limits,
    ) -> Result<bool, NspawnError> {
        Ok(false)
    }

    async fn leader(&self, name: &ContainerName) -> Option<u32> {
        let run = self.find(name).await?;
        proc::children(run.pid).into_iter().next()
    }

    async fn console_tail(
        &self,
        _name: &ContainerName,
        console_log: &Path,
        lines: usize,
    ) -> String {
        tail_lines(console_log, lines)
    }

    async fn stop(
        &self,
        name: &ContainerName,
        timeout: Duration,
        progress: &Progress,
    ) -> Result<(), NspawnError> {
        let Some(run) = self.find(name).await else {
            let _ = std::fs::remove_file(self.pid_file(name));
            self.remove_cgroups(name);
            return Ok(());
        };
        let Some(id) = ProcessId::of(run.pid) else {
            self.remove_cgroups(name);
            return Ok(());
        };
        // SIGTERM makes nspawn send its --kill-signal (SIGRTMIN+3, poweroff) to the init.
        progress.log(format!(
            "stopping {name}: poweroff (timeout {} s)",
            timeout.as_secs()
        ));
        let _ = kill(Pid::from_raw(id.pid as i32), Signal::SIGTERM);
        if !wait_gone(id, timeout).await {
            progress.log(format!(
                "{name} did not power off within {} s; killing it",
                timeout.as_secs()
            ));
            for child in proc::children(id.pid) {
                let _ = kill(Pid::from_raw(child as i32), Signal::SIGKILL);
            }
            let _ = kill(Pid::from_raw(id.pid as i32), Signal::SIGKILL);
            if !wait_gone(id, Duration::from_secs(10)).await {
                return Err(NspawnError::Unkillable {
                    name: name.to_string(),
                });
            }
        }
        let _ = std::fs::remove_file(self.pid_file(name));
        self.remove_cgroups(name);
        Ok(())
    }
}

async fn wait_gone(id: ProcessId, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while id.is_alive() {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognizes_its_nspawn_argv() {
        let argv: Vec<String> = [
            "/usr/bin/systemd-nspawn",
            "--keep-unit",
            "-M",
            "web01",
            "-D",
            "/var/lib/c/web01",
            "/nix/store/x/init",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(nspawn_machine(&argv), Some("web01"));
        assert!(matches_nspawn(
            &argv,
            "web01",
            Path::new("/var/lib/c/web01")
        ));
        assert!(!matches_nspawn(&argv, "web01", Path::new("/other/web01")));
        assert!(!matches_nspawn(
            &argv,
            "web02",
            Path::new("/var/lib/c/web01")
        ));
        let other = vec!["bash".to_string(), "-M".into(), "web01".into()];
        assert_eq!(nspawn_machine(&other), None);
    }
}
