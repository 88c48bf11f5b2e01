//! The whole of provisioning one running container, behind a trait: the
//! real way checks that the container is isolated, finds the way in
//! ([`super::entry`]), checks COPY's owner and runs the steps; the
//! supervisor's tests put a recording fake in its place, so provisioning
//! fails and crashes at every step in-process like every other operation.

use super::{ContainerExecutor, Plan, ProvisionError};
use crate::container::ContainerName;
use crate::progress::Progress;
use async_trait::async_trait;

/// What stops provisioning before or while it runs.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionFailure {
    /// Its init runs in the host's user namespace (a container started
    /// before devhost isolated containers).
    #[error("the container runs without a user namespace")]
    NotIsolated,
    /// The way in could not be found or COPY's owner does not exist.
    #[error(transparent)]
    Setup(ProvisionError),
    /// A step failed (which one, and why).
    #[error(transparent)]
    Step(#[from] provision_dsl::StepError<ProvisionError>),
}

/// One provisioning run.
pub struct Request<'a> {
    pub name: &'a ContainerName,
    /// The container's init.
    pub leader: u32,
    /// Registered with machined (the systemd backend).
    pub registered: bool,
    pub plan: &'a Plan,
    pub progress: &'a Progress,
    /// The provisioning log it appends to.
    pub transcript: std::fs::File,
}

#[async_trait]
pub trait Provisioner: Send + Sync {
    /// Run the plan's steps in order; the number run.
    async fn provision(&self, req: Request<'_>) -> Result<usize, ProvisionFailure>;
}

/// The real way in.
pub struct Enter;

#[async_trait]
impl Provisioner for Enter {
    async fn provision(&self, req: Request<'_>) -> Result<usize, ProvisionFailure> {
        if crate::sys::proc::own_user_namespace(req.leader) == Some(false) {
            return Err(ProvisionFailure::NotIsolated);
        }
        let target = super::entry::target(req.leader)
            .map_err(|e| ProvisionFailure::Setup(ProvisionError::Target(e)))?;
        let run = super::entry::method_for(req.leader, req.registered);
        let mut exec = ContainerExecutor {
            name: req.name.to_string(),
            target,
            run,
            files: &req.plan.files,
            copy_as: req.plan.copy_as.clone(),
            progress: req.progress.clone(),
            transcript: req.transcript,
        };
        // The owner of what COPY writes is looked up before any step runs
        // (nothing half-applied), and only when something is copied.
        if req
            .plan
            .steps
            .iter()
            .any(|s| matches!(s.action, provision_dsl::Action::Copy { .. }))
        {
            exec.check_copy_owner()
                .await
                .map_err(ProvisionFailure::Setup)?;
        }
        Ok(super::run_plan(req.plan, exec).await?)
    }
}
