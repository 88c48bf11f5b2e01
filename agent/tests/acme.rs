//! Certificates from a real ACME server (Pebble) through the agent's own
//! challenge answers: dns-01 from its authoritative zone (a wildcard per
//! container, the TXT values seen with dig while pending), http-01 on its
//! port 80 and tls-alpn-01 in its TLS handshake (one name per alias,
//! reissued when aliases change, nothing ordered while DNS points
//! elsewhere); renewal of short-lived certificates, the last good one
//! served while the CA is gone, and the rate budget holding an order back.
//! Clients are curl (HTTP/1.1 and HTTP/2) and a websocket, trusting only
//! Pebble's root.

mod common;

use common::pebble::{certs_toml, ApiCa, Pebble};
use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PEBBLE: &[&str] = &["pebble", "dig", "curl"];

fn zone_toml() -> String {
    "[dns]\nenable = true\nlisten = [\"127.0.0.1:@DNS_PORT@\"]\naddresses = [\"127.0.0.1\"]\n"
        .into()
}

/// An agent serving its zone with certificates by `mode` from a Pebble of
/// its own (certificates valid `validity_secs` when given); `extra` adds
/// `[certs]` keys. The temp dir holds Pebble's files.
fn with_pebble(
    mode: &str,
    extra: &str,
    validity_secs: Option<u64>,
) -> (tempfile::TempDir, TestAgent, Pebble) {
    let tmp = tempfile::tempdir().unwrap();
    let ca = ApiCa::make(tmp.path());
    let agent = TestAgent::start(Options {
        extra_toml: zone_toml() + &certs_toml(mode, &ca, extra),
        ..Options::default()
    });
    let pebble = Pebble::start(&agent, &ca, validity_secs);
    (tmp, agent, pebble)
}

