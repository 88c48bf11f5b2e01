//! Gauges of what the agent holds and the host has, taken at each scrape
//! from one [`Snapshot`] instead of being kept in step by hand: containers
//! by phase and backend, the address pool, certificate expiry, inotify use
//! against its limits, open proxy connections, the agent's memory. The
//! daemon hands over a [`Source`] once everything it reads exists; before
//! that (and in a unit test without one) these gauges are absent.

use super::labels::{ContainerLabels, ContainerStateLabels, PoolLabels, PoolState};
use crate::container::Phase;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;
use std::sync::{Arc, OnceLock};

/// Every phase a record can be in, so that each has a series (zero too).
pub const PHASES: [Phase; 8] = Phase::ALL;

/// What the state gauges show at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The backend that runs the containers (`direct`, `systemd`).
    pub backend: &'static str,
    /// The phase of every container record.
    pub phases: Vec<Phase>,
    /// Of the stopped ones, those asleep (counted as `sleeping`, not
    /// `stopped`).
    pub asleep: u64,
    /// /30 blocks of the address pool taken (records and quarantined
    /// names), and all there are.
    pub pool_used: u64,
    pub pool_capacity: u64,
    /// Each served certificate's container and expiry (seconds since the epoch).
    pub certificates: Vec<(String, i64)>,
    /// Charged to the agent's user, against `fs.inotify.max_user_*`.
    pub inotify: Option<Inotify>,
    /// Client connections the proxy holds (`None`: no proxy).
    pub open_connections: Option<u64>,
    /// The agent's resident set.
    pub resident_bytes: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Inotify {
    pub instances: u64,
    pub max_instances: u64,
    pub watches: u64,
    pub max_watches: u64,
}

/// Takes a [`Snapshot`]; may block (it reads `/proc`): called off the
/// async threads.
pub trait Source: Send + Sync {
    fn snapshot(&self) -> Snapshot;
}

#[derive(Default)]
pub(super) struct StateCollector {
    pub(super) source: OnceLock<Arc<dyn Source>>,
}

impl std::fmt::Debug for StateCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateCollector")
            .field("source", &self.source.get().is_some())
            .finish()
    }
}

/// One gauge without labels.
fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let m = encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    ConstGauge::new(value).encode(m)
}

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(source) = self.source.get() else {
            return Ok(());
        };
        encode(&source.snapshot(), &mut encoder)
    }
}

/// The gauges of `s`.
pub(super) fn encode(s: &Snapshot, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    {
        let mut family = encoder.encode_descriptor(
            "containers",
            "Containers by the phase of their record (running, stopped, building, ...; sleeping: stopped for want of use) and the backend that runs them.",
            None,
            MetricType::Gauge,
        )?;
        for phase in PHASES {
            let labels = ContainerStateLabels {
                state: phase.as_str(),
                backend: s.backend,
            };
            let mut n = s.phases.iter().filter(|p| **p == phase).count() as u64;
            if phase == Phase::Stopped {
                n = n.saturating_sub(s.asleep);
            }
            ConstGauge::new(n).encode(family.encode_family(&labels)?)?;
        }
        let labels = ContainerStateLabels {
            state: "sleeping",
            backend: s.backend,
        };
        ConstGauge::new(s.asleep).encode(family.encode_family(&labels)?)?;
    }
    {
        let mut family = encoder.encode_descriptor(
            "address_pool_blocks",
            "The /30 blocks of the address pool (network.pool), one per container: used and free.",
            None,
            MetricType::Gauge,
        )?;
        let free = s.pool_capacity.saturating_sub(s.pool_used);
        for (state, n) in [(PoolState::Used, s.pool_used), (PoolState::Free, free)] {
            ConstGauge::new(n).encode(family.encode_family(&PoolLabels { state })?)?;
        }
    }
    {
        let mut family = encoder.encode_descriptor(
            "certificate_expiry_timestamp",
            "When each container's served certificate expires (Unix time).",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?;
        for (container, not_after) in &s.certificates {
            let labels = ContainerLabels {
                container: container.clone(),
            };
            ConstGauge::new(*not_after).encode(family.encode_family(&labels)?)?;
        }
    }
    if let Some(i) = s.inotify {
        for (name, help, v) in [
            (
                "inotify_instances",
                "inotify instances charged to the agent's user (every container's count against host root).",
                i.instances,
            ),
            (
                "inotify_instances_limit",
                "fs.inotify.max_user_instances: the most inotify_instances may reach.",
                i.max_instances,
            ),
            (
                "inotify_watches",
                "inotify watches charged to the agent's user.",
                i.watches,
            ),
            (
                "inotify_watches_limit",
                "fs.inotify.max_user_watches: the most inotify_watches may reach.",
                i.max_watches,
            ),
        ] {
            gauge(encoder, name, help, None, v)?;
        }
    }
    if let Some(n) = s.open_connections {
        gauge(
            encoder,
            "proxy_open_connections",
            "Client connections the edge holds open (HTTP and HTTPS).",
            None,
            n,
        )?;
    }
    if let Some(n) = s.resident_bytes {
        gauge(
            encoder,
            "agent_resident_memory",
            "The agent process's resident memory.",
            Some(&Unit::Bytes),
            n,
        )?;
    }
    Ok(())
}

/// `VmRSS` of a `/proc/PID/status`, in bytes.
pub fn resident_bytes(status: &str) -> Option<u64> {
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_memory_is_read_from_vmrss() {
        let status = "Name:\tdevhost\nVmPeak:\t  900 kB\nVmRSS:\t   12345 kB\nThreads:\t9\n";
        assert_eq!(resident_bytes(status), Some(12345 * 1024));
        assert_eq!(
            resident_bytes("Name:\tkthreadd\n"),
            None,
            "kernel threads have none"
        );
    }
}
