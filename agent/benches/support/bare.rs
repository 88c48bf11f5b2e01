//! A bare `systemd-nspawn` boot of a system the agent built, to READY=1:
//! the reference for ensure times. The same flags as devhost's containers
//! where they matter for a boot (user namespace, private network, the store
//! bound read-only, PID 1 the system's init), none of the agent's work.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One bare container, started; stopped and its root removed on drop.
pub struct Bare {
    child: Option<Child>,
    root: PathBuf,
    sock: UnixDatagram,
    sock_path: PathBuf,
    started: Instant,
}

impl Bare {
    /// Start `SYSTEM/init` in a fresh root at `root` (removed first), with
    /// a user namespace (as devhost's containers) or without.
    pub fn start(system: &str, root: &Path, name: &str, userns: bool) -> Bare {
        let _ = std::fs::remove_dir_all(root);
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("usr")).unwrap();
        std::fs::write(root.join("etc/os-release"), "").unwrap();
        let sock_path = root.with_extension("notify");
        let _ = std::fs::remove_file(&sock_path);
        let sock = UnixDatagram::bind(&sock_path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let started = Instant::now();
        let child = Command::new("systemd-nspawn")
            .args(["--keep-unit", "--register=no", "-M", name, "-D"])
            .arg(root)
            .args([
                "--notify-ready=yes",
                "--kill-signal=SIGRTMIN+3",
                "--console=read-only",
                "--bind-ro=/nix/store",
                "--private-network",
            ])
            .args(if userns {
                &["--private-users=pick", "--private-users-ownership=map"][..]
            } else {
                &[][..]
            })
            .arg(format!("{system}/init"))
            .env("NOTIFY_SOCKET", &sock_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Bare {
            child: Some(child),
            root: root.to_path_buf(),
            sock,
            sock_path,
            started,
        }
    }

    /// Wait for READY=1: the time since the start, or why not.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<Duration, String> {
        let deadline = self.started + timeout;
        let mut buf = [0u8; 4096];
        loop {
            match self.sock.recv(&mut buf) {
                Ok(n) => {
                    if String::from_utf8_lossy(&buf[..n])
                        .lines()
                        .any(|l| l == "READY=1")
                    {
                        return Ok(self.started.elapsed());
                    }
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) => return Err(format!("notify socket: {e}")),
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    return Err(format!("systemd-nspawn exited ({st}) before READY=1"));
                }
            }
            if Instant::now() > deadline {
                return Err(format!("no READY=1 within {timeout:?}"));
            }
        }
    }

    /// Ask it to stop (SIGTERM to nspawn, which powers the container off);
    /// [`Bare::stop`] or drop waits.
    pub fn signal_stop(&self) {
        if let Some(c) = &self.child {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }

    /// Stop it (10 s, then killed) and remove its root.
    pub fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        self.signal_stop();
        let Some(mut child) = self.child.take() else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().unwrap_or(None).is_none() {
            if Instant::now() > deadline {
                let kids =
                    std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id()))
                        .unwrap_or_default();
                for k in kids
                    .split_whitespace()
                    .filter_map(|k| k.parse::<i32>().ok())
                {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(k),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                let _ = child.kill();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = std::fs::remove_file(&self.sock_path);
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

impl Drop for Bare {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Boot the system with bare systemd-nspawn until READY=1, then stop it; ms.
pub fn bare_boot(system: &str, root: &Path, name: &str, userns: bool) -> f64 {
    let mut b = Bare::start(system, root, name, userns);
    let t = b
        .wait_ready(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("bare boot of {system}: {e}"));
    drop(b);
    t.as_secs_f64() * 1000.0
}

/// What a storm of bare boots gave.
pub struct Storm {
    /// Each boot's time to READY=1 (ms) from the storm's start, for those
    /// that got there.
    pub ready_ms: Vec<f64>,
    /// Why the others did not.
    pub failed: Vec<String>,
    /// Start of the storm to the last READY=1 (ms).
    pub total_ms: f64,
}

/// `n` bare boots of `system` at once (one thread each, started together),
/// roots `dir/bare-I`, machine names from `name(i)`; all stopped afterwards.
pub fn bare_storm(
    system: &str,
    dir: &Path,
    n: usize,
    name: impl Fn(usize) -> String,
    timeout: Duration,
) -> Storm {
    let start = std::sync::Arc::new(std::sync::Barrier::new(n + 1));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let (system, root, name, start) = (
                system.to_string(),
                dir.join(format!("bare-{i}")),
                name(i),
                start.clone(),
            );
            std::thread::spawn(move || {
                start.wait();
                let t = Instant::now();
                let mut b = Bare::start(&system, &root, &name, true);
                let r = b.wait_ready(timeout).map(|_| t.elapsed());
                (b, r)
            })
        })
        .collect();
    start.wait();
    let t = Instant::now();
    let mut bares = Vec::new();
    let (mut ready_ms, mut failed) = (Vec::new(), Vec::new());
    for h in handles {
        let (b, r) = h.join().expect("a bare boot thread");
        match r {
            Ok(d) => ready_ms.push(d.as_secs_f64() * 1000.0),
            Err(e) => failed.push(e),
        }
        bares.push(b);
    }
    let total_ms = t.elapsed().as_secs_f64() * 1000.0;
    for b in &bares {
        b.signal_stop();
    }
    drop(bares);
    Storm {
        ready_ms,
        failed,
        total_ms,
    }
}
