//! The seam between the supervisor and how containers are run. A backend
//! starts a prepared container and waits for readiness, finds running ones
//! (also those started by an earlier agent), and stops them.

use super::NspawnError;
use crate::container::{ContainerName, Limits};
use crate::progress::Progress;
use async_trait::async_trait;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Everything needed to start one container; built by the supervisor.
#[derive(Debug, Clone)]
pub struct StartRequest {
    pub name: ContainerName,
    pub argv: Vec<String>,
    pub console_log: PathBuf,
    /// The network namespace nspawn runs in (the container shares it).
    pub netns_path: PathBuf,
    /// The container's address, for TCP readiness.
    pub address: Ipv4Addr,
    pub limits: Limits,
}

/// A running container as the backend sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Running {
    pub name: ContainerName,
    /// The main process (systemd-nspawn).
    pub pid: u32,
}

#[async_trait]
pub trait Backend: Send + Sync {
    fn kind(&self) -> &'static str;
    async fn start(&self, req: &StartRequest, progress: &Progress) -> Result<Running, NspawnError>;
    /// The container's main process, if it runs.
    async fn find(&self, name: &ContainerName) -> Option<Running>;
    /// Every container of this agent that runs (to find orphans).
    async fn list(&self) -> Vec<Running>;
    /// Graceful poweroff, then kill after `timeout`. Not running is fine.
    async fn stop(
        &self,
        name: &ContainerName,
        timeout: Duration,
        progress: &Progress,
    ) -> Result<(), NspawnError>;
    /// Apply limits to the running container; false when this backend does
    /// not enforce them or the container does not run (they are recorded).
    async fn set_limits(&self, name: &ContainerName, limits: &Limits) -> Result<bool, NspawnError>;
    /// The container's PID 1 (in the host's pid namespace), to run
    /// commands inside it.
    async fn leader(&self, name: &ContainerName) -> Option<u32>;
    /// The last lines of the container's console.
    async fn console_tail(&self, name: &ContainerName, console_log: &Path, lines: usize) -> String;
    /// Where the container's console is read from as it grows: the file
    /// the backend has nspawn write, unless it says otherwise.
    fn console_source(&self, _name: &ContainerName, console_log: &Path) -> crate::logs::Source {
        crate::logs::Source::File {
            path: console_log.to_path_buf(),
            timestamped: false,
            rotated: None,
        }
    }
}
