//! Provisioning a running container: the agent's [`provision_dsl::Executor`].
//! RUN runs `/bin/sh -c` as the container's root inside the container (its
//! namespaces, root, cgroups and privilege; a clean environment), streaming
//! output line by line; ECHO and COPY write inside the container too — what
//! it sees, tmpfs mounts included — without ever following a symlink,
//! keeping modes; what COPY creates belongs to the environment's service
//! user when one is given (batou's rsync runs as that user), through the
//! container's uid mapping. Everything goes to the container's transcript.

mod copy;
pub mod entry;
pub mod provisioner;

use crate::api::types::{ApiError, ProvisionAction, ProvisionBody, ProvisionFile};
use crate::enter::write::{Batch, WriteOp};
use crate::progress::Progress;
use base64::Engine;
use provision_dsl::{Action, Executor, Step};
use std::collections::BTreeMap;
use std::io::Write;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};

/// What went wrong running one step in a container (or getting ready to).
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("cannot start the enter helper: {0}")]
    StartHelper(#[source] std::io::Error),
    #[error("waiting for the enter helper: {0}")]
    WaitHelper(#[source] std::io::Error),
    /// What the enter helper reported from inside the container (its last
    /// line of error output).
    #[error("{0}")]
    InContainer(String),
    #[error("writing in the container failed ({0})")]
    WriteFailed(std::process::ExitStatus),
    #[error("{local} is not in the environment directory (or was not sent)")]
    NotSent { local: String },
    #[error("cannot run it in {target}: {source}")]
    Spawn {
        target: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Wait(#[source] std::io::Error),
    #[error("exit status {0}")]
    Exit(i32),
    #[error("{0}")]
    Killed(std::process::ExitStatus),
    #[error("{0}")]
    Target(#[source] std::io::Error),
}

/// A file or directory sent along for COPY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub mode: u32,
    /// `None`: a directory.
    pub data: Option<Vec<u8>>,
}

/// Validated input of a provisioning run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub files: BTreeMap<String, Entry>,
    /// The container user COPY writes as (`None`: root).
    pub copy_as: Option<String>,
}

/// A user name as useradd accepts it (no lookups happen on the host).
fn valid_user_name(u: &str) -> bool {
    let mut cs = u.chars();
    matches!(cs.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && u.len() <= 32
        && cs.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

fn plain_relative(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('/')
        && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

impl Plan {
    /// Check what the caller sent as if nothing had been checked before.
    pub fn from_body(body: ProvisionBody) -> Result<Plan, ApiError> {
        let bad = |m: String| ApiError::bad_request(m);
        let mut files = BTreeMap::new();
        for ProvisionFile { path, mode, data } in body.files {
            if !plain_relative(&path) {
                return Err(bad(format!(
                    "file path {path:?} must be relative, without '.', '..' or empty parts"
                )));
            }
            if mode > 0o7777 {
                return Err(bad(format!(
                    "file {path:?}: mode {mode:o} is not a permission mode"
                )));
            }
            let data = match data {
                Some(d) => Some(
                    base64::engine::general_purpose::STANDARD
                        .decode(d)
                        .map_err(|e| bad(format!("file {path:?}: content is not base64: {e}")))?,
                ),
                None => None,
            };
            files.insert(path, Entry { mode, data });
        }
        let mut steps = Vec::new();
        for s in body.steps {
            let remote_ok = |r: &str| {
                r.starts_with('/') && !r.split('/').any(|c| c == "..") && !r.contains('\0')
            };
            let action = match s.action {
                ProvisionAction::Copy { local, remote } => {
                    let base = local.trim_end_matches('/');
                    if !(base == "." || plain_relative(base)) {
                        return Err(bad(format!("{}:{}: local path {local:?} must stay inside the environment directory", s.file, s.line)));
                    }
                    if !remote_ok(&remote) {
                        return Err(bad(format!(
                            "{}:{}: remote path {remote:?} must be absolute, without '..'",
                            s.file, s.line
                        )));
                    }
                    Action::Copy { local, remote }
                }
                ProvisionAction::Run { command } => Action::Run { command },
                ProvisionAction::Echo { content, remote } => {
                    if !remote_ok(&remote) {
                        return Err(bad(format!(
                            "{}:{}: remote path {remote:?} must be absolute, without '..'",
                            s.file, s.line
                        )));
                    }
                    Action::Echo { content, remote }
                }
            };
            steps.push(Step {
                file: s.file,
                line: s.line,
                action,
            });
        }
        if let Some(u) = &body.copy_as {
            if !valid_user_name(u) {
                return Err(bad(format!(
                    "copy_as {u:?} is not a user name (lowercase letters, digits, '_', '-'; at most 32)"
                )));
            }
        }
        Ok(Plan {
            steps,
            files,
            copy_as: body.copy_as,
        })
    }
}

/// Runs steps in one container.
pub struct ContainerExecutor<'a> {
    pub name: String,
    /// The container's init, for the enter helper.
    pub target: entry::Target,
    /// How RUN gets into the container.
    pub run: entry::RunMethod,
    pub files: &'a BTreeMap<String, Entry>,
    /// The container user that owns what COPY creates (`None`: root).
    pub copy_as: Option<String>,
    pub progress: Progress,
    pub transcript: std::fs::File,
}

impl ContainerExecutor<'_> {
    fn note(&mut self, line: &str) {
        let _ = writeln!(self.transcript, "{line}");
        self.progress.log(line.to_string());
    }

    fn announce(&mut self, step: &Step, what: &str) {
        self.note(&format!("==> {} {what}", step.location()));
    }

    /// Apply a write batch inside the container through the enter helper.
    async fn write_batch(
        &mut self,
        batch: &Batch,
        contents: &[&[u8]],
    ) -> Result<(), ProvisionError> {
        use tokio::io::AsyncWriteExt;
        let input = crate::enter::write::encode(batch, contents);
        let mut child = crate::enter::command(&self.target.request(crate::enter::Action::Write))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(ProvisionError::StartHelper)?;
        let mut stdin = child.stdin.take().expect("piped");
        let feed = async move {
            let _ = stdin.write_all(&input).await;
        };
        let (_, out) = tokio::join!(feed, child.wait_with_output());
        let out = out.map_err(ProvisionError::WaitHelper)?;
        if out.status.success() {
            return Ok(());
        }
        let err = String::from_utf8_lossy(&out.stderr);
        let line = err.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
        Err(if line.is_empty() {
            ProvisionError::WriteFailed(out.status)
        } else {
            ProvisionError::InContainer(line.to_string())
        })
    }

    /// Resolve the owner COPY writes as (an empty batch): a missing user
    /// fails before any step runs.
    pub async fn check_copy_owner(&mut self) -> Result<(), ProvisionError> {
        let batch = Batch {
            owner: self.copy_as.clone(),
            ops: vec![],
        };
        self.write_batch(&batch, &[]).await
    }
}

impl Executor for ContainerExecutor<'_> {
    type Error = ProvisionError;

    async fn copy(&mut self, step: &Step, local: &str, remote: &str) -> Result<(), ProvisionError> {
        self.announce(step, &format!("COPY {local} {remote}"));
        let writes = copy::plan(self.files, local, remote)?;
        let mut ops = Vec::new();
        let mut contents: Vec<&[u8]> = Vec::new();
        for w in writes {
            match w {
                copy::Write::Dir { remote, mode } => ops.push(WriteOp::Dir { path: remote, mode }),
                copy::Write::File { remote, mode, data } => {
                    ops.push(WriteOp::File {
                        path: remote,
                        mode,
                        len: data.len() as u64,
                        keep_mode: false,
                    });
                    contents.push(data);
                }
            }
        }
        let batch = Batch {
            owner: self.copy_as.clone(),
            ops,
        };
        self.write_batch(&batch, &contents).await
    }

    async fn run(&mut self, step: &Step, command: &str) -> Result<(), ProvisionError> {
        self.announce(step, &format!("RUN {command}"));
        let mut child = entry::run_command(&self.run, &self.name, &self.target, command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| ProvisionError::Spawn {
                target: entry::describe(&self.run, &self.name, &self.target),
                source,
            })?;
        let mut out = BufReader::new(child.stdout.take().expect("piped"));
        let mut err = BufReader::new(child.stderr.take().expect("piped"));
        let (mut out_done, mut err_done) = (false, false);
        while !(out_done && err_done) {
            tokio::select! {
                l = bounded_line(&mut out), if !out_done => match l {
                    Some(l) => self.note(&l),
                    None => out_done = true,
                },
                l = bounded_line(&mut err), if !err_done => match l {
                    Some(l) => self.note(&l),
                    None => err_done = true,
                },
            }
        }
        let status = child.wait().await.map_err(ProvisionError::Wait)?;
        if status.success() {
            Ok(())
        } else {
            Err(match status.code() {
                Some(c) => ProvisionError::Exit(c),
                None => ProvisionError::Killed(status),
            })
        }
    }

    async fn echo(
        &mut self,
        step: &Step,
        content: &str,
        remote: &str,
    ) -> Result<(), ProvisionError> {
        // The content may be a secret: the transcript names the target only.
        self.announce(step, &format!("ECHO … {remote}"));
        let batch = Batch {
            owner: None,
            ops: vec![WriteOp::File {
                path: remote.to_string(),
                mode: 0o644,
                len: content.len() as u64,
                keep_mode: true,
            }],
        };
        self.write_batch(&batch, &[content.as_bytes()]).await
    }
}

/// Longest line of RUN output kept in one piece; a longer one comes in
/// pieces, so a command that prints without newlines cannot fill the
/// agent's memory.
const MAX_LINE: u64 = 64 * 1024;

/// The next line (without its newline, at most [`MAX_LINE`] bytes), or
/// `None` at the end.
async fn bounded_line<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    match r.take(MAX_LINE).read_until(b'\n', &mut buf).await {
        Ok(0) | Err(_) => None,
        Ok(_) => {
            if buf.last() == Some(&b'\n') {
                buf.pop();
            }
            Some(String::from_utf8_lossy(&buf).into_owned())
        }
    }
}

/// Run a plan in a container; the first failing step ends it.
pub async fn run_plan(
    plan: &Plan,
    mut exec: ContainerExecutor<'_>,
) -> Result<usize, provision_dsl::StepError<ProvisionError>> {
    let started = chrono::Utc::now();
    exec.note(&format!(
        "=== provisioning started {} ({} steps)",
        started.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        plan.steps.len()
    ));
    let result = provision_dsl::execute(&plan.steps, &mut exec).await;
    match &result {
        Ok(n) => exec.note(&format!("=== provisioning finished: {n} steps")),
        Err(e) => exec.note(&format!("=== provisioning failed: {e}")),
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_as_must_be_a_user_name() {
        let body = |u: &str| ProvisionBody {
            steps: vec![],
            files: vec![],
            copy_as: Some(u.into()),
        };
        assert!(Plan::from_body(body("s-dev")).is_ok());
        assert!(Plan::from_body(body("_svc1")).is_ok());
        for bad in ["", "S-dev", "1dev", "a b", "../etc", &"x".repeat(33)] {
            let e = Plan::from_body(body(bad)).unwrap_err();
            assert_eq!(
                e.message,
                format!("copy_as {bad:?} is not a user name (lowercase letters, digits, '_', '-'; at most 32)")
            );
        }
    }

    #[tokio::test]
    async fn output_lines_are_bounded() {
        let long = "x".repeat(MAX_LINE as usize + 10);
        let input = format!("short\n{long}\nlast");
        let mut r = tokio::io::BufReader::new(input.as_bytes());
        assert_eq!(bounded_line(&mut r).await.as_deref(), Some("short"));
        assert_eq!(bounded_line(&mut r).await.unwrap().len(), MAX_LINE as usize);
        assert_eq!(bounded_line(&mut r).await.unwrap(), "x".repeat(10));
        assert_eq!(bounded_line(&mut r).await.as_deref(), Some("last"));
        assert_eq!(bounded_line(&mut r).await, None);
    }
}
