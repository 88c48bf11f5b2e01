//! The jobs: ensure, start, stop, destroy of one container. A job owns a copy
//! of its record (no other job touches that name meanwhile), saves each phase
//! through the supervisor before acting on it, and on failure of a first
//! creation rolls everything back so a retry starts clean.

use super::{steps, Handle, Outcome, Subsystems, SupervisorError};
use crate::api::types::ContainerInfo;
use crate::container::{Phase, Record};
use crate::progress::Progress;
use std::sync::Arc;
use std::time::Instant;

pub struct JobCtx {
    pub env: Arc<Subsystems>,
    pub sup: Handle,
    pub progress: Progress,
    /// Set when what the job waits for long (the build) should stop.
    pub cancel: crate::cancel::Cancel,
}

impl JobCtx {
    async fn phase(&self, r: &mut Record, phase: Phase) -> Result<(), SupervisorError> {
        r.phase = phase;
        self.progress.phase(phase);
        self.sup.save(r).await
    }

    pub(super) async fn info(&self, r: &Record) -> ContainerInfo {
        super::info_of(&self.env, r).await
    }
}

pub enum Job {
    /// The first ensure of a name: build, network, boot.
    Create {
        record: Record,
        /// Who asked: a local channel is read with their rights.
        caller: crate::access::Caller,
    },
    /// An ensure of an existing container: refresh what it asks for, start.
    Refresh {
        record: Record,
        spec: super::EnsureSpec,
    },
    Start(Record),
    Stop(Record),
    Destroy(Record),
    Provision(Record, Arc<crate::provision::Plan>),
    Pin(Record, bool),
    Extend(Record, u32),
    Expire(Record, chrono::DateTime<chrono::Utc>),
    /// A sleeping container started.
    Wake(Record),
    /// A running container put to sleep, if it is idle.
    Sleep(Record),
    /// A quarantined record taken back.
    Adopt(Record),
    /// Everything of a quarantined name removed (the record stands in for
    /// the one that could not be read: the name is what counts).
    Forget(Record),
    Nothing(String),
}

/// Run a job; whatever its outcome, return only once the derived state
/// (hosts block, NAT, compatibility records) reflects what it did.
pub async fn run(ctx: &JobCtx, job: Job) -> Result<Outcome, SupervisorError> {
    let timed = job.timed();
    let t = Instant::now();
    let result = run_job(ctx, job).await;
    let synced = ctx.sup.synced().await;
    let result = match (result, synced) {
        (Ok(o), Ok(())) => Ok(o),
        (Ok(_), Err(e)) => Err(e),
        (Err(e), _) => Err(e),
    };
    if let Some(op) = timed {
        let outcome = crate::metrics::Outcome::of(&result);
        ctx.env.metrics.operation(op, outcome, t.elapsed());
    }
    result
}

impl Job {
    /// The operation a job is timed as, if it is.
    fn timed(&self) -> Option<crate::metrics::Operation> {
        use crate::metrics::Operation;
        match self {
            Job::Create { .. } | Job::Refresh { .. } => Some(Operation::Ensure),
            Job::Provision(..) => Some(Operation::Provision),
            _ => None,
        }
    }
}

async fn run_job(ctx: &JobCtx, job: Job) -> Result<Outcome, SupervisorError> {
    match job {
        Job::Create { record, caller } => create(ctx, record, &caller).await,
        Job::Refresh { record, spec } => refresh(ctx, record, spec).await,
        Job::Start(r) => start(ctx, r).await,
        Job::Stop(r) => stop(ctx, r).await,
        Job::Destroy(r) => destroy(ctx, r).await,
        Job::Provision(r, plan) => provision(ctx, r, &plan).await,
        Job::Pin(r, pinned) => super::sweep::pin(ctx, r, pinned).await,
        Job::Extend(r, days) => super::sweep::extend(ctx, r, days).await,
        Job::Expire(r, now) => super::sweep::expire(ctx, r, now).await,
        Job::Wake(r) => super::sleep::wake(ctx, r).await,
        Job::Sleep(r) => super::sleep::fall_asleep(ctx, r).await,
        Job::Adopt(r) => adopt(ctx, r).await,
        Job::Forget(r) => forget(ctx, r).await,
        Job::Nothing(message) => Ok(Outcome {
            message,
            container: None,
            cleanup: None,
        }),
    }
}

