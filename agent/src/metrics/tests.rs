//! The exposition as Prometheus reads it: parsed strictly (the integration
//! tests' reader), with the values the typed methods and a snapshot put in.

use super::exposition;
use super::*;
use crate::container::Phase;

struct Fixed(Snapshot);

impl Source for Fixed {
    fn snapshot(&self) -> Snapshot {
        self.0.clone()
    }
}

fn snapshot() -> Snapshot {
    Snapshot {
        backend: "direct",
        phases: vec![
            Phase::Running,
            Phase::Running,
            Phase::Stopped,
            Phase::Stopped,
        ],
        asleep: 1,
        pool_used: 4,
        pool_capacity: 64,
        certificates: vec![("c1".into(), 1_900_000_000)],
        inotify: Some(Inotify {
            instances: 40,
            max_instances: 8192,
            watches: 300,
            max_watches: 1_048_576,
        }),
        open_connections: Some(3),
        resident_bytes: Some(50 << 20),
    }
}

/// Every family the agent exposes (per-container ones with the flag).
const FAMILIES: [(&str, &str); 21] = [
    ("devhost_build_info", "gauge"),
    ("devhost_agent_start_time_seconds", "gauge"),
    ("devhost_operation_duration_seconds", "histogram"),
    ("devhost_nix_builds_total", "counter"),
    ("devhost_acme_orders_total", "counter"),
    ("devhost_acme_budget_holds_total", "counter"),
    ("devhost_cleanup_actions_total", "counter"),
    ("devhost_proxy_requests_total", "counter"),
    ("devhost_proxy_request_duration_seconds", "histogram"),
    ("devhost_proxy_upstream_errors_total", "counter"),
    ("devhost_proxy_refused_connections_total", "counter"),
    ("devhost_proxy_container_requests_total", "counter"),
    (
        "devhost_proxy_container_request_duration_seconds",
        "histogram",
    ),
    ("devhost_containers", "gauge"),
    ("devhost_address_pool_blocks", "gauge"),
    ("devhost_certificate_expiry_timestamp_seconds", "gauge"),
    ("devhost_inotify_instances", "gauge"),
    ("devhost_inotify_instances_limit", "gauge"),
    ("devhost_inotify_watches", "gauge"),
    ("devhost_inotify_watches_limit", "gauge"),
    ("devhost_proxy_open_connections", "gauge"),
];

