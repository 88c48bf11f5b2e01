//! A histogram of durations that the proxy can observe on every request
//! without a lock: fixed bucket bounds, one atomic per bucket and one for
//! the sum (in nanoseconds). prometheus-client's own `Histogram` keeps its
//! buckets behind a mutex, which every proxy thread would contend for; this
//! one implements the crate's `EncodeMetric`, so the crate still writes the
//! exposition (`_bucket` with `le`, `_sum`, `_count`).
//!
//! The count is the sum of the buckets read at encoding, so a scrape that
//! races an observation is still consistent (`+Inf` equals `_count`, the
//! buckets never decrease); only `_sum` may be one observation ahead.

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Bounds (seconds) for requests through the proxy: 1 ms to 30 s.
pub const REQUEST_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Debug, Clone)]
pub struct DurationHistogram(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    bounds: &'static [f64],
    /// One per bound, and the last for `+Inf`.
    buckets: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

impl DurationHistogram {
    /// `bounds` ascending, finite.
    pub fn new(bounds: &'static [f64]) -> DurationHistogram {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]));
        debug_assert!(bounds.iter().all(|b| b.is_finite()));
        DurationHistogram(Arc::new(Inner {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }))
    }

    pub fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        // The first bucket whose bound is at least `secs` (`le`).
        let i = self.0.bounds.partition_point(|b| *b < secs);
        self.0.buckets[i].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.0.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Sum (seconds), count, and per-bucket (not cumulative) counts with
    /// their bounds, the last `+Inf`.
    fn read(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let buckets: Vec<(f64, u64)> = self
            .0
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.0.buckets.iter().map(|b| b.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = self.0.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        (sum, count, buckets)
    }
}

impl TypedMetric for DurationHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for DurationHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = self.read();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_observation_lands_in_the_first_bucket_at_or_above_it() {
        let h = DurationHistogram::new(&[0.01, 0.1, 1.0]);
        for ms in [5, 10, 11, 100, 999, 1000, 1001, 60_000] {
            h.observe(Duration::from_millis(ms));
        }
        let (sum, count, buckets) = h.read();
        assert_eq!(count, 8);
        assert_eq!(
            buckets,
            vec![(0.01, 2), (0.1, 2), (1.0, 2), (f64::INFINITY, 2)]
        );
        assert!((sum - 63.126).abs() < 1e-9, "{sum}");
    }
}
