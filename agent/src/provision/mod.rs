//! Provisioning a running container: the agent's [`provision_dsl::Executor`].
//! RUN runs `/bin/sh -c` as root inside the container (all its namespaces,
//! its root, a clean environment), streaming output line by line; ECHO and
//! COPY write into the container root without ever following a symlink out
//! of it, keeping modes; what COPY creates belongs to the environment's
//! service user when one is given (batou's rsync runs as that user).
//! Everything goes to the container's transcript.

mod copy;
pub mod exec;

use crate::api::types::{ApiError, ProvisionAction, ProvisionBody, ProvisionFile};
use crate::progress::Progress;
use crate::sys::fs::{write_in_root, write_in_root_as, Owner};
use base64::Engine;
use provision_dsl::{Action, Executor, Step};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};

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

/// uid and gid of `user` in an /etc/passwd text.
pub fn lookup_user(passwd: &str, user: &str) -> Option<(u32, u32)> {
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() >= 4 && f[0] == user {
            Some((f[2].parse().ok()?, f[3].parse().ok()?))
        } else {
            None
        }
    })
}

/// Who owns what COPY creates in the container at `root`: `user` from the
/// container's own /etc/passwd (read without following symlinks).
pub fn copy_owner(root: &Path, user: Option<&str>) -> Result<Owner, String> {
    let Some(user) = user.filter(|u| *u != "root") else {
        return Ok(None);
    };
    let passwd = crate::sys::fs::read_in_root(root, Path::new("etc/passwd"), 16 << 20)
        .map_err(|e| format!("cannot look up the user {user:?} to copy as: {e}"))?;
    lookup_user(&String::from_utf8_lossy(&passwd), user)
        .map(Some)
        .ok_or_else(|| {
            format!(
                "the user {user:?} to copy as (the service user) does not exist in the container"
            )
        })
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
    pub root: PathBuf,
    /// How RUN gets into the container.
    pub run: exec::RunMethod,
    pub files: &'a BTreeMap<String, Entry>,
    /// Owner of what COPY creates.
    pub owner: Owner,
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

    /// Write `content` at `remote` (absolute) inside the root; an existing
    /// file keeps its mode, a new one gets `mode`.
    fn write(&self, remote: &str, content: &[u8], mode: u32) -> Result<(), String> {
        let rel = remote.trim_start_matches('/');
        let existing = std::fs::symlink_metadata(self.root.join(rel))
            .ok()
            .filter(|m| m.file_type().is_file());
        let mode = existing
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777)
            .unwrap_or(mode);
        write_in_root(&self.root, Path::new(rel), content, mode).map_err(|e| e.to_string())
    }
}

impl Executor for ContainerExecutor<'_> {
    type Error = String;

    async fn copy(&mut self, step: &Step, local: &str, remote: &str) -> Result<(), String> {
        self.announce(step, &format!("COPY {local} {remote}"));
        let writes = copy::plan(self.files, local, remote)?;
        for w in writes {
            match w {
                copy::Write::Dir { remote, mode } => {
                    let rel = remote.trim_start_matches('/').to_string();
                    let comps: Vec<&std::ffi::OsStr> = rel
                        .split('/')
                        .filter(|c| !c.is_empty())
                        .map(std::ffi::OsStr::new)
                        .collect();
                    crate::sys::fs::open_dir_in_root_as(&self.root, &comps, mode, self.owner)
                        .map_err(|e| e.to_string())?;
                }
                copy::Write::File { remote, mode, data } => {
                    write_in_root_as(
                        &self.root,
                        Path::new(remote.trim_start_matches('/')),
                        data,
                        mode,
                        self.owner,
                    )
                    .map_err(|e| e.to_string())?;
                }
            }
        }
        Ok(())
    }

    async fn run(&mut self, step: &Step, command: &str) -> Result<(), String> {
        self.announce(step, &format!("RUN {command}"));
        let mut child = exec::command(&self.run, command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run it in {}: {e}", exec::describe(&self.run)))?;
        let mut out = BufReader::new(child.stdout.take().expect("piped")).lines();
        let mut err = BufReader::new(child.stderr.take().expect("piped")).lines();
        let (mut out_done, mut err_done) = (false, false);
        while !(out_done && err_done) {
            tokio::select! {
                l = out.next_line(), if !out_done => match l {
                    Ok(Some(l)) => self.note(&l),
                    _ => out_done = true,
                },
                l = err.next_line(), if !err_done => match l {
                    Ok(Some(l)) => self.note(&l),
                    _ => err_done = true,
                },
            }
        }
        let status = child.wait().await.map_err(|e| e.to_string())?;
        if status.success() {
            Ok(())
        } else {
            Err(match status.code() {
                Some(c) => format!("exit status {c}"),
                None => status.to_string(),
            })
        }
    }

    async fn echo(&mut self, step: &Step, content: &str, remote: &str) -> Result<(), String> {
        // The content may be a secret: the transcript names the target only.
        self.announce(step, &format!("ECHO … {remote}"));
        self.write(remote, content.as_bytes(), 0o644)
    }
}

/// Run a plan in a container; the first failing step ends it.
pub async fn run_plan(plan: &Plan, mut exec: ContainerExecutor<'_>) -> Result<usize, String> {
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
    result.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_looked_up_in_the_containers_passwd() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\ndeveloper:x:1000:1000::/home/developer:/bin/bash\ns-dev:x:1001:500::/home/s-dev:/bin/bash\nbroken:x:zz:1\n";
        assert_eq!(lookup_user(passwd, "s-dev"), Some((1001, 500)));
        assert_eq!(lookup_user(passwd, "s-de"), None);
        assert_eq!(lookup_user(passwd, "broken"), None);
        assert_eq!(lookup_user("", "root"), None);
    }

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

    #[test]
    fn root_needs_no_lookup() {
        let nowhere = Path::new("/nonexistent-root");
        assert_eq!(copy_owner(nowhere, None), Ok(None));
        assert_eq!(copy_owner(nowhere, Some("root")), Ok(None));
        assert!(copy_owner(nowhere, Some("s-dev"))
            .unwrap_err()
            .contains("cannot look up the user \"s-dev\" to copy as"));
    }
}
