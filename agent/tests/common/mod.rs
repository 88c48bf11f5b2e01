//! Integration-test harness: runs the real agent (`devhost agent`) as root
//! against real Nix, systemd-nspawn, iproute2 and nftables, isolated per test
//! in a temp dir with its own container-name tag, netns prefix, nft table and
//! /24 subnet. Everything a test creates is removed on drop, also when the
//! test fails. Missing prerequisites fail the test under CI=true and skip it
//! with a printed reason elsewhere.

#![allow(dead_code)]

mod agent;
pub mod batou;
mod channel;
pub mod exposition;
mod nixcount;
pub mod pebble;
mod shared;
mod standin;
pub mod upstream;
mod wait;

#[allow(unused_imports)] // not every test binary uses every helper
pub use agent::{Kind, Options, TestAgent};
#[allow(unused_imports)]
pub use channel::{channel, serve_counted};
#[allow(unused_imports)]
pub use nixcount::NixCounter;
#[allow(unused_imports)]
pub use shared::Shared;
#[allow(unused_imports)]
pub use wait::{poll_until, wait_until};

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

pub const DEVHOST: &str = env!("CARGO_BIN_EXE_devhost");
pub const FC_BUILD: &str = env!("CARGO_BIN_EXE_fc-build-dev-container");
pub const NIXOS_CONTAINER: &str = env!("CARGO_BIN_EXE_nixos-container");
pub const FC_DEVHOST: &str = env!("CARGO_BIN_EXE_fc-devhost");

fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false)
}

/// A test that cannot run here for a reason outside the project (the issue
/// names it: a nixpkgs `lib` that only the operator can provide): says so,
/// and leaves a line for scripts/test's summary, which counts it as skipped.
pub fn not_run(test: &str, why: &str) {
    let line = format!("{test}: not run: {why}");
    eprintln!("NOT RUN {line}");
    let list = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("not-run.txt");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(list)
    {
        let _ = writeln!(f, "{line}");
    }
}

/// Check what the real-program tests need. `None` means skip (reason printed);
/// under CI a missing prerequisite is a failure.
pub fn prerequisites(test: &str) -> Option<()> {
    prerequisites_and(test, &[])
}

/// [`prerequisites`], and the programs in `extra` (`pebble`, `dig`).
pub fn prerequisites_and(test: &str, extra: &[&str]) -> Option<()> {
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
    ]
    .iter()
    .chain(extra)
    {
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
        "{test}: needs {} (run scripts/install-deps as root)",
        missing.join(", ")
    );
    if in_ci() {
        panic!("missing prerequisite under CI: {msg}");
    }
    eprintln!("SKIP {msg}");
    None
}

/// Test users without passwd entries: members of `users` when they run
/// with [`users_gid`] as their group, nobody's otherwise.
pub const ALICE: u32 = 61001;
pub const BOB: u32 = 61002;
pub const STRANGER: u32 = 61003;

/// The gid of the group `users` (the test agents' user group).
pub fn users_gid() -> u32 {
    nix::unistd::Group::from_name("users")
        .unwrap()
        .expect("group users")
        .gid
        .as_raw()
}

pub(crate) fn random_hex(n: usize) -> String {
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

pub(crate) fn become_subreaper() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = nix::sys::prctl::set_child_subreaper(true);
    });
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

/// Run a fixture script that prints what it built (cached across runs).
fn fixture_script(script: &str) -> String {
    let path = format!("{}/../tests/fixtures/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(&path).output().expect("run a fixture script");
    assert!(
        out.status.success(),
        "{script} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The full-system tree (tests/fixtures/fullsystem/build-tree): its store
/// path and the private key that logs in as `developer`.
pub fn full_system_tree() -> &'static (String, String) {
    static T: OnceLock<(String, String)> = OnceLock::new();
    T.get_or_init(|| {
        let s = fixture_script("fullsystem/build-tree");
        let mut it = s.split_whitespace();
        (
            it.next().unwrap().to_string(),
            it.next().unwrap().to_string(),
        )
    })
}

/// What the batou test takes from PyPI (tests/fixtures/batou/fetch-kit):
/// `wheels/`, `appenv`, `uv`.
pub fn batou_kit() -> &'static PathBuf {
    static K: OnceLock<PathBuf> = OnceLock::new();
    K.get_or_init(|| PathBuf::from(fixture_script("batou/fetch-kit")))
}

/// What curl got over HTTPS.
pub struct Answer {
    pub status: u16,
    /// `1.1` or `2`.
    pub version: String,
    pub body: String,
}

/// curl to `https://HOST:PORT/PATH`, HOST resolved to loopback, trusting
/// only `cacert`; the output ends in a line `STATUS VERSION`.
pub fn curl_https_on(port: u16, cacert: &Path, host: &str, path: &str, extra: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(cacert)
        .arg("--resolve")
        .arg(format!("{host}:{port}:127.0.0.1"))
        .args(["-w", "\n%{http_code} %{http_version}"])
        .args(extra)
        .arg(format!("https://{host}:{port}{path}"))
        .output()
        .unwrap()
}

/// Why curl got no answer: its exit code (`man curl`, EXIT CODES) and what
/// it said.
#[derive(Debug)]
pub struct CurlFailure {
    pub code: i32,
    pub message: String,
}

impl CurlFailure {
    /// Could not connect (nothing listens).
    pub const COULD_NOT_CONNECT: i32 = 7;
    /// The TLS handshake failed (the server refused it).
    pub const TLS_HANDSHAKE: i32 = 35;
}

impl std::fmt::Display for CurlFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "curl exit {}: {}", self.code, self.message)
    }
}

/// The [`Answer`] in a successful [`curl_https_on`] output.
pub fn answer(out: &Output, host: &str, path: &str) -> Answer {
    assert!(
        out.status.success(),
        "curl https://{host}{path}: {}",
        text(out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, tail) = stdout.rsplit_once('\n').unwrap();
    let (code, version) = tail.split_once(' ').unwrap();
    Answer {
        status: code.parse().unwrap(),
        version: version.to_string(),
        body: body.to_string(),
    }
}

/// `dig @127.0.0.1 -p PORT ARGS…` (one try, 2 s): what it printed.
pub fn dig_at(port: u16, args: &[&str]) -> String {
    let out = Command::new("dig")
        .arg("@127.0.0.1")
        .args(["-p", &port.to_string(), "+time=2", "+tries=1"])
        .args(args)
        .output()
        .expect("dig (apt-get install bind9-dnsutils)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run `program args` on a terminal (util-linux `script`, `TERM=dumb`: no
/// terminal answers a shell's queries here), typing `input`; killed if it
/// has not ended within 60 s.
pub fn on_a_terminal(
    agent: &TestAgent,
    uid: u32,
    program: &str,
    args: &[&str],
    input: &str,
) -> Output {
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    let line = std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .env("DEVHOST_SOCKET", &agent.socket)
        .env("TERM", "dumb")
        .env_remove("SUDO_UID")
        .uid(uid)
        .gid(users_gid())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let pid = child.id();
    let watchdog = std::thread::spawn(move || {
        let exited = poll_until(std::time::Duration::from_secs(60), || {
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
        });
        if exited.is_ok() {
            return;
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    });
    let out = child.wait_with_output().unwrap();
    let _ = watchdog.join();
    out
}
