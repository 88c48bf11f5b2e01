//! The certificate worker against a fake authority that issues from a
//! local CA and can be told to fail or hang at each step of an order (the
//! DNS pre-check, the order itself): a failed order is retried while
//! nothing half-made is kept or served; a crash mid-order (the runtime
//! dropped) leaves the store as it was, and the next worker orders again.

use super::authority::Authority;
use super::local_ca::LocalCa;
use super::{CertError, Certificates, Issued, Wanted};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Precheck,
    Issue,
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    Fail,
    Hang,
}

struct Fake {
    ca: LocalCa,
    calls: Mutex<Vec<Step>>,
    faults: Mutex<BTreeMap<(Step, usize), Fault>>,
    hanging: Notify,
}

impl Fake {
    fn new(dir: &Path) -> Arc<Fake> {
        Arc::new(Fake {
            ca: LocalCa::load_or_create(&dir.join("fake-ca"), "fake ACME").unwrap(),
            calls: Mutex::new(Vec::new()),
            faults: Mutex::new(BTreeMap::new()),
            hanging: Notify::new(),
        })
    }

    async fn enter(&self, step: Step, names: &[String]) -> Result<(), CertError> {
        let n = {
            let mut c = self.calls.lock().unwrap();
            c.push(step);
            c.iter().filter(|s| **s == step).count()
        };
        let fault = self.faults.lock().unwrap().get(&(step, n)).copied();
        match fault {
            None => Ok(()),
            Some(Fault::Fail) => Err(CertError::Issue {
                names: names.join(", "),
                source: format!("{step:?} failed as planted").into(),
            }),
            Some(Fault::Hang) => {
                self.hanging.notify_one();
                std::future::pending().await
            }
        }
    }
}

#[async_trait]
impl Authority for Fake {
    fn directory(&self) -> &str {
        "https://fake.test/directory"
    }
    async fn precheck(&self, names: &[String]) -> Result<(), CertError> {
        self.enter(Step::Precheck, names).await
    }
    async fn issue(&self, names: &[String]) -> Result<Issued, CertError> {
        self.enter(Step::Issue, names).await?;
        self.ca.issue(names, 90)
    }
}

fn config(dir: &Path) -> crate::config::certs::CertsConfig {
    let d = dir.display();
    crate::config::Config::from_toml(&format!(
        r#"
[paths]
state_dir = "{d}/state"
[edge]
enable = true
public_domain = "dev.test"
[certs]
mode = "http-01"
acme_directory = "https://fake.test/directory"
retry_min_secs = 1
retry_max_secs = 1
check_dns = false
"#
    ))
    .unwrap()
    .edge
    .certs
}

fn names() -> Vec<String> {
    vec!["web01.dev.test".to_string(), "www.web01.dev.test".into()]
}

fn wanted() -> Wanted {
    [("web01".to_string(), names())].into_iter().collect()
}

/// What of web01's certificate is on disk, by file.
fn files(dir: &Path) -> Vec<String> {
    let live = dir.join("state/certs/live/web01");
    let mut f: Vec<String> = std::fs::read_dir(live)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    f.sort();
    f
}

async fn worker(dir: &Path, fake: Arc<Fake>) -> (Arc<Certificates>, watch::Sender<Option<Wanted>>) {
    counted_worker(dir, fake, crate::metrics::Metrics::new(false)).await
}

/// [`worker`], counting its orders in `metrics`.
async fn counted_worker(
    dir: &Path,
    fake: Arc<Fake>,
    metrics: Arc<crate::metrics::Metrics>,
) -> (Arc<Certificates>, watch::Sender<Option<Wanted>>) {
    let cfg = config(dir);
    let (certs, problems) = Certificates::open(&cfg.dir, "test", 90).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    let certs = Arc::new(certs);
    let (tx, rx) = watch::channel(Some(wanted()));
    tokio::spawn(super::worker::run_with(
        certs.clone(),
        cfg,
        Arc::new(super::responder::Responder::new(None)),
        rx,
        Some(fake as Arc<dyn Authority>),
        metrics,
    ));
    (certs, tx)
}

async fn until_served(certs: &Certificates) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while certs.key_for("web01").is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the certificate is served");
}

const STEPS: [Step; 2] = [Step::Precheck, Step::Issue];

#[tokio::test]
async fn a_failure_at_each_step_of_an_order_is_retried_and_leaves_nothing_half_made() {
    for step in STEPS {
        let dir = tempfile::tempdir().unwrap();
        let fake = Fake::new(dir.path());
        fake.faults.lock().unwrap().insert((step, 1), Fault::Fail);
        let (certs, _tx) = worker(dir.path(), fake.clone()).await;
        tokio::time::timeout(Duration::from_secs(10), async {
            while certs.info("web01", true).map(|i| i.state) != Some(super::CertState::Failed) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{step:?}: the failure is reported"));
        assert!(certs.key_for("web01").is_none(), "{step:?}: nothing served");
        assert_eq!(
            files(dir.path()),
            Vec::<String>::new(),
            "{step:?}: nothing kept"
        );
        // The retry (after retry_min_secs) succeeds.
        until_served(&certs).await;
        assert_eq!(
            files(dir.path()),
            vec!["cert.pem", "key.pem", "meta.json"],
            "{step:?}"
        );
    }
}

#[test]
fn a_crash_at_each_step_of_an_order_leaves_the_store_as_it_was() {
    for step in STEPS {
        let dir = tempfile::tempdir().unwrap();
        let fake = Fake::new(dir.path());
        fake.faults.lock().unwrap().insert((step, 1), Fault::Hang);
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let (_certs, _tx) = worker(dir.path(), fake.clone()).await;
            tokio::time::timeout(Duration::from_secs(10), fake.hanging.notified())
                .await
                .unwrap_or_else(|_| panic!("{step:?} reached"));
        });
        drop(rt);
        assert_eq!(files(dir.path()), Vec::<String>::new(), "{step:?}");
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let (certs, _tx) = worker(dir.path(), fake.clone()).await;
            until_served(&certs).await;
        });
        assert_eq!(files(dir.path()), vec!["cert.pem", "key.pem", "meta.json"]);
    }
}

#[tokio::test]
async fn orders_are_counted_by_result() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::new(dir.path());
    fake.faults
        .lock()
        .unwrap()
        .insert((Step::Precheck, 1), Fault::Fail);
    let metrics = crate::metrics::Metrics::new(false);
    let (certs, _tx) = counted_worker(dir.path(), fake, metrics.clone()).await;
    until_served(&certs).await;
    let orders = |result: &str| {
        crate::metrics::exposition::parse(&metrics.encode())
            .unwrap()
            .value("devhost_acme_orders_total", &[("result", result)])
            .unwrap()
    };
    // Counted once the certificate is installed (just after it is served).
    tokio::time::timeout(Duration::from_secs(10), async {
        while orders("issued") < 1.0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the issued order is counted");
    assert_eq!((orders("failed"), orders("issued")), (1.0, 1.0));
}
