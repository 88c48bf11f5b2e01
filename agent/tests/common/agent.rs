//! A test agent: `devhost agent` on its own temp dir, name tag, netns
//! prefix, nft table and /24, and the helpers tests drive it with. Dropping
//! it removes everything it and its containers made.

use super::*;
use devhost::api::types::ContainerInfo;
use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

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

/// A /22 of 10.230.0.0/16 (256 containers) that no other test or bench
/// holds, for runs of more containers than a /24 takes (64): its network
/// address and the lock held for the agent's life.
fn claim_wide_pool() -> (String, nix::fcntl::Flock<File>) {
    let d = Path::new("/run/devhost-test-subnets");
    std::fs::create_dir_all(d).unwrap();
    for _ in 0..2000 {
        let n = u8::from_str_radix(&random_hex(2), 16).unwrap() % 64;
        let f = File::create(d.join(format!("wide-{n}.lock"))).unwrap();
        if let Ok(l) = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            return (format!("10.230.{}.0/22", 4 * n as u32), l);
        }
    }
    panic!("no free wide test pool in 10.230.0.0/16");
}

/// Where the agent runs: on this host (direct backend), or as a systemd
/// service inside a booted stand-in (systemd backend).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Direct,
    Systemd,
}

pub struct TestAgent {
    pub kind: Kind,
    pub standin: Option<super::standin::StandIn>,
    running: bool,
    pub dir: PathBuf,
    /// Where its container roots are.
    pub containers_dir: PathBuf,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub tag: String,
    pub netns_prefix: String,
    pub table: String,
    pub subnet: u8,
    /// The edge's loopback ports.
    pub http_port: u16,
    pub https_port: u16,
    /// For a `[dns]` section of the test's own (`listen = ["127.0.0.1:PORT"]`).
    pub dns_port: u16,
    /// A test's Pebble listens here (management on the next port).
    pub acme_port: u16,
    /// `/metrics` is served here (with [`Options::metrics_toml`]).
    pub metrics_port: u16,
    child: Option<Child>,
    agent_env: Vec<(String, String)>,
    _subnet_lock: nix::fcntl::Flock<File>,
    _pool_lock: Option<nix::fcntl::Flock<File>>,
}

pub struct Options {
    /// Extra TOML for the generated config (after the `[nspawn]` keys);
    /// `@DNS_PORT@` becomes the agent's own DNS test port.
    pub extra_toml: String,
    /// Nix for `nix.extra_config`.
    pub nix_extra_config: String,
    /// `nix.allowed_paths`: what evaluation may read besides the channel.
    pub nix_allowed_paths: Vec<String>,
    pub ready_timeout_secs: u64,
    pub stop_timeout_secs: u64,
    pub kind: Kind,
    /// The hosts file the agent keeps its block in (default: one in the test
    /// dir); a stand-in's own /etc/hosts for tests of name resolution.
    pub hosts_file: Option<String>,
    /// Extra keys for the `[edge]` section.
    pub edge_toml: String,
    /// Extra keys for the `[access]` section.
    pub access_toml: String,
    /// Extra environment of the agent process (direct backend only).
    pub agent_env: Vec<(String, String)>,
    /// Where container roots go (default: `DIR/containers`).
    pub containers_dir: Option<PathBuf>,
    /// Extra keys for the `[nix]` section.
    pub nix_toml: String,
    /// The state directory on a tmpfs of this size (e.g. "16m"), to fill
    /// it; unmounted with the agent.
    pub state_tmpfs: Option<&'static str>,
    /// Addresses for 256 containers (a /22 of 10.230.0.0/16 of its own)
    /// instead of the /24 (64), for benchmarks of many containers.
    pub wide_pool: bool,
    /// Serve `/metrics` on [`TestAgent::metrics_port`], with these extra
    /// keys of the `[metrics]` section.
    pub metrics_toml: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            extra_toml: String::new(),
            nix_extra_config: String::new(),
            nix_allowed_paths: Vec::new(),
            ready_timeout_secs: 30,
            stop_timeout_secs: 5,
            kind: Kind::Direct,
            hosts_file: None,
            edge_toml: String::new(),
            access_toml: String::new(),
            agent_env: Vec::new(),
            containers_dir: None,
            state_tmpfs: None,
            nix_toml: String::new(),
            wide_pool: false,
            metrics_toml: None,
        }
    }
}

