//! Certificates from a real ACME server (Pebble) through the agent's own
//! challenge answers: dns-01 from its authoritative zone (a wildcard per
//! container, the TXT values seen with dig while pending), http-01 on its
//! port 80 and tls-alpn-01 in its TLS handshake (one name per alias,
//! reissued when aliases change, nothing ordered while DNS points
//! elsewhere); renewal of short-lived certificates, the last good one
//! served while the CA is gone, and the rate budget holding an order back.
//! Clients are curl (HTTP/1.1 and HTTP/2) and a websocket, trusting only
//! Pebble's root. The dns-01 tests share one agent, Pebble and container
//! (an order takes seconds); tests that change a container make their own.

mod common;

use common::pebble::{certs_toml, ApiCa, Pebble};
use common::*;
use devhost::certs::CertInfo;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PEBBLE: &[&str] = &["pebble", "dig", "curl"];

fn zone_toml() -> String {
    "[dns]\nenable = true\nlisten = [\"127.0.0.1:@DNS_PORT@\"]\naddresses = [\"127.0.0.1\"]\n"
        .into()
}

/// What the agent logs at the end of each pass of its certificate worker
/// (at debug level, which the agents here log).
const PASS_DONE: &str = "certificates: pass over";

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
        agent_env: vec![(
            "DEVHOST_LOG".into(),
            "info,devhost::certs::worker=debug".into(),
        )],
        ..Options::default()
    });
    let pebble = Pebble::start(&agent, &ca, validity_secs);
    (tmp, agent, pebble)
}

/// The container's certificate once `ok` says so (panics with the status
/// and Pebble's log after `limit`).
#[track_caller]
fn wait_cert(
    agent: &TestAgent,
    pebble: &Pebble,
    name: &str,
    limit: Duration,
    ok: impl Fn(&CertInfo) -> bool,
) -> CertInfo {
    wait_until(
        limit,
        format!("the certificate of {name} is as wanted"),
        || match agent.status(name).certificate {
            Some(c) if ok(&c) => Ok(c),
            c => Err(format!("{c:?}\n--- pebble ---\n{}", pebble.log())),
        },
    )
}

fn state_is(want: &'static str) -> impl Fn(&CertInfo) -> bool {
    move |c| c.state.as_str() == want
}

/// `curl https://HOST/PATH` on the agent's port trusting only `root`:
/// (status, HTTP version, body).
#[track_caller]
fn get(
    agent: &TestAgent,
    root: &Path,
    host: &str,
    path: &str,
    version: &str,
) -> (u16, String, String) {
    let a = agent.https(root, host, path, &[version]);
    (a.status, a.version, a.body)
}

/// The agent refuses the TLS handshake for `host`: it has no certificate.
#[track_caller]
fn assert_no_certificate_for(agent: &TestAgent, root: &Path, host: &str) {
    let e = agent.https_fails(root, host, "/", &["-o", "/dev/null"]);
    assert_eq!(e.code, CurlFailure::TLS_HANDSHAKE, "{host}: {e}");
}

