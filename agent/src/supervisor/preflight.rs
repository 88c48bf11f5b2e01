//! The supervisor's side of admission (`crate::admission`): a creation is
//! checked against the host's limits before its build (cheap: nobody waits
//! for a build to be refused), and every boot — create, start, an ensure
//! that starts a stopped container, the restarts after a host boot — waits
//! for a boot slot, is checked again with the reservations of the boots
//! under way, and holds its slot until the container is ready. A refusal is
//! an error of the job, so a creation is rolled back and a start leaves the
//! container stopped, as for any other failure.

use super::ops::JobCtx;
use super::{steps, SupervisorError};
use crate::admission::{decide, AdmissionError, Claims, Memory, Verdict};
use crate::cancel::Reason;
use crate::container::{Phase, Record};
use crate::nspawn::backend::Running;
use std::time::Instant;

/// Before a creation's build: refuse now what could not boot anyway.
pub(super) async fn before_build(ctx: &JobCtx, r: &Record) -> Result<(), SupervisorError> {
    let booting = ctx.env.admission.gate().booting() as u64;
    check(ctx, r, booting, false).await
}

/// Start a prepared container ([`steps::start_container`]) once a boot slot
/// is free and the host has room for it; timed as a boot (slot wait included).
pub(super) async fn boot(ctx: &JobCtx, r: &Record) -> Result<Running, SupervisorError> {
    let t = Instant::now();
    let booted = gated_boot(ctx, r).await;
    let outcome = crate::metrics::Outcome::of(&booted);
    ctx.env
        .metrics
        .operation(crate::metrics::Operation::Boot, outcome, t.elapsed());
    booted
}

async fn gated_boot(ctx: &JobCtx, r: &Record) -> Result<Running, SupervisorError> {
    let gate = ctx.env.admission.gate();
    let t = Instant::now();
    let waited = std::sync::atomic::AtomicBool::new(false);
    let stopped = |why| AdmissionError::Stopped {
        name: r.name.clone(),
        why,
    };
    let slot = tokio::select! {
        slot = gate.enter(|w| {
            waited.store(true, std::sync::atomic::Ordering::Relaxed);
            ctx.progress.log(format!(
                "waiting for a boot slot ({} ahead, {} booting)",
                w.ahead, w.booting
            ));
        }) => slot,
        why = ctx.cancel.cancelled() => return Err(stopped(why).into()),
        () = ctx.progress.gone() => return Err(stopped(Reason::CallerGone).into()),
    };
    if waited.into_inner() {
        ctx.progress.log(format!(
            "boot slot taken after {} ms",
            t.elapsed().as_millis()
        ));
    }
    // Every slot held but this one is a boot under way.
    let others = gate.booting().saturating_sub(1) as u64;
    check(ctx, r, others, true).await?;
    let running = steps::start_container(&ctx.env, r, &ctx.progress).await?;
    drop(slot);
    Ok(running)
}

async fn check(ctx: &JobCtx, r: &Record, booting: u64, warn: bool) -> Result<(), SupervisorError> {
    let admission = &ctx.env.admission;
    let facts = admission.facts().await;
    let claims = Claims {
        booting,
        memory: memory(ctx, r),
    };
    let Verdict { refused, warnings } = decide(&facts, &admission.needs, &claims);
    if warn {
        for w in warnings {
            tracing::warn!(container = %r.name, "{w}");
            ctx.progress.log(format!("warning: {w}"));
        }
    }
    if refused.is_empty() {
        return Ok(());
    }
    Err(AdmissionError::Refused {
        name: r.name.clone(),
        shortfalls: refused,
    }
    .into())
}

/// The memory limits of the containers that run (or boot), and this one's.
fn memory(ctx: &JobCtx, r: &Record) -> Memory {
    let mut m = Memory {
        this: r.limits.memory_max,
        ..Memory::default()
    };
    for other in ctx.sup.records().iter() {
        if other.name == r.name || !matches!(other.phase, Phase::Running | Phase::Starting) {
            continue;
        }
        match other.limits.memory_max {
            Some(limit) => {
                m.limits = m.limits.saturating_add(limit);
                m.limited += 1;
            }
            None => m.unlimited += 1,
        }
    }
    m
}
