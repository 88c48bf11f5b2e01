//! The certificate worker: one task that keeps every routed container's
//! certificate issued and renewed, apart from the records' update path (an
//! ACME order takes seconds; `Edge::apply` never waits for one). It knows
//! only the certificate store, the challenge responder and its config. It works
//! towards the newest wanted set, plans with `manager::plan`, runs up to
//! `max_parallel_orders` orders at once, retries failures with doubling
//! backoff while the last good certificate stays served, asks the rate
//! budget before every order, and wakes for the next renewal, retry or
//! reopened budget. A result for names no longer wanted is thrown away.

use super::acme::Acme;
use super::authority::Authority;
use super::budget::{Budget, HeldBack};
use super::manager::{self, Why};
use super::responder::Responder;
use super::{CertError, Certificates, Issued, Wanted, Work};
use crate::config::certs::{AcmeConfig, CertsConfig, Challenge, Issuer};
use crate::metrics::{Metrics, OrderResult};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// An order may take this long in all before it counts as failed.
const ORDER_TIMEOUT: Duration = Duration::from_secs(300);

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The delay before attempt `failures + 1`: `min` doubling up to `max`.
pub fn backoff(failures: u32, min: Duration, max: Duration) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(20);
    min.saturating_mul(factor).min(max)
}

struct Retry {
    names: Vec<String>,
    failures: u32,
    at: i64,
}

/// How an order task ended.
enum Ended {
    Issued(Issued),
    /// The budget was used up by the time the task asked (parallel orders).
    Held(HeldBack),
    Failed(CertError),
}

type OrderDone = (String, Vec<String>, Why, Ended);

/// One order: the DNS pre-check, the budget's admission, the order.
async fn order(
    acme: Arc<dyn Authority>,
    budget: Arc<Budget>,
    names: &[String],
    renewal: bool,
) -> Ended {
    if let Err(e) = acme.precheck(names).await {
        return Ended::Failed(e);
    }
    if let Err(h) = budget.admit(names, renewal, now()) {
        return Ended::Held(h);
    }
    match tokio::time::timeout(ORDER_TIMEOUT, acme.issue(names)).await {
        Ok(Ok(issued)) => Ended::Issued(issued),
        Ok(Err(e)) => Ended::Failed(e),
        Err(_) => Ended::Failed(CertError::Issue {
            names: names.join(", "),
            source: format!("no certificate within {} s", ORDER_TIMEOUT.as_secs()).into(),
        }),
    }
}

struct State {
    certs: Arc<Certificates>,
    cfg: CertsConfig,
    responder: Arc<Responder>,
    acme: Option<Arc<dyn Authority>>,
    budget: Arc<Budget>,
    retries: HashMap<String, Retry>,
    in_flight: HashMap<String, Vec<String>>,
    jobs: JoinSet<OrderDone>,
    /// Which container each job orders for (to clean up after a panic).
    job_of: HashMap<tokio::task::Id, String>,
    /// Held-back reasons already logged (once per container and reason).
    told: HashMap<String, String>,
    metrics: Arc<Metrics>,
}

impl State {
    fn acme_cfg(&self) -> &AcmeConfig {
        &self.cfg.acme
    }

    /// Say (once per reason) that the budget holds `container` back.
    fn held_back(&mut self, container: &str, held: HeldBack) -> i64 {
        let why = format!("held back by the rate budget: {}", held.reason);
        if self.told.get(container) != Some(&why) {
            self.metrics.budget_hold();
            tracing::warn!(
                "certificate for {container}: {why}; next try at {}",
                chrono::DateTime::from_timestamp(held.until, 0)
                    .map(|d| d.to_rfc3339())
                    .unwrap_or_default()
            );
            self.told.insert(container.to_string(), why.clone());
        }
        self.certs.set_work(
            container,
            Some(Work::HeldBack {
                why,
                until: held.until,
            }),
        );
        held.until
    }

