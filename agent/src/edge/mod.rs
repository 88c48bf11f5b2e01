//! The edge: what the outside world reaches of the containers. An HTTPS
//! reverse proxy (`ALIAS.NAME.PUBLIC` → the container) and the redirect
//! from HTTP. It reads the container records (the derived state task hands
//! it every new snapshot), never writes them: routes follow the records
//! live, with no restart and without touching other routes' connections.
//! Port 80 redirects only names it routes (no open redirect).
//! What it shares with the rest of the agent is handed to it: the
//! certificate store (it reads keys; the local CA path writes), the ACME
//! responder (http-01 and tls-alpn-01 answers), and the DNS zone (it names
//! the routed containers there; the DNS server beside it answers).
//! With `[edge] dashboard = true` it also serves a page of its own at the
//! apex (`dashboard/`), with a certificate for the apex.
//! One call goes the other way: a request for a sleeping container asks
//! the supervisor to wake it, through the [`Wake`] handed to
//! [`Edge::set_waker`] once the supervisor runs (`wake.rs`).

pub mod activity;
pub mod dashboard;
pub mod headers;
mod idle;
mod pages;
#[cfg(test)]
mod proptests;
mod proxy;
mod redirect;
pub mod routes;
mod slots;
mod tls;
mod upstream;
mod wake;

pub use wake::Wake;

use crate::certs::responder::Responder;
use crate::certs::{CertInfo, Certificates, Wanted};
use crate::config::certs::Issuer;
use crate::config::edge::EdgeConfig;
use crate::container::Record;
use crate::dns::Zone;
use crate::shared::Shared;
use routes::RouteTable;
use std::sync::Arc;
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("edge: {0}")]
    Listen(#[from] crate::sys::listen::ListenError),
    #[error("edge: {0}")]
    Certs(#[from] crate::certs::CertError),
    #[error("edge: starting proxy worker thread {index}: {source}")]
    Worker {
        index: usize,
        source: std::io::Error,
    },
}

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge")
            .field("domain", &self.cfg.domain)
            .finish()
    }
}

/// What the edge shares with the rest of the agent (built by the daemon).
pub struct Shares {
    pub certs: Arc<Certificates>,
    pub responder: Arc<Responder>,
    /// The public zone, when `[dns]` has the agent serve it.
    pub zone: Option<Arc<Shared<Zone>>>,
    /// The cleanup policy: the dashboard says when each container is
    /// disabled, and with `count_activity` the edge remembers each
    /// container's last proxied request.
    pub cleanup: crate::cleanup::Policy,
    /// Where requests, connections and certificate orders are counted.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// What keeps containers awake: each proxied request and upgraded
    /// connection holds a guard here while it lasts.
    pub busy: Arc<crate::sleep::Busy>,
    /// How long a request for a sleeping container waits for it
    /// (`sleep.wake_timeout_secs`).
    pub wake_timeout: std::time::Duration,
}

pub struct Edge {
    pub cfg: EdgeConfig,
    routes: Shared<Arc<RouteTable>>,
    certs: Arc<Certificates>,
    responder: Arc<Responder>,
    zone: Option<Arc<Shared<Zone>>>,
    /// What the certificate worker works towards; `None` until the first
    /// records are applied (certificates loaded at start are not dropped
    /// for want of routes not yet built).
    wanted: watch::Sender<Option<Wanted>>,
    /// Last proxied request per container (`None`: not counted).
    activity: Option<activity::Activity>,
    /// The records last applied, for the dashboard (empty when it is off).
    seen: Shared<Arc<dashboard::Seen>>,
    cleanup: crate::cleanup::Policy,
    /// Client connections open, in all and per source.
    slots: Arc<slots::Slots>,
    metrics: Arc<crate::metrics::Metrics>,
    busy: Arc<crate::sleep::Busy>,
    /// Starts sleeping containers (the supervisor, once it runs).
    waker: std::sync::OnceLock<Arc<dyn Wake>>,
    wake_timeout: std::time::Duration,
}

impl Edge {
    /// An edge with no routes yet; serves nothing until [`Edge::start`].
    pub fn new(cfg: EdgeConfig, shares: Shares) -> Arc<Edge> {
        Arc::new(Edge {
            routes: Shared::new(Arc::new(
                RouteTable::build(&cfg.domain, cfg.upstream, &[])
                    .serving_apex(cfg.dashboard.is_some()),
            )),
            certs: shares.certs,
            responder: shares.responder,
            zone: shares.zone,
            wanted: watch::Sender::new(None),
            activity: shares
                .cleanup
                .count_activity
                .then(activity::Activity::default),
            seen: Shared::default(),
            cleanup: shares.cleanup,
            slots: slots::Slots::new(cfg.max_connections, cfg.max_connections_per_source),
            metrics: shares.metrics,
            busy: shares.busy,
            waker: std::sync::OnceLock::new(),
            wake_timeout: shares.wake_timeout,
            cfg,
        })
    }

