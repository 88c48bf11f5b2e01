//! The edge: what the outside world reaches of the containers. An HTTPS
//! reverse proxy (`ALIAS.NAME.PUBLIC` → the container), its certificates,
//! and the redirect from HTTP. It reads the container records (the derived
//! state task hands it every new snapshot), never writes them: routes and
//! certificates follow the records live, with no restart and without
//! touching other routes' connections.

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
use certs::local_ca::LocalCa;
use certs::{Loaded, Meta, Store};
use config::EdgeConfig;
use routes::RouteTable;
use rustls::sign::CertifiedKey;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("edge: cannot listen on {addr}: {why}")]
    Listen {
        addr: std::net::SocketAddr,
        why: String,
    },
    #[error("edge: {0}")]
    Certs(#[from] certs::CertError),
}

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge")
            .field("domain", &self.cfg.domain)
            .finish()
    }
}

pub struct Edge {
    pub cfg: EdgeConfig,
    routes: RwLock<Arc<RouteTable>>,
    certs: RwLock<HashMap<String, Loaded>>,
    store: Store,
    ca: LocalCa,
    /// The records last applied (renewals run against them).
    last: Mutex<Arc<Vec<Record>>>,
    /// The public zone, when `[dns]` has the agent serve it.
    pub zone: Option<Arc<RwLock<dns::Zone>>>,
}

impl Edge {
    /// Load what is stored (certificates, the local CA); serves nothing yet.
    pub fn new(cfg: EdgeConfig) -> Result<(Arc<Edge>, Vec<String>), EdgeError> {
        let store = Store {
            dir: cfg.certs_dir.clone(),
        };
        let label = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "devhost".into());
        let ca = LocalCa::load_or_create(&cfg.certs_dir.join("local-ca"), &label)?;
        let (loaded, problems) = store.load_all();
        let edge = Edge {
            routes: RwLock::new(Arc::new(RouteTable::build(&cfg.domain, cfg.upstream, &[]))),
            certs: RwLock::new(loaded.into_iter().collect()),
            store,
            ca,
            last: Mutex::new(Arc::new(Vec::new())),
            zone: cfg
                .dns
                .as_ref()
                .map(|d| Arc::new(RwLock::new(d.zone.clone()))),
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

    /// Bring routes and certificates in line with `records`: the new route
    /// table is swapped in whole; missing, changed and due certificates are
    /// issued, those of containers no longer routed dropped.
    pub fn apply(&self, records: Arc<Vec<Record>>) -> Result<(), EdgeError> {
        let table = RouteTable::build(&self.cfg.domain, self.cfg.upstream, &records);
        let wanted = table.certificate_names();
        *self.last.lock().expect("not poisoned") = records;
        let held: BTreeMap<String, Meta> = self
            .certs
            .read()
            .expect("not poisoned")
            .iter()
            .map(|(c, l)| (c.clone(), l.meta.clone()))
            .collect();
        let now = chrono::Utc::now().timestamp();
        let plan = certs::manager::plan(&wanted, &held, now, self.cfg.renew_after_fraction);
        let mut first_error = None;
        for (container, names, why) in plan.issue {
            match self.issue(&container, &names) {
                Ok(loaded) => {
                    tracing::info!(
                        "certificate for {container} ({}) issued by the local CA ({why:?})",
                        names.join(", ")
                    );
                    self.certs
                        .write()
                        .expect("not poisoned")
                        .insert(container, loaded);
                }
                Err(e) => {
                    tracing::error!("{e}");
                    first_error.get_or_insert(e);
                }
            }
        }
        // Routes after certificates: a new name is served with its certificate.
        *self.routes.write().expect("not poisoned") = Arc::new(table);
        for container in plan.drop {
            self.certs.write().expect("not poisoned").remove(&container);
            if let Err(e) = self.store.remove(&container) {
                first_error.get_or_insert(e.into());
            }
            tracing::info!("certificate for {container} removed");
        }
        first_error.map_or(Ok(()), Err)
    }

    fn issue(&self, container: &str, names: &[String]) -> Result<Loaded, EdgeError> {
        let issued = self.ca.issue(names, self.cfg.local_ca_days)?;
        let loaded = certs::load(container, &issued, "local-ca", names)?;
        self.store.save(container, &issued, &loaded.meta)?;
        Ok(loaded)
    }

    /// Bind every listener (an error names the address), then serve them
    /// and renew certificates in the background.
    pub async fn start(self: &Arc<Self>) -> Result<(), EdgeError> {
        if let (Some(dns), Some(zone)) = (&self.cfg.dns, &self.zone) {
            dns_server::start(zone.clone(), &dns.listen).await?;
        }
        if !self.cfg.enable {
            return Ok(());
        }
        proxy::start(self.clone()).await?;
        let edge = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                let records = edge.last.lock().expect("not poisoned").clone();
                if let Err(e) = edge.apply(records) {
                    tracing::error!("certificate renewal: {e}");
                }
            }
        });
        Ok(())
    }
}
