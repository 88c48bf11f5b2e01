//! Integration-test harness: runs the real agent (`devhost agent`) as root
//! against real Nix, systemd-nspawn, iproute2 and nftables, isolated per test
//! in a temp dir with its own container-name tag, netns prefix, nft table and
//! /24 subnet. Everything a test creates is removed on drop, also when the
//! test fails. Missing prerequisites fail the test under CI=true and skip it
//! with a printed reason elsewhere.

#![allow(dead_code)]

use std::collections::hash_map::DefaultHasher;
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const DEVHOST: &str = env!("CARGO_BIN_EXE_devhost");
pub const FC_BUILD: &str = env!("CARGO_BIN_EXE_fc-build-dev-container");
pub const NIXOS_CONTAINER: &str = env!("CARGO_BIN_EXE_nixos-container");

fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false)
}

/// Check what the real-program tests need. `None` means skip (reason printed);
/// under CI a missing prerequisite is a failure.
pub fn prerequisites(test: &str) -> Option<()> {
    let mut missing = Vec::new();
    if !nix::unistd::Uid::effective().is_root() {
        missing.push("root".to_string());
    }
    for prog in [
        "nix-build",
        "systemd-nspawn",
        "nft",
        "ip",
        "gcc",
        "busybox",
        "xz",
    ] {
        if !Command::new("sh")
            .args(["-c", &format!("command -v {prog}")])
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
        {
            missing.push(prog.to_string());
        }
    }
    if missing.is_empty() {
        return Some(());
    }
    let msg = format!(
        "{test}: needs {} (run .ci/install-deps as root)",
        missing.join(", ")
    );
    if in_ci() {
        panic!("missing prerequisite under CI: {msg}");
    }
    eprintln!("SKIP {msg}");
    None
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    b.iter().map(|x| format!("{:x}", x & 0xf)).collect()
}

/// Orphaned containers are re-parented to this process (a child subreaper),
/// because PID 1 of some sandboxes never reaps them; reap the ones that exited.
pub fn reap_orphans() {
    let me = std::process::id();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let comm = &stat[stat.find('(').unwrap_or(0) + 1..close];
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        if fields.first() == Some(&"Z")
            && fields.get(1) == Some(&me.to_string().as_str())
            && comm == "systemd-nspawn"
        {
            let _ = nix::sys::wait::waitpid(
                nix::unistd::Pid::from_raw(pid),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG),
            );
        }
    }
}

fn become_subreaper() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = nix::sys::prctl::set_child_subreaper(true);
    });
}

/// The fixture channel, built once per test process and served over HTTP on
/// loopback under a content-addressed path (Nix caches tarballs by URL).
pub struct Channel {
    pub url: String,
    pub dir: PathBuf,
    /// The unpacked tree, for `file://` channel tests.
    pub unpacked: PathBuf,
}

