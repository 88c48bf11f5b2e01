//! The rate budget that keeps an ACME account under the CA's limits
//! (Let's Encrypt: 50 new certificates per registered domain per 7 days, 5
//! per exact set of names per 7 days, 300 orders per account per 3 hours).
//! A ledger of what was ordered and issued, kept on disk, and a pure check
//! saying whether an order may go out now or, if not, until when it waits
//! and why. Sliding windows: never more than the limit in any window, which
//! is stricter than the CA's refilling buckets. Every name the agent orders
//! lies under the one public domain, so all its certificates count against
//! one registered domain.

use serde::{Deserialize, Serialize};

pub const WEEK: i64 = 7 * 86400;
pub const THREE_HOURS: i64 = 3 * 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    pub new_per_week: u32,
    pub same_names_per_week: u32,
    pub orders_per_3h: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Seconds since the epoch.
    pub at: i64,
    /// Sorted.
    pub names: Vec<String>,
    /// Same names as the certificate it replaces (not a new certificate).
    pub renewal: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// When orders were created.
    pub orders: Vec<i64>,
    /// Certificates issued.
    pub certs: Vec<Entry>,
}

/// An order the budget does not let out yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldBack {
    /// When it may go out (seconds since the epoch).
    pub until: i64,
    pub reason: String,
}

fn sorted(names: &[String]) -> Vec<String> {
    let mut v = names.to_vec();
    v.sort();
    v
}

/// `until` for a window of `period` holding `times` (the oldest leaves first).
fn reopens(times: impl Iterator<Item = i64>, period: i64) -> i64 {
    times.min().unwrap_or(0) + period
}

impl Ledger {
    /// Forget what no window looks at any more.
    pub fn prune(&mut self, now: i64) {
        self.orders.retain(|t| now - t < THREE_HOURS);
        self.certs.retain(|e| now - e.at < WEEK);
    }

    pub fn record_order(&mut self, now: i64) {
        self.orders.push(now);
    }

    pub fn record_cert(&mut self, names: &[String], renewal: bool, now: i64) {
        self.certs.push(Entry {
            at: now,
            names: sorted(names),
            renewal,
        });
    }

    /// May an order for `names` go out at `now`? A renewal (the same names
    /// as the certificate it replaces) does not count as a new certificate.
    pub fn check(
        &self,
        names: &[String],
        renewal: bool,
        now: i64,
        l: &RateLimits,
    ) -> Result<(), HeldBack> {
        let orders: Vec<i64> = self
            .orders
            .iter()
            .copied()
            .filter(|t| now - t < THREE_HOURS)
            .collect();
        if orders.len() >= l.orders_per_3h as usize {
            return Err(HeldBack {
                until: reopens(orders.into_iter(), THREE_HOURS),
                reason: format!(
                    "{} orders in the last 3 hours reach certs.max_orders_per_3h = {}",
                    l.orders_per_3h, l.orders_per_3h
                ),
            });
        }
        let week: Vec<&Entry> = self.certs.iter().filter(|e| now - e.at < WEEK).collect();
        if !renewal {
            let new: Vec<i64> = week.iter().filter(|e| !e.renewal).map(|e| e.at).collect();
            if new.len() >= l.new_per_week as usize {
                return Err(HeldBack {
                    until: reopens(new.into_iter(), WEEK),
                    reason: format!(
                        "{} new certificates in the last 7 days reach certs.max_new_per_week = {}",
                        l.new_per_week, l.new_per_week
                    ),
                });
            }
        }
        let set = sorted(names);
        let same: Vec<i64> = week
            .iter()
            .filter(|e| e.names == set)
            .map(|e| e.at)
            .collect();
        if same.len() >= l.same_names_per_week as usize {
            return Err(HeldBack {
                until: reopens(same.into_iter(), WEEK),
                reason: format!(
                    "{} certificates for these names in the last 7 days reach certs.max_same_names_per_week = {}",
                    l.same_names_per_week, l.same_names_per_week
                ),
            });
        }
        Ok(())
    }
}

