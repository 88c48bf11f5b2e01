//! The proxy's metrics, cheap enough for every request: the counters of
//! each scheme and status class are made once and kept in arrays (an
//! increment is one atomic add, no lookup, no lock), the latency histogram
//! is lock-free ([`DurationHistogram`]). Series per container exist only
//! with `metrics.per_container` (one per container and status class): the
//! edge names the routed containers on every route update, and a request
//! then takes a shared read lock to find its container's series.

use super::histogram::{DurationHistogram, REQUEST_BUCKETS};
use super::labels::{
    ContainerClassLabels, ContainerLabels, Refusal, RefusalLabels, RequestLabels, Scheme,
    StatusClass, UpstreamError, UpstreamErrorLabels,
};
use crate::shared::Shared;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const CLASSES: usize = StatusClass::ALL.len();

#[derive(Debug)]
pub struct ProxyMetrics {
    /// By [`Scheme`], then [`StatusClass`].
    requests: [[Counter; CLASSES]; 2],
    latency: DurationHistogram,
    upstream_errors: [Counter; 2],
    refused: [Counter; 2],
    containers: Option<Arc<PerContainer>>,
}

impl ProxyMetrics {
    pub(super) fn register(registry: &mut Registry, per_container: bool) -> ProxyMetrics {
        let requests = Family::<RequestLabels, Counter>::default();
        let by_scheme = |scheme: Scheme| {
            std::array::from_fn(|c| {
                requests.get_or_create_owned(&RequestLabels {
                    scheme,
                    class: StatusClass::ALL[c],
                })
            })
        };
        let requests_by = [by_scheme(Scheme::Http), by_scheme(Scheme::Https)];
        registry.register(
            "proxy_requests",
            "Requests the edge answered, by listener scheme and status class (https: proxied to containers or refused by the proxy; http: ACME challenges and redirects)",
            requests,
        );
        let latency = DurationHistogram::new(REQUEST_BUCKETS);
        registry.register_with_unit(
            "proxy_request_duration",
            "Time from an HTTPS request's head to its response head (the container's answer, or the proxy's own page)",
            Unit::Seconds,
            latency.clone(),
        );
        let errors = Family::<UpstreamErrorLabels, Counter>::default();
        let upstream_errors = [UpstreamError::Connect, UpstreamError::Other]
            .map(|kind| errors.get_or_create_owned(&UpstreamErrorLabels { kind }));
        registry.register(
            "proxy_upstream_errors",
            "Requests a container did not answer (502), by kind: connect (no connection) or other",
            errors,
        );
        let refusals = Family::<RefusalLabels, Counter>::default();
        let refused = [Refusal::Total, Refusal::PerSource]
            .map(|reason| refusals.get_or_create_owned(&RefusalLabels { reason }));
        registry.register(
            "proxy_refused_connections",
            "Client connections closed at once for being over a bound (edge.max_connections, edge.max_connections_per_source)",
            refusals,
        );
        let containers = per_container.then(|| {
            let c = Arc::new(PerContainer::default());
            registry.register_collector(Box::new(c.clone()));
            c
        });
        ProxyMetrics {
            requests: requests_by,
            latency,
            upstream_errors,
            refused,
            containers,
        }
    }

    /// Whether requests are counted per container (worth finding the
    /// container of a request that is refused before routing).
    pub fn per_container(&self) -> bool {
        self.containers.is_some()
    }

    /// A request on a port-80 listener, answered.
    pub fn http_request(&self, status: u16) {
        self.requests[0][StatusClass::of(status).index()].inc();
    }

    /// An HTTPS request answered after `took`, for `container` if known.
    pub fn https_request(&self, status: u16, took: Duration, container: Option<&str>) {
        let class = StatusClass::of(status).index();
        self.requests[1][class].inc();
        self.latency.observe(took);
        if let (Some(all), Some(c)) = (&self.containers, container) {
            if let Some(s) = all.series.read().get(c) {
                s.requests[class].fetch_add(1, Ordering::Relaxed);
                s.latency.observe(took);
            }
        }
    }

    pub fn upstream_error(&self, kind: UpstreamError) {
        self.upstream_errors[kind as usize].inc();
    }

    pub fn refused(&self, why: Refusal) {
        self.refused[why as usize].inc();
    }

    /// The containers the proxy routes now: their series are kept (new
    /// ones start at zero), those of others are dropped. Only with
    /// `metrics.per_container`.
    pub fn routed<'a>(&self, containers: impl IntoIterator<Item = &'a str>) {
        let Some(all) = &self.containers else {
            return;
        };
        let now: Vec<&str> = containers.into_iter().collect();
        let unchanged = {
            let series = all.series.read();
            series.len() == now.len() && now.iter().all(|c| series.contains_key(*c))
        };
        if unchanged {
            return;
        }
        let mut series = all.series.write();
        series.retain(|c, _| now.contains(&c.as_str()));
        for c in now {
            series
                .entry(c.to_string())
                .or_insert_with(|| Arc::new(ContainerSeries::new()));
        }
    }
}

/// The per-container series (`metrics.per_container`), written out at
/// each scrape.
#[derive(Debug, Default)]
struct PerContainer {
    series: Shared<BTreeMap<String, Arc<ContainerSeries>>>,
}

#[derive(Debug)]
struct ContainerSeries {
    requests: [AtomicU64; CLASSES],
    latency: DurationHistogram,
}

impl ContainerSeries {
    fn new() -> ContainerSeries {
        ContainerSeries {
            requests: std::array::from_fn(|_| AtomicU64::new(0)),
            latency: DurationHistogram::new(REQUEST_BUCKETS),
        }
    }
}

impl Collector for PerContainer {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let series = self.series.read().clone();
        {
            let mut family = encoder.encode_descriptor(
                "proxy_container_requests",
                "HTTPS requests proxied to each container, by status class (metrics.per_container).",
                None,
                MetricType::Counter,
            )?;
            for (container, s) in &series {
                for class in StatusClass::ALL {
                    let labels = ContainerClassLabels {
                        container: container.clone(),
                        class: *class,
                    };
                    let n = s.requests[class.index()].load(Ordering::Relaxed);
                    ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        let mut family = encoder.encode_descriptor(
            "proxy_container_request_duration",
            "Time from an HTTPS request's head to its response head, per container (metrics.per_container).",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for (container, s) in &series {
            let labels = ContainerLabels {
                container: container.clone(),
            };
            s.latency.encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
