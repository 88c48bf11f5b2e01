//! What goes wrong in the supervisor, with its cause kept. Refusals (who
//! may do what, what state admits what) and failures while acting (a build,
//! the network, nspawn, a provisioning step, the state on disk) are
//! variants of one enum; the API turns them into status and message in one
//! place (`api/error.rs`), and tests match on variants rather than on text.

use crate::container::{ContainerName, NameError};
use crate::net::NetError;
use crate::nix::NixError;
use crate::nspawn::NspawnError;
use crate::state::StateError;
use crate::sys::fs::FsError;
use crate::sys::quota::QuotaError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    // --- Refusals: nothing was done.
    #[error("no container named {0}")]
    NoSuchContainer(ContainerName),
    #[error("container {name} belongs to uid {owner}; only its owner or an admin may {verb} it")]
    NotOwner {
        name: ContainerName,
        owner: u32,
        verb: &'static str,
    },
    #[error("uid {uid} may not create containers (not root, not in group {user_group:?} or {admin_group:?})")]
    MayNotCreate {
        uid: u32,
        user_group: String,
        admin_group: String,
    },
    #[error("this host's Nix builds as root (no build users), so a channel's code would run as root: only root and group {admin_group:?} may create containers until build users exist (see devhost info)")]
    BuildsAsRoot { admin_group: String },
    #[error("uid {0} may not run the cleanup (root or the admin group only)")]
    MayNotSweep(u32),
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("now: {given:?} is not an RFC 3339 time (like 2026-01-31T03:00:00Z): {source}")]
    BadMoment {
        given: String,
        source: chrono::ParseError,
    },
    #[error("days: {days} is not 1 to {max} (cleanup.max_extend_days); `devhost pin` keeps a container for good")]
    ExtendDays { days: u32, max: u32 },
    #[error("{max} operations on {name} are already waiting; try again when they are done")]
    QueueFull { name: ContainerName, max: usize },
    #[error("container {name} was disabled by cleanup ({reason}); deploy it again (ensure), or `devhost extend {name} --days N` or `devhost pin {name}` first")]
    Disabled { name: ContainerName, reason: String },
    #[error("container {0} is not running; start it first")]
    NotRunning(ContainerName),
    #[error("container {0} is asleep (or falling asleep); `devhost wake {0}` wakes it")]
    Asleep(ContainerName),
    #[error("container {0} is stopped, not asleep; `devhost start {0}` starts it")]
    NotAsleep(ContainerName),
    #[error("container {0} runs without a user namespace (it started before devhost isolated containers); restart it (devhost stop {0}, devhost start {0}) to provision it")]
    NotIsolated(ContainerName),
    #[error(transparent)]
    Addresses(NetError),
    /// The host has no room for a boot, or waiting for one was stopped.
    #[error(transparent)]
    Admission(#[from] crate::admission::AdmissionError),

    // --- Failures while acting.
    #[error("building {name}: {source}")]
    Build {
        name: ContainerName,
        source: NixError,
    },
    #[error(transparent)]
    Step(#[from] StepError),
    #[error("container {name}: {source}")]
    Limits {
        name: ContainerName,
        source: NspawnError,
    },
    /// A provisioning step failed (the step and its cause).
    #[error(transparent)]
    Provision(#[from] provision_dsl::StepError<crate::provision::ProvisionError>),
    /// Provisioning could not begin (the container's init, COPY's owner).
    #[error("container {name}: {source}")]
    ProvisionSetup {
        name: ContainerName,
        source: crate::provision::ProvisionError,
    },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("{what} record of {name}: {source}")]
    Record {
        what: &'static str,
        name: ContainerName,
        source: StateError,
    },
    #[error(transparent)]
    Store(#[from] StateError),
    /// The hosts block, NAT table or compatibility records could not be
    /// brought in line (shared: every waiting job sees the same one).
    #[error(transparent)]
    Derived(std::sync::Arc<super::derived::DerivedError>),
    /// A first creation failed and undoing it failed too.
    #[error("{source}\n({})", undo_note(undo, *record_only))]
    NotUndone {
        source: Box<SupervisorError>,
        undo: Box<SupervisorError>,
        /// Only removing the record failed (all else was removed).
        record_only: bool,
    },
    #[error("the agent is shutting down")]
    ShuttingDown,

    // --- Quarantine: what is on the host and not trusted stays as it is.
    #[error("the record of {name} is quarantined ({why}; kept as {}): nothing of {name} is touched until an admin runs `devhost adopt {name}` or `devhost forget {name}`", file.display())]
    Quarantined {
        name: ContainerName,
        file: PathBuf,
        why: String,
    },
    #[error("no quarantined record for {0}")]
    NotQuarantined(ContainerName),
    #[error("a root directory for {name} exists without a record ({}); it is kept: an admin has to move it away before {name} can be created", root.display())]
    RootExists { name: ContainerName, root: PathBuf },
    #[error("uid {uid} may not {verb} containers (root or the admin group only)")]
    AdminOnly { uid: u32, verb: &'static str },
    #[error("{name} records address {address}, which {other} has now; forget {name} instead")]
    AddressTaken {
        name: ContainerName,
        address: std::net::Ipv4Addr,
        other: ContainerName,
    },
}

fn undo_note(undo: &SupervisorError, record_only: bool) -> String {
    if record_only {
        format!("removing the record failed: {undo}")
    } else {
        format!("cleanup also failed: {undo}; the agent will retry at its next start")
    }
}

/// What went wrong in a side-effecting step (`steps.rs`), shared by jobs
/// and reconcile.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("creating {path}: {source}")]
    Mkdir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("chmod 0700 {path}: {source}")]
    Chmod {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(transparent)]
    Quota(#[from] QuotaError),
    #[error("setting up the network of {name}: {source}")]
    NetUp {
        name: ContainerName,
        source: NetError,
    },
    #[error("removing the network of {name}: {source}")]
    NetDown {
        name: ContainerName,
        source: NetError,
    },
    #[error("removing {link}: {source}")]
    Link { link: String, source: NetError },
    #[error("container {0} has no built system")]
    NoSystem(ContainerName),
    #[error(transparent)]
    Nspawn(#[from] NspawnError),
    #[error("removing {what}{path}: {source}")]
    Remove {
        /// `root ` for the container root, empty otherwise.
        what: &'static str,
        path: PathBuf,
        source: FsError,
    },
}
