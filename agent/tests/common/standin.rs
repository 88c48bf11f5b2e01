//! The "devhost stand-in": a booted Debian systemd container (cached root
//! from tests/standin/build-standin, booted with a tmpfs overlay so every
//! test starts clean) in which the agent runs as a systemd service and
//! starts containers as transient units registered with machined — the
//! production path, on machines whose PID 1 is not systemd. It shares the
//! host's network namespace, so the test reaches nested containers
//! directly; the test dir is bound at the same path inside and out.

use super::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

fn standin_root() -> &'static PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/standin/build-standin"
        );
        let out = Command::new(script).output().expect("run build-standin");
        assert!(
            out.status.success(),
            "build-standin failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
}

pub struct StandIn {
    pub machine: String,
    nspawn: Child,
    leader: u32,
    cgroups: Vec<PathBuf>,
}

/// One cgroup per hierarchy that systemd uses (v1 `name=systemd`, the
/// hybrid `unified` one, or the pure v2 root).
fn own_cgroups(machine: &str) -> Vec<PathBuf> {
    let base = Path::new("/sys/fs/cgroup");
    let roots: Vec<PathBuf> = if base.join("cgroup.procs").exists() {
        vec![base.to_path_buf()]
    } else {
        ["systemd", "unified"]
            .iter()
            .map(|h| base.join(h))
            .filter(|p| p.join("cgroup.procs").exists())
            .collect()
    };
    roots
        .into_iter()
        .map(|r| {
            let d = r.join(format!("devhost-test-{machine}"));
            std::fs::create_dir_all(&d).expect("create the stand-in's cgroup");
            d
        })
        .collect()
}

