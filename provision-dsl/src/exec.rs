//! Running steps: an [`Executor`] (the agent's: exec in the container, safe
//! writes into its root) does each; the first failure stops the script and
//! is reported with the step's file and line, so nothing after it runs.

use crate::expand::{Action, Step};
use std::future::Future;

/// What the agent implements. The futures are `Send` so that the agent can
/// run a script on any of its worker threads.
pub trait Executor {
    type Error: std::fmt::Display;
    fn copy(
        &mut self,
        step: &Step,
        local: &str,
        remote: &str,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
    fn run(
        &mut self,
        step: &Step,
        command: &str,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
    fn echo(
        &mut self,
        step: &Step,
        content: &str,
        remote: &str,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

#[derive(Debug, thiserror::Error)]
#[error("{location}: {what} failed: {source}")]
pub struct StepError<E: std::fmt::Display + std::fmt::Debug> {
    /// `provision.sh:12`
    pub location: String,
    /// `RUN make install`, `COPY app/ /srv/app/`, `ECHO … /etc/x`
    pub what: String,
    pub source: E,
}

fn describe(a: &Action) -> String {
    match a {
        Action::Copy { local, remote } => format!("COPY {local} {remote}"),
        Action::Run { command } => format!("RUN {command}"),
        // The content may be a secret: name the target only.
        Action::Echo { remote, .. } => format!("ECHO … {remote}"),
    }
}

/// Run `steps` in order; stop at the first failure. Returns how many ran.
pub async fn execute<E>(steps: &[Step], exec: &mut E) -> Result<usize, StepError<E::Error>>
where
    E: Executor,
    E::Error: std::fmt::Debug,
{
    for step in steps {
        let result = match &step.action {
            Action::Copy { local, remote } => exec.copy(step, local, remote).await,
            Action::Run { command } => exec.run(step, command).await,
            Action::Echo { content, remote } => exec.echo(step, content, remote).await,
        };
        if let Err(source) = result {
            return Err(StepError {
                location: step.location(),
                what: describe(&step.action),
                source,
            });
        }
    }
    Ok(steps.len())
}
