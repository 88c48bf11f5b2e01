//! The running agent as a metrics [`Source`]: reads the records the
//! supervisor published last, the edge's connections and certificates,
//! `/proc` for inotify use and the agent's own memory. Only reads: nothing
//! here asks the supervisor task, so a scrape never waits behind a job.

use super::state::{resident_bytes, Inotify, Snapshot, Source};
use crate::admission::probe::{HostProbe, ProcProbe};
use crate::container::Phase;
use crate::edge::Edge;
use crate::net::pool::AddressPool;
use crate::supervisor::Handle;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

pub struct AgentSource {
    pub handle: Handle,
    pub edge: Option<Arc<Edge>>,
    pub backend: &'static str,
    pub pool: AddressPool,
    pub containers_dir: PathBuf,
    pub probe: ProcProbe,
}

impl Source for AgentSource {
    fn snapshot(&self) -> Snapshot {
        let (records, held) = self.handle.published();
        let mut blocks: BTreeSet<u32> = records.iter().map(|r| r.addresses.index).collect();
        blocks.extend(held.iter().filter_map(|(a, _)| self.pool.index_of(*a)));
        let inotify = self
            .probe
            .facts(&self.containers_dir)
            .inotify
            .map(|i| Inotify {
                instances: i.instances,
                max_instances: i.max_instances,
                watches: i.watches,
                max_watches: i.max_watches,
            });
        Snapshot {
            backend: self.backend,
            phases: records.iter().map(|r| r.phase).collect(),
            asleep: records
                .iter()
                .filter(|r| r.phase == Phase::Stopped && r.asleep_since.is_some())
                .count() as u64,
            pool_used: blocks.len() as u64,
            pool_capacity: u64::from(self.pool.capacity()),
            certificates: self
                .edge
                .as_ref()
                .map(|e| e.certificate_expiry())
                .unwrap_or_default(),
            inotify,
            open_connections: self.edge.as_ref().map(|e| e.open_connections() as u64),
            resident_bytes: std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|s| resident_bytes(&s)),
        }
    }
}