impl TestAgent {
    pub fn start(opts: Options) -> TestAgent {
        become_subreaper();
        let tag = random_hex(4);
        // Not under /tmp: the stand-in mounts its own tmpfs there.
        let dir = PathBuf::from(format!("/var/lib/devhost-test/{tag}"));
        std::fs::create_dir_all(&dir).unwrap();
        // Non-root test callers must reach the socket.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (subnet, lock) = claim_subnet();
        let (pool, pool_lock) = if opts.wide_pool {
            let (p, l) = claim_wide_pool();
            (p, Some(l))
        } else {
            (format!("10.231.{subnet}.0/24"), None)
        };
        let netns_prefix = format!("dht{tag}-");
        let table = format!("dht{tag}");
        let socket = dir.join("run/agent.sock");
        // Loopback ports of this agent's own (its subnet is unique among tests).
        let http_port = 20000 + 4 * subnet as u16;
        let https_port = http_port + 1;
        let dns_port = http_port + 2;
        let metrics_port = http_port + 3;
        // Pebble's (`@ACME_PORT@`) and its management port, the next one.
        let acme_port = 22000 + 2 * subnet as u16;
        let d = dir.display();
        assert!(
            opts.hosts_file.is_none() || opts.kind == Kind::Systemd,
            "only a stand-in has a hosts file of its own"
        );
        let hosts_file = opts
            .hosts_file
            .clone()
            .unwrap_or_else(|| format!("{d}/hosts"));
        // Systems of this agent are its own: nothing another test built
        // is found in the store (a slow build is slow), as a new channel.
        let mut nix_extra_config = opts.nix_extra_config.clone();
        if !nix_extra_config.contains("devhost.fixture.tag") {
            nix_extra_config.push_str(&format!(" devhost.fixture.tag = \"agent-{tag}\";"));
        }
        let extra_config = nix_extra_config.replace('\\', "\\\\").replace('"', "\\\"");
        let allowed_paths = &opts.nix_allowed_paths;
        let containers_dir = opts
            .containers_dir
            .clone()
            .unwrap_or_else(|| dir.join("containers"));
        let containers_dir_s = containers_dir.display().to_string();
        let access_toml = &opts.access_toml;
        let nix_toml = &opts.nix_toml;
        assert!(
            opts.agent_env.is_empty() || opts.kind == Kind::Direct,
            "the agent's environment is set on this host only"
        );
        let config = format!(
            r#"[paths]
state_dir = "{d}/state"
run_dir = "{d}/run"
socket = "{d}/run/agent.sock"
containers_dir = "{containers_dir_s}"
profiles_dir = "{d}/profiles"
gcroots_dir = "{d}/gcroots"
hosts_file = "{hosts_file}"
compat_dir = "{d}/compat"

[access]
admin_group = "sudo"
user_group = "users"
{access_toml}

[network]
pool = "{pool}"
# An interface that does not exist: test NAT can never carry traffic out.
nat_interface = "dhtnonat0"
nft_table = "{table}"
netns_prefix = "{netns_prefix}"

[nix]
extra_args = ["--option", "substituters", ""]
base_imports = ["<fc/nixos>"]
extra_config = "{extra_config}"
allowed_paths = {allowed_paths:?}
{nix_toml}

[nspawn]
ready_timeout_secs = {}
stop_timeout_secs = {}
{}

[edge]
public_domain = "dev.test"
http_listen = ["127.0.0.1:{http_port}"]
https_listen = ["127.0.0.1:{https_port}"]
{}
"#,
            opts.ready_timeout_secs,
            opts.stop_timeout_secs,
            opts.extra_toml
                .replace("@DNS_PORT@", &dns_port.to_string())
                .replace("@ACME_PORT@", &acme_port.to_string()),
            opts.edge_toml
        );
        let config = match &opts.metrics_toml {
            Some(extra) => {
                format!("{config}\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n{extra}\n")
            }
            None => config,
        };
        let config_path = dir.join("agent.toml");
        std::fs::write(&config_path, config).unwrap();
        std::fs::write(dir.join("hosts"), "127.0.0.1 localhost\n").unwrap();
        // If the stand-in cannot boot, take the test dir with the panic.
        struct RemoveOnPanic<'a>(&'a Path);
        impl Drop for RemoveOnPanic<'_> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    let _ = std::fs::remove_dir_all(self.0);
                }
            }
        }
        if let Some(size) = opts.state_tmpfs {
            let state = dir.join("state");
            std::fs::create_dir_all(&state).unwrap();
            let ok = Command::new("mount")
                .args([
                    "-t",
                    "tmpfs",
                    "-o",
                    &format!("size={size},mode=0755"),
                    "tmpfs",
                ])
                .arg(&state)
                .status()
                .unwrap()
                .success();
            assert!(ok, "mount a tmpfs at {}", state.display());
        }
        let guard = RemoveOnPanic(&dir);
        let standin =
            (opts.kind == Kind::Systemd).then(|| super::standin::StandIn::boot(&tag, &dir));
        drop(guard);
        let mut a = TestAgent {
            kind: opts.kind,
            standin,
            running: false,
            dir,
            containers_dir,
            config: config_path,
            socket,
            tag,
            netns_prefix,
            table,
            subnet,
            http_port,
            https_port,
            dns_port,
            acme_port,
            metrics_port,
            child: None,
            agent_env: opts.agent_env.clone(),
            _subnet_lock: lock,
            _pool_lock: pool_lock,
        };
        a.spawn();
        a
    }

    /// Start the agent process and wait for its socket.
    pub fn spawn(&mut self) {
        assert!(!self.running, "agent already running");
        self.running = true;
        if let Some(si) = &self.standin {
            si.start_agent(&self.config);
            return;
        }
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("agent.log"))
            .unwrap();
        let child = Command::new(DEVHOST)
            .args(["agent", "--config"])
            .arg(&self.config)
            .envs(self.agent_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start agent");
        self.child = Some(child);
        let socket = self.socket.clone();
        let child = self.child.as_mut().unwrap();
        let up = poll_until(Duration::from_secs(60), || {
            if let Some(st) = child.try_wait().unwrap() {
                return Some(Err(format!("agent exited ({st})")));
            }
            std::os::unix::net::UnixStream::connect(&socket)
                .is_ok()
                .then_some(Ok(()))
        });
        match up {
            Ok(Ok(())) => {}
            Ok(Err(why)) => panic!("{why}; log:\n{}", self.log()),
            Err(_) => panic!("agent did not come up; log:\n{}", self.log()),
        }
    }

    /// The agent process (not for a stand-in's agent).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }

    /// SIGTERM (graceful) or SIGKILL (crash) the agent process.
    pub fn stop_agent(&mut self, signal: nix::sys::signal::Signal) {
        if !self.running {
            return;
        }
        self.running = false;
        if let Some(si) = &self.standin {
            si.stop_agent(signal == nix::sys::signal::Signal::SIGKILL);
            return;
        }
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), signal);
            let _ = c.wait();
        }
    }

    /// A container name unique to this agent: `t` + tag + suffix (≤ 11 chars).
    pub fn name(&self, suffix: &str) -> String {
        let n = format!("t{}{suffix}", self.tag);
        assert!(n.len() <= 11, "test container name {n} too long");
        n
    }

    /// `program ARGS` against this agent (its socket), as root, no input.
    pub fn command<A: AsRef<std::ffi::OsStr>>(&self, program: &str, args: &[A]) -> Command {
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

    /// `program ARGS` as root against this agent, the arguments any bytes
    /// (not only UTF-8): for front-ends given what no shell would type.
    pub fn run_bytes(&self, program: &str, args: &[&[u8]]) -> Output {
        use std::os::unix::ffi::OsStrExt;
        let args: Vec<&std::ffi::OsStr> = args
            .iter()
            .map(|a| std::ffi::OsStr::from_bytes(a))
            .collect();
        self.command(program, &args).output().unwrap()
    }

    /// `devhost` as another (non-root) user: uid/gid need no passwd entry.
    pub fn devhost_as(&self, uid: u32, gid: u32, args: &[&str]) -> Output {
        use std::os::unix::process::CommandExt;
        let mut c = self.command(DEVHOST, args);
        // std drops root's supplementary groups when it sets the uid.
        c.uid(uid).gid(gid);
        c.output().unwrap()
    }

    /// `devhost ensure NAME URL` on a thread of its own (for concurrency tests).
    pub fn ensure_in_thread(&self, name: &str, url: &str) -> std::thread::JoinHandle<Output> {
        let mut cmd = self.command(DEVHOST, &["ensure", name, url]);
        std::thread::spawn(move || cmd.output().unwrap())
    }

    pub fn fc_build(&self, args: &[&str]) -> Output {
        self.command(FC_BUILD, args).output().unwrap()
    }

    /// `fc-devhost ARGS` as root (no sudo).
    pub fn fc_devhost(&self, args: &[&str]) -> Output {
        self.command(FC_DEVHOST, args).output().unwrap()
    }

    /// `sudo fc-devhost ARGS` as batou runs it: root, with the variables
    /// sudo sets for the invoking user `uid` (group `gid`).
    pub fn fc_devhost_sudo(&self, uid: u32, gid: u32, args: &[&str]) -> Output {
        self.command(FC_DEVHOST, args)
            .env("SUDO_UID", uid.to_string())
            .env("SUDO_GID", gid.to_string())
            .output()
            .unwrap()
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

    /// `devhost --json status NAME` as the agent's own type; `None` when
    /// the agent knows no such container.
    pub fn try_status(&self, name: &str) -> Option<ContainerInfo> {
        let out = self.devhost(&["--json", "status", name]);
        if !out.status.success() {
            assert!(
                text(&out).contains("no container"),
                "status {name}: {}",
                text(&out)
            );
            return None;
        }
        Some(
            serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("status --json of {name}: {e}: {}", text(&out))),
        )
    }

    /// [`TestAgent::try_status`] of a container that exists.
    #[track_caller]
    pub fn status(&self, name: &str) -> ContainerInfo {
        self.try_status(name)
            .unwrap_or_else(|| panic!("the agent knows no container {name}"))
    }

    pub fn address(&self, name: &str) -> Ipv4Addr {
        self.status(name).address.parse().unwrap()
    }

    /// The root certificate of the agent's local CA (`[certs] mode =
    /// "local-ca"`, the default).
    pub fn local_ca(&self) -> PathBuf {
        self.dir.join("state/certs/local-ca/root.pem")
    }

    /// curl `https://HOST/PATH` on the edge's port, HOST resolved to
    /// loopback, trusting only `root` (see [`curl_https_on`]).
    pub fn curl_https(&self, root: &Path, host: &str, path: &str, extra: &[&str]) -> Output {
        curl_https_on(self.https_port, root, host, path, extra)
    }

    /// What the edge answered to [`TestAgent::curl_https`] (panics when
    /// curl got no answer).
    #[track_caller]
    pub fn https(&self, root: &Path, host: &str, path: &str, extra: &[&str]) -> Answer {
        answer(&self.curl_https(root, host, path, extra), host, path)
    }

    /// Why [`TestAgent::curl_https`] got no answer (panics when it got one).
    #[track_caller]
    pub fn https_fails(&self, root: &Path, host: &str, path: &str, extra: &[&str]) -> CurlFailure {
        let out = self.curl_https(root, host, path, extra);
        assert!(
            !out.status.success(),
            "curl https://{host}{path} got an answer: {}",
            text(&out)
        );
        CurlFailure {
            code: out.status.code().expect("curl exited"),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        }
    }

    /// curl `http://HOST/PATH` on the edge's port 80: the status and where
    /// a redirect points (empty if it is none).
    pub fn http(&self, host: &str, path: &str) -> (u16, String) {
        let (code, location, _) = self.http_page(host, path);
        (code, location)
    }

    /// [`TestAgent::http`] and the page that came with the answer.
    pub fn http_page(&self, host: &str, path: &str) -> (u16, String, String) {
        let port = self.http_port;
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10"])
            .args(["-w", "\n%{http_code} %{redirect_url}"])
            .arg("--resolve")
            .arg(format!("{host}:{port}:127.0.0.1"))
            .arg(format!("http://{host}:{port}{path}"))
            .output()
            .unwrap();
        assert_ok(&out, &format!("curl http://{host}{path}"));
        let t = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, tail) = t.rsplit_once('\n').unwrap_or(("", &t));
        let (code, location) = tail.split_once(' ').unwrap_or((tail, ""));
        (
            code.parse().unwrap(),
            location.to_string(),
            body.to_string(),
        )
    }

    /// `GET /metrics` with curl, as Prometheus scrapes it: the exposition
    /// (panics unless the answer is 200 in the Prometheus text format).
    #[track_caller]
    pub fn scrape(&self) -> String {
        let (status, content_type, body) = self.metrics_get("/metrics");
        assert_eq!(status, 200, "{body}");
        assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
        body
    }

    /// curl `http://127.0.0.1:METRICS_PORT/PATH`: status, content type, body.
    pub fn metrics_get(&self, path: &str) -> (u16, String, String) {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10"])
            .args(["-w", "\n%{http_code} %{content_type}"])
            .arg(format!("http://127.0.0.1:{}{path}", self.metrics_port))
            .output()
            .unwrap();
        assert_ok(&out, &format!("curl the metrics at {path}"));
        let t = String::from_utf8_lossy(&out.stdout).into_owned();
        // The body as sent (its own last newline kept), then `-w`'s line.
        let (body, tail) = t.rsplit_once('\n').unwrap_or(("", &t));
        let (code, content_type) = tail.split_once(' ').unwrap_or((tail, ""));
        (
            code.parse().unwrap(),
            content_type.to_string(),
            body.to_string(),
        )
    }

    /// `dig @127.0.0.1 -p DNS_PORT ARGS…` against the agent's own DNS
    /// server (one try, 2 s): what it printed.
    pub fn dig(&self, args: &[&str]) -> String {
        dig_at(self.dns_port, args)
    }

    /// [`TestAgent::dig`] `+short ARGS…`: the answers, trimmed.
    pub fn dig_short(&self, args: &[&str]) -> String {
        let mut a = vec!["+short"];
        a.extend_from_slice(args);
        self.dig(&a).trim().to_string()
    }

    /// The status of `dig NAME A`: `NOERROR`, `NXDOMAIN`, `REFUSED`, ….
    #[track_caller]
    pub fn dig_status(&self, name: &str) -> String {
        let full = self.dig(&[name, "A"]);
        full.split("status: ")
            .nth(1)
            .and_then(|r| r.split(',').next())
            .unwrap_or_else(|| panic!("dig {name}: no status in {full}"))
            .to_string()
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

    /// Wait (≤ 10 s) until no systemd-nspawn runs container `name`.
    #[track_caller]
    pub fn wait_no_process(&self, name: &str) {
        wait_until(
            Duration::from_secs(10),
            format!("no process of container {name} runs"),
            || {
                reap_orphans();
                !nspawn_pids(&self.containers_dir)
                    .iter()
                    .any(|(_, n)| n == name)
            },
        );
    }

    /// Every trace a container can leave on the host, as a list of what is
    /// still there (empty: none).
    pub fn traces_of(&self, name: &str, address: Ipv4Addr) -> Vec<String> {
        let mut t = Vec::new();
        if nspawn_pids(&self.containers_dir)
            .iter()
            .any(|(_, n)| n == name)
        {
            t.push("systemd-nspawn process".into());
        }
        let netns = Path::new("/run/netns").join(format!("{}{name}", self.netns_prefix));
        let netns_there = match &self.standin {
            Some(si) => si
                .exec(&["test", "-e", &netns.display().to_string()])
                .status
                .success(),
            None => netns.exists(),
        };
        if netns_there {
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
            ("notify socket", self.dir.join(format!("run/notify/{name}"))),
            ("pid file", self.dir.join(format!("run/pids/{name}"))),
        ] {
            if p.symlink_metadata().is_ok() {
                t.push(format!("{what} {}", p.display()));
            }
        }
        let mountinfo = match &self.standin {
            Some(si) => String::from_utf8_lossy(&si.exec(&["cat", "/proc/self/mountinfo"]).stdout)
                .into_owned(),
            None => std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default(),
        };
        if let Some(si) = &self.standin {
            let unit = format!("devhost-{name}.service");
            let state = si.unit_property(&unit, "ActiveState");
            if state != "inactive" {
                t.push(format!("unit {unit} is {state}"));
            }
            if si
                .machines()
                .lines()
                .any(|l| l.split_whitespace().next() == Some(name))
            {
                t.push("machine registered".into());
            }
        }
        let root = self.containers_dir.join(name).display().to_string();
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
        // Names the test did not choose (batou's dynamic ones) too.
        let mut names = Vec::new();
        if self.running {
            if let Ok(out) = Command::new(DEVHOST)
                .args(["--json", "list"])
                .env("DEVHOST_SOCKET", &self.socket)
                .output()
            {
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) {
                    for c in v["containers"].as_array().cloned().unwrap_or_default() {
                        let n = c["name"].as_str().unwrap_or("").to_string();
                        let _ = self.devhost(&["destroy", &n]);
                        names.push(n);
                    }
                }
            }
        }
        self.stop_agent(nix::sys::signal::Signal::SIGTERM);
        // Powering the stand-in off stops whatever ran in it.
        drop(self.standin.take());
        // Anything that survived: processes, namespaces, veths, the table.
        for (pid, _) in nspawn_pids(&self.containers_dir) {
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
        // Best effort: a cleanup does not panic.
        let _ = poll_until(Duration::from_secs(10), || {
            reap_orphans();
            nspawn_pids(&self.containers_dir).is_empty()
        });
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
            if n.starts_with(&format!("ve-t{}", self.tag))
                || names.iter().any(|c| n == format!("ve-{c}"))
            {
                let _ = Command::new("ip").args(["link", "delete", &n]).status();
            }
        }
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", &self.table])
            .stderr(Stdio::null())
            .status();
        reap_orphans();
        // Mounts a test made below its directory (a tmpfs state dir).
        let prefix = format!("{}/", self.dir.display());
        let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|m| m.starts_with(&prefix))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = Command::new("umount").arg(&m).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        self.cleanup();
    }
}