/// First ensure: build, network, boot. Any failure removes everything again.
async fn create(
    ctx: &JobCtx,
    mut r: Record,
    caller: &crate::access::Caller,
) -> Result<Outcome, SupervisorError> {
    let started = Instant::now();
    if let Err(e) = ctx.sup.save(&r).await {
        // Nothing was made: give the name and addresses reserved for it
        // back, so no phantom stays in the list.
        let _ = ctx.sup.remove(&r.name).await;
        return Err(e);
    }
    match create_steps(ctx, &mut r, caller).await {
        Ok(()) => {
            r.established = true;
            ctx.phase(&mut r, Phase::Running).await?;
            ctx.env.busy.touch(&r.name);
            Ok(Outcome {
                message: format!(
                    "container {} created and running at {} ({} ms)",
                    r.name,
                    r.addresses.local,
                    started.elapsed().as_millis()
                ),
                container: Some(ctx.info(&r).await),
                cleanup: None,
            })
        }
        Err(e) => {
            ctx.progress.log(format!(
                "creating {} failed; removing what was made",
                r.name
            ));
            let cleanup = steps::remove_everything(&ctx.env, &r, &Progress::none()).await;
            let removed = ctx.sup.remove(&r.name).await;
            let (undo, record_only) = match (cleanup, removed) {
                (Err(c), _) => (c.into(), false),
                (Ok(()), Err(c)) => (c, true),
                (Ok(()), Ok(())) => return Err(e),
            };
            Err(SupervisorError::NotUndone {
                source: Box::new(e),
                undo: Box::new(undo),
                record_only,
            })
        }
    }
}

async fn create_steps(
    ctx: &JobCtx,
    r: &mut Record,
    caller: &crate::access::Caller,
) -> Result<(), SupervisorError> {
    let env = &ctx.env;
    super::preflight::before_build(ctx, r).await?;
    ctx.phase(r, Phase::Building).await?;
    let t = Instant::now();
    let system = super::build::build(ctx, r, caller).await;
    let outcome = crate::metrics::Outcome::of(&system);
    env.metrics
        .operation(crate::metrics::Operation::Build, outcome, t.elapsed());
    r.system_path = Some(system?);
    ctx.phase(r, Phase::Networking).await?;
    let t = Instant::now();
    steps::prepare_root(env, r)?;
    if let Some(note) = steps::apply_disk_size(env, r) {
        ctx.progress.log(format!("disk size of {}: {note}", r.name));
    }
    steps::net_up(env, r).await?;
    ctx.progress
        .log(format!("network ready in {} ms", t.elapsed().as_millis()));
    ctx.phase(r, Phase::Starting).await?;
    super::preflight::boot(ctx, r).await?;
    Ok(())
}

/// Ensure of an existing container: refresh what the caller gave, count it
/// as deployed now, and make sure it runs. The system is not rebuilt (the
/// container switches channels itself, as before).
async fn refresh(
    ctx: &JobCtx,
    mut r: Record,
    spec: super::EnsureSpec,
) -> Result<Outcome, SupervisorError> {
    let super::EnsureSpec {
        channel,
        aliases,
        limits,
        upstreams,
        disk_size,
        image_url,
        update_channel,
        sleep_after,
        ..
    } = spec;
    let channel_changed = update_channel && r.channel != channel;
    if channel_changed {
        r.channel = channel;
    }
    r.aliases = aliases;
    if disk_size.is_some() && disk_size != r.disk_size {
        r.disk_size = disk_size;
        if let Some(note) = steps::apply_disk_size(&ctx.env, &r) {
            ctx.progress.log(format!("disk size of {}: {note}", r.name));
        }
    }
    if image_url.is_some() {
        r.image_url = image_url;
    }
    if let Some(u) = upstreams {
        r.upstreams = u;
    }
    if let Some(s) = sleep_after {
        r.sleep_after = s;
    }
    r.last_deploy = ctx.env.clock.now();
    r.enabled = true;
    r.want_running = true;
    let before = r.limits.clone();
    r.limits.merge(&limits);
    if channel_changed {
        steps::write_enc_json(&ctx.env, &r)?;
    }
    if ctx.env.backend.find(&r.name).await.is_some() {
        if r.limits != before {
            let applied = ctx
                .env
                .backend
                .set_limits(&r.name, &r.limits)
                .await
                .map_err(|source| SupervisorError::Limits {
                    name: r.name.clone(),
                    source,
                })?;
            ctx.progress.log(if applied {
                format!("limits of {} applied to the running container", r.name)
            } else {
                format!(
                    "limits of {} recorded (the {} backend does not enforce them)",
                    r.name,
                    ctx.env.backend.kind()
                )
            });
        }
        r.phase = Phase::Running;
        r.asleep_since = None;
        ctx.sup.save(&r).await?;
        ctx.env.busy.wake(&r.name);
        return Ok(Outcome {
            message: format!("container {} is running at {}", r.name, r.addresses.local),
            container: Some(ctx.info(&r).await),
            cleanup: None,
        });
    }
    boot(ctx, r, "ensured").await
}

