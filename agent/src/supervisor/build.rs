//! A new container's system, built once for all containers that need it.
//! The channel is read (an http(s) one revalidated, a local one copied with
//! its caller's rights) and identified by its content; with the generated
//! configuration — the same for every container — that is the system's key
//! ([`crate::nix::systems`]). A system built before under that key is
//! linked at once; otherwise one build runs for every container that asks
//! for it meanwhile ([`crate::flight`]), at most `nix.max_builds` builds of
//! different systems at a time, and each waiter links its own profile (its
//! GC root) to the result — or gets the build's error with its log.

use super::ops::JobCtx;
use super::{Subsystems, SupervisorError};
use crate::container::{ContainerName, Record};
use crate::flight::{Flights, Left, Sink};
use crate::nix::fetch::{FetchError, Fetched};
use crate::nix::plan::{build_argv, configuration_nix, system_link, BuildSpec};
use crate::nix::systems::{self, SystemKey};
use crate::nix::NixError;
use crate::sys::fs::atomic_write;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::Semaphore;

/// A built system, and the build's own GC root for it: removed once every
/// container that waited for the build has linked its profile (the last
/// copy of this value is dropped).
#[derive(Debug)]
pub struct BuiltSystem {
    pub path: String,
    link: Option<(PathBuf, PathBuf)>,
}

impl Drop for BuiltSystem {
    fn drop(&mut self) {
        if let Some((link, roots)) = &self.link {
            systems::unlink_system(link, roots);
        }
    }
}

type BuildResult = Result<Arc<BuiltSystem>, Arc<NixError>>;
type FetchResult = Result<Fetched, Arc<FetchError>>;
type ImportResult = Result<String, Arc<NixError>>;

/// The builds, fetches and local imports under way, shared by key.
pub struct Builds {
    systems: Flights<SystemKey, BuildResult>,
    fetches: Flights<String, FetchResult>,
    /// Local channels by (reader uid, gid, path): read with those rights.
    imports: Flights<(u32, u32, String), ImportResult>,
    slots: Arc<Semaphore>,
    max: usize,
    /// Builds started: each gets an out-link of its own.
    runs: std::sync::atomic::AtomicU64,
    waits: Arc<Mutex<BTreeMap<ContainerName, String>>>,
}

impl Builds {
    pub fn new(max_builds: usize) -> Builds {
        let max = max_builds.max(1);
        Builds {
            systems: Flights::default(),
            fetches: Flights::default(),
            imports: Flights::default(),
            slots: Arc::new(Semaphore::new(max)),
            max,
            runs: Default::default(),
            waits: Arc::default(),
        }
    }

    /// What the operation on `name` waits for now, if it waits.
    pub fn waiting(&self, name: &ContainerName) -> Option<String> {
        self.waits.lock().expect("not poisoned").get(name).cloned()
    }

    /// Say what `name` waits for until the guard is dropped.
    fn wait_for(&self, name: &ContainerName, what: String) -> WaitGuard {
        self.waits
            .lock()
            .expect("not poisoned")
            .insert(name.clone(), what);
        WaitGuard {
            waits: self.waits.clone(),
            name: name.clone(),
        }
    }
}

struct WaitGuard {
    waits: Arc<Mutex<BTreeMap<ContainerName, String>>>,
    name: ContainerName,
}

impl Drop for WaitGuard {
    fn drop(&mut self) {
        self.waits.lock().expect("not poisoned").remove(&self.name);
    }
}

fn build_error(r: &Record, source: NixError) -> SupervisorError {
    SupervisorError::Build {
        name: r.name.clone(),
        source,
    }
}

fn left(r: &Record, why: Left) -> SupervisorError {
    build_error(
        r,
        match why {
            Left::Stopped(reason) => NixError::Stopped(reason),
            Left::Lost => NixError::Lost,
        },
    )
}

fn io<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> SupervisorError + 'a {
    move |source| SupervisorError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// This job's progress and its container's build log, for shared work.
fn sink(ctx: &JobCtx, r: &Record) -> Sink {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(ctx.env.store.build_log(&r.name))
        .ok();
    Sink {
        progress: ctx.progress.clone(),
        log,
    }
}

