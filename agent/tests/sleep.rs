//! Scale to zero on real containers through the real proxy: a container
//! idle for its `--sleep-after` falls asleep (stopped, record, address and
//! names kept); the first HTTPS request wakes it and gets the container's
//! own answer; ten at once cause one boot; an open websocket, a
//! provisioning run and an SSH connection keep it awake; `devhost wake`
//! and batou's ensure wake it for what the proxy cannot hold; it stays
//! asleep and wakeable across an agent restart; a wake slower than
//! `sleep.wake_timeout_secs` gets the page that retries; cleanup disables
//! and deletes it on its own schedule. The agents check idleness every
//! second; containers sleep after seconds.

mod common;

use chrono::{DateTime, TimeDelta, Utc};
use common::*;
use std::time::{Duration, Instant};

const CHECK_EVERY_SECOND: &str = "[sleep]\ncheck_interval_secs = 1\n";

/// An agent that checks idleness every second (and `more` TOML in its
/// `[sleep]` section).
fn agent(test: &str, more: &str) -> Option<TestAgent> {
    prerequisites(test)?;
    Some(TestAgent::start(Options {
        extra_toml: format!("{CHECK_EVERY_SECOND}{more}"),
        ..Options::default()
    }))
}

/// `devhost ensure NAME` served by `upstream`, sleeping after `after`.
#[track_caller]
fn ensure(agent: &TestAgent, name: &str, upstream: &str, after: &str) {
    let out = agent.devhost(&[
        "ensure",
        name,
        &channel().url,
        "--upstream",
        upstream,
        "--sleep-after",
        after,
    ]);
    assert_ok(&out, &format!("ensure {name} --sleep-after {after}"));
}

fn state(agent: &TestAgent, name: &str) -> String {
    agent.status(name).state.as_str().to_string()
}

#[track_caller]
fn wait_asleep(agent: &TestAgent, name: &str) {
    wait_until(
        Duration::from_secs(30),
        format!("{name} is asleep"),
        || match state(agent, name) {
            s if s == "sleeping" => Ok(()),
            s => Err(s),
        },
    );
}

