//! The edge: what the outside world reaches of the containers. An HTTPS
//! reverse proxy (`ALIAS.NAME.PUBLIC` → the container), its certificates,
//! and the redirect from HTTP. It reads the container records (the derived
//! state task hands it every new snapshot), never writes them: routes and
//! certificates follow the records live, with no restart and without
//! touching other routes' connections.

pub mod activity;
pub mod certs;
pub mod config;
pub mod dns;
mod dns_server;
pub mod headers;
mod idle;
mod pages;
mod proxy;
pub mod routes;
mod tls;
mod upstream;

use crate::container::Record;
use certs::config::Issuer;
use certs::local_ca::LocalCa;
use certs::responder::Responder;
use certs::{CertInfo, Issued, Loaded, Meta, Store, Work};
use config::EdgeConfig;
use routes::RouteTable;
use rustls::sign::CertifiedKey;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("edge: cannot listen on {addr}: {why}")]
    Listen {
        addr: std::net::SocketAddr,
        why: String,
    },
    #[error("edge: {0}")]
    Certs(#[from] certs::CertError),
    #[error("edge: starting proxy worker thread {index}: {why}")]
    Worker { index: usize, why: String },
}

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge")
            .field("domain", &self.cfg.domain)
            .finish()
    }
}

/// Which names each routed container's certificate must cover.
pub type Wanted = BTreeMap<String, Vec<String>>;

pub struct Edge {
    pub cfg: EdgeConfig,
    routes: RwLock<Arc<RouteTable>>,
    certs: RwLock<HashMap<String, Loaded>>,
    /// Issuance under way, failed or held back, per container.
    work: RwLock<BTreeMap<String, Work>>,
    store: Store,
    ca: LocalCa,
    /// What the certificate worker works towards; `None` until the first
    /// records are applied (certificates loaded at start are not dropped
    /// for want of routes not yet built).
    wanted: watch::Sender<Option<Wanted>>,
    /// The public zone, when `[dns]` has the agent serve it.
    pub zone: Option<Arc<RwLock<dns::Zone>>>,
    /// Answers to pending ACME challenges.
    pub responder: Arc<Responder>,
    /// Last proxied request per container (filled only when counted).
    pub activity: activity::Activity,
}