/// Build (or find) the system of a new container and link it as the
/// container's profile; returns its store path.
pub(super) async fn build(
    ctx: &JobCtx,
    r: &Record,
    caller: &crate::access::Caller,
) -> Result<String, SupervisorError> {
    let env = &ctx.env;
    let cfg = &env.cfg;
    let dir = env.store.container_dir(&r.name);
    std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
    let conf = configuration_nix(&cfg.nix.base_imports, &cfg.nix.extra_config);
    // For whoever looks: what the container's system is built from.
    atomic_write(&dir.join("configuration.nix"), conf.as_bytes(), 0o644)?;
    let out_link = system_link(&cfg.paths.profiles_dir, &r.name);
    if let Some(parent) = out_link.parent() {
        std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
    }
    let entry = channel_entry(ctx, r, caller).await?;
    let allowed = crate::nix::plan::allowed_paths(&cfg.nix.base_imports, &cfg.nix.allowed_paths);
    let (key, reusable) = {
        // Reading the allowed paths may take a while: off the async threads.
        let (entry, conf, allowed, cfg2, name) = (
            entry.clone(),
            conf.clone(),
            allowed.clone(),
            env.clone(),
            r.name.clone(),
        );
        let computed = tokio::task::spawn_blocking(move || {
            let cfg = &cfg2.cfg;
            let inputs = systems::KeyInputs {
                channel_entry: &entry,
                configuration: &conf,
                extra_args: &cfg.nix.extra_args,
                allowed_paths: &allowed,
                allowed_uris: &cfg.nix.allowed_uris,
                container: (!cfg.nix.share_systems).then_some(&name),
            };
            match systems::key(&inputs) {
                Ok(k) => (k, None),
                Err(e) => {
                    let own = systems::KeyInputs {
                        allowed_paths: &[],
                        container: Some(&name),
                        ..inputs
                    };
                    (systems::key(&own).expect("no paths to read"), Some(e))
                }
            }
        })
        .await
        .map_err(|e| build_error(r, NixError::Panicked(e.to_string())))?;
        if let Some(e) = &computed.1 {
            ctx.progress.log(format!("warning: {e}"));
        }
        (computed.0, computed.1.is_none())
    };
    let cache = systems::cache_dir(&cfg.paths.state_dir);
    let now = env.clock.now();
    if reusable {
        let found = systems::lookup(&cache, &key, now, cfg.nix.reuse_for, |p| {
            env.nix.in_store(p)
        });
        if let Some(b) = found {
            // Under Nix's GC lock: no collection takes it meanwhile.
            if env
                .nix
                .add_root(&b.system, &out_link, &cfg.nix.gcroots_auto_dir)
                .await
            {
                ctx.progress.log(format!(
                    "system {} reused (built for {} at {} from the same channel content and configuration)",
                    b.system,
                    b.by,
                    crate::clock::stamp(b.built)
                ));
                return Ok(b.system);
            }
        }
    }
    let (_, log_path) = systems::work_paths(&cache, &key);
    let job = SharedBuild {
        env: env.clone(),
        key: key.clone(),
        configuration: conf,
        entry,
        allowed,
        channel: r.channel.to_string(),
        started_by: r.name.clone(),
        reusable,
        built: now,
    };
    let ticket = env.builds.systems.join(
        key.clone(),
        r.name.as_str(),
        sink(ctx, r),
        move |cancel, progress| async move { job.run(&cancel, &progress).await },
    );
    let started_by = ticket.started_by().to_string();
    let what = if ticket.leader {
        format!("the build of system {}", key.short())
    } else {
        let w = format!(
            "waiting for the build of system {} (started by {started_by})",
            key.short()
        );
        ctx.progress.log(w.clone());
        w
    };
    let _waiting = env.builds.wait_for(&r.name, what);
    let built = ticket
        .wait(&ctx.cancel, &ctx.progress)
        .await
        .map_err(|why| left(r, why))?
        .map_err(|e| {
            build_error(
                r,
                NixError::Shared {
                    key: key.to_string(),
                    started_by: started_by.clone(),
                    log: log_path.clone(),
                    source: e,
                },
            )
        })?;
    // The build's own root holds it until every waiter has linked; one found
    // in the cache meanwhile is held by the GC lock.
    if !env
        .nix
        .add_root(&built.path, &out_link, &cfg.nix.gcroots_auto_dir)
        .await
    {
        return Err(SupervisorError::Io {
            what: "linking",
            path: out_link,
            source: std::io::Error::other(format!("{} is not in the store", built.path)),
        });
    }
    Ok(built.path.clone())
}

