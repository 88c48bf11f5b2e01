//! Scale to zero, as the supervisor applies it (the pure decision is
//! `crate::sleep::idle`). A task checks the running containers every
//! `sleep.check_interval_secs` and queues a `Sleep` operation for each one
//! idle for its period; that job decides again on its turn (nothing else
//! runs on the container then), marks it asleep in the busy registry only
//! if nothing came in meanwhile, saves the record asleep and stopping, and
//! stops it. A `Wake` operation (the proxy's, `devhost wake`) boots it
//! again through the same admission as every boot; the proxy's wakes of
//! one container share one operation ([`Waker`]).

use super::ops::JobCtx;
use super::{Handle, Op, Outcome, Subsystems, SupervisorError};
use crate::access::Caller;
use crate::cancel::Cancel;
use crate::clock::stamp;
use crate::container::{ContainerName, Phase, Record};
use crate::flight::{Flights, Sink};
use crate::progress::Progress;
use crate::sleep::{decide, Snapshot, Verdict};
use futures_util::future::BoxFuture;
use futures_util::stream::{self, StreamExt};
use std::sync::Arc;
use std::time::Duration;

/// Containers put to sleep at once (a stop waits for a graceful poweroff).
const SLEEP_CONCURRENCY: usize = 4;

/// The idle period that applies to `r` (`None`: it never sleeps).
pub(super) fn period(env: &Subsystems, r: &Record) -> Option<Duration> {
    r.sleep_after.period(env.cfg.sleep.after)
}

/// What is known of the use of `r`, running as `pid`: the busy registry,
/// SSH sessions in its network namespace, and the last deploy (and use
/// that cleanup recorded).
pub(super) fn snapshot(env: &Subsystems, r: &Record, pid: u32) -> Snapshot {
    let seen = env.busy.seen(&r.name);
    let last = [Some(seen.last), Some(r.last_deploy), r.last_activity]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(seen.last);
    Snapshot {
        open: seen.open,
        ssh: (env.ssh_sessions)(pid),
        last,
    }
}

/// Whether the sweep looks at `r` at all: it runs (as recorded), is
/// enabled, awake, and has an idle period.
fn may_sleep(env: &Subsystems, r: &Record) -> bool {
    r.phase == Phase::Running
        && r.enabled
        && r.established
        && r.asleep_since.is_none()
        && period(env, r).is_some()
}

/// The sleep setting of `r` and where it stands, in words (`devhost
/// status`); `pid` when it runs.
pub(super) fn describe(env: &Subsystems, r: &Record, pid: Option<u32>) -> String {
    let whose = if r.sleep_after.is_default() {
        " (host default)"
    } else {
        ""
    };
    let Some(p) = period(env, r) else {
        return format!("off{whose}");
    };
    let setting = format!("after {} idle{whose}", crate::sleep::SleepAfter::After(p));
    let state = match (r.asleep_since, pid) {
        (Some(t), None) => format!(
            "asleep since {}; a request through the proxy, `devhost wake` or an ensure wakes it",
            stamp(t)
        ),
        (_, Some(pid)) if r.phase == Phase::Running => {
            decide(&snapshot(env, r, pid), Some(p), env.clock.now()).describe()
        }
        _ => "not running".into(),
    };
    format!("{setting}; {state}")
}

/// Check the running containers every `sleep.check_interval_secs` and put
/// the idle ones to sleep, until the supervisor goes away.
pub(super) async fn watch(env: Arc<Subsystems>, handle: Handle) {
    let every = env.cfg.sleep.check_interval;
    // The first check one interval after the start, as every other.
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if handle.tx.is_closed() {
            return;
        }
        let records = handle.records();
        env.busy.retain(|n| records.iter().any(|r| &r.name == n));
        let mut due = Vec::new();
        for r in records.iter().filter(|r| may_sleep(&env, r)) {
            let Some(run) = env.backend.find(&r.name).await else {
                continue;
            };
            let verdict = decide(
                &snapshot(&env, r, run.pid),
                period(&env, r),
                env.clock.now(),
            );
            if matches!(verdict, Verdict::Sleep { .. }) {
                due.push(r.name.clone());
            }
        }
        stream::iter(due)
            .for_each_concurrent(SLEEP_CONCURRENCY, |name| {
                let handle = handle.clone();
                async move {
                    let res = handle
                        .run(name.clone(), Op::Sleep, Caller::root(), Progress::none())
                        .await;
                    if let Err(e) = res {
                        tracing::warn!(container = %name, "putting it to sleep failed: {e}");
                    }
                }
            })
            .await;
    }
}