    fn failed(&mut self, container: &str, names: &[String], why: String) {
        let cfg = self.acme_cfg();
        let failures = match self.retries.get(container) {
            Some(r) if r.names == names => r.failures + 1,
            _ => 1,
        };
        let delay = backoff(failures, cfg.retry_min, cfg.retry_max);
        let at = now() + delay.as_secs() as i64;
        tracing::error!(
            "certificate for {container}: {why} (attempt {failures}; next in {}s)",
            delay.as_secs()
        );
        self.retries.insert(
            container.to_string(),
            Retry {
                names: names.to_vec(),
                failures,
                at,
            },
        );
        self.certs
            .set_work(container, Some(Work::Failed { why, retry_at: at }));
    }

    async fn account(&mut self, challenge: Challenge) -> Result<Arc<dyn Authority>, CertError> {
        if let Some(a) = &self.acme {
            return Ok(a.clone());
        }
        let open = Acme::open(
            &self.cfg.acme,
            challenge,
            &self.cfg.dir,
            self.responder.clone(),
        );
        let acme = match tokio::time::timeout(Duration::from_secs(60), open).await {
            Ok(r) => Arc::new(r?) as Arc<dyn Authority>,
            Err(_) => {
                return Err(CertError::Io {
                    what: format!("ACME directory {}", self.cfg.acme.directory),
                    source: "no answer within 60 s".into(),
                })
            }
        };
        self.acme = Some(acme.clone());
        Ok(acme)
    }

    /// Start what the plan wants and may start now; the earliest moment
    /// something held back or waiting may start.
    async fn start_due(&mut self, wanted: &Wanted) -> Option<i64> {
        let store = self.certs.clone();
        let plan = manager::plan(wanted, &store.held(), now(), self.cfg.renew_after_fraction);
        for container in plan.drop.iter().filter(|c| !store.is_kept(c)) {
            if let Err(e) = store.remove(container) {
                tracing::error!("{e}");
            } else {
                tracing::info!("certificate for {container} removed");
            }
        }
        self.retries.retain(|c, _| wanted.contains_key(c));
        self.told.retain(|c, _| wanted.contains_key(c));
        let mut wake = plan.next_due;
        let mut soon = |t: i64| wake = Some(wake.map_or(t, |w: i64| w.min(t)));
        for (container, names, why) in plan.issue {
            if self.in_flight.contains_key(&container) {
                continue;
            }
            if let Some(r) = self.retries.get(&container) {
                if r.names == names && now() < r.at {
                    continue;
                }
            }
            let challenge = match self.cfg.issuer {
                Issuer::LocalCa => {
                    match store.issue_local(&container, &names, &why) {
                        Ok(()) => {
                            self.retries.remove(&container);
                            store.set_work(&container, None);
                        }
                        Err(e) => self.failed(&container, &names, e.to_string()),
                    }
                    continue;
                }
                Issuer::Acme(c) => c,
            };
            if self.jobs.len() >= self.acme_cfg().parallel {
                // A finished job wakes the loop again.
                break;
            }
            let t = now();
            let renewal = why == Why::Renewal;
            if let Err(held) = self.budget.check(&names, renewal, t) {
                let until = self.held_back(&container, held);
                soon(until);
                continue;
            }
            let acme = match self.account(challenge).await {
                Ok(a) => a,
                Err(e) => {
                    self.failed(&container, &names, format!("ACME account: {e}"));
                    continue;
                }
            };
            store.set_work(&container, Some(Work::Ordering { since: t }));
            tracing::info!(
                "certificate for {container}: ordering {} from {} ({why:?}, {})",
                names.join(", "),
                acme.directory(),
                challenge.as_str()
            );
            self.in_flight.insert(container.clone(), names.clone());
            let c = container.clone();
            let budget = self.budget.clone();
            let handle = self.jobs.spawn(async move {
                let ended = order(acme, budget, &names, renewal).await;
                (container, names, why, ended)
            });
            self.job_of.insert(handle.id(), c);
        }
        for r in self.retries.values() {
            // Every failure waiting for its retry wakes the loop then.
            soon(r.at);
        }
        wake
    }