/// Bring an existing, stopped (or sleeping) container up; once it runs it
/// is awake. A failed boot leaves it stopped (a sleeping one asleep).
pub(super) async fn boot(
    ctx: &JobCtx,
    mut r: Record,
    verb: &str,
) -> Result<Outcome, SupervisorError> {
    let env = &ctx.env;
    let t = Instant::now();
    ctx.phase(&mut r, Phase::Networking).await?;
    let result = async {
        steps::prepare_root(env, &r)?;
        if let Some(note) = steps::apply_disk_size(env, &r) {
            ctx.progress.log(format!("disk size of {}: {note}", r.name));
        }
        steps::net_up(env, &r).await?;
        r.phase = Phase::Starting;
        ctx.progress.phase(Phase::Starting);
        ctx.sup.save(&r).await?;
        super::preflight::boot(ctx, &r).await
    }
    .await;
    match result {
        Ok(_) => {
            r.asleep_since = None;
            ctx.phase(&mut r, Phase::Running).await?;
            env.busy.wake(&r.name);
            env.busy.touch(&r.name);
            Ok(Outcome {
                message: format!(
                    "container {} {verb} and running at {} ({} ms)",
                    r.name,
                    r.addresses.local,
                    t.elapsed().as_millis()
                ),
                container: Some(ctx.info(&r).await),
                cleanup: None,
            })
        }
        Err(e) => {
            let _ = steps::stop_container(env, &r, &Progress::none()).await;
            ctx.phase(&mut r, Phase::Stopped).await?;
            Err(e)
        }
    }
}

async fn start(ctx: &JobCtx, mut r: Record) -> Result<Outcome, SupervisorError> {
    super::sweep::reenable_for_start(&ctx.env, &mut r)?;
    r.want_running = true;
    if ctx.env.backend.find(&r.name).await.is_some() {
        r.asleep_since = None;
        ctx.phase(&mut r, Phase::Running).await?;
        ctx.env.busy.wake(&r.name);
        return Ok(Outcome {
            message: format!("container {} is already running", r.name),
            container: Some(ctx.info(&r).await),
            cleanup: None,
        });
    }
    boot(ctx, r, "started").await
}

async fn stop(ctx: &JobCtx, mut r: Record) -> Result<Outcome, SupervisorError> {
    r.want_running = false;
    // Stopped by its owner: not asleep (no request wakes it).
    r.asleep_since = None;
    ctx.env.busy.wake(&r.name);
    let was_running = ctx.env.backend.find(&r.name).await.is_some();
    stop_recorded(ctx, &mut r).await?;
    Ok(Outcome {
        message: if was_running {
            format!("container {} stopped", r.name)
        } else {
            format!("container {} was not running", r.name)
        },
        container: Some(ctx.info(&r).await),
        cleanup: None,
    })
}

/// Stop a container with its phases saved around it. When the stop fails,
/// the record says again what is so: running (or stopped, if it died
/// meanwhile), not "stopping".
pub(super) async fn stop_recorded(ctx: &JobCtx, r: &mut Record) -> Result<(), SupervisorError> {
    let before = r.phase;
    ctx.phase(r, Phase::Stopping).await?;
    if let Err(e) = steps::stop_container(&ctx.env, r, &ctx.progress).await {
        r.phase = match ctx.env.backend.find(&r.name).await {
            Some(_) if before == Phase::Stopped => Phase::Running,
            Some(_) => before,
            None => Phase::Stopped,
        };
        let _ = ctx.sup.save(r).await;
        return Err(e.into());
    }
    ctx.phase(r, Phase::Stopped).await
}