/// One build of one system, run for everyone who waits for it.
struct SharedBuild {
    env: Arc<Subsystems>,
    key: SystemKey,
    configuration: String,
    entry: String,
    allowed: Vec<PathBuf>,
    channel: String,
    started_by: ContainerName,
    reusable: bool,
    built: chrono::DateTime<chrono::Utc>,
}

impl SharedBuild {
    async fn run(
        self,
        cancel: &crate::cancel::Cancel,
        progress: &crate::progress::Progress,
    ) -> BuildResult {
        self.build(cancel, progress).await.map_err(Arc::new)
    }

    async fn build(
        self,
        cancel: &crate::cancel::Cancel,
        progress: &crate::progress::Progress,
    ) -> Result<Arc<BuiltSystem>, NixError> {
        let builds = &self.env.builds;
        let cfg = &self.env.cfg;
        let cache = systems::cache_dir(&cfg.paths.state_dir);
        if self.reusable {
            // Built by a flight that ended just before this one began.
            let env = &self.env;
            if let Some(b) =
                systems::lookup(&cache, &self.key, self.built, cfg.nix.reuse_for, |p| {
                    env.nix.in_store(p)
                })
            {
                return Ok(Arc::new(BuiltSystem {
                    path: b.system,
                    link: None,
                }));
            }
        }
        let _slot = match builds.slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                progress.log(format!(
                    "waiting for a build slot ({} builds of other systems run; nix.max_builds = {})",
                    builds.max - builds.slots.available_permits().min(builds.max),
                    builds.max
                ));
                tokio::select! {
                    slot = builds.slots.clone().acquire_owned() => slot.expect("never closed"),
                    why = cancel.cancelled() => return Err(NixError::Stopped(why)),
                }
            }
        };
        let (conf_path, log_path) = systems::work_paths(&cache, &self.key);
        // A link of its own: an earlier build's may still be held.
        let n = builds
            .runs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let link = cache.join(format!("{}-{n}.link", self.key));
        let write = |path: &Path, bytes: &[u8]| {
            std::fs::create_dir_all(&cache)
                .map_err(|source| crate::sys::fs::FsError::Io {
                    op: "creating",
                    path: cache.clone(),
                    source,
                })
                .and_then(|()| atomic_write(path, bytes, 0o644))
                .map_err(|source| NixError::Write {
                    path: path.to_path_buf(),
                    source,
                })
        };
        write(&conf_path, self.configuration.as_bytes())?;
        write(&log_path, b"")?;
        let (program, args) = build_argv(&BuildSpec {
            nix_build: &cfg.nix.nix_build,
            extra_args: &cfg.nix.extra_args,
            channel: &self.entry,
            configuration: &conf_path,
            allowed_paths: &self.allowed,
            allowed_uris: &cfg.nix.allowed_uris,
            out_link: &link,
            fetch: cfg.nix.fetch,
        });
        progress.log(format!(
            "building system {} from {} for {}",
            self.key.short(),
            self.channel,
            self.started_by
        ));
        progress.log(format!("$ {program} {}", args.join(" ")));
        let t = Instant::now();
        let result = self
            .env
            .nix
            .build(
                &program,
                &args,
                &log_path,
                cfg.nix.build_timeout,
                &self.started_by,
                progress,
                cancel,
            )
            .await;
        self.env.metrics.nix_build(match &result {
            Ok(_) => crate::metrics::BuildOutcome::Success,
            Err(NixError::Stopped(_)) => crate::metrics::BuildOutcome::Stopped,
            Err(_) => crate::metrics::BuildOutcome::Failure,
        });
        // Whatever happens now, the build's own link goes with this value.
        let mut built = BuiltSystem {
            path: String::new(),
            link: Some((link, cfg.nix.gcroots_auto_dir.clone())),
        };
        let path = result?;
        built.path = path.clone();
        progress.log(format!(
            "system {path} built in {} ms",
            t.elapsed().as_millis()
        ));
        if self.reusable {
            let entry = systems::Built {
                key: self.key.to_string(),
                channel: self.channel.clone(),
                entry: self.entry.clone(),
                system: path,
                built: self.built,
                by: self.started_by.to_string(),
            };
            if let Err(e) = systems::remember(&cache, &entry) {
                tracing::warn!("cannot remember the system {}: {e}", self.key);
            }
        }
        Ok(Arc::new(built))
    }
}

