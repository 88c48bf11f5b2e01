//! `cargo bench --bench edge` (as root; needs wrk, nginx and pebble — see
//! `scripts/bench`): the edge next to its references, in one run.
//!
//! 1. Time from `devhost ensure` returning to the first successful HTTPS
//!    request with a fresh certificate (dns-01 from Pebble through the
//!    agent's own zone), for new containers.
//! 2. HTTPS keep-alive requests/s and latency with wrk (1 thread, 32
//!    connections) against the same upstream (nginx in a container's
//!    network namespace, TLS on 443, a fixed 24-byte answer): hit directly;
//!    through the agent; through nginx on the host configured as the old
//!    role did (`proxy_pass https://…`, no upstream keepalive); and that
//!    nginx with upstream keepalive. The proxies serve the same certificate.
//! 3. Resident memory of the agent and of nginx (master and workers) after
//!    the load.
//!
//! wrk runs in a private mount namespace whose /etc/hosts names the
//! container under the test's public domain, so it sends SNI as browsers do.

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use common::pebble::{certs_toml, ApiCa, Pebble};
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::wrk::{wrk, Nginx, Wrk};
use support::{rss_kib, tree_rss_kib};

const FRESH_ROUNDS: usize = 5;
/// Rounds over all targets; `BENCH_ROUNDS` overrides.
fn rounds() -> usize {
    std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

/// wrk's duration per target; `BENCH_WRK_SECS` overrides (for profiling).
fn wrk_secs() -> u32 {
    std::env::var("BENCH_WRK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
}

fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["upstream".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (c, k) = (dir.join("up.pem"), dir.join("up-key.pem"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

fn curl_ok(agent: &TestAgent, root: &Path, host: &str) -> bool {
    let port = agent.https_port;
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
            "--cacert",
        ])
        .arg(root)
        .arg("--resolve")
        .arg(format!("{host}:{port}:127.0.0.1"))
        .arg(format!("https://{host}:{port}/"))
        .stderr(Stdio::null())
        .output()
        .unwrap();
    out.stdout == b"200"
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists targets; nothing to run then.
    }
    let Some(()) = prerequisites_and("bench edge", &["wrk", "nginx", "pebble", "curl", "unshare"])
    else {
        return;
    };
    let ch = channel();
    let tmp = tempfile::tempdir().unwrap();
    let ca = ApiCa::make(&tmp.path().join("pebble"));
    let agent = TestAgent::start(Options {
        extra_toml: "[dns]\nenable = true\nlisten = [\"127.0.0.1:@DNS_PORT@\"]\naddresses = [\"127.0.0.1\"]\n".to_string()
            + &certs_toml("dns-01", &ca, ""),
        ..Options::default()
    });
    let pebble = Pebble::start(&agent, &ca, None);

    // 1. ensure → first HTTPS with a fresh certificate.
    let first = agent.name("warm");
    assert_ok(
        &agent.devhost(&["ensure", &first, &ch.url, "--upstream", "http:80"]),
        "build",
    );
    let root = pebble.issuer_root();
    let mut ensure_ms = Vec::new();
    let mut fresh_ms = Vec::new();
    for i in 0..FRESH_ROUNDS {
        let name = agent.name(&format!("f{i}"));
        let host = format!("{name}.dev.test");
        let t = Instant::now();
        assert_ok(
            &agent.devhost(&["ensure", &name, &ch.url, "--upstream", "http:80"]),
            "ensure",
        );
        ensure_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        while !curl_ok(&agent, &root, &host) {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "no HTTPS for {host}:\n{}",
                pebble.log()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
        fresh_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_ok(&agent.devhost(&["destroy", &name]), "destroy");
    }

    // 2. Throughput through the proxies to one upstream.
    let name = agent.name("tp");
    let host = format!("web.{name}.dev.test");
    assert_ok(&agent.devhost(&["ensure", &name, &ch.url, "web"]), "ensure");
    while agent.status_json(&name).unwrap()["certificate"]["state"] != "valid" {
        std::thread::sleep(Duration::from_millis(50));
    }
    let ip = agent.address(&name);
    let (up_cert, up_key) = self_signed(tmp.path());
    let upstream = Nginx::start(
        tmp.path(),
        "upstream",
        &format!(
            "  server {{\n    listen 443 ssl;\n    ssl_certificate {};\n    ssl_certificate_key {};\n    location / {{ return 200 \"hello from the upstream\\n\"; }}\n  }}",
            up_cert.display(),
            up_key.display()
        ),
        Some(&format!("{}{name}", agent.netns_prefix)),
    );
    let live = agent.dir.join("state/certs/live").join(&name);
    let headers = "proxy_set_header Host $host;\n      proxy_set_header X-Real-IP $remote_addr;\n      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n      proxy_set_header X-Forwarded-Proto $scheme;\n      proxy_set_header X-Forwarded-Host $host;\n      proxy_set_header X-Forwarded-Server $host;";
    let (old_port, keep_port) = (
        23000 + 2 * agent.subnet as u16,
        23001 + 2 * agent.subnet as u16,
    );
    let server = |port: u16, location: &str| {
        format!(
            "  server {{\n    listen 127.0.0.1:{port} ssl http2;\n    server_name {name}.dev.test *.{name}.dev.test;\n    ssl_certificate {};\n    ssl_certificate_key {};\n    location / {{\n      {location}\n      {headers}\n    }}\n  }}\n",
            live.join("cert.pem").display(),
            live.join("key.pem").display()
        )
    };
    let host_nginx = Nginx::start(
        tmp.path(),
        "host",
        &format!(
            "  upstream keep {{ server {ip}:443; keepalive 32; }}\n{}{}",
            server(old_port, &format!("proxy_pass https://{ip}:443;")),
            server(
                keep_port,
                "proxy_pass https://keep;\n      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";"
            )
        ),
        None,
    );
    // `BENCH_ONLY=agent,keepalive` measures only the targets whose label
    // has one of those words.
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let picked = |l: &str| only.split(',').any(|w| l.contains(w));
    let hosts = tmp.path().join("hosts");
    std::fs::write(&hosts, format!("127.0.0.1 localhost {host}\n")).unwrap();
    let targets = [
        (
            "upstream hit directly (reference)",
            format!("https://{ip}:443/"),
        ),
        (
            "**devhost agent** (upstream https:443)",
            format!("https://{host}:{}/", agent.https_port),
        ),
        (
            "nginx as the old role (no upstream keepalive)",
            format!("https://{host}:{old_port}/"),
        ),
        (
            "nginx with upstream keepalive",
            format!("https://{host}:{keep_port}/"),
        ),
    ];
    // Rounds interleave the targets, so a slow moment of the machine does
    // not land on one of them only; the table has each target's median.
    let picked: Vec<&(&str, String)> = targets.iter().filter(|(l, _)| picked(l)).collect();
    for (_, url) in &picked {
        wrk(&hosts, url, 2); // warm up: TLS sessions, pools, caches
    }
    let mut runs: Vec<Vec<Wrk>> = picked.iter().map(|_| Vec::new()).collect();
    for _ in 0..rounds() {
        for (i, (_, url)) in picked.iter().enumerate() {
            runs[i].push(wrk(&hosts, url, wrk_secs()));
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let results: Vec<(&str, Wrk)> = picked
        .iter()
        .zip(runs)
        .map(|((label, _), r)| {
            (
                *label,
                Wrk {
                    rps: median(r.iter().map(|w| w.rps).collect()),
                    p50_ms: median(r.iter().map(|w| w.p50_ms).collect()),
                    p99_ms: median(r.iter().map(|w| w.p99_ms).collect()),
                },
            )
        })
        .collect();
    let agent_rss = agent.pid().map(rss_kib).unwrap_or(0);
    let nginx_rss = tree_rss_kib(host_nginx.pid());
    drop(host_nginx);
    drop(upstream);

    let stats = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        (v[v.len() / 2], v[0], v[v.len() - 1])
    };
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!(
        "\nedge bench: {cores} cores, wrk -t1 -c32 -d{}s, HTTPS keep-alive, median of {} interleaved rounds\n",
        wrk_secs(),
        rounds()
    );
    println!("| through | req/s | p50 (ms) | p99 (ms) |\n|---|---:|---:|---:|");
    for (label, r) in &results {
        println!(
            "| {label} | {:.0} | {:.2} | {:.2} |",
            r.rps, r.p50_ms, r.p99_ms
        );
    }
    let (e_med, e_min, e_max) = stats(ensure_ms);
    let (f_med, f_min, f_max) = stats(fresh_ms);
    println!("\n| ms ({FRESH_ROUNDS} new containers, dns-01 via Pebble) | median | min | max |\n|---|---:|---:|---:|");
    println!("| devhost ensure of a new name (Nix evaluates; nothing to build) | {e_med:.0} | {e_min:.0} | {e_max:.0} |");
    println!("| **ensure returned → first HTTPS 200 with its fresh certificate** | **{f_med:.0}** | {f_min:.0} | {f_max:.0} |");
    println!(
        "\nresident memory after the load: agent {} MiB, host nginx (master + workers) {} MiB",
        agent_rss / 1024,
        nginx_rss / 1024
    );
    for n in [&first, &name] {
        let _ = agent.devhost(&["destroy", n]);
    }
}