/// The `Sleep` job: decide again on the record and what is seen now; if it
/// is idle, mark it asleep (unless something came in meanwhile), save it
/// asleep, stop it.
pub(super) async fn fall_asleep(ctx: &JobCtx, mut r: Record) -> Result<Outcome, SupervisorError> {
    let env = &ctx.env;
    let stays = |r: &Record, why: String| Outcome {
        message: format!("container {} stays awake: {why}", r.name),
        container: None,
        cleanup: None,
    };
    if !may_sleep(env, &r) {
        return Ok(stays(
            &r,
            "not running, disabled, asleep or never sleeping".into(),
        ));
    }
    let Some(run) = env.backend.find(&r.name).await else {
        return Ok(stays(&r, "not running".into()));
    };
    let now = env.clock.now();
    let since = match decide(&snapshot(env, &r, run.pid), period(env, &r), now) {
        Verdict::Sleep { since } => since,
        other => return Ok(stays(&r, other.describe())),
    };
    if !env.busy.try_sleep(&r.name, since) {
        return Ok(stays(&r, "used again just now".into()));
    }
    // Saved asleep before it is stopped: routes stay, and a request from
    // now on waits for the wake queued behind this job.
    r.asleep_since = Some(now);
    if let Err(e) = super::ops::stop_recorded(ctx, &mut r).await {
        if r.phase != Phase::Stopped {
            // Still running: awake after all.
            r.asleep_since = None;
            let _ = ctx.sup.save(&r).await;
            env.busy.wake(&r.name);
        }
        return Err(e);
    }
    tracing::info!(container = %r.name, "asleep (idle since {})", stamp(since));
    Ok(Outcome {
        message: format!(
            "container {} is asleep (idle since {})",
            r.name,
            stamp(since)
        ),
        container: Some(ctx.info(&r).await),
        cleanup: None,
    })
}

/// The `Wake` job: boot a sleeping container (admitted like every boot);
/// one that runs is awake already.
pub(super) async fn wake(ctx: &JobCtx, mut r: Record) -> Result<Outcome, SupervisorError> {
    let env = &ctx.env;
    if env.backend.find(&r.name).await.is_some() {
        if r.asleep_since.is_some() || r.phase != Phase::Running {
            r.asleep_since = None;
            r.phase = Phase::Running;
            ctx.sup.save(&r).await?;
        }
        env.busy.wake(&r.name);
        env.busy.touch(&r.name);
        return Ok(Outcome {
            message: format!("container {} is awake", r.name),
            container: Some(ctx.info(&r).await),
            cleanup: None,
        });
    }
    if r.asleep_since.is_none() {
        return Err(SupervisorError::NotAsleep(r.name.clone()));
    }
    super::ops::boot(ctx, r, "woken").await
}

/// Wakes containers for the proxy: the requests for one container that
/// arrive while it wakes share one `Wake` operation (and its result).
pub struct Waker {
    handle: Handle,
    flights: Flights<ContainerName, Result<(), String>>,
}

impl Waker {
    pub fn new(handle: Handle) -> Waker {
        Waker {
            handle,
            flights: Flights::default(),
        }
    }
}

impl crate::edge::Wake for Waker {
    fn wake(&self, container: &ContainerName) -> BoxFuture<'static, Result<(), String>> {
        let handle = self.handle.clone();
        let name = container.clone();
        let sink = Sink {
            progress: Progress::none(),
            log: None,
        };
        // The operation runs to its end even when every request waiting
        // for it has gone: it is queued, and a half-made wake helps nobody.
        let ticket = self.flights.join(
            container.clone(),
            "the proxy",
            sink,
            move |_, _| async move {
                handle
                    .run(name, Op::Wake, Caller::root(), Progress::none())
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            },
        );
        Box::pin(async move {
            match ticket.wait(&Cancel::never(), &Progress::none()).await {
                Ok(result) => result,
                Err(left) => Err(left.to_string()),
            }
        })
    }
}
