//! `/metrics` of a real agent with real containers, scraped with curl as
//! Prometheus would and read strictly (`common/exposition.rs`: HELP and
//! TYPE for every family, counters `_total`, histograms whole): what an
//! operator's dashboards and alerts rely on moves when the agent works —
//! an ensure is timed with its boot, the container shows as running, a
//! request through the proxy is counted in its status class and timed, a
//! container that does not answer is an upstream error; per-container
//! series only when asked for; a bad `[metrics]` refuses to start.

mod common;

use common::exposition::{parse, Exposition};
use common::*;
use std::process::Command;

/// The agent's exposition now, parsed strictly.
#[track_caller]
fn scrape(agent: &TestAgent) -> Exposition {
    let text = agent.scrape();
    parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// A series' value, or 0 when it does not exist (yet).
fn value(e: &Exposition, name: &str, labels: &[(&str, &str)]) -> f64 {
    e.value(name, labels).unwrap_or(0.0)
}

fn timed(e: &Exposition, operation: &str) -> f64 {
    value(
        e,
        "devhost_operation_duration_seconds_count",
        &[("operation", operation), ("outcome", "success")],
    )
}

fn containers(e: &Exposition, state: &str) -> f64 {
    value(
        e,
        "devhost_containers",
        &[("state", state), ("backend", "direct")],
    )
}

fn https(e: &Exposition, class: &str) -> f64 {
    value(
        e,
        "devhost_proxy_requests_total",
        &[("scheme", "https"), ("class", class)],
    )
}

/// An agent serving `/metrics` (with `metrics_toml`) and a container whose
/// busybox httpd answers on port 80 through the proxy.
fn served(test: &str, metrics_toml: &str) -> Option<(TestAgent, String)> {
    prerequisites_and(test, &["curl"])?;
    let agent = TestAgent::start(Options {
        metrics_toml: Some(metrics_toml.to_string()),
        ..Options::default()
    });
    let name = agent.name("m");
    assert_ok(
        &agent.devhost(&["ensure", &name, &channel().url, "--upstream", "http:80"]),
        "ensure",
    );
    Some((agent, name))
}

#[test]
fn an_ensure_is_timed_with_its_boot_and_the_container_shows_as_running() {
    const TEST: &str = "an_ensure_is_timed_with_its_boot_and_the_container_shows_as_running";
    let Some(()) = prerequisites_and(TEST, &["curl"]) else {
        return;
    };
    let agent = TestAgent::start(Options {
        metrics_toml: Some(String::new()),
        ..Options::default()
    });
    let before = scrape(&agent);
    assert_eq!(
        before.value(
            "devhost_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    assert_eq!(containers(&before, "running"), 0.0);
    assert_eq!(timed(&before, "ensure"), 0.0);

    let name = agent.name("m");
    assert_ok(&agent.devhost(&["ensure", &name, &channel().url]), "ensure");
    let after = scrape(&agent);
    assert_eq!(timed(&after, "ensure"), 1.0);
    assert_eq!(timed(&after, "build"), 1.0);
    assert_eq!(timed(&after, "boot"), 1.0);
    assert_eq!(
        value(
            &after,
            "devhost_nix_builds_total",
            &[("outcome", "success")]
        ),
        1.0
    );
    assert_eq!(containers(&after, "running"), 1.0);
    assert_eq!(
        after
            .matching("devhost_containers", &[])
            .iter()
            .map(|s| s.value)
            .sum::<f64>(),
        1.0,
        "one container in all"
    );
    let pool = |state| value(&after, "devhost_address_pool_blocks", &[("state", state)]);
    assert_eq!((pool("used"), pool("free")), (1.0, 63.0), "a /24 holds 64");
    // The local CA issued its certificate when it was routed.
    let expiry = after
        .value(
            "devhost_certificate_expiry_timestamp_seconds",
            &[("container", &name)],
        )
        .expect("the container's certificate");
    assert!(expiry > chrono::Utc::now().timestamp() as f64 + 86400.0);
    // The host's limit, and a use within it (the fixture's init takes none).
    let host_limit: f64 = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_instances")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let limit = after.value("devhost_inotify_instances_limit", &[]);
    assert_eq!(limit, Some(host_limit));
    let instances = after.value("devhost_inotify_instances", &[]).unwrap();
    assert!(instances <= host_limit, "{instances} of {host_limit}");
    assert!(
        after
            .value("devhost_agent_resident_memory_bytes", &[])
            .unwrap()
            > 1e6
    );

    assert_ok(&agent.devhost(&["stop", &name]), "stop");
    let stopped = scrape(&agent);
    assert_eq!(
        (
            containers(&stopped, "running"),
            containers(&stopped, "stopped")
        ),
        (0.0, 1.0)
    );
}

#[test]
fn a_request_through_the_proxy_is_counted_in_its_status_class_and_timed() {
    const TEST: &str = "a_request_through_the_proxy_is_counted_in_its_status_class_and_timed";
    let Some((agent, name)) = served(TEST, "") else {
        return;
    };
    let ca = agent.local_ca();
    let host = format!("{name}.dev.test");
    let before = scrape(&agent);
    for _ in 0..3 {
        let a = agent.https(&ca, &host, "/", &[]);
        assert_eq!(a.status, 200, "{}", a.body);
    }
    // A page the container's httpd does not have.
    let a = agent.https(&ca, &host, "/nothing-here", &[]);
    assert_eq!(a.status, 404, "{}", a.body);
    let after = scrape(&agent);
    assert_eq!(https(&after, "2xx") - https(&before, "2xx"), 3.0);
    assert_eq!(https(&after, "4xx") - https(&before, "4xx"), 1.0);
    let latency = "devhost_proxy_request_duration_seconds_count";
    assert_eq!(
        value(&after, latency, &[]) - value(&before, latency, &[]),
        4.0
    );
    assert!(
        value(&after, "devhost_proxy_request_duration_seconds_sum", &[]) > 0.0,
        "time was taken"
    );
    assert!(
        after
            .families
            .keys()
            .all(|f| !f.starts_with("devhost_proxy_container")),
        "no series per container unless metrics.per_container"
    );
    // curl closed its connections: none is counted open (the scrape's
    // own connection is to the metrics listener, not the proxy).
    wait_until(
        std::time::Duration::from_secs(10),
        "the proxy's connections are closed",
        || scrape(&agent).value("devhost_proxy_open_connections", &[]) == Some(0.0),
    );
}

#[test]
fn a_container_that_does_not_answer_is_an_upstream_error() {
    const TEST: &str = "a_container_that_does_not_answer_is_an_upstream_error";
    let Some((agent, name)) = served(TEST, "") else {
        return;
    };
    // Nothing listens on 8999 in the container.
    assert_ok(
        &agent.devhost(&["ensure", &name, &channel().url, "--upstream", "http:8999"]),
        "ensure with another upstream",
    );
    let before = scrape(&agent);
    let a = agent.https(&agent.local_ca(), &format!("{name}.dev.test"), "/", &[]);
    assert_eq!(a.status, 502, "{}", a.body);
    let after = scrape(&agent);
    let refused = |e: &Exposition| {
        value(
            e,
            "devhost_proxy_upstream_errors_total",
            &[("kind", "connect")],
        )
    };
    assert_eq!(refused(&after) - refused(&before), 1.0);
    assert_eq!(https(&after, "5xx") - https(&before, "5xx"), 1.0);
}

#[test]
fn per_container_series_name_the_container_when_asked_for() {
    const TEST: &str = "per_container_series_name_the_container_when_asked_for";
    let Some((agent, name)) = served(TEST, "per_container = true") else {
        return;
    };
    let a = agent.https(&agent.local_ca(), &format!("{name}.dev.test"), "/", &[]);
    assert_eq!(a.status, 200, "{}", a.body);
    let e = scrape(&agent);
    assert_eq!(
        e.value(
            "devhost_proxy_container_requests_total",
            &[("container", &name), ("class", "2xx")],
        ),
        Some(1.0)
    );
    assert_eq!(
        e.value(
            "devhost_proxy_container_request_duration_seconds_count",
            &[("container", &name)],
        ),
        Some(1.0)
    );
    // Destroyed: its series go with its route.
    assert_ok(&agent.devhost(&["destroy", &name]), "destroy");
    let e = scrape(&agent);
    assert!(e
        .matching(
            "devhost_proxy_container_requests_total",
            &[("container", &name)]
        )
        .is_empty());
}

#[test]
fn only_get_metrics_is_served() {
    const TEST: &str = "only_get_metrics_is_served";
    let Some(()) = prerequisites_and(TEST, &["curl"]) else {
        return;
    };
    let agent = TestAgent::start(Options {
        metrics_toml: Some(String::new()),
        ..Options::default()
    });
    assert_eq!(agent.metrics_get("/").0, 404);
    assert_eq!(agent.metrics_get("/metrics/x").0, 404);
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
        .arg(format!("http://127.0.0.1:{}/metrics", agent.metrics_port))
        .output()
        .unwrap();
    assert_eq!(text(&out).trim(), "405");
}

#[test]
fn a_bad_metrics_address_is_refused_at_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, "[metrics]\nlisten = \"localhost:9469\"\n").unwrap();
    let out = Command::new(DEVHOST)
        .args(["agent", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("config key metrics.listen: \"localhost:9469\" is not ADDRESS:PORT"),
        "{}",
        text(&out)
    );
}

#[test]
fn containers_by_state_name_the_systemd_backend_under_systemd() {
    const TEST: &str = "containers_by_state_name_the_systemd_backend_under_systemd";
    let Some(()) = prerequisites_and(TEST, &["curl"]) else {
        return;
    };
    let agent = TestAgent::start(Options {
        kind: Kind::Systemd,
        metrics_toml: Some(String::new()),
        ..Options::default()
    });
    let name = agent.name("m");
    assert_ok(&agent.devhost(&["ensure", &name, &channel().url]), "ensure");
    let e = scrape(&agent);
    let running = |backend| {
        e.value(
            "devhost_containers",
            &[("state", "running"), ("backend", backend)],
        )
    };
    assert_eq!((running("systemd"), running("direct")), (Some(1.0), None));
    assert_eq!(timed(&e, "boot"), 1.0);
}