pub fn channel() -> &'static Channel {
    static CH: OnceLock<Channel> = OnceLock::new();
    CH.get_or_init(|| {
        // Under target/ (a build cache), one per test process.
        let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
        for old in std::fs::read_dir(base).into_iter().flatten().flatten() {
            let n = old.file_name().to_string_lossy().into_owned();
            if let Some(pid) = n.strip_prefix("fixture-channel-") {
                if !Path::new("/proc").join(pid).exists() {
                    let _ = std::fs::remove_dir_all(old.path());
                }
            }
        }
        let dir = base.join(format!("fixture-channel-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/make-channel"
        );
        let out = Command::new(script)
            .arg(&dir)
            .output()
            .expect("run make-channel");
        assert!(
            out.status.success(),
            "make-channel failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let tarball = std::fs::read(dir.join("nixexprs.tar.xz")).unwrap();
        let mut h = DefaultHasher::new();
        tarball.hash(&mut h);
        let path = format!("/c/{:016x}/nixexprs.tar.xz", h.finish());
        let unpacked = dir.join("unpacked");
        std::fs::create_dir_all(&unpacked).unwrap();
        let st = Command::new("tar")
            .arg("-xJf")
            .arg(dir.join("nixexprs.tar.xz"))
            .arg("-C")
            .arg(&unpacked)
            .status()
            .unwrap();
        assert!(st.success());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let served = path.clone();
        std::thread::spawn(move || serve(listener, served, tarball));
        Channel {
            url: format!("http://127.0.0.1:{port}{path}"),
            dir,
            unpacked: unpacked.join("nixexprs"),
        }
    })
}

fn serve(listener: TcpListener, path: String, body: Vec<u8>) {
    for stream in listener.incoming().flatten() {
        let path = path.clone();
        let body = body.clone();
        std::thread::spawn(move || {
            let mut s = stream;
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let line = String::from_utf8_lossy(&req)
                .lines()
                .next()
                .unwrap_or("")
                .to_string();
            let target = line.split_whitespace().nth(1).unwrap_or("");
            if target == path {
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/x-xz\r\nConnection: close\r\n\r\n", body.len());
                let _ = s.write_all(head.as_bytes());
                if !line.starts_with("HEAD") {
                    let _ = s.write_all(&body);
                }
            } else {
                let _ = s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found");
            }
        });
    }
}

/// A /24 of 10.231.0.0/16 that no other test (process) holds: the lock
/// file stays locked for the agent's life.
fn claim_subnet() -> (u8, nix::fcntl::Flock<File>) {
    let d = Path::new("/run/devhost-test-subnets");
    std::fs::create_dir_all(d).unwrap();
    for _ in 0..2000 {
        let n = u8::from_str_radix(&random_hex(2), 16).unwrap();
        let f = File::create(d.join(format!("{n}.lock"))).unwrap();
        if let Ok(l) = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            return (n, l);
        }
    }
    panic!("no free test subnet in 10.231.0.0/16");
}

pub struct TestAgent {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub tag: String,
    pub netns_prefix: String,
    pub table: String,
    pub subnet: u8,
    child: Option<Child>,
    _subnet_lock: nix::fcntl::Flock<File>,
}

pub struct Options {
    /// Extra TOML appended to the generated config.
    pub extra_toml: String,
    /// Nix for `nix.extra_config`.
    pub nix_extra_config: String,
    pub ready_timeout_secs: u64,
    pub stop_timeout_secs: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            extra_toml: String::new(),
            nix_extra_config: String::new(),
            ready_timeout_secs: 30,
            stop_timeout_secs: 5,
        }
    }
}

impl TestAgent {
    pub fn start(opts: Options) -> TestAgent {
        become_subreaper();
        let tag = random_hex(4);
        let dir = PathBuf::from(format!("/tmp/devhost-test-{tag}"));
        std::fs::create_dir_all(&dir).unwrap();
        // Non-root test callers must reach the socket.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (subnet, lock) = claim_subnet();
        let netns_prefix = format!("dht{tag}-");
        let table = format!("dht{tag}");
        let socket = dir.join("run/agent.sock");
        let d = dir.display();
        let extra_config = opts
            .nix_extra_config
            .replace('\\', "\\\\")
            .replace('"', "\\\"");
        let config = format!(
            r#"[paths]
state_dir = "{d}/state"
run_dir = "{d}/run"
socket = "{d}/run/agent.sock"
containers_dir = "{d}/containers"
profiles_dir = "{d}/profiles"
gcroots_dir = "{d}/gcroots"
hosts_file = "{d}/hosts"
compat_dir = "{d}/compat"

[access]
admin_group = "sudo"
user_group = "users"

[network]
pool = "10.231.{subnet}.0/24"
# An interface that does not exist: test NAT can never carry traffic out.
nat_interface = "dhtnonat0"
nft_table = "{table}"
netns_prefix = "{netns_prefix}"

[nix]
extra_args = ["--option", "substituters", ""]
base_imports = ["<fc/nixos>"]
extra_config = "{extra_config}"

[nspawn]
ready_timeout_secs = {}
stop_timeout_secs = {}
{}
"#,
            opts.ready_timeout_secs, opts.stop_timeout_secs, opts.extra_toml
        );
        let config_path = dir.join("agent.toml");
        std::fs::write(&config_path, config).unwrap();
        std::fs::write(dir.join("hosts"), "127.0.0.1 localhost\n").unwrap();
        let mut a = TestAgent {
            dir,
            config: config_path,
            socket,
            tag,
            netns_prefix,
            table,
            subnet,
            child: None,
            _subnet_lock: lock,
        };
        a.spawn();
        a
    }

