//! The one owner of container state. API handlers send typed commands to the
//! supervisor task; it authorizes them against the records it holds, queues
//! operations per container name (one at a time per name, different names in
//! parallel) and runs each as a job task that reports back by message. Jobs
//! persist every phase through the supervisor *before* the side effects the
//! phase names; the supervisor keeps the derived files (hosts block, NAT
//! table, compatibility records) in step with the records.

mod admit;
mod boot;
pub mod build;
mod derived;
mod error;
#[cfg(test)]
mod fakes;
mod handle;
mod op;
mod ops;
mod preflight;
mod reconcile;
mod sleep;
mod steps;
mod sweep;
#[cfg(test)]
mod tests;

pub use error::{StepError, SupervisorError};
pub use handle::Handle;
use handle::{Msg, Reply};
pub use op::{EnsureSpec, Op, Outcome};
pub use sleep::Waker;

use crate::access::Caller;
use crate::api::types::{AgentInfo, ContainerInfo};
use crate::config::Config;
use crate::container::{ContainerName, Phase, Record};
use crate::net::apply::{Netlink, Nft};
use crate::nix::runner::NixBuilder;
use crate::nspawn::backend::Backend;
use crate::progress::Progress;
use crate::state::Store;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// The subsystems a job uses, shared read-only.
pub struct Subsystems {
    pub cfg: Config,
    pub store: Store,
    pub backend: Arc<dyn Backend>,
    pub netlink: Arc<dyn Netlink>,
    pub nft: Arc<dyn Nft>,
    pub nix: Arc<dyn NixBuilder>,
    /// Fetches http(s) channels.
    pub fetcher: Arc<dyn crate::nix::fetch::Fetcher>,
    /// Runs provisioning steps in a running container.
    pub provisioner: Arc<dyn crate::provision::provisioner::Provisioner>,
    /// What the host's Nix settings allow (read at start).
    pub nix_safety: crate::nix::check::NixSafety,
    /// Host settings that are unsafe or too low, for `devhost info`.
    pub host_warnings: Vec<String>,
    /// The proxy and its certificates, when the edge is enabled.
    pub edge: Option<Arc<crate::edge::Edge>>,
    /// "Now" for everything the supervisor dates.
    pub clock: crate::clock::Clock,
    /// Builds, fetches and imports shared by the containers that need them.
    pub builds: build::Builds,
    /// The boot gate and the host-limit preflight.
    pub admission: crate::admission::Admission,
    /// Where operations, builds and cleanup actions are counted.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// What keeps containers awake (shared with the edge and the API).
    pub busy: Arc<crate::sleep::Busy>,
    /// SSH sessions into the network namespace a pid runs in
    /// (`crate::sleep::ssh::sessions`; a fake in tests).
    pub ssh_sessions: fn(u32) -> usize,
}

/// Operations waiting for one name (beyond the one running): more are
/// refused, so that no caller can pile up work (and provisioning uploads)
/// in the agent.
const MAX_QUEUED_PER_NAME: usize = 8;

struct Pending {
    op: Op,
    caller: Caller,
    progress: Progress,
    reply: Reply<Result<Outcome, SupervisorError>>,
}

pub struct Supervisor {
    env: Arc<Subsystems>,
    records: BTreeMap<ContainerName, Record>,
    /// Names whose record is quarantined: held, nothing of them touched.
    quarantined: BTreeMap<ContainerName, crate::state::Quarantined>,
    queues: HashMap<ContainerName, VecDeque<Pending>>,
    busy: BTreeSet<ContainerName>,
    /// How to stop the job running on each busy name.
    cancellers: HashMap<ContainerName, crate::cancel::Canceller>,
    findings: Vec<String>,
    version: u64,
    snapshots: watch::Sender<derived::Snapshot>,
    handle: Handle,
    rx: mpsc::Receiver<Msg>,
}