impl Edge {
    /// Load what is stored (certificates, the local CA); serves nothing yet.
    pub fn new(cfg: EdgeConfig) -> Result<(Arc<Edge>, Vec<String>), EdgeError> {
        let store = Store {
            dir: cfg.certs.dir.clone(),
        };
        let label = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "devhost".into());
        let ca = LocalCa::load_or_create(&cfg.certs.dir.join("local-ca"), &label)?;
        let (loaded, problems) = store.load_all();
        let zone = cfg
            .dns
            .as_ref()
            .map(|d| Arc::new(RwLock::new(d.zone.clone())));
        let edge = Edge {
            routes: RwLock::new(Arc::new(RouteTable::build(&cfg.domain, cfg.upstream, &[]))),
            certs: RwLock::new(loaded.into_iter().collect()),
            work: RwLock::new(BTreeMap::new()),
            store,
            ca,
            wanted: watch::Sender::new(None),
            responder: Arc::new(Responder::new(zone.clone())),
            zone,
            activity: activity::Activity::default(),
            cfg,
        };
        Ok((Arc::new(edge), problems))
    }

    /// The local CA's root certificate (what clients trust).
    pub fn root_path(&self) -> &std::path::Path {
        &self.ca.root_path
    }

    pub fn routes(&self) -> Arc<RouteTable> {
        self.routes.read().expect("not poisoned").clone()
    }

    pub fn cert_for(&self, container: &str) -> Option<Arc<CertifiedKey>> {
        self.certs
            .read()
            .expect("not poisoned")
            .get(container)
            .map(|l| l.key.clone())
    }

    /// Wait until the first records are applied: until then no name has a
    /// route, and a request would get a wrong 404.
    pub async fn routes_ready(&self) {
        let mut rx = self.wanted.subscribe();
        let _ = rx.wait_for(|w| w.is_some()).await;
    }

    /// What a user sees of a container's certificate (`None`: the edge
    /// does not serve it).
    pub fn cert_info(&self, container: &str) -> Option<CertInfo> {
        let held = self
            .certs
            .read()
            .expect("not poisoned")
            .get(container)
            .map(|l| l.meta.clone());
        let work = self
            .work
            .read()
            .expect("not poisoned")
            .get(container)
            .cloned();
        if held.is_none()
            && work.is_none()
            && !self
                .wanted
                .borrow()
                .as_ref()
                .is_some_and(|w| w.contains_key(container))
        {
            return None;
        }
        Some(CertInfo::new(held.as_ref(), work.as_ref()))
    }

    /// Bring routes, zone names and certificates in line with `records`:
    /// the new route table is swapped in whole; the certificate worker is
    /// told what is wanted. With the local CA, missing certificates are
    /// issued here and now (milliseconds), so a new name is served with its
    /// certificate as soon as it is routed.
    pub fn apply(&self, records: Arc<Vec<Record>>) -> Result<(), EdgeError> {
        let table = RouteTable::build(&self.cfg.domain, self.cfg.upstream, &records);
        let wanted = table.certificate_names(self.cfg.certs.issuer.wildcard());
        let mut first_error = None;
        if self.cfg.certs.issuer == Issuer::LocalCa {
            let held = self.held();
            let now = chrono::Utc::now().timestamp();
            let plan =
                certs::manager::plan(&wanted, &held, now, self.cfg.certs.renew_after_fraction);
            for (container, names, why) in plan.issue {
                if let Err(e) = self.issue_local(&container, &names, &why) {
                    tracing::error!("{e}");
                    first_error.get_or_insert(EdgeError::from(e));
                }
            }
        }
        if let Some(zone) = &self.zone {
            let mut z = zone.write().expect("not poisoned");
            let containers = wanted.keys().cloned().collect();
            if z.containers != containers {
                z.containers = containers;
                z.bump_serial();
            }
        }
        // Routes after certificates: a new name is served with its certificate.
        *self.routes.write().expect("not poisoned") = Arc::new(table);
        self.wanted.send_replace(Some(wanted));
        first_error.map_or(Ok(()), Err)
    }

    /// Every held certificate's names and validity.
    pub(crate) fn held(&self) -> BTreeMap<String, Meta> {
        self.certs
            .read()
            .expect("not poisoned")
            .iter()
            .map(|(c, l)| (c.clone(), l.meta.clone()))
            .collect()
    }

    /// Issue a certificate from the local CA, keep it and serve it.
    pub(crate) fn issue_local(
        &self,
        container: &str,
        names: &[String],
        why: &certs::manager::Why,
    ) -> Result<(), certs::CertError> {
        let issued = self.ca.issue(names, self.cfg.certs.local_ca_days)?;
        self.install(container, &issued, "local-ca", names)?;
        tracing::info!(
            "certificate for {container} ({}) issued by the local CA ({why:?})",
            names.join(", ")
        );
        Ok(())
    }

    /// Keep a fresh certificate (on disk first) and serve it.
    pub(crate) fn install(
        &self,
        container: &str,
        issued: &Issued,
        issuer: &str,
        names: &[String],
    ) -> Result<(), certs::CertError> {
        let loaded = certs::load(container, issued, issuer, names)?;
        self.store.save(container, issued, &loaded.meta)?;
        self.certs
            .write()
            .expect("not poisoned")
            .insert(container.to_string(), loaded);
        Ok(())
    }

    /// Stop serving a container's certificate and delete it.
    pub(crate) fn remove_cert(&self, container: &str) -> Result<(), certs::CertError> {
        self.certs.write().expect("not poisoned").remove(container);
        self.work.write().expect("not poisoned").remove(container);
        self.store.remove(container)
    }

    pub(crate) fn set_work(&self, container: &str, work: Option<Work>) {
        let mut w = self.work.write().expect("not poisoned");
        match work {
            Some(x) => w.insert(container.to_string(), x),
            None => w.remove(container),
        };
    }

    /// Bind every listener (an error names the address), then serve them
    /// and keep certificates issued and renewed in the background.
    pub async fn start(self: &Arc<Self>) -> Result<(), EdgeError> {
        if let (Some(dns), Some(zone)) = (&self.cfg.dns, &self.zone) {
            dns_server::start(zone.clone(), &dns.listen).await?;
        }
        if !self.cfg.enable {
            return Ok(());
        }
        proxy::start(self.clone()).await?;
        tokio::spawn(certs::worker::run(self.clone(), self.wanted.subscribe()));
        Ok(())
    }
}