    fn finished(&mut self, wanted: &Wanted, (container, names, why, ended): OrderDone) {
        self.in_flight.remove(&container);
        if wanted.get(&container) != Some(&names) {
            tracing::info!(
                "certificate for {container}: names changed while ordering; result dropped"
            );
            self.certs.set_work(&container, None);
            return;
        }
        let directory = self.acme_cfg().directory.clone();
        let result = match ended {
            Ended::Issued(issued) => self.certs.install(&container, &issued, &directory, &names),
            Ended::Held(h) => {
                self.held_back(&container, h);
                return;
            }
            Ended::Failed(e) => Err(e),
        };
        self.metrics.acme_order(match &result {
            Ok(()) => OrderResult::Issued,
            Err(_) => OrderResult::Failed,
        });
        match result {
            Ok(()) => {
                self.budget.issued(&names, why == Why::Renewal, now());
                self.told.remove(&container);
                self.retries.remove(&container);
                self.certs.set_work(&container, None);
                tracing::info!(
                    "certificate for {container} ({}) issued by {directory} ({why:?})",
                    names.join(", ")
                );
            }
            Err(e) => self.failed(&container, &names, e.to_string()),
        }
    }
}

/// Run until the wanted set's sender (the edge) goes away.
pub async fn run(
    certs: Arc<Certificates>,
    cfg: CertsConfig,
    responder: Arc<Responder>,
    wanted: watch::Receiver<Option<Wanted>>,
    metrics: Arc<Metrics>,
) {
    run_with(certs, cfg, responder, wanted, None, metrics).await
}

/// [`run`], ordering from `authority` when given (tests), else from the
/// configured ACME directory (opened at the first order).
pub async fn run_with(
    certs: Arc<Certificates>,
    cfg: CertsConfig,
    responder: Arc<Responder>,
    mut wanted: watch::Receiver<Option<Wanted>>,
    authority: Option<Arc<dyn Authority>>,
    metrics: Arc<Metrics>,
) {
    let budget = Arc::new(Budget::load(
        cfg.dir.join("acme").join("ledger.json"),
        cfg.acme.limits,
    ));
    let mut st = State {
        certs,
        cfg,
        responder,
        acme: authority,
        budget,
        retries: HashMap::new(),
        in_flight: HashMap::new(),
        jobs: JoinSet::new(),
        job_of: HashMap::new(),
        told: HashMap::new(),
        metrics,
    };
    loop {
        let want = wanted.borrow_and_update().clone();
        let wake = match &want {
            Some(w) => {
                let wake = st.start_due(w).await;
                tracing::debug!("certificates: pass over {} container(s) done", w.len());
                wake
            }
            // Nothing applied yet: keep what is held, order nothing.
            None => None,
        };
        let sleep = match wake {
            // At least a second: a renewal due now that could not start
            // must not spin.
            Some(t) => Duration::from_secs((t - now()).max(1) as u64),
            None => Duration::from_secs(24 * 3600),
        };
        tokio::select! {
            changed = wanted.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            Some(done) = st.jobs.join_next_with_id(), if !st.jobs.is_empty() => {
                match done {
                    Ok((id, outcome)) => {
                        st.job_of.remove(&id);
                        st.finished(&want_now(&wanted), outcome)
                    }
                    Err(e) => {
                        tracing::error!("certificate order task: {e}");
                        if let Some(c) = st.job_of.remove(&e.id()) {
                            if let Some(names) = st.in_flight.remove(&c) {
                                st.metrics.acme_order(OrderResult::Failed);
                                st.failed(&c, &names, format!("order task failed: {e}"));
                            }
                        }
                    }
                }
            }
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}

fn want_now(rx: &watch::Receiver<Option<Wanted>>) -> Wanted {
    rx.borrow().clone().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let (min, max) = (Duration::from_secs(300), Duration::from_secs(3600));
        let got: Vec<u64> = (1..=6).map(|f| backoff(f, min, max).as_secs()).collect();
        assert_eq!(got, vec![300, 600, 1200, 2400, 3600, 3600]);
        assert_eq!(backoff(200, min, max), max, "no overflow");
    }
}