impl Supervisor {
    /// Load the records, reconcile them with reality, and start the
    /// supervisor task. Returns once the state is consistent.
    pub async fn start(env: Subsystems) -> Result<Handle, SupervisorError> {
        let env = Arc::new(env);
        env.store.ensure_dirs()?;
        // Out-links of builds the agent did not see to their end, and
        // systems that can no longer be reused.
        let systems = crate::nix::systems::cache_dir(&env.cfg.paths.state_dir);
        crate::nix::systems::clear_work(&systems, &env.cfg.nix.gcroots_auto_dir);
        crate::nix::systems::prune(&systems, env.clock.now(), env.cfg.nix.reuse_for, |p| {
            env.nix.in_store(p)
        });
        // The per-container cache of earlier versions: by key now.
        let _ = std::fs::remove_dir_all(env.cfg.paths.state_dir.join("build-cache"));
        let reconcile::Reconciled {
            records,
            quarantined,
            mut findings,
        } = reconcile::reconcile(&env).await;
        if let Err(e) = env.store.keep_reserve() {
            findings.push(format!(
                "state disk: no room for the reserve that lets stop and destroy work on a full disk: {e}"
            ));
        }
        for f in &findings {
            tracing::warn!(target: "devhost::reconcile", "{f}");
        }
        if let Some(edge) = &env.edge {
            edge.keep_certificates(quarantined.keys().map(|n| n.to_string()).collect());
        }
        let (tx, rx) = mpsc::channel(256);
        // Bring the derived state in line with the records before serving.
        let mut initial = derived::Derived::default();
        let refs: Vec<&Record> = records.iter().collect();
        let held = Arc::new(held_entries(&env, &quarantined));
        if let Err(e) = initial.sync(&env, &refs, &held, true).await {
            findings.push(format!("could not write derived files at start: {e}"));
            tracing::error!("{e}");
        }
        let snapshot = derived::Snapshot {
            version: 0,
            records: Arc::new(records.clone()),
            held,
        };
        let (snapshots, snap_rx) = watch::channel(snapshot);
        let (applied_tx, applied) = watch::channel(derived::Applied::default());
        let retry = Arc::new(tokio::sync::Notify::new());
        let published = snap_rx.clone();
        tokio::spawn(derived::run(
            env.clone(),
            snap_rx,
            applied_tx,
            retry.clone(),
        ));
        let handle = Handle {
            tx,
            applied,
            retry,
            records: published,
            busy: env.busy.clone(),
        };
        let sup = Supervisor {
            records: records.into_iter().map(|r| (r.name.clone(), r)).collect(),
            quarantined,
            queues: HashMap::new(),
            busy: BTreeSet::new(),
            cancellers: HashMap::new(),
            findings,
            version: 0,
            snapshots,
            handle: handle.clone(),
            env,
            rx,
        };
        let wanted: Vec<ContainerName> = sup
            .records
            .values()
            // A sleeping one sleeps on: the next request wakes it.
            .filter(|r| {
                r.enabled && r.want_running && r.phase != Phase::Running && r.asleep_since.is_none()
            })
            .map(|r| r.name.clone())
            .collect();
        let booted = sup.env.store.host_booted_since_last_start();
        let concurrency = sup.env.cfg.nspawn.boot_concurrency;
        tokio::spawn(sleep::watch(sup.env.clone(), handle.clone()));
        tokio::spawn(sup.run());
        if booted && !wanted.is_empty() {
            tokio::spawn(boot::start_after_boot(handle.clone(), wanted, concurrency));
        }
        Ok(handle)
    }