pub(super) async fn destroy(ctx: &JobCtx, mut r: Record) -> Result<Outcome, SupervisorError> {
    ctx.phase(&mut r, Phase::Destroying).await?;
    steps::remove_everything(&ctx.env, &r, &ctx.progress).await?;
    ctx.sup.remove(&r.name).await?;
    Ok(Outcome {
        message: format!("container {} destroyed", r.name),
        container: None,
        cleanup: None,
    })
}

/// Run provisioning steps in the running container, with a transcript.
async fn provision(
    ctx: &JobCtx,
    r: Record,
    plan: &crate::provision::Plan,
) -> Result<Outcome, SupervisorError> {
    let env = &ctx.env;
    if r.asleep_since.is_some() {
        return Err(SupervisorError::Asleep(r.name.clone()));
    }
    let leader = env
        .backend
        .leader(&r.name)
        .await
        .ok_or_else(|| SupervisorError::NotRunning(r.name.clone()))?;
    // Awake while it runs (and idle only from its end on).
    let _busy = env
        .busy
        .enter(&r.name)
        .map_err(|_| SupervisorError::Asleep(r.name.clone()))?;
    let path = env.store.provision_log(&r.name);
    let transcript = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|source| SupervisorError::Io {
            what: "opening",
            path: path.clone(),
            source,
        })?;
    use crate::provision::provisioner::{ProvisionFailure, Request};
    let n = env
        .provisioner
        .provision(Request {
            name: &r.name,
            leader,
            registered: env.backend.kind() == "systemd",
            plan,
            progress: &ctx.progress,
            transcript,
        })
        .await
        .map_err(|e| match e {
            // A container started before devhost isolated containers: its
            // root is host root, and so would a script be. It is
            // provisioned again after a restart, which gives it a user
            // namespace.
            ProvisionFailure::NotIsolated => SupervisorError::NotIsolated(r.name.clone()),
            ProvisionFailure::Setup(source) => SupervisorError::ProvisionSetup {
                name: r.name.clone(),
                source,
            },
            ProvisionFailure::Step(e) => SupervisorError::Provision(e),
        })?;
    if env.cfg.cleanup.policy.count_activity {
        let mut r = r.clone();
        r.last_activity = Some(env.clock.now());
        ctx.sup.save(&r).await?;
    }
    Ok(Outcome {
        message: format!("container {} provisioned ({n} steps)", r.name),
        container: Some(ctx.info(&r).await),
        cleanup: None,
    })
}

/// Take a quarantined record back: its phase becomes what really runs (a
/// container found running is running; one that is not is stopped).
async fn adopt(ctx: &JobCtx, mut r: Record) -> Result<Outcome, SupervisorError> {
    let running = ctx.env.backend.find(&r.name).await.is_some();
    let recorded = r.phase;
    r.phase = if running {
        Phase::Running
    } else {
        Phase::Stopped
    };
    if running {
        // It runs, so it is awake (a sleeping one stays asleep).
        r.asleep_since = None;
    }
    r.established = true;
    ctx.sup.resolve(&r.name, Some(r.clone())).await?;
    Ok(Outcome {
        message: format!(
            "adopted {}: recorded {}, now {}",
            r.name,
            recorded.as_str(),
            r.phase.as_str()
        ),
        container: Some(ctx.info(&r).await),
        cleanup: None,
    })
}

/// Remove what a quarantined name has on the host, as destroy does, then
/// release the name (its files stay in `quarantine/resolved/`).
async fn forget(ctx: &JobCtx, r: Record) -> Result<Outcome, SupervisorError> {
    steps::remove_everything(&ctx.env, &r, &ctx.progress).await?;
    if let Some(edge) = &ctx.env.edge {
        edge.forget_certificate(r.name.as_str());
    }
    ctx.sup.resolve(&r.name, None).await?;
    Ok(Outcome {
        message: format!(
            "forgot {}: its process, network, root and profile are removed; the name is free",
            r.name
        ),
        container: None,
        cleanup: None,
    })
}