/// The ledger on disk (`STATE/certs/acme/ledger.json`), shared by the
/// worker and its order tasks: `admit` checks and records an order in one
/// step, so parallel orders cannot both take the last slot.
#[derive(Debug)]
pub struct Budget {
    ledger: std::sync::Mutex<Ledger>,
    path: std::path::PathBuf,
    pub limits: RateLimits,
}

impl Budget {
    /// The stored ledger (a missing or unreadable one starts empty).
    pub fn load(path: std::path::PathBuf, limits: RateLimits) -> Budget {
        let ledger = std::fs::read(&path)
            .ok()
            .and_then(|raw| serde_json::from_slice(&raw).ok())
            .unwrap_or_default();
        Budget {
            ledger: std::sync::Mutex::new(ledger),
            path,
            limits,
        }
    }

    fn save(&self, l: &Ledger) {
        let body = serde_json::to_vec_pretty(l).expect("serializes");
        if let Some(parent) = self.path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        if let Err(e) = crate::sys::fs::atomic_write(&self.path, &body, 0o600) {
            tracing::error!("certificates: saving {}: {e}", self.path.display());
        }
    }

    pub fn check(&self, names: &[String], renewal: bool, now: i64) -> Result<(), HeldBack> {
        let mut l = self
            .ledger
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        l.prune(now);
        l.check(names, renewal, now, &self.limits)
    }

    /// Check, and if the order may go out, count it.
    pub fn admit(&self, names: &[String], renewal: bool, now: i64) -> Result<(), HeldBack> {
        let mut l = self
            .ledger
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        l.prune(now);
        l.check(names, renewal, now, &self.limits)?;
        l.record_order(now);
        self.save(&l);
        Ok(())
    }

    pub fn issued(&self, names: &[String], renewal: bool, now: i64) {
        let mut l = self
            .ledger
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        l.record_cert(names, renewal, now);
        self.save(&l);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: RateLimits = RateLimits {
        new_per_week: 2,
        same_names_per_week: 2,
        orders_per_3h: 3,
    };

    fn n(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn new_certificates_per_week() {
        let mut l = Ledger::default();
        l.record_cert(&n(&["a.d", "*.a.d"]), false, 100);
        l.record_cert(&n(&["b.d", "*.b.d"]), false, 200);
        let c = n(&["c.d", "*.c.d"]);
        let held = l.check(&c, false, 300, &L).unwrap_err();
        assert_eq!(held.until, 100 + WEEK);
        assert!(
            held.reason.contains("certs.max_new_per_week = 2"),
            "{}",
            held.reason
        );
        // A renewal is not a new certificate.
        assert_eq!(l.check(&n(&["*.a.d", "a.d"]), true, 300, &L), Ok(()));
        // The oldest leaves the window.
        assert_eq!(l.check(&c, false, 100 + WEEK, &L), Ok(()));
    }

    #[test]
    fn same_names_and_orders() {
        let mut l = Ledger::default();
        let a = n(&["a.d", "*.a.d"]);
        l.record_cert(&a, false, 10);
        l.record_cert(&a, true, 20);
        let held = l.check(&a, true, 30, &L).unwrap_err();
        assert_eq!(held.until, 10 + WEEK);
        assert!(held.reason.contains("max_same_names_per_week"));

        let mut o = Ledger::default();
        for t in [1000, 2000, 3000] {
            o.record_order(t);
        }
        let held = o.check(&a, false, 3001, &L).unwrap_err();
        assert_eq!(held.until, 1000 + THREE_HOURS);
        assert!(held.reason.contains("max_orders_per_3h = 3"));
        o.prune(1000 + THREE_HOURS);
        assert_eq!(o.orders, vec![2000, 3000]);
        assert_eq!(o.check(&a, false, 1000 + THREE_HOURS, &L), Ok(()));
    }
}
