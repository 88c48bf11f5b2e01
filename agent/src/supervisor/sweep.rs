//! The cleanup sweep and the operations that steer it (pin, unpin, extend).
//! A real sweep runs one `Expire` operation per container through that
//! container's queue, so it waits for (and never overlaps) an ensure or a
//! provisioning run of the same name, and decides again on the record as it
//! is then; one container failing does not stop the others. A dry run
//! decides on a copy of the records and changes nothing.

use super::ops::{destroy, JobCtx};
use super::{Handle, Op, Outcome, Subsystems, SupervisorError};
use crate::access::Caller;
use crate::api::types::{CleanupBody, CleanupEntry, CleanupReport, SweepResult};
use crate::cleanup::{decide, Action, Decision};
use crate::clock::stamp;
use crate::container::{ContainerName, Record};
use crate::metrics::{CleanupAction, CleanupResult};
use crate::progress::Progress;
use chrono::{DateTime, TimeDelta, Utc};
use futures_util::stream::{self, StreamExt};
use std::sync::Arc;

/// Containers cleaned up at once (stops wait for a graceful poweroff).
const SWEEP_CONCURRENCY: usize = 4;

/// The record with the edge's newer activity copied in (when counted).
fn with_activity(env: &Subsystems, mut r: Record) -> (Record, bool) {
    if !env.cfg.cleanup.policy.count_activity {
        return (r, false);
    }
    let seen = env
        .edge
        .as_ref()
        .and_then(|e| e.last_activity(r.name.as_str()));
    match seen {
        Some(t) if r.last_activity.is_none_or(|a| a < t) => {
            r.last_activity = Some(t);
            (r, true)
        }
        _ => (r, false),
    }
}

/// The decision for a record at `now` (what `devhost status` and dry runs show).
pub(super) fn decision_for(
    env: &Subsystems,
    r: &Record,
    running: bool,
    now: DateTime<Utc>,
) -> Decision {
    let (r, _) = with_activity(env, r.clone());
    decide(&r.usage(running), &env.cfg.cleanup.policy, now)
}

async fn decision(env: &Subsystems, r: &Record, now: DateTime<Utc>) -> Decision {
    let running = env.backend.find(&r.name).await.is_some();
    decision_for(env, r, running, now)
}

/// Parse the body's moment, admin only: the sweep stops and destroys other
/// people's containers.
pub(super) fn admit_sweep(
    body: &CleanupBody,
    caller: &Caller,
    clock: &crate::clock::Clock,
) -> Result<DateTime<Utc>, SupervisorError> {
    if !caller.admin {
        return Err(SupervisorError::MayNotSweep(caller.uid));
    }
    match &body.now {
        None => Ok(clock.now()),
        Some(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|source| SupervisorError::BadMoment {
                given: s.clone(),
                source,
            }),
    }
}

/// Run the sweep over `records` (a copy taken when it was asked for).
pub(super) async fn sweep(
    env: Arc<Subsystems>,
    handle: Handle,
    records: Vec<Record>,
    now: DateTime<Utc>,
    dry_run: bool,
) -> CleanupReport {
    let one = |r: Record| {
        let (env, handle) = (env.clone(), handle.clone());
        async move {
            let name = r.name.clone();
            if dry_run {
                let d = decision(&env, &r, now).await;
                let result = match d.action {
                    Action::Keep => SweepResult::Kept,
                    _ => SweepResult::DryRun,
                };
                return entry(&name, d, result);
            }
            let op = Op::Expire { now };
            match handle
                .run(name.clone(), op, Caller::root(), Progress::none())
                .await
            {
                Ok(Outcome {
                    cleanup: Some(d), ..
                }) => {
                    count(&env, d.action, CleanupResult::Done);
                    let result = match d.action {
                        Action::Keep => SweepResult::Kept,
                        _ => SweepResult::Done,
                    };
                    entry(&name, d, result)
                }
                Ok(o) => entry(&name, Decision::gone(), SweepResult::Nothing(o.message)),
                Err(e) => {
                    let d = decision(&env, &r, now).await;
                    count(&env, d.action, CleanupResult::Failed);
                    tracing::warn!(container = %name, "cleanup: {} failed: {e}", d.action.as_str());
                    entry(&name, d, SweepResult::Failed(e.to_string()))
                }
            }
        }
    };
    let mut containers: Vec<CleanupEntry> = stream::iter(records)
        .map(one)
        .buffer_unordered(SWEEP_CONCURRENCY)
        .collect()
        .await;
    containers.sort_by(|a, b| a.name.cmp(&b.name));
    let p = env.cfg.cleanup.policy;
    CleanupReport {
        now: stamp(now),
        dry_run,
        disable_after_days: p.disable_after.num_days() as u32,
        delete_after_days: p.delete_after.num_days() as u32,
        containers,
    }
}