/// Poll for `how_long` that `name` runs all the while.
#[track_caller]
fn stays_awake(agent: &TestAgent, name: &str, how_long: Duration) {
    let end = Instant::now() + how_long;
    while Instant::now() < end {
        let s = agent.status(name);
        assert_eq!(s.state.as_str(), "running", "{:?}", s.sleep);
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Wait until `devhost status` says what keeps `name` awake.
#[track_caller]
fn wait_held_by(agent: &TestAgent, name: &str, what: &str) {
    wait_until(
        Duration::from_secs(10),
        format!("{name} is held awake by {what}"),
        || {
            let s = agent.status(name).sleep.unwrap_or_default();
            if s.contains(what) {
                Ok(())
            } else {
                Err(s)
            }
        },
    );
}

/// How often the container booted: its init says so on its console at
/// every boot.
fn boots(agent: &TestAgent, name: &str) -> usize {
    let out = agent.devhost(&["logs", name, "--lines", "100000"]);
    assert_ok(&out, "logs");
    String::from_utf8_lossy(&out.stdout)
        .matches("fixture init: serving on ports")
        .count()
}

fn base(name: &str) -> String {
    format!("{name}.dev.test")
}

fn hello(name: &str) -> String {
    format!("hello from fc {name}")
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn time(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

#[test]
fn an_idle_container_falls_asleep_keeping_its_record_address_and_names() {
    let Some(agent) = agent("an_idle_container_falls_asleep", "") else {
        return;
    };
    let name = agent.name("idle");
    ensure(&agent, &name, "http:80", "2s");
    let awake = agent.status(&name);
    assert_eq!(awake.sleep_after, "2s");
    wait_asleep(&agent, &name);
    let s = agent.status(&name);
    let since = time(s.asleep_since.as_deref().expect("asleep since"));
    assert!(
        since - time(&s.last_deploy) >= TimeDelta::seconds(2),
        "not before its idle period: deployed {}, asleep {since}",
        s.last_deploy
    );
    assert_eq!(
        (s.enabled, s.address.as_str(), s.pid),
        (true, awake.address.as_str(), None)
    );
    assert!(!nspawn_pids(&agent.containers_dir)
        .iter()
        .any(|(_, n)| n == &name));
    assert!(
        agent
            .hosts()
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some(name.as_str())),
        "its hosts line stays"
    );
    let list = text(&agent.devhost(&["list"]));
    assert!(
        list.contains(&format!("sleeping (since {})", stamp(since))),
        "{list}"
    );
    let status = text(&agent.devhost(&["status", &name]));
    assert!(
        status.contains(&format!("state:       sleeping (since {})", stamp(since))),
        "{status}"
    );
    assert!(
        status.contains("sleep:       after 2s idle; asleep since"),
        "{status}"
    );
}

#[test]
fn the_first_https_request_wakes_it_and_gets_the_containers_answer() {
    let Some(agent) = agent("the_first_https_request_wakes_it", "") else {
        return;
    };
    let name = agent.name("wake");
    ensure(&agent, &name, "http:80", "2s");
    wait_asleep(&agent, &name);
    let a = agent.https(&agent.local_ca(), &base(&name), "/", &[]);
    assert_eq!((a.status, a.body.trim()), (200, hello(&name).as_str()));
    assert_eq!(state(&agent, &name), "running");
    assert_eq!(agent.status(&name).asleep_since, None);
    assert_eq!(boots(&agent, &name), 2, "created, then woken once");
}

#[test]
fn ten_concurrent_first_requests_cause_one_start() {
    let Some(agent) = agent("ten_concurrent_first_requests_cause_one_start", "") else {
        return;
    };
    let name = agent.name("ten");
    ensure(&agent, &name, "http:80", "2s");
    wait_asleep(&agent, &name);
    let host = base(&name);
    let ca = agent.local_ca();
    let go = std::sync::Arc::new(std::sync::Barrier::new(10));
    let requests: Vec<_> = (0..10)
        .map(|_| {
            let (go, host, ca) = (go.clone(), host.clone(), ca.clone());
            let port = agent.https_port;
            std::thread::spawn(move || {
                go.wait();
                let out = curl_https_on(port, &ca, &host, "/", &[]);
                answer(&out, &host, "/")
            })
        })
        .collect();
    for r in requests {
        let a = r.join().unwrap();
        assert_eq!((a.status, a.body.trim()), (200, hello(&name).as_str()));
    }
    assert_eq!(
        boots(&agent, &name),
        2,
        "created, then one start for all ten"
    );
}

#[test]
fn an_open_websocket_keeps_it_awake() {
    let Some(agent) = agent("an_open_websocket_keeps_it_awake", "") else {
        return;
    };
    let name = agent.name("ws");
    // Awake until the websocket is open, then 2 s.
    ensure(&agent, &name, "http:8080", "off");
    upstream::start_in_netns(&format!("{}{name}", agent.netns_prefix));
    let mut ws = upstream::WebSocket::open(&agent.local_ca(), agent.https_port, &base(&name));
    assert_eq!(ws.echo("open"), "open");
    ensure(&agent, &name, "http:8080", "2s");
    wait_held_by(&agent, &name, "awake: 1 open request or session");
    stays_awake(&agent, &name, Duration::from_secs(6));
    assert_eq!(ws.echo("still open"), "still open");
    ws.close();
    wait_asleep(&agent, &name);
}

#[test]
fn a_provisioning_run_keeps_it_awake() {
    // The host's default: the container has no setting of its own.
    let Some(agent) = agent("a_provisioning_run_keeps_it_awake", "after = \"3s\"\n") else {
        return;
    };
    let name = agent.name("prov");
    assert_ok(
        &agent.devhost(&["ensure", &name, &channel().url, "--upstream", "http:80"]),
        "ensure",
    );
    let envdir = agent.dir.join("env");
    std::fs::create_dir_all(&envdir).unwrap();
    // Three times the idle period, in one step.
    std::fs::write(
        envdir.join("provision.sh"),
        "RUN sleep 9\nRUN 'echo provisioned > /var/www/provisioned.html'\n",
    )
    .unwrap();
    let t = Instant::now();
    let out = agent.devhost(&["provision", &name, envdir.to_str().unwrap()]);
    assert_ok(&out, "provisioning longer than the idle period");
    assert!(t.elapsed() >= Duration::from_secs(9));
    let ended = Utc::now();
    assert_eq!(state(&agent, &name), "running");
    assert!(agent
        .status(&name)
        .sleep
        .unwrap_or_default()
        .starts_with("after 3s idle (host default)"));
    wait_asleep(&agent, &name);
    let since = time(&agent.status(&name).asleep_since.unwrap());
    assert!(
        since >= ended + TimeDelta::seconds(2),
        "idle counted from the run's end ({ended}), asleep at {since}"
    );
    // What it did is there after a wake.
    let a = agent.https(&agent.local_ca(), &base(&name), "/provisioned.html", &[]);
    assert_eq!((a.status, a.body.trim()), (200, "provisioned"));
}

#[test]
fn an_ssh_connection_into_it_keeps_it_awake() {
    let Some(agent) = agent("an_ssh_connection_into_it_keeps_it_awake", "") else {
        return;
    };
    let name = agent.name("ssh");
    ensure(&agent, &name, "http:80", "off");
    // Port 22 in its network namespace, and a connection to it from the
    // host, as an SSH session through the devhost (ProxyJump) would be.
    upstream::hold_in_netns(&format!("{}{name}", agent.netns_prefix), 22);
    let session =
        std::net::TcpStream::connect((agent.address(&name), 22)).expect("connect to port 22");
    ensure(&agent, &name, "http:80", "2s");
    wait_held_by(&agent, &name, "awake: 1 SSH connection");
    stays_awake(&agent, &name, Duration::from_secs(5));
    drop(session);
    wait_asleep(&agent, &name);
}

#[test]
fn devhost_wake_and_batous_ensure_wake_it_for_what_the_proxy_cannot_hold() {
    let Some(agent) = agent("devhost_wake_and_batous_ensure_wake_it", "") else {
        return;
    };
    let name = agent.name("jump");
    ensure(&agent, &name, "http:80", "2s");
    wait_asleep(&agent, &name);
    let address = agent.address(&name);
    // An SSH session through the devhost reaches the address directly:
    // nothing answers there while it sleeps.
    assert!(http_get(address, 80).is_err());
    assert_ok(&agent.devhost(&["wake", &name]), "devhost wake");
    assert_eq!(http_get(address, 80).unwrap().trim(), hello(&name));
    assert_eq!(boots(&agent, &name), 2);
    wait_asleep(&agent, &name);
    // batou ≥ 2.6 ensures through fc-devhost before it connects.
    assert_ok(
        &agent.fc_devhost(&["ensure", "--channel-url", &channel().url, &name]),
        "fc-devhost ensure",
    );
    assert_eq!(http_get(address, 80).unwrap().trim(), hello(&name));
    assert_eq!(agent.status(&name).sleep_after, "2s", "its setting is kept");
    // Waking a container that is stopped (not asleep) is refused.
    assert_ok(&agent.devhost(&["stop", &name]), "stop");
    let out = agent.devhost(&["wake", &name]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains(&format!(
            "container {name} is stopped, not asleep; `devhost start {name}` starts it"
        )),
        "{}",
        text(&out)
    );
}

#[test]
fn a_sleeping_container_survives_an_agent_restart_still_asleep_and_wakeable() {
    let Some(mut agent) = agent("a_sleeping_container_survives_an_agent_restart", "") else {
        return;
    };
    let name = agent.name("rest");
    ensure(&agent, &name, "http:80", "2s");
    wait_asleep(&agent, &name);
    let before = agent.status(&name);
    agent.stop_agent(nix::sys::signal::Signal::SIGTERM);
    agent.spawn();
    let after = agent.status(&name);
    assert_eq!(
        (after.state.as_str(), &after.asleep_since),
        ("sleeping", &before.asleep_since)
    );
    let info: serde_json::Value =
        serde_json::from_slice(&agent.devhost(&["--json", "info"]).stdout).unwrap();
    assert!(
        !info["findings"].to_string().contains(&name),
        "reconcile has nothing to say about it: {info}"
    );
    assert_eq!(boots(&agent, &name), 1, "not started by the restart");
    let a = agent.https(&agent.local_ca(), &base(&name), "/", &[]);
    assert_eq!((a.status, a.body.trim()), (200, hello(&name).as_str()));
    assert_eq!(boots(&agent, &name), 2);
}

#[test]
fn a_wake_slower_than_the_wake_timeout_gets_the_page_that_retries() {
    let Some(agent) = agent(
        "a_wake_slower_than_the_wake_timeout_gets_the_page_that_retries",
        "wake_timeout_secs = 1\n",
    ) else {
        return;
    };
    let name = agent.name("slow");
    // Nothing in the container listens on 8080: it boots, its service
    // never answers.
    ensure(&agent, &name, "http:8080", "2s");
    wait_asleep(&agent, &name);
    let t = Instant::now();
    let a = agent.https(&agent.local_ca(), &base(&name), "/", &["-i"]);
    let waited = t.elapsed();
    assert_eq!(a.status, 503, "{}", a.body);
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_secs(8),
        "held for the wake timeout: {waited:?}"
    );
    let head = a.body.to_ascii_lowercase();
    assert!(head.contains("retry-after: 5"), "{}", a.body);
    assert!(
        a.body
            .contains(r#"<meta http-equiv="refresh" content="5">"#),
        "{}",
        a.body
    );
    assert!(
        a.body
            .contains(&format!("Container {name} was asleep and is starting.")),
        "{}",
        a.body
    );
    // The wake itself went on.
    wait_until(Duration::from_secs(10), "it runs", || {
        state(&agent, &name) == "running"
    });
}

#[test]
fn cleanup_disables_and_deletes_a_sleeping_container_on_its_own_schedule() {
    let Some(agent) = agent("cleanup_disables_and_deletes_a_sleeping_container", "") else {
        return;
    };
    let name = agent.name("old");
    ensure(&agent, &name, "http:80", "2s");
    wait_asleep(&agent, &name);
    let address = agent.address(&name);
    let t0 = time(&agent.status(&name).last_deploy);
    let sweep = |days: i64| {
        let out = agent.devhost(&["cleanup", "--now", &stamp(t0 + TimeDelta::days(days))]);
        assert_ok(&out, &format!("cleanup {days} days after the deploy"));
    };
    sweep(3);
    assert_eq!(state(&agent, &name), "sleeping", "kept asleep");
    sweep(8);
    let s = agent.status(&name);
    assert_eq!(
        (s.state.as_str(), s.enabled, s.asleep_since),
        ("stopped", false, None),
        "disabled a week after the deploy, sleeping or not"
    );
    // Not routed (no certificate: the handshake is refused), not woken.
    let f = agent.https_fails(&agent.local_ca(), &base(&name), "/", &[]);
    assert_eq!(f.code, CurlFailure::TLS_HANDSHAKE, "{f}");
    assert_eq!(boots(&agent, &name), 1);
    sweep(31);
    assert!(agent.try_status(&name).is_none(), "deleted");
    assert_eq!(agent.traces_of(&name, address), Vec::<String>::new());
}