    async fn run(mut self) {
        while let Some(msg) = self.rx.recv().await {
            match msg {
                Msg::Run {
                    name,
                    op,
                    caller,
                    progress,
                    reply,
                } => {
                    let queue = self.queues.entry(name.clone()).or_default();
                    if queue.len() >= MAX_QUEUED_PER_NAME {
                        let _ = reply.send(Err(SupervisorError::QueueFull {
                            name,
                            max: MAX_QUEUED_PER_NAME,
                        }));
                        continue;
                    }
                    if matches!(op, Op::Destroy) {
                        // What runs on that name (a build) is pointless now.
                        if let Some(c) = self.cancellers.get(&name) {
                            c.cancel(crate::cancel::Reason::Destroyed);
                        }
                    }
                    queue.push_back(Pending {
                        op,
                        caller,
                        progress,
                        reply,
                    });
                    if !self.busy.contains(&name) {
                        self.start_next(&name);
                    }
                }
                Msg::Finished { name } => {
                    self.busy.remove(&name);
                    self.cancellers.remove(&name);
                    self.start_next(&name);
                }
                // Reads ask the backend (D-Bus, /proc) off the loop, on a copy.
                Msg::List { reply } => {
                    let records: Vec<Record> = self.records.values().cloned().collect();
                    let env = self.env.clone();
                    tokio::spawn(async move {
                        let mut infos = Vec::with_capacity(records.len());
                        for r in &records {
                            infos.push(info_of(&env, r).await);
                        }
                        let _ = reply.send(infos);
                    });
                }
                Msg::Get { name, reply } => match self.records.get(&name).cloned() {
                    None => {
                        let _ = reply.send(Err(SupervisorError::NoSuchContainer(name)));
                    }
                    Some(r) => {
                        let env = self.env.clone();
                        tokio::spawn(async move {
                            let _ = reply.send(Ok(info_of(&env, &r).await));
                        });
                    }
                },
                Msg::Console { name, lines, reply } => {
                    let env = self.env.clone();
                    tokio::spawn(async move {
                        let log = env.store.console_log(&name);
                        let _ = reply.send(env.backend.console_tail(&name, &log, lines).await);
                    });
                }
                Msg::ConsoleSource { name, reply } => {
                    // A unit's journal outlives its container: what an
                    // earlier one of the name logged is not this one's.
                    let source = match self.records.get(&name) {
                        Some(r) => {
                            let log = self.env.store.console_log(&name);
                            Ok(self
                                .env
                                .backend
                                .console_source(&name, &log)
                                .created(r.created))
                        }
                        None => Err(SupervisorError::NoSuchContainer(name)),
                    };
                    let _ = reply.send(source);
                }
                Msg::Info { reply } => {
                    let _ = reply.send(AgentInfo {
                        version: env!("CARGO_PKG_VERSION").to_string(),
                        backend: self.env.backend.kind().to_string(),
                        findings: self.findings.clone(),
                        warnings: self.env.host_warnings.clone(),
                        quarantined: self
                            .quarantined
                            .values()
                            .map(|q| crate::api::types::QuarantineInfo {
                                name: q.name.as_ref().map(|n| n.to_string()).unwrap_or_default(),
                                file: q.file.display().to_string(),
                                why: q.why.clone(),
                            })
                            .collect(),
                    });
                }
                Msg::Save { record, reply } => {
                    let res = self.save(record).await;
                    let _ = reply.send(res);
                }
                Msg::Remove { name, reply } => {
                    let res = self.remove(&name).await;
                    let _ = reply.send(res);
                }
                Msg::Resolve {
                    name,
                    record,
                    reply,
                } => {
                    let res = self.resolve(&name, record);
                    let _ = reply.send(res);
                }
                Msg::Finding { text } => self.findings.push(text),
                Msg::Cleanup {
                    body,
                    caller,
                    reply,
                } => match sweep::admit_sweep(&body, &caller, &self.env.clock) {
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                    Ok(now) => {
                        let records: Vec<Record> = self.records.values().cloned().collect();
                        let (env, handle) = (self.env.clone(), self.handle.clone());
                        tokio::spawn(async move {
                            let report =
                                sweep::sweep(env, handle, records, now, body.dry_run).await;
                            let _ = reply.send(Ok(report));
                        });
                    }
                },
                Msg::Version { reply } => {
                    let _ = reply.send(self.version);
                }
            }
        }
    }

    /// Persist, then take into memory: a failed save leaves the record
    /// as it was. Stop and destroy (phases that end in freeing space) may
    /// use the reserve of the state disk.
    async fn save(&mut self, record: Record) -> Result<(), SupervisorError> {
        let frees = matches!(
            record.phase,
            Phase::Stopping | Phase::Stopped | Phase::Destroying
        );
        let saved = if frees {
            self.env.store.save_freeing(&record).map(|used| {
                if used {
                    self.findings.push(format!(
                        "state disk full: used the reserve to save the record of {} ({})",
                        record.name,
                        record.phase.as_str()
                    ));
                }
            })
        } else {
            self.env.store.save(&record)
        };
        saved.map_err(|source| SupervisorError::Record {
            what: "saving",
            name: record.name.clone(),
            source,
        })?;
        self.records.insert(record.name.clone(), record);
        self.publish();
        Ok(())
    }

    /// A quarantined name adopted (with its record) or forgotten.
    fn resolve(
        &mut self,
        name: &ContainerName,
        record: Option<Record>,
    ) -> Result<(), SupervisorError> {
        let now = self.env.clock.now().timestamp();
        let moved = self
            .env
            .store
            .resolve(name, record.as_ref(), now)
            .map_err(|source| SupervisorError::Record {
                what: "resolving the quarantined",
                name: name.clone(),
                source,
            })?;
        self.quarantined.remove(name);
        if let Some(edge) = &self.env.edge {
            edge.keep_certificates(self.quarantined.keys().map(|n| n.to_string()).collect());
        }
        let kept: Vec<String> = moved.iter().map(|p| p.display().to_string()).collect();
        self.findings.push(format!(
            "{name}: quarantine resolved ({}); kept {}",
            if record.is_some() {
                "adopted"
            } else {
                "forgotten"
            },
            kept.join(", ")
        ));
        if let Some(r) = record {
            self.records.insert(name.clone(), r);
        }
        self.publish();
        Ok(())
    }