/// Remove a cgroup tree bottom-up (cgroup directories go with rmdir).
fn remove_cgroup(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// Where the devhost binaries appear inside the stand-in.
pub const BIN_DIR: &str = "/opt/devhost-bin";

impl StandIn {
    /// Boot a stand-in with `shared` bound at the same path inside.
    pub fn boot(tag: &str, shared: &Path) -> StandIn {
        let root = standin_root();
        let bin_dir = Path::new(DEVHOST).parent().unwrap();
        let machine = format!("dhsi{tag}");
        let log = std::fs::File::create(shared.join("standin.log")).unwrap();
        let cgroups = own_cgroups(&machine);
        // Without systemd on the host every process shares the root cgroup,
        // and two stand-ins' systemd would manage the same cgroup tree: the
        // wrapper moves itself into the stand-in's own cgroups, then execs.
        let mut enter = String::new();
        for (i, _) in cgroups.iter().enumerate() {
            enter.push_str(&format!("echo $$ > \"$CG{i}/cgroup.procs\" && "));
        }
        let mut wrapper = Command::new("sh");
        // A devhost's agent is not itself under a seccomp filter (it reads
        // containers' filters to give RUN the same, which the kernel refuses
        // to a filtered tracer): the stand-in, the host's stand-in, has none.
        wrapper.env("SYSTEMD_SECCOMP", "0");
        for (i, cg) in cgroups.iter().enumerate() {
            wrapper.env(format!("CG{i}"), cg);
        }
        let nspawn = wrapper
            .args(["-c", &format!("{enter}exec systemd-nspawn \"$@\""), "sh"])
            .arg("-D")
            .arg(root)
            .args([
                "--volatile=overlay",
                "-b",
                "--capability=all",
                "--register=no",
                "--keep-unit",
                "--console=read-only",
            ])
            .args(["-M", &machine, "--bind=/nix"])
            .arg(format!("--bind-ro={}:{BIN_DIR}", bin_dir.display()))
            .arg(format!("--bind={0}:{0}", shared.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start the stand-in");
        let pid = nspawn.id();
        let leader = wait_until(Duration::from_secs(60), "the stand-in starts", || {
            let kids = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default();
            let leader: Option<u32> = kids.split_whitespace().next().and_then(|k| k.parse().ok());
            // nspawn's child becomes the container's PID 1 when it execs systemd.
            leader.filter(|l| {
                std::fs::read_to_string(format!("/proc/{l}/comm"))
                    .map(|c| c.trim() == "systemd")
                    .unwrap_or(false)
            })
        });
        let si = StandIn {
            machine,
            nspawn,
            leader,
            cgroups,
        };
        // Boot finished: every unit started (or failed, which we show).
        // Until systemd's bus is up, systemctl answers "offline" at once.
        let state = wait_until(Duration::from_secs(90), "the stand-in has booted", || {
            let out = si.exec(&["systemctl", "is-system-running", "--wait"]);
            let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
            match state.as_str() {
                "running" | "degraded" | "maintenance" | "stopping" => Ok(state),
                _ => Err(state),
            }
        });
        if state != "running" {
            let failed = si.exec(&["systemctl", "--failed", "--no-legend"]);
            panic!("stand-in is {state}; failed units:\n{}", text(&failed));
        }
        si
    }

    fn nsenter(&self, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.leader.to_string(), "-a", "--"])
            .args(args)
            .stdin(Stdio::null());
        c
    }

    /// Run a command inside the stand-in.
    pub fn exec(&self, args: &[&str]) -> Output {
        self.nsenter(args).output().expect("nsenter")
    }

    /// Start the agent as a systemd service (Type=notify: returns when it serves).
    pub fn start_agent(&self, config: &Path) {
        let _ = self.exec(&["systemctl", "reset-failed", "devhost.service"]);
        // A stopped transient unit is collected a moment after it stopped.
        wait_until(
            Duration::from_secs(10),
            "the previous devhost.service has gone",
            || {
                if self.unit_property("devhost.service", "LoadState") == "loaded" {
                    Err(text(&self.exec(&[
                        "systemctl",
                        "status",
                        "--no-pager",
                        "devhost.service",
                    ])))
                } else {
                    Ok(())
                }
            },
        );
        let bin = format!("{BIN_DIR}/devhost");
        let cfg = config.display().to_string();
        let out = self.exec(&[
            "systemd-run",
            "--unit=devhost",
            "--property=Type=notify",
            "--property=CollectMode=inactive-or-failed",
            "--setenv=DEVHOST_LOG=info",
            &bin,
            "agent",
            "--config",
            &cfg,
        ]);
        assert!(
            out.status.success(),
            "agent service did not start: {}\n{}",
            text(&out),
            text(&self.exec(&["journalctl", "-u", "devhost", "-n", "30", "--no-pager"]))
        );
    }

    /// Stop the agent service: SIGTERM (systemctl stop) or SIGKILL (a crash).
    pub fn stop_agent(&self, kill: bool) {
        if kill {
            let _ = self.exec(&["systemctl", "kill", "--signal=SIGKILL", "devhost.service"]);
            wait_until(Duration::from_secs(10), "the agent has died", || {
                String::from_utf8_lossy(
                    &self
                        .exec(&["systemctl", "is-active", "devhost.service"])
                        .stdout,
                )
                .trim()
                    != "active"
            });
        } else {
            let _ = self.exec(&["systemctl", "stop", "devhost.service"]);
        }
    }

    /// `systemctl show -p PROP --value UNIT`
    pub fn unit_property(&self, unit: &str, prop: &str) -> String {
        String::from_utf8_lossy(
            &self
                .exec(&["systemctl", "show", "-p", prop, "--value", unit])
                .stdout,
        )
        .trim()
        .to_string()
    }

    pub fn machines(&self) -> String {
        String::from_utf8_lossy(&self.exec(&["machinectl", "list", "--no-legend"]).stdout)
            .into_owned()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        // Powering the stand-in off (SIGRTMIN+4 to its systemd) stops every
        // unit in it, nested containers included.
        // SAFETY: kill(2) with a pid and a signal number; no memory involved.
        unsafe {
            nix::libc::kill(self.leader as i32, nix::libc::SIGRTMIN() + 4);
        }
        let nspawn = &mut self.nspawn;
        let off = poll_until(Duration::from_secs(30), || {
            nspawn.try_wait().ok().flatten().is_some()
        });
        if off.is_err() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.leader as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = self.nspawn.kill();
            let _ = self.nspawn.wait();
        }
        reap_orphans();
        for cg in &self.cgroups {
            remove_cgroup(cg);
        }
    }
}