/// The container's `certificate` once `ok` says so (panics with the status
/// and Pebble's log after `limit`).
fn wait_cert(
    agent: &TestAgent,
    pebble: &Pebble,
    name: &str,
    limit: Duration,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let s = agent.status_json(name).unwrap();
        if ok(&s["certificate"]) {
            return s["certificate"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "certificate of {name}: {}\n--- pebble ---\n{}",
            s["certificate"],
            pebble.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn state_is(want: &'static str) -> impl Fn(&Value) -> bool {
    move |c| c["state"] == want
}

/// `curl https://HOST/PATH` on the agent's port trusting only `root`:
/// (status, HTTP version, body).
fn get(
    agent: &TestAgent,
    root: &Path,
    host: &str,
    path: &str,
    version: &str,
) -> (u16, String, String) {
    let a = answer(
        &curl_https_on(agent.https_port, root, host, path, &[version]),
        host,
        path,
    );
    (a.status, a.version, a.body)
}

fn tls_fails(agent: &TestAgent, root: &Path, host: &str) -> bool {
    let port = agent.https_port;
    !Command::new("curl")
        .args(["-sS", "--max-time", "10", "-o", "/dev/null", "--cacert"])
        .arg(root)
        .arg("--resolve")
        .arg(format!("{host}:{port}:127.0.0.1"))
        .arg(format!("https://{host}:{port}/"))
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

fn dig_short(agent: &TestAgent, name: &str, t: &str) -> String {
    dig_at(agent.dns_port, &["+short", name, t])
        .trim()
        .to_string()
}

fn names(c: &Value) -> Vec<String> {
    c["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn mode_of(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn dns01_wildcard_certificate_per_container() {
    let Some(()) = prerequisites_and("dns01_wildcard_certificate_per_container", PEBBLE) else {
        return;
    };
    let (_tmp, mut agent, pebble) = with_pebble("dns-01", "", None);
    let name = agent.name("d01");
    let base = format!("{name}.dev.test");
    let txt_name = format!("_acme-challenge.{base}");

    // Watch the challenge name while the order runs.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (stop, port, txt_name) = (stop.clone(), agent.dns_port, txt_name.clone());
        std::thread::spawn(move || {
            let mut seen: Vec<String> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let answer = dig_at(port, &["+short", &txt_name, "TXT"])
                    .trim()
                    .to_string();
                if !answer.is_empty() && !seen.contains(&answer) {
                    seen.push(answer);
                }
            }
            seen
        })
    };
    let t0 = Instant::now();
    assert_ok(
        &agent.devhost(&[
            "ensure",
            &name,
            &channel().url,
            "web",
            "--upstream",
            "http:8080",
            "--upstream",
            "web=http:80",
        ]),
        "ensure",
    );
    let ensured = t0.elapsed();
    let cert = wait_cert(
        &agent,
        &pebble,
        &name,
        Duration::from_secs(60),
        state_is("valid"),
    );
    stop.store(true, Ordering::Relaxed);
    let seen = watcher.join().unwrap();
    eprintln!("ensure {ensured:?}; certificate after {:?}", t0.elapsed());
    assert_eq!(names(&cert), vec![base.clone(), format!("*.{base}")]);
    assert_eq!(
        cert["issuer"],
        format!("https://127.0.0.1:{}/dir", agent.acme_port)
    );
    assert!(
        seen.iter().any(|a| a.lines().count() == 2),
        "both challenge values at {txt_name} at once, seen: {seen:?}"
    );
    assert_eq!(
        dig_short(&agent, &txt_name, "TXT"),
        "",
        "withdrawn after the order"
    );
    assert_eq!(dig_short(&agent, &format!("web.{base}"), "A"), "127.0.0.1");

    // Served over HTTP/1.1 and HTTP/2 with Pebble's certificate.
    let root = pebble.issuer_root();
    let web = format!("web.{base}");
    for v in ["--http1.1", "--http2"] {
        let (code, version, body) = get(&agent, &root, &web, "/", v);
        assert_eq!(code, 200, "{v}: {body}");
        assert_eq!(version, if v == "--http2" { "2" } else { "1.1" });
        assert_eq!(body.trim(), format!("hello from fc {name}"));
    }
    upstream::start_in_netns(&format!("{}{name}", agent.netns_prefix));
    assert_eq!(
        upstream::websocket_echo(
            &root,
            agent.https_port,
            &base,
            "wss with Pebble's certificate"
        ),
        "wss with Pebble's certificate"
    );

    // A new alias is covered by the wildcard: no new order.
    let cert_pem = agent
        .dir
        .join("state/certs/live")
        .join(&name)
        .join("cert.pem");
    let before = std::fs::read(&cert_pem).unwrap();
    assert_ok(
        &agent.devhost(&[
            "ensure",
            &name,
            &channel().url,
            "web",
            "api",
            "--upstream",
            "http:80",
        ]),
        "ensure with a new alias",
    );
    let (code, _, _) = get(&agent, &root, &format!("api.{base}"), "/", "--http2");
    assert_eq!(code, 200);
    assert_eq!(
        std::fs::read(&cert_pem).unwrap(),
        before,
        "same certificate"
    );

    // A restarted agent serves what it has and orders nothing.
    let ledger = agent.dir.join("state/certs/acme/ledger.json");
    let orders = || {
        serde_json::from_slice::<Value>(&std::fs::read(&ledger).unwrap()).unwrap()["orders"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(orders(), 1);
    agent.stop_agent(nix::sys::signal::Signal::SIGTERM);
    agent.spawn();
    let (code, _, _) = get(&agent, &root, &web, "/", "--http1.1");
    assert_eq!(code, 200);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(orders(), 1, "no new order after a restart");
    assert_eq!(std::fs::read(&cert_pem).unwrap(), before);

    // Keys 0600: the certificate's and the ACME account's.
    assert_eq!(mode_of(&cert_pem.with_file_name("key.pem")), 0o600);
    let account = agent.dir.join(format!(
        "state/certs/acme/account-127.0.0.1_{}_dir.json",
        agent.acme_port
    ));
    assert_eq!(mode_of(&account), 0o600);

    // Port 80: ACME paths are not redirected, everything else is.
    let http = |path: &str| {
        let out = Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "10",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .arg("--resolve")
            .arg(format!("{web}:{}:127.0.0.1", agent.http_port))
            .arg(format!("http://{web}:{}{path}", agent.http_port))
            .output()
            .unwrap();
        text(&out)
    };
    assert_eq!(http("/.well-known/acme-challenge/unknown-token"), "404");
    assert_eq!(http("/x?y=1"), "301");

    // Destroyed: route, names and certificate gone.
    assert_ok(&agent.devhost(&["destroy", &name]), "destroy");
    assert!(!cert_pem.exists(), "certificate removed");
    assert_eq!(dig_short(&agent, &web, "A"), "");
    assert!(tls_fails(&agent, &root, &web));
}

/// http-01 or tls-alpn-01: one certificate with the container's name and
/// each alias's, reissued when the aliases change.
fn per_name_certificates(test: &str, mode: &str) {
    let Some(()) = prerequisites_and(test, PEBBLE) else {
        return;
    };
    let (_tmp, agent, pebble) = with_pebble(mode, "", None);
    let name = agent.name("pn");
    let base = format!("{name}.dev.test");
    let ensure = |aliases: &[&str]| {
        let mut args = vec!["ensure", &name, &channel().url];
        args.extend_from_slice(aliases);
        args.extend_from_slice(&["--upstream", "http:80"]);
        assert_ok(&agent.devhost(&args), "ensure");
    };
    ensure(&["web"]);
    let cert = wait_cert(
        &agent,
        &pebble,
        &name,
        Duration::from_secs(60),
        state_is("valid"),
    );
    assert_eq!(names(&cert), vec![base.clone(), format!("web.{base}")]);
    let root = pebble.issuer_root();
    for v in ["--http1.1", "--http2"] {
        let (code, _, body) = get(&agent, &root, &format!("web.{base}"), "/", v);
        assert_eq!(
            (code, body.trim()),
            (200, format!("hello from fc {name}").as_str())
        );
    }

    // A new alias: a new certificate with its name.
    ensure(&["web", "api"]);
    let want = vec![base.clone(), format!("api.{base}"), format!("web.{base}")];
    let cert = wait_cert(&agent, &pebble, &name, Duration::from_secs(60), |c| {
        c["state"] == "valid" && names(c) == want
    });
    assert_eq!(cert["state"], "valid");
    let (code, _, _) = get(&agent, &root, &format!("api.{base}"), "/", "--http2");
    assert_eq!(code, 200);
    assert_ok(&agent.devhost(&["destroy", &name]), "destroy");
}

#[test]
fn http01_certificate_names_every_alias() {
    per_name_certificates("http01_certificate_names_every_alias", "http-01");
}

#[test]
fn tls_alpn01_certificate_names_every_alias() {
    per_name_certificates("tls_alpn01_certificate_names_every_alias", "tls-alpn-01");
}

#[test]
fn no_order_while_dns_points_elsewhere() {
    let Some(()) = prerequisites_and("no_order_while_dns_points_elsewhere", PEBBLE) else {
        return;
    };
    let (_tmp, agent, pebble) = with_pebble("http-01", "expect_addresses = [\"192.0.2.77\"]", None);
    let name = agent.name("pre");
    assert_ok(
        &agent.devhost(&["ensure", &name, &channel().url, "web"]),
        "ensure",
    );
    let cert = wait_cert(
        &agent,
        &pebble,
        &name,
        Duration::from_secs(30),
        state_is("failed"),
    );
    let detail = cert["detail"].as_str().unwrap();
    assert!(
        detail.contains("resolves to 127.0.0.1, which is not this host (192.0.2.77)")
            && detail.contains("no order placed"),
        "{detail}"
    );
    assert!(cert["next_try"].is_string(), "{cert}");
    let ledger = agent.dir.join("state/certs/acme/ledger.json");
    let orders = std::fs::read(&ledger)
        .ok()
        .map(|raw| serde_json::from_slice::<Value>(&raw).unwrap()["orders"].clone());
    assert!(
        orders.is_none() || orders == Some(serde_json::json!([])),
        "no order counted: {orders:?}"
    );
    let out = text(&agent.devhost(&["status", &name]));
    assert!(out.contains("certificate: failed"), "{out}");
    assert_ok(&agent.devhost(&["destroy", &name]), "destroy");
}

#[test]
fn renewal_last_good_certificate_and_budget() {
    let Some(()) = prerequisites_and("renewal_last_good_certificate_and_budget", PEBBLE) else {
        return;
    };
    // 24 s certificates: renewed at 16 s.
    let (_tmp, agent, pebble) = with_pebble("dns-01", "max_new_per_week = 1", Some(24));
    let name = agent.name("ren");
    let base = format!("{name}.dev.test");
    assert_ok(
        &agent.devhost(&["ensure", &name, &channel().url, "--upstream", "http:80"]),
        "ensure",
    );
    let first = wait_cert(
        &agent,
        &pebble,
        &name,
        Duration::from_secs(60),
        state_is("valid"),
    );
    let root = pebble.issuer_root();

    // A second container: the budget (1 new certificate a week) holds it back.
    let other = agent.name("ren2");
    assert_ok(
        &agent.devhost(&["ensure", &other, &channel().url]),
        "ensure other",
    );
    let held = wait_cert(
        &agent,
        &pebble,
        &other,
        Duration::from_secs(30),
        state_is("held-back"),
    );
    assert!(
        held["detail"]
            .as_str()
            .unwrap()
            .contains("certs.max_new_per_week = 1"),
        "{held}"
    );
    assert!(held["next_try"].is_string(), "says until when: {held}");
    assert!(tls_fails(&agent, &root, &format!("{other}.dev.test")));
    let out = text(&agent.devhost(&["status", &other]));
    assert!(
        out.contains("certificate: held-back; held back by the rate budget"),
        "{out}"
    );

    // Renewal (not a new certificate, so within the budget).
    let renewed = wait_cert(&agent, &pebble, &name, Duration::from_secs(40), |c| {
        c["state"] == "valid" && c["valid_until"] != first["valid_until"]
    });
    assert!(renewed["valid_until"].as_str() > first["valid_until"].as_str());
    let (code, _, _) = get(&agent, &root, &base, "/", "--http2");
    assert_eq!(code, 200);

    // The CA goes away: renewal fails and is retried, the last good
    // certificate is still served.
    drop(pebble);
    let deadline = Instant::now() + Duration::from_secs(30);
    let failed = loop {
        let c = agent.status_json(&name).unwrap()["certificate"].clone();
        if c["state"] == "failed" {
            break c;
        }
        assert!(Instant::now() < deadline, "renewal never failed: {c}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(failed["valid_until"], renewed["valid_until"], "{failed}");
    assert!(failed["next_try"].is_string(), "{failed}");
    let (code, _, _) = get(&agent, &root, &base, "/", "--http1.1");
    assert_eq!(code, 200, "the last good certificate is served");
    for n in [&name, &other] {
        assert_ok(&agent.devhost(&["destroy", n]), "destroy");
    }
}