fn scraped(m: &Metrics) -> exposition::Exposition {
    let text = m.encode();
    exposition::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[test]
fn every_family_is_typed_and_described_and_named_by_the_conventions() {
    let m = Metrics::new(true);
    m.observe(Arc::new(Fixed(snapshot())));
    let e = scraped(&m);
    let mut want: Vec<(&str, &str)> = FAMILIES.to_vec();
    want.push(("devhost_agent_resident_memory_bytes", "gauge"));
    want.sort();
    let got: Vec<(&str, &str)> = e
        .families
        .iter()
        .map(|(n, f)| (n.as_str(), f.kind.as_str()))
        .collect();
    assert_eq!(got, want);
    for (name, f) in &e.families {
        assert!(f.help.ends_with('.'), "{name}: {:?}", f.help);
        assert!(f.help.len() > 20, "{name} says what it is");
        if f.kind == "histogram" {
            assert!(name.ends_with("_seconds"), "{name}: durations in seconds");
        }
    }
}

#[test]
fn counted_events_show_with_their_labels() {
    let m = Metrics::new(false);
    m.operation(
        Operation::Ensure,
        Outcome::Success,
        Duration::from_millis(1500),
    );
    m.operation(
        Operation::Boot,
        Outcome::Failure,
        Duration::from_millis(200),
    );
    m.nix_build(BuildOutcome::Failure);
    m.acme_order(OrderResult::Issued);
    m.budget_hold();
    m.cleanup(CleanupAction::Delete, CleanupResult::Done);
    m.proxy
        .https_request(200, Duration::from_millis(3), Some("c1"));
    m.proxy.https_request(502, Duration::from_millis(40), None);
    m.proxy.http_request(301);
    m.proxy.upstream_error(UpstreamError::Connect);
    m.proxy.refused(Refusal::PerSource);
    let e = scraped(&m);
    let v = |name: &str, labels: &[(&str, &str)]| {
        e.value(name, labels)
            .unwrap_or_else(|| panic!("no {name} {labels:?}"))
    };
    let ensure = [("operation", "ensure"), ("outcome", "success")];
    assert_eq!(v("devhost_operation_duration_seconds_count", &ensure), 1.0);
    assert_eq!(v("devhost_operation_duration_seconds_sum", &ensure), 1.5);
    let le = |b: &'static str| [("operation", "ensure"), ("outcome", "success"), ("le", b)];
    assert_eq!(
        v("devhost_operation_duration_seconds_bucket", &le("1")),
        0.0
    );
    assert_eq!(
        v("devhost_operation_duration_seconds_bucket", &le("2.5")),
        1.0
    );
    let boot = [("operation", "boot"), ("outcome", "failure")];
    assert_eq!(v("devhost_operation_duration_seconds_count", &boot), 1.0);
    // Every combination is there from the start, at zero.
    let build = [("operation", "build"), ("outcome", "success")];
    assert_eq!(v("devhost_operation_duration_seconds_count", &build), 0.0);
    assert_eq!(
        v("devhost_nix_builds_total", &[("outcome", "failure")]),
        1.0
    );
    assert_eq!(
        v("devhost_nix_builds_total", &[("outcome", "success")]),
        0.0
    );
    assert_eq!(v("devhost_acme_orders_total", &[("result", "issued")]), 1.0);
    assert_eq!(v("devhost_acme_orders_total", &[("result", "failed")]), 0.0);
    assert_eq!(v("devhost_acme_budget_holds_total", &[]), 1.0);
    let deleted = [("action", "delete"), ("result", "done")];
    assert_eq!(v("devhost_cleanup_actions_total", &deleted), 1.0);
    let https = |class| [("scheme", "https"), ("class", class)];
    assert_eq!(v("devhost_proxy_requests_total", &https("2xx")), 1.0);
    assert_eq!(v("devhost_proxy_requests_total", &https("5xx")), 1.0);
    assert_eq!(v("devhost_proxy_requests_total", &https("4xx")), 0.0);
    let http = [("scheme", "http"), ("class", "3xx")];
    assert_eq!(v("devhost_proxy_requests_total", &http), 1.0);
    assert_eq!(v("devhost_proxy_request_duration_seconds_count", &[]), 2.0);
    assert_eq!(
        v(
            "devhost_proxy_request_duration_seconds_bucket",
            &[("le", "0.005")]
        ),
        1.0
    );
    let connect = [("kind", "connect")];
    assert_eq!(v("devhost_proxy_upstream_errors_total", &connect), 1.0);
    let per_source = [("reason", "max_connections_per_source")];
    assert_eq!(
        v("devhost_proxy_refused_connections_total", &per_source),
        1.0
    );
    assert_eq!(
        v(
            "devhost_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert!(
        e.families
            .keys()
            .all(|f| !f.starts_with("devhost_proxy_container")),
        "no per-container series without metrics.per_container"
    );
    assert!(
        !e.families.contains_key("devhost_containers"),
        "no state gauges before a source is given"
    );
}

#[test]
fn state_gauges_come_from_the_snapshot() {
    let m = Metrics::new(false);
    m.observe(Arc::new(Fixed(snapshot())));
    let e = scraped(&m);
    let containers = |state| {
        e.value(
            "devhost_containers",
            &[("state", state), ("backend", "direct")],
        )
    };
    assert_eq!(containers("running"), Some(2.0));
    assert_eq!(containers("stopped"), Some(1.0));
    assert_eq!(containers("sleeping"), Some(1.0), "asleep, not stopped");
    assert_eq!(
        containers("building"),
        Some(0.0),
        "every phase has a series"
    );
    assert_eq!(
        e.matching("devhost_containers", &[]).len(),
        PHASES.len() + 1
    );
    let pool = |state| e.value("devhost_address_pool_blocks", &[("state", state)]);
    assert_eq!((pool("used"), pool("free")), (Some(4.0), Some(60.0)));
    assert_eq!(
        e.value(
            "devhost_certificate_expiry_timestamp_seconds",
            &[("container", "c1")]
        ),
        Some(1.9e9)
    );
    assert_eq!(e.value("devhost_inotify_instances", &[]), Some(40.0));
    assert_eq!(
        e.value("devhost_inotify_instances_limit", &[]),
        Some(8192.0)
    );
    assert_eq!(e.value("devhost_inotify_watches", &[]), Some(300.0));
    assert_eq!(
        e.value("devhost_inotify_watches_limit", &[]),
        Some(1048576.0)
    );
    assert_eq!(e.value("devhost_proxy_open_connections", &[]), Some(3.0));
    assert_eq!(
        e.value("devhost_agent_resident_memory_bytes", &[]),
        Some((50u64 << 20) as f64)
    );
}

#[test]
fn per_container_series_follow_the_routed_containers() {
    let m = Metrics::new(true);
    m.proxy.routed(["c1", "c2"]);
    m.proxy
        .https_request(200, Duration::from_millis(3), Some("c1"));
    m.proxy
        .https_request(404, Duration::from_millis(1), Some("c1"));
    // Not routed (yet): counted in all, not per container.
    m.proxy
        .https_request(200, Duration::from_millis(1), Some("c9"));
    let e = scraped(&m);
    let n = |c, class| {
        e.value(
            "devhost_proxy_container_requests_total",
            &[("container", c), ("class", class)],
        )
    };
    assert_eq!(n("c1", "2xx"), Some(1.0));
    assert_eq!(n("c1", "4xx"), Some(1.0));
    assert_eq!(n("c2", "2xx"), Some(0.0));
    assert_eq!(n("c9", "2xx"), None);
    let count = |c| {
        e.value(
            "devhost_proxy_container_request_duration_seconds_count",
            &[("container", c)],
        )
    };
    assert_eq!(count("c1"), Some(2.0));
    // c1 no longer routed: its series go.
    m.proxy.routed(["c2"]);
    let e = scraped(&m);
    assert!(e
        .matching(
            "devhost_proxy_container_requests_total",
            &[("container", "c1")]
        )
        .is_empty());
    assert_eq!(
        e.matching(
            "devhost_proxy_container_requests_total",
            &[("container", "c2")]
        )
        .len(),
        StatusClass::ALL.len()
    );
}

#[test]
fn the_strict_reader_refuses_what_prometheus_would() {
    let bad = [
        ("x 1\n", "before any TYPE"),
        ("# HELP x_total X.\n# TYPE x_total counter\nx_total -1\n", "below zero"),
        ("# HELP x X.\n# TYPE x counter\nx 1\n", "does not end in _total"),
        ("# TYPE x gauge\nx 1\n", "without its HELP"),
        ("# HELP x X.\n# TYPE x gauge\nx{a=\"1\"} 1\nx{a=\"1\"} 2\n", "twice"),
        ("# HELP x X.\n# TYPE x gauge\nx{a=1} 1\n", "no label value"),
        ("# HELP x X.\n# TYPE x gauge\ny 1\n", "no HELP/TYPE"),
        (
            "# HELP h X.\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
            "decrease",
        ),
        (
            "# HELP h X.\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",
            "+Inf",
        ),
        ("# HELP x X.\n# TYPE x gauge\nx 1", "newline"),
    ];
    for (text, says) in bad {
        let e = exposition::parse(text).expect_err(text);
        assert!(e.contains(says), "{text:?}: {e}");
    }
}

use labels::StatusClass;

#[test]
fn the_operations_guide_lists_every_metric() {
    let guide = include_str!("../../../docs/operations.md");
    for (name, kind) in FAMILIES
        .iter()
        .chain(&[("devhost_agent_resident_memory_bytes", "gauge")])
    {
        // A `_limit` gauge is listed beside its metric: `NAME` / `_limit`.
        let base = name.strip_suffix("_limit").unwrap_or(name);
        let rows = [
            format!("| `{name}` | {kind}"),
            format!("| `{base}` / `_limit` | {kind}"),
        ];
        assert!(
            guide.lines().any(|l| rows.iter().any(|r| l.starts_with(r))),
            "docs/operations.md does not list {name} ({kind})"
        );
    }
}