    async fn remove(&mut self, name: &ContainerName) -> Result<(), SupervisorError> {
        self.env
            .store
            .remove(name)
            .map_err(|source| SupervisorError::Record {
                what: "removing",
                name: name.clone(),
                source,
            })?;
        self.records.remove(name);
        self.publish();
        // Space was freed: make the reserve again if it was used.
        let _ = self.env.store.keep_reserve();
        Ok(())
    }

    /// Publish the records to the derived-state task.
    fn publish(&mut self) {
        self.version += 1;
        let records: Vec<Record> = self.records.values().cloned().collect();
        self.snapshots.send_replace(derived::Snapshot {
            version: self.version,
            records: Arc::new(records),
            held: Arc::new(held_entries(&self.env, &self.quarantined)),
        });
    }

    /// Start the next queued operation on `name`, if any.
    fn start_next(&mut self, name: &ContainerName) {
        let Some(p) = self.queues.get_mut(name).and_then(|q| q.pop_front()) else {
            self.queues.remove(name);
            return;
        };
        let current = self.records.get(name).cloned();
        let job = match self.admit(name, &p.op, &p.caller, current) {
            Ok(job) => job,
            Err(e) => {
                let _ = p.reply.send(Err(e));
                return self.start_next(name);
            }
        };
        if let ops::Job::Create { record, .. } = &job {
            // Reserve the name and addresses now, so concurrent ensures of
            // other names cannot take them; the job persists it first thing.
            self.records.insert(name.clone(), record.clone());
        }
        self.busy.insert(name.clone());
        let (canceller, cancel) = crate::cancel::pair();
        self.cancellers.insert(name.clone(), canceller);
        let env = self.env.clone();
        let handle = self.handle.clone();
        let name = name.clone();
        let verb = p.op.verb();
        tokio::spawn(async move {
            tracing::info!(container = %name, "{verb} started");
            let ctx = ops::JobCtx {
                env,
                sup: handle.clone(),
                progress: p.progress,
                cancel,
            };
            let result = ops::run(&ctx, job).await;
            match &result {
                Ok(o) => tracing::info!(container = %name, "{verb} done: {}", o.message),
                Err(e) => tracing::warn!(container = %name, "{verb} failed: {e}"),
            }
            let _ = p.reply.send(result);
            handle.finished(name).await;
        });
    }
}

/// The hosts entries quarantined containers keep (those whose address is
/// known).
fn held_entries(
    env: &Subsystems,
    quarantined: &BTreeMap<ContainerName, crate::state::Quarantined>,
) -> Vec<(std::net::Ipv4Addr, String)> {
    let pool = crate::net::pool::AddressPool::new(env.cfg.network.pool);
    quarantined
        .iter()
        .filter_map(|(name, q)| Some((pool.pair(q.index?)?.local, name.to_string())))
        .collect()
}

/// What a user sees of a container: its record and whether it runs now.
pub(super) async fn info_of(env: &Subsystems, r: &Record) -> ContainerInfo {
    let pid = env.backend.find(&r.name).await.map(|x| x.pid);
    let mut info = ContainerInfo::new(r, pid);
    info.waiting = env.builds.waiting(&r.name);
    info.certificate = env.edge.as_ref().and_then(|e| e.cert_info(r.name.as_str()));
    let d = sweep::decision_for(env, r, pid.is_some(), env.clock.now());
    info.cleanup = Some(d.reason);
    info.sleep = Some(sleep::describe(env, r, pid));
    if r.disk_size.is_some() {
        // It reads mountinfo and asks `btrfs`: off the async threads.
        let root = steps::root_dir(env, r);
        let on_btrfs = steps::roots_on_btrfs(env);
        (info.disk_quota, info.disk_used) =
            tokio::task::spawn_blocking(move || steps::disk_enforcement(on_btrfs, &root))
                .await
                .unwrap_or((None, None));
    }
    // The init is nspawn's child on both backends.
    if let Some(init) = pid.and_then(|p| crate::sys::proc::children(p).into_iter().next()) {
        info.user_namespace = crate::sys::proc::own_user_namespace(init);
    }
    info
}
