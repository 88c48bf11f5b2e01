//! wrk against the edge (HTTPS keep-alive, SNI from a private /etc/hosts)
//! and nginx as an upstream or a reference proxy.

use crate::common::text;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// What one wrk run measured.
pub struct Wrk {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// A wrk duration (`812.00us`, `2.67ms`, `1.02s`) in ms.
pub fn ms(v: &str) -> f64 {
    let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
    let n: f64 = num.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        _ => f64::NAN,
    }
}

/// wrk (1 thread, 32 connections, `secs` seconds) against `url` with
/// `hosts` as /etc/hosts (a private mount namespace), so that it sends SNI.
/// Panics on errors or non-2xx/3xx answers.
pub fn wrk(hosts: &Path, url: &str, secs: u32) -> Wrk {
    let out = Command::new("unshare")
        .args(["-m", "--", "sh", "-c"])
        // $0 is the hosts file, "$@" the wrk command: no input is parsed by the shell.
        .arg(r#"mount --bind "$0" /etc/hosts && exec "$@""#)
        .arg(hosts)
        .args([
            "wrk",
            "-t1",
            "-c32",
            &format!("-d{secs}s"),
            "--latency",
            url,
        ])
        .output()
        .expect("wrk");
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "wrk {url}: {s}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |prefix: &str| {
        s.lines()
            .map(|l| l.trim())
            .find_map(|l| l.strip_prefix(prefix))
            .map(|r| r.trim().to_string())
            .unwrap_or_default()
    };
    let errors = field("Non-2xx or 3xx responses:");
    assert!(errors.is_empty(), "wrk {url}: {errors} bad answers\n{s}");
    Wrk {
        rps: field("Requests/sec:").parse().unwrap_or(f64::NAN),
        p50_ms: ms(&field("50%")),
        p99_ms: ms(&field("99%")),
    }
}

/// An nginx (master and workers), stopped on drop.
pub struct Nginx {
    pid_file: PathBuf,
}

impl Nginx {
    /// nginx with `http` as the body of its `http {}` block, files in
    /// `dir/name`, in the network namespace `netns` or the host's.
    pub fn start(dir: &Path, name: &str, http: &str, netns: Option<&str>) -> Nginx {
        let d = dir.join(name);
        std::fs::create_dir_all(d.join("tmp")).unwrap();
        let conf = d.join("nginx.conf");
        let pid_file = d.join("nginx.pid");
        let t = d.join("tmp").display().to_string();
        std::fs::write(
            &conf,
            format!(
                "worker_processes auto;\npid {};\nerror_log {}/error.log;\nevents {{ worker_connections 4096; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {t};\n  proxy_temp_path {t};\n  fastcgi_temp_path {t};\n  uwsgi_temp_path {t};\n  scgi_temp_path {t};\n{http}\n}}\n",
                pid_file.display(),
                d.display()
            ),
        )
        .unwrap();
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "nginx"]);
                c
            }
            None => Command::new("nginx"),
        };
        let out = cmd.arg("-c").arg(&conf).arg("-p").arg(&d).output().unwrap();
        assert!(out.status.success(), "nginx {name}: {}", text(&out));
        Nginx { pid_file }
    }

    pub fn pid(&self) -> u32 {
        std::fs::read_to_string(&self.pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let Ok(pid) = std::fs::read_to_string(&self.pid_file)
            .map_err(|_| ())
            .and_then(|p| p.trim().parse::<u32>().map_err(|_| ()))
        else {
            return;
        };
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