/// A cleanup action carried out (or failed), for the metrics.
fn count(env: &Subsystems, action: Action, result: CleanupResult) {
    let action = match action {
        Action::Keep => return,
        Action::Disable => CleanupAction::Disable,
        Action::Delete => CleanupAction::Delete,
    };
    env.metrics.cleanup(action, result);
}

fn entry(name: &ContainerName, d: Decision, result: SweepResult) -> CleanupEntry {
    CleanupEntry {
        name: name.to_string(),
        action: d.action,
        reason: d.reason,
        unused_days: d.unused.num_days(),
        result,
    }
}

impl Decision {
    /// A container destroyed by its owner while the sweep waited.
    fn gone() -> Decision {
        Decision {
            action: Action::Keep,
            reason: "no longer exists".into(),
            unused: TimeDelta::zero(),
        }
    }
}

/// One container's turn in a real sweep: record newer activity, decide on
/// the record as it is now, act.
pub(super) async fn expire(
    ctx: &JobCtx,
    r: Record,
    now: DateTime<Utc>,
) -> Result<Outcome, SupervisorError> {
    let env = &ctx.env;
    let (mut r, newer) = with_activity(env, r);
    if newer {
        ctx.sup.save(&r).await?;
    }
    let running = env.backend.find(&r.name).await.is_some();
    let d = decide(&r.usage(running), &env.cfg.cleanup.policy, now);
    match d.action {
        Action::Keep => {
            tracing::debug!(container = %r.name, "cleanup: keep: {}", d.reason);
            Ok(Outcome {
                message: format!("container {} kept: {}", r.name, d.reason),
                container: None,
                cleanup: Some(d),
            })
        }
        Action::Disable => {
            tracing::info!(container = %r.name, "cleanup: disabling: {}", d.reason);
            // Unrouted first (proxy, DNS names, certificate), then stopped;
            // a failed stop leaves it disabled but running, which the next
            // sweep takes up again.
            r.enabled = false;
            r.want_running = false;
            // Disabled is not asleep: no request wakes it.
            r.asleep_since = None;
            super::ops::stop_recorded(ctx, &mut r).await?;
            Ok(Outcome {
                message: format!("container {} stopped and disabled: {}", r.name, d.reason),
                container: None,
                cleanup: Some(d),
            })
        }
        Action::Delete => {
            tracing::info!(container = %r.name, "cleanup: deleting: {}", d.reason);
            let mut o = destroy(ctx, r).await?;
            o.cleanup = Some(d);
            Ok(o)
        }
    }
}

/// `devhost pin` / `unpin`.
pub(super) async fn pin(
    ctx: &JobCtx,
    mut r: Record,
    pinned: bool,
) -> Result<Outcome, SupervisorError> {
    let was = r.pinned;
    r.pinned = pinned;
    ctx.sup.save(&r).await?;
    let message = match (was, pinned) {
        (true, true) => format!("container {} was already pinned", r.name),
        (false, true) => format!(
            "container {} pinned: cleanup will neither disable nor delete it",
            r.name
        ),
        (false, false) => format!("container {} was not pinned", r.name),
        (true, false) => {
            let d = decision(&ctx.env, &r, ctx.env.clock.now()).await;
            format!("container {} unpinned: {}", r.name, d.reason)
        }
    };
    Ok(Outcome {
        message,
        container: Some(ctx.info(&r).await),
        cleanup: None,
    })
}

/// `devhost extend NAME --days N`: not disabled before N days from now.
pub(super) async fn extend(
    ctx: &JobCtx,
    mut r: Record,
    days: u32,
) -> Result<Outcome, SupervisorError> {
    let max = ctx.env.cfg.cleanup.max_extend_days;
    if days == 0 || days > max {
        return Err(SupervisorError::ExtendDays { days, max });
    }
    let now = ctx.env.clock.now();
    r.keep_until = Some(now + TimeDelta::days(days.into()));
    ctx.sup.save(&r).await?;
    let d = decision(&ctx.env, &r, now).await;
    let mut message = format!("container {} extended: {}", r.name, d.reason);
    if !r.enabled {
        message.push_str(&format!(
            "\nit is still disabled: `devhost start {}` or a deploy brings it back",
            r.name
        ));
    }
    Ok(Outcome {
        message,
        container: Some(ctx.info(&r).await),
        cleanup: None,
    })
}

/// A disabled container may start again only while cleanup would leave it
/// enabled (after an extension); otherwise it would be stopped at the next
/// sweep, so say what brings it back for good.
pub(super) fn reenable_for_start(env: &Subsystems, r: &mut Record) -> Result<(), SupervisorError> {
    if r.enabled {
        return Ok(());
    }
    let (now, usage, policy) = (env.clock.now(), r.usage(false), &env.cfg.cleanup.policy);
    if crate::cleanup::deadlines(&usage, policy).is_some_and(|d| d.disable_at <= now) {
        return Err(SupervisorError::Disabled {
            name: r.name.clone(),
            reason: decide(&usage, policy, now).reason,
        });
    }
    r.enabled = true;
    Ok(())
}
