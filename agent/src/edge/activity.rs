//! Each container's last proxied request, kept in memory for the cleanup
//! sweep when `cleanup.count_activity` is on. A request costs a shared read
//! lock and one relaxed atomic load (a store only when the second changed),
//! so the proxy's worker threads do not contend on it; the sweep copies the
//! moments into the records, which is what survives a restart.

use crate::shared::Shared;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

#[derive(Debug, Default)]
pub struct Activity {
    last: Shared<HashMap<String, Arc<AtomicI64>>>,
}

impl Activity {
    /// A request for `container` at `unix_secs`.
    pub fn touch(&self, container: &str, unix_secs: i64) {
        if let Some(a) = self.last.read().get(container) {
            if a.load(Ordering::Relaxed) < unix_secs {
                a.store(unix_secs, Ordering::Relaxed);
            }
            return;
        }
        self.last
            .write()
            .entry(container.to_string())
            .or_default()
            .fetch_max(unix_secs, Ordering::Relaxed);
    }

    /// The last request for `container` since the agent started.
    pub fn last(&self, container: &str) -> Option<DateTime<Utc>> {
        let secs = self.last.read().get(container)?.load(Ordering::Relaxed);
        DateTime::from_timestamp(secs, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_moment_per_container() {
        let a = Activity::default();
        assert_eq!(a.last("c1"), None);
        a.touch("c1", 1_000);
        a.touch("c1", 900);
        a.touch("c2", 5);
        assert_eq!(a.last("c1"), DateTime::from_timestamp(1_000, 0));
        assert_eq!(a.last("c2"), DateTime::from_timestamp(5, 0));
        a.touch("c1", 2_000);
        assert_eq!(a.last("c1"), DateTime::from_timestamp(2_000, 0));
    }
}