/// The channel as Nix reads it, shared by every container that asks for it
/// at the same time: an http(s) channel fetched (or revalidated) into the
/// store; a local path copied into the store with the caller's rights.
async fn channel_entry(
    ctx: &JobCtx,
    r: &Record,
    caller: &crate::access::Caller,
) -> Result<String, SupervisorError> {
    let url = r.channel.as_str();
    let env = &ctx.env;
    let cfg = &env.cfg;
    let nix_store = crate::nix::plan::sibling_program(&cfg.nix.nix_build, "nix-store");
    let work_dir = cfg.paths.state_dir.join("tmp");
    if url.starts_with("http://") || url.starts_with("https://") {
        let t = Instant::now();
        let (e, u, cache_dir, limits) = (
            env.clone(),
            url.to_string(),
            cfg.paths.state_dir.join("channels"),
            cfg.nix.fetch,
        );
        let ticket = env.builds.fetches.join(
            url.to_string(),
            r.name.as_str(),
            sink(ctx, r),
            move |cancel, progress| async move {
                e.fetcher
                    .fetch(&crate::nix::fetch::Fetch {
                        url: &u,
                        limits,
                        cache_dir: &cache_dir,
                        work_dir: &work_dir,
                        nix_store: &nix_store,
                        progress: &progress,
                        cancel: &cancel,
                    })
                    .await
                    .map_err(Arc::new)
            },
        );
        if !ticket.leader {
            ctx.progress.log(format!(
                "waiting for the fetch of {url} (started by {})",
                ticket.started_by()
            ));
        }
        let fetched = ticket
            .wait(&ctx.cancel, &ctx.progress)
            .await
            .map_err(|why| match why {
                Left::Stopped(reason) => build_error(
                    r,
                    NixError::Fetch {
                        url: url.to_string(),
                        source: Arc::new(FetchError::Stopped(reason)),
                    },
                ),
                Left::Lost => left(r, why),
            })?
            .map_err(|source| {
                build_error(
                    r,
                    NixError::Fetch {
                        url: url.to_string(),
                        source,
                    },
                )
            })?;
        ctx.progress.log(if fetched.unchanged {
            format!(
                "channel {url} unchanged since its last download ({} ms)",
                t.elapsed().as_millis()
            )
        } else {
            format!(
                "fetched the channel {url} ({} bytes, {} ms)",
                fetched.bytes,
                t.elapsed().as_millis()
            )
        });
        return Ok(fetched.entry);
    }
    let reader = crate::sys::identity::Identity::lookup(caller.uid, caller.gid);
    let t = Instant::now();
    let path = r.channel.search_path_entry().to_string();
    let key = (reader.uid, reader.gid, path.clone());
    let max_bytes = cfg.nix.max_local_channel_bytes;
    let who = reader.clone();
    let ticket = env.builds.imports.join(
        key,
        r.name.as_str(),
        sink(ctx, r),
        move |cancel, _progress| async move {
            let channel = crate::nix::local::LocalChannel {
                path: Path::new(&path),
                reader: &who,
                nix_store: &nix_store,
                work_dir: &work_dir,
                max_bytes,
            };
            let import = crate::nix::local::import(&channel);
            tokio::select! {
                r = import => r.map_err(Arc::new),
                why = cancel.cancelled() => Err(Arc::new(NixError::Stopped(why))),
            }
        },
    );
    let entry = ticket
        .wait(&ctx.cancel, &ctx.progress)
        .await
        .map_err(|why| left(r, why))?
        .map_err(|e| {
            build_error(
                r,
                Arc::try_unwrap(e).unwrap_or_else(|e| NixError::LocalChannel {
                    path: PathBuf::from(r.channel.search_path_entry()),
                    uid: reader.uid,
                    why: e.to_string(),
                }),
            )
        })?;
    ctx.progress.log(format!(
        "read the local channel as uid {} into {entry} ({} ms)",
        reader.uid,
        t.elapsed().as_millis()
    ));
    Ok(entry)
}