fn mode_of(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// The orders the agent's rate budget counted.
fn orders(agent: &TestAgent) -> usize {
    let ledger = agent.dir.join("state/certs/acme/ledger.json");
    serde_json::from_slice::<serde_json::Value>(&std::fs::read(ledger).unwrap()).unwrap()["orders"]
        .as_array()
        .unwrap()
        .len()
}

fn live_cert(agent: &TestAgent, name: &str) -> PathBuf {
    agent
        .dir
        .join("state/certs/live")
        .join(name)
        .join("cert.pem")
}

/// `devhost ensure NAME CHANNEL ALIASES… --upstream UPSTREAMS…`
fn ensure(agent: &TestAgent, name: &str, aliases: &[&str], upstreams: &[&str]) {
    let url = &channel().url;
    let mut args = vec!["ensure", name, url];
    args.extend_from_slice(aliases);
    for u in upstreams {
        args.extend_from_slice(&["--upstream", u]);
    }
    assert_ok(
        &agent.devhost(&args),
        &format!("ensure {}", args[3..].join(" ")),
    );
}

/// An agent with dns-01 certificates from its Pebble and container `d01`
/// (alias `web` to its httpd, the test server for the container itself),
/// its certificate issued while a watcher saw the challenge's TXT values.
struct Dns01 {
    pebble: Pebble,
    agent: TestAgent,
    _tmp: tempfile::TempDir,
    name: String,
    /// `d01.dev.test`, `web.d01.dev.test`, `_acme-challenge.d01.dev.test`.
    base: String,
    web: String,
    txt_name: String,
    /// Pebble's root, the only one clients trust.
    root: PathBuf,
    cert: CertInfo,
    /// The TXT answers seen at the challenge name while the order ran.
    seen: Vec<String>,
}

static DNS01: Shared<Dns01> = Shared::new();

fn dns01(test: &str) -> Option<Arc<Dns01>> {
    prerequisites_and(test, PEBBLE)?;
    Some(DNS01.get(|| {
        let (tmp, agent, pebble) = with_pebble("dns-01", "", None);
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
        ensure(&agent, &name, &["web"], &["http:8080", "web=http:80"]);
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
        upstream::start_in_netns(&format!("{}{name}", agent.netns_prefix));
        Dns01 {
            root: pebble.issuer_root(),
            web: format!("web.{base}"),
            pebble,
            agent,
            _tmp: tmp,
            name,
            base,
            txt_name,
            cert,
            seen,
        }
    }))
}

#[test]
fn a_dns01_certificate_covers_the_container_and_a_wildcard() {
    let Some(f) = dns01("a_dns01_certificate_covers_the_container_and_a_wildcard") else {
        return;
    };
    assert_eq!(f.cert.names, vec![f.base.clone(), format!("*.{}", f.base)]);
    assert_eq!(
        f.cert.issuer,
        Some(format!("https://127.0.0.1:{}/dir", f.agent.acme_port))
    );
}

#[test]
fn both_dns01_challenge_values_are_published_at_once() {
    let Some(f) = dns01("both_dns01_challenge_values_are_published_at_once") else {
        return;
    };
    assert!(
        f.seen.iter().any(|a| a.lines().count() == 2),
        "both challenge values at {} at once, seen: {:?}",
        f.txt_name,
        f.seen
    );
}

#[test]
fn dns01_challenge_values_are_withdrawn_after_the_order() {
    let Some(f) = dns01("dns01_challenge_values_are_withdrawn_after_the_order") else {
        return;
    };
    assert_eq!(
        f.agent.dig_short(&[&f.txt_name, "TXT"]),
        "",
        "withdrawn after the order"
    );
}

#[test]
fn an_alias_resolves_to_the_edge() {
    let Some(f) = dns01("an_alias_resolves_to_the_edge") else {
        return;
    };
    assert_eq!(f.agent.dig_short(&[&f.web, "A"]), "127.0.0.1");
}

#[test]
fn the_acme_certificate_is_served_over_http1_and_http2() {
    let Some(f) = dns01("the_acme_certificate_is_served_over_http1_and_http2") else {
        return;
    };
    for v in ["--http1.1", "--http2"] {
        let (code, version, body) = get(&f.agent, &f.root, &f.web, "/", v);
        assert_eq!(code, 200, "{v}: {body}");
        assert_eq!(version, if v == "--http2" { "2" } else { "1.1" });
        assert_eq!(body.trim(), format!("hello from fc {}", f.name));
    }
}

#[test]
fn a_websocket_is_served_with_the_acme_certificate() {
    let Some(f) = dns01("a_websocket_is_served_with_the_acme_certificate") else {
        return;
    };
    assert_eq!(
        upstream::websocket_echo(
            &f.root,
            f.agent.https_port,
            &f.base,
            "wss with Pebble's certificate"
        ),
        "wss with Pebble's certificate"
    );
}

#[test]
fn certificate_and_account_keys_are_0600() {
    let Some(f) = dns01("certificate_and_account_keys_are_0600") else {
        return;
    };
    let key = live_cert(&f.agent, &f.name).with_file_name("key.pem");
    assert_eq!(mode_of(&key), 0o600);
    let account = f.agent.dir.join(format!(
        "state/certs/acme/account-127.0.0.1_{}_dir.json",
        f.agent.acme_port
    ));
    assert_eq!(mode_of(&account), 0o600);
}

#[test]
fn port_80_answers_acme_paths_and_redirects_routed_names() {
    let Some(f) = dns01("port_80_answers_acme_paths_and_redirects_routed_names") else {
        return;
    };
    let (code, _) = f
        .agent
        .http(&f.web, "/.well-known/acme-challenge/unknown-token");
    assert_eq!(code, 404);
    let (code, _) = f.agent.http(&f.web, "/x?y=1");
    assert_eq!(code, 301);
}

#[test]
fn a_new_alias_is_covered_by_the_wildcard_without_a_new_order() {
    let Some(f) = dns01("a_new_alias_is_covered_by_the_wildcard_without_a_new_order") else {
        return;
    };
    let (agent, name) = (&f.agent, f.agent.name("alias"));
    ensure(agent, &name, &["web"], &["http:80"]);
    wait_cert(
        agent,
        &f.pebble,
        &name,
        Duration::from_secs(60),
        state_is("valid"),
    );
    let cert_pem = live_cert(agent, &name);
    let before = std::fs::read(&cert_pem).unwrap();
    ensure(agent, &name, &["web", "api"], &["http:80"]);
    let (code, _, _) = get(
        agent,
        &f.root,
        &format!("api.{name}.dev.test"),
        "/",
        "--http2",
    );
    assert_eq!(code, 200);
    assert_eq!(
        std::fs::read(&cert_pem).unwrap(),
        before,
        "same certificate"
    );
    assert_eq!(
        agent.status(&name).certificate.unwrap().state.as_str(),
        "valid"
    );
}

#[test]
fn a_destroyed_containers_certificate_name_and_route_are_gone() {
    let Some(f) = dns01("a_destroyed_containers_certificate_name_and_route_are_gone") else {
        return;
    };
    let (agent, name) = (&f.agent, f.agent.name("gone"));
    let web = format!("web.{name}.dev.test");
    ensure(agent, &name, &["web"], &["http:80"]);
    wait_cert(
        agent,
        &f.pebble,
        &name,
        Duration::from_secs(60),
        state_is("valid"),
    );
    let cert_pem = live_cert(agent, &name);
    assert!(cert_pem.exists());
    assert_eq!(agent.dig_short(&[&web, "A"]), "127.0.0.1");
    assert_ok(&agent.devhost(&["destroy", &name]), "destroy");
    assert!(!cert_pem.exists(), "certificate removed");
    assert_eq!(agent.dig_short(&[&web, "A"]), "");
    assert_no_certificate_for(agent, &f.root, &web);
}

#[test]
fn a_restarted_agent_serves_its_certificate_and_orders_nothing() {
    let Some(()) = prerequisites_and(
        "a_restarted_agent_serves_its_certificate_and_orders_nothing",
        PEBBLE,
    ) else {
        return;
    };
    let (_tmp, mut agent, pebble) = with_pebble("dns-01", "", None);
    let name = agent.name("rs");
    let web = format!("web.{name}.dev.test");
    ensure(&agent, &name, &["web"], &["http:80"]);
    wait_cert(
        &agent,
        &pebble,
        &name,
        Duration::from_secs(60),
        state_is("valid"),
    );
    let root = pebble.issuer_root();
    let cert_pem = live_cert(&agent, &name);
    let before = std::fs::read(&cert_pem).unwrap();
    assert_eq!(orders(&agent), 1);
    agent.stop_agent(nix::sys::signal::Signal::SIGTERM);
    let restart = agent.log().len();
    agent.spawn();
    let (code, _, _) = get(&agent, &root, &web, "/", "--http1.1");
    assert_eq!(code, 200);
    // The worker's first pass over the container after the restart: had
    // it started an order, it would have said so before its end.
    let since_restart = wait_until(
        Duration::from_secs(30),
        "the certificate worker's first pass after the restart is done",
        || {
            let log = agent.log()[restart..].to_string();
            if log.contains(&format!("{PASS_DONE} 1 container(s) done")) {
                Ok(log)
            } else {
                Err(log)
            }
        },
    );
    assert!(
        !since_restart.contains(&format!("certificate for {name}: ordering")),
        "no order started after the restart:\n{since_restart}"
    );
    assert_eq!(orders(&agent), 1, "no new order after a restart");
    assert_eq!(std::fs::read(&cert_pem).unwrap(), before);
    assert_eq!(
        agent.status(&name).certificate.unwrap().state.as_str(),
        "valid"
    );
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
    ensure(&agent, &name, &["web"], &["http:80"]);
    let cert = wait_cert(
        &agent,
        &pebble,
        &name,
        Duration::from_secs(60),
        state_is("valid"),
    );
    assert_eq!(cert.names, vec![base.clone(), format!("web.{base}")]);
    let root = pebble.issuer_root();
    for v in ["--http1.1", "--http2"] {
        let (code, _, body) = get(&agent, &root, &format!("web.{base}"), "/", v);
        assert_eq!(
            (code, body.trim()),
            (200, format!("hello from fc {name}").as_str())
        );
    }

    // A new alias: a new certificate with its name.
    ensure(&agent, &name, &["web", "api"], &["http:80"]);
    let want = vec![base.clone(), format!("api.{base}"), format!("web.{base}")];
    let cert = wait_cert(&agent, &pebble, &name, Duration::from_secs(60), |c| {
        c.state.as_str() == "valid" && c.names == want
    });
    assert_eq!(cert.state.as_str(), "valid");
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
    ensure(&agent, &name, &["web"], &[]);
    let cert = wait_cert(
        &agent,
        &pebble,
        &name,
        Duration::from_secs(30),
        state_is("failed"),
    );
    let detail = cert.detail.clone().unwrap_or_default();
    assert!(
        detail.contains("resolves to 127.0.0.1, which is not this host (192.0.2.77)")
            && detail.contains("no order placed"),
        "{detail}"
    );
    assert!(cert.next_try.is_some(), "{cert:?}");
    let ledger = agent.dir.join("state/certs/acme/ledger.json");
    let orders = std::fs::read(&ledger)
        .ok()
        .map(|raw| serde_json::from_slice::<serde_json::Value>(&raw).unwrap()["orders"].clone());
    assert!(
        orders.is_none() || orders == Some(serde_json::json!([])),
        "no order counted: {orders:?}"
    );
    let out = text(&agent.devhost(&["status", &name]));
    assert!(out.contains("certificate: failed"), "{out}");
    assert_ok(&agent.devhost(&["destroy", &name]), "destroy");
}

/// An agent with dns-01 certificates valid 24 s (renewed at 16 s) and a
/// budget of one new certificate a week, and container `ren` holding its
/// first: the agent, Pebble, the name and that certificate.
fn short_lived(test: &str) -> Option<(tempfile::TempDir, TestAgent, Pebble, String, CertInfo)> {
    prerequisites_and(test, PEBBLE)?;
    let (tmp, agent, pebble) = with_pebble("dns-01", "max_new_per_week = 1", Some(24));
    let name = agent.name("ren");
    ensure(&agent, &name, &[], &["http:80"]);
    let first = wait_cert(
        &agent,
        &pebble,
        &name,
        Duration::from_secs(60),
        state_is("valid"),
    );
    Some((tmp, agent, pebble, name, first))
}

#[test]
fn the_rate_budget_holds_a_new_certificate_back() {
    let Some((_tmp, agent, pebble, _, _)) =
        short_lived("the_rate_budget_holds_a_new_certificate_back")
    else {
        return;
    };
    let root = pebble.issuer_root();
    let other = agent.name("ren2");
    ensure(&agent, &other, &[], &[]);
    let held = wait_cert(
        &agent,
        &pebble,
        &other,
        Duration::from_secs(30),
        state_is("held-back"),
    );
    assert!(
        held.detail
            .as_deref()
            .unwrap_or_default()
            .contains("certs.max_new_per_week = 1"),
        "{held:?}"
    );
    assert!(held.next_try.is_some(), "says until when: {held:?}");
    assert_no_certificate_for(&agent, &root, &format!("{other}.dev.test"));
    let out = text(&agent.devhost(&["status", &other]));
    assert!(
        out.contains("certificate: held-back; held back by the rate budget"),
        "{out}"
    );
    assert_ok(&agent.devhost(&["destroy", &other]), "destroy");
}

#[test]
fn a_short_lived_certificate_is_renewed_within_the_budget() {
    let Some((_tmp, agent, pebble, name, first)) =
        short_lived("a_short_lived_certificate_is_renewed_within_the_budget")
    else {
        return;
    };
    // A renewal is not a new certificate: the budget of one allows it.
    let renewed = wait_cert(&agent, &pebble, &name, Duration::from_secs(40), |c| {
        c.state.as_str() == "valid" && c.valid_until != first.valid_until
    });
    assert!(renewed.valid_until > first.valid_until);
    let root = pebble.issuer_root();
    let (code, _, _) = get(&agent, &root, &format!("{name}.dev.test"), "/", "--http2");
    assert_eq!(code, 200);
}

#[test]
fn the_last_good_certificate_is_served_while_the_ca_is_gone() {
    let Some((_tmp, agent, pebble, name, first)) =
        short_lived("the_last_good_certificate_is_served_while_the_ca_is_gone")
    else {
        return;
    };
    let root = pebble.issuer_root();
    // The CA goes away: renewal (at 16 s) fails and is retried.
    drop(pebble);
    let failed = wait_until(
        Duration::from_secs(30),
        "the renewal failed",
        || match agent.status(&name).certificate {
            Some(c) if c.state.as_str() == "failed" => Ok(c),
            c => Err(format!("{c:?}")),
        },
    );
    assert_eq!(failed.valid_until, first.valid_until, "{failed:?}");
    assert!(failed.next_try.is_some(), "{failed:?}");
    let (code, _, _) = get(&agent, &root, &format!("{name}.dev.test"), "/", "--http1.1");
    assert_eq!(code, 200, "the last good certificate is served");
    assert_ok(&agent.devhost(&["destroy", &name]), "destroy");
}
