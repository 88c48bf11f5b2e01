//! The agent's metrics for Prometheus: one registry of typed families,
//! written in the Prometheus text format (0.0.4) by `prometheus-client`,
//! the client library maintained under the Prometheus organisation (typed
//! label sets, scrape-time collectors, no global state, so every agent and
//! every test has a registry of its own), and served on a listener of its
//! own (`server.rs`, `[metrics] listen`).
//!
//! The rest of the agent holds an `Arc<Metrics>` and calls typed methods
//! (`operation`, `proxy.https_request`, `acme_order`, …): no label string
//! is spelled outside `labels.rs`. What follows from state — containers by
//! phase, the address pool, certificate expiry, inotify headroom, open
//! connections, memory — is read at each scrape from a [`Source`]
//! (`state.rs`), not counted along. The handle exists whether or not the
//! endpoint is served: counting costs an atomic add.

mod histogram;
pub mod labels;
mod proxy;
pub mod server;
pub mod source;
mod state;

pub use histogram::DurationHistogram;
pub use labels::{
    BuildOutcome, CleanupAction, CleanupResult, Operation, OrderResult, Outcome, Refusal,
    UpstreamError,
};
pub use proxy::ProxyMetrics;
pub use state::{resident_bytes, Inotify, Snapshot, Source, PHASES};

use labels::{BuildInfoLabels, BuildLabels, CleanupLabels, OperationLabels, OrderLabels};
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use std::sync::Arc;
use std::time::Duration;

/// The `Content-Type` of what [`Metrics::encode`] writes.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Bounds (seconds) for a container's jobs: 100 ms to an hour (a boot
/// takes a second or two, a build of a new system minutes).
const OPERATION_BUCKETS: [f64; 14] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

fn operation_histogram() -> Histogram {
    Histogram::new(OPERATION_BUCKETS)
}

type Operations = Family<OperationLabels, Histogram, fn() -> Histogram>;

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub proxy: ProxyMetrics,
    operations: Operations,
    nix_builds: Family<BuildLabels, Counter>,
    acme_orders: Family<OrderLabels, Counter>,
    budget_holds: Counter,
    cleanup: Family<CleanupLabels, Counter>,
    state: Arc<state::StateCollector>,
}

impl Metrics {
    /// A registry with every family; `per_container`: the proxy's series
    /// per container too (`metrics.per_container`).
    pub fn new(per_container: bool) -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("devhost");
        registry.register(
            "build",
            "The version of the running agent (the value is always 1)",
            Info::new(BuildInfoLabels {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );
        let started: Gauge = Gauge::default();
        started.set(chrono::Utc::now().timestamp());
        registry.register_with_unit(
            "agent_start_time",
            "When the agent started (Unix time)",
            Unit::Seconds,
            started,
        );

        let operations = Operations::new_with_constructor(operation_histogram);
        for operation in Operation::ALL {
            for outcome in Outcome::ALL {
                let _ = operations.get_or_create(&OperationLabels {
                    operation: *operation,
                    outcome: *outcome,
                });
            }
        }
        registry.register_with_unit(
            "operation_duration",
            "How long containers' operations took: ensure (the whole job, as its caller waits), build (the building phase of a creation: channel and system), boot (from asking for a boot slot until the container is ready), provision",
            Unit::Seconds,
            operations.clone(),
        );

        let nix_builds = Family::<BuildLabels, Counter>::default();
        for outcome in BuildOutcome::ALL {
            let _ = nix_builds.get_or_create(&BuildLabels { outcome: *outcome });
        }
        registry.register(
            "nix_builds",
            "nix-build runs of a system (one per system however many containers wait for it), by outcome; failure is a build that failed",
            nix_builds.clone(),
        );

        let acme_orders = Family::<OrderLabels, Counter>::default();
        for result in OrderResult::ALL {
            let _ = acme_orders.get_or_create(&OrderLabels { result: *result });
        }
        registry.register(
            "acme_orders",
            "ACME orders by result (failed: the pre-check, the order or installing its certificate failed)",
            acme_orders.clone(),
        );
        let budget_holds = Counter::default();
        registry.register(
            "acme_budget_holds",
            "Orders the rate budget held back (counted once per container and reason)",
            budget_holds.clone(),
        );

        let cleanup = Family::<CleanupLabels, Counter>::default();
        for action in CleanupAction::ALL {
            for result in CleanupResult::ALL {
                let _ = cleanup.get_or_create(&CleanupLabels {
                    action: *action,
                    result: *result,
                });
            }
        }
        registry.register(
            "cleanup_actions",
            "What cleanup sweeps did to containers (disable: stopped and disabled; delete: destroyed), by result",
            cleanup.clone(),
        );

        let proxy = ProxyMetrics::register(&mut registry, per_container);
        let state = Arc::new(state::StateCollector::default());
        registry.register_collector(Box::new(state.clone()));
        Arc::new(Metrics {
            registry,
            proxy,
            operations,
            nix_builds,
            acme_orders,
            budget_holds,
            cleanup,
            state,
        })
    }

    /// Where the state gauges come from (set once; later calls are ignored).
    pub fn observe(&self, source: Arc<dyn Source>) {
        let _ = self.state.source.set(source);
    }

    /// A container's operation ended after `took`.
    pub fn operation(&self, operation: Operation, outcome: Outcome, took: Duration) {
        self.operations
            .get_or_create(&OperationLabels { operation, outcome })
            .observe(took.as_secs_f64());
    }

    pub fn nix_build(&self, outcome: BuildOutcome) {
        self.nix_builds
            .get_or_create(&BuildLabels { outcome })
            .inc();
    }

    pub fn acme_order(&self, result: OrderResult) {
        self.acme_orders
            .get_or_create(&OrderLabels { result })
            .inc();
    }

    pub fn budget_hold(&self) {
        self.budget_holds.inc();
    }

    pub fn cleanup(&self, action: CleanupAction, result: CleanupResult) {
        self.cleanup
            .get_or_create(&CleanupLabels { action, result })
            .inc();
    }

    /// Everything, in the Prometheus text format. May block (the state
    /// gauges read `/proc`): call off the async threads.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_text::encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}

/// The integration tests' strict reader of the exposition, for the unit
/// tests here and in the supervisor.
#[cfg(test)]
#[path = "../../tests/common/exposition.rs"]
pub(crate) mod exposition;
#[cfg(test)]
mod tests;