    /// Start the agent process and wait for its socket.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "agent already running");
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("agent.log"))
            .unwrap();
        let child = Command::new(DEVHOST)
            .args(["agent", "--config"])
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start agent");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::os::unix::net::UnixStream::connect(&self.socket).is_err() {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("agent exited ({st}); log:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "agent did not come up; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }

    /// SIGTERM (graceful) or SIGKILL (crash) the agent process.
    pub fn stop_agent(&mut self, signal: nix::sys::signal::Signal) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), signal);
            let _ = c.wait();
        }
    }

    pub fn agent_pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// A container name unique to this agent: `t` + tag + suffix (≤ 11 chars).
    pub fn name(&self, suffix: &str) -> String {
        let n = format!("t{}{suffix}", self.tag);
        assert!(n.len() <= 11, "test container name {n} too long");
        n
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new(program);
        c.args(args)
            .env("DEVHOST_SOCKET", &self.socket)
            .env_remove("SUDO_UID")
            .stdin(Stdio::null());
        c
    }

    pub fn devhost(&self, args: &[&str]) -> Output {
        self.command(DEVHOST, args).output().unwrap()
    }

    /// `devhost` as another (non-root) user: uid/gid need no passwd entry.
    pub fn devhost_as(&self, uid: u32, gid: u32, args: &[&str]) -> Output {
        use std::os::unix::process::CommandExt;
        let mut c = self.command(DEVHOST, args);
        // std drops root's supplementary groups when it sets the uid.
        c.uid(uid).gid(gid);
        c.output().unwrap()
    }

    pub fn fc_build(&self, args: &[&str]) -> Output {
        self.command(FC_BUILD, args).output().unwrap()
    }

    pub fn nixos_container(&self, args: &[&str]) -> Output {
        self.command(NIXOS_CONTAINER, args).output().unwrap()
    }

    pub fn status_json(&self, name: &str) -> Option<serde_json::Value> {
        let out = self.devhost(&["--json", "status", name]);
        if !out.status.success() {
            return None;
        }
        Some(serde_json::from_slice(&out.stdout).expect("status --json is JSON"))
    }

    pub fn address(&self, name: &str) -> Ipv4Addr {
        self.status_json(name).expect("container exists")["address"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    pub fn hosts(&self) -> String {
        std::fs::read_to_string(self.dir.join("hosts")).unwrap_or_default()
    }

    pub fn nft_table(&self) -> Option<String> {
        let out = Command::new("nft")
            .args(["list", "table", "ip", &self.table])
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Every trace a container can leave on the host, as a list of what is
    /// still there (empty: none).
    pub fn traces_of(&self, name: &str, address: Ipv4Addr) -> Vec<String> {
        let mut t = Vec::new();
        if nspawn_pids(&self.dir.join("containers"))
            .iter()
            .any(|(_, n)| n == name)
        {
            t.push("systemd-nspawn process".into());
        }
        if Path::new("/run/netns")
            .join(format!("{}{name}", self.netns_prefix))
            .exists()
        {
            t.push("network namespace".into());
        }
        if Path::new("/sys/class/net")
            .join(format!("ve-{name}"))
            .exists()
        {
            t.push("veth".into());
        }
        if self
            .nft_table()
            .unwrap_or_default()
            .contains(&address.to_string())
        {
            t.push("nft element".into());
        }
        if self
            .hosts()
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some(name))
        {
            t.push("hosts line".into());
        }
        for (what, p) in [
            (
                "record",
                self.dir.join(format!("state/records/{name}.json")),
            ),
            (
                "state dir",
                self.dir.join(format!("state/containers/{name}")),
            ),
            (
                "compat record",
                self.dir.join(format!("compat/{name}.json")),
            ),
            ("root dir", self.dir.join(format!("containers/{name}"))),
            (
                "profile (GC root)",
                self.dir.join(format!("profiles/{name}")),
            ),
            ("gcroots dir", self.dir.join(format!("gcroots/{name}"))),
        ] {
            if p.symlink_metadata().is_ok() {
                t.push(format!("{what} {}", p.display()));
            }
        }
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let root = self.dir.join("containers").join(name).display().to_string();
        if mountinfo.lines().any(|l| {
            l.split(' ')
                .nth(4)
                .map(|m| m.starts_with(&root))
                .unwrap_or(false)
        }) {
            t.push("mount".into());
        }
        t
    }

    /// Remove everything this agent and its containers made, whatever state
    /// the test left them in.
    fn cleanup(&mut self) {
        if self.child.is_some() {
            if let Ok(out) = Command::new(DEVHOST)
                .args(["--json", "list"])
                .env("DEVHOST_SOCKET", &self.socket)
                .output()
            {
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) {
                    for c in v["containers"].as_array().cloned().unwrap_or_default() {
                        let n = c["name"].as_str().unwrap_or("").to_string();
                        let _ = self.devhost(&["destroy", &n]);
                    }
                }
            }
        }
        self.stop_agent(nix::sys::signal::Signal::SIGTERM);
        // Anything that survived: processes, namespaces, veths, the table.
        for (pid, _) in nspawn_pids(&self.dir.join("containers")) {
            for child in std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default()
                .split_whitespace()
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(child.parse().unwrap_or(0)),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !nspawn_pids(&self.dir.join("containers")).is_empty() && Instant::now() < deadline {
            reap_orphans();
            std::thread::sleep(Duration::from_millis(50));
        }
        for ns in std::fs::read_dir("/run/netns")
            .into_iter()
            .flatten()
            .flatten()
        {
            let n = ns.file_name().to_string_lossy().into_owned();
            if n.starts_with(&self.netns_prefix) {
                let _ = Command::new("ip").args(["netns", "delete", &n]).status();
            }
        }
        for link in std::fs::read_dir("/sys/class/net")
            .into_iter()
            .flatten()
            .flatten()
        {
            let n = link.file_name().to_string_lossy().into_owned();
            if n.starts_with(&format!("ve-t{}", self.tag)) {
                let _ = Command::new("ip").args(["link", "delete", &n]).status();
            }
        }
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", &self.table])
            .stderr(Stdio::null())
            .status();
        reap_orphans();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// (pid, machine name) of main systemd-nspawn processes whose root is below `containers_dir`.
pub fn nspawn_pids(containers_dir: &Path) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let prefix = format!("{}/", containers_dir.display());
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let argv: Vec<String> = std::fs::read(format!("/proc/{pid}/cmdline"))
            .unwrap_or_default()
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if !argv
            .first()
            .map(|a| a.ends_with("systemd-nspawn"))
            .unwrap_or(false)
        {
            continue;
        }
        let flag = |f: &str| {
            argv.iter()
                .position(|a| a == f)
                .and_then(|i| argv.get(i + 1))
                .cloned()
        };
        if let (Some(m), Some(d)) = (flag("-M"), flag("-D")) {
            if d.starts_with(&prefix) {
                out.push((pid, m));
            }
        }
    }
    out
}

/// GET / from a container over plain HTTP; the body or the error.
pub fn http_get(addr: Ipv4Addr, port: u16) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&(addr, port).into(), Duration::from_secs(3))
        .map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(format!("GET / HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).map_err(|e| e.to_string())?;
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    if !resp.starts_with("HTTP/1.") || !resp.contains(" 200 ") {
        return Err(format!("unexpected answer: {resp}"));
    }
    Ok(body)
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[track_caller]
pub fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}",
        out.status,
        text(out)
    );
}