    pub fn routes(&self) -> Arc<RouteTable> {
        self.routes.read().clone()
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
        let wanted = self
            .wanted
            .borrow()
            .as_ref()
            .is_some_and(|w| w.contains_key(container));
        self.certs.info(container, wanted)
    }

    /// What the dashboard is drawn from (the records last applied).
    pub fn seen(&self) -> Arc<dashboard::Seen> {
        self.seen.read().clone()
    }

    /// Client connections open now (HTTP and HTTPS).
    pub fn open_connections(&self) -> usize {
        self.slots.total()
    }

    /// Each served certificate's container and expiry (seconds since the
    /// epoch).
    pub fn certificate_expiry(&self) -> Vec<(String, i64)> {
        self.certs
            .held()
            .into_iter()
            .map(|(c, meta)| (c, meta.not_after))
            .collect()
    }

    /// The last proxied request for `container` since the agent started
    /// (when counted).
    pub fn last_activity(&self, container: &str) -> Option<chrono::DateTime<chrono::Utc>> {
        self.activity.as_ref()?.last(container)
    }

    /// A request for `container` now (kept when activity is counted).
    fn touch(&self, container: &str) {
        if let Some(a) = &self.activity {
            a.touch(container, chrono::Utc::now().timestamp());
        }
    }

    /// Who wakes sleeping containers (set once, when the supervisor runs;
    /// until then a sleeping container's requests get the retry page).
    pub fn set_waker(&self, waker: Arc<dyn Wake>) {
        let _ = self.waker.set(waker);
    }

    /// Keep the certificates of these containers (quarantined records)
    /// although no route wants them.
    pub fn keep_certificates(&self, containers: std::collections::BTreeSet<String>) {
        self.certs.keep(containers);
    }

    /// Delete a container's certificate that was kept (a forgotten name).
    pub fn forget_certificate(&self, container: &str) {
        if let Err(e) = self.certs.release(container) {
            tracing::warn!("{e}");
        }
    }

    /// Bring routes, zone names and certificates in line with `records`:
    /// the new route table is swapped in whole; the certificate worker is
    /// told what is wanted. With the local CA, missing certificates are
    /// issued here and now (milliseconds), so a new name is served with its
    /// certificate as soon as it is routed. With the dashboard on, the apex
    /// is served too and wants a certificate of its own.
    pub fn apply(&self, records: Arc<Vec<Record>>) -> Result<(), EdgeError> {
        let dashboard = self.cfg.dashboard.is_some();
        let table = RouteTable::build(&self.cfg.domain, self.cfg.upstream, &records)
            .serving_apex(dashboard);
        let wanted = table.certificate_names(self.cfg.certs.issuer.wildcard());
        let mut first_error = None;
        if self.cfg.certs.issuer == Issuer::LocalCa {
            let held = self.certs.held();
            let now = chrono::Utc::now().timestamp();
            let plan = crate::certs::manager::plan(
                &wanted,
                &held,
                now,
                self.cfg.certs.renew_after_fraction,
            );
            for (container, names, why) in plan.issue {
                if let Err(e) = self.certs.issue_local(&container, &names, &why) {
                    tracing::error!("{e}");
                    first_error.get_or_insert(EdgeError::from(e));
                }
            }
        }
        if let Some(zone) = &self.zone {
            let mut z = zone.write();
            let containers = wanted
                .keys()
                .filter(|c| *c != routes::APEX)
                .cloned()
                .collect();
            if z.containers != containers {
                z.containers = containers;
                z.bump_serial();
            }
        }
        if dashboard {
            *self.seen.write() = Arc::new(dashboard::Seen::of(records));
        }
        // Routes after certificates: a new name is served with its certificate.
        *self.routes.write() = Arc::new(table);
        self.metrics.proxy.routed(wanted.keys().map(String::as_str));
        self.wanted.send_replace(Some(wanted));
        first_error.map_or(Ok(()), Err)
    }

    /// Bind every listener (an error names the address), then serve them
    /// and keep certificates issued and renewed in the background.
    pub async fn start(self: &Arc<Self>) -> Result<(), EdgeError> {
        if !self.cfg.enable {
            return Ok(());
        }
        proxy::start(self.clone()).await?;
        tokio::spawn(crate::certs::worker::run(
            self.certs.clone(),
            self.cfg.certs.clone(),
            self.responder.clone(),
            self.wanted.subscribe(),
            self.metrics.clone(),
        ));
        Ok(())
    }
}
