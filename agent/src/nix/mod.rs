//! Building a container's system with the real `nix-build`: the generated
//! `configuration.nix` and the argv are pure ([`plan`]); [`runner`] runs the
//! build, streams its output and keeps the tail for errors; [`local`] reads
//! a local channel with its caller's rights; [`fetch`] an http(s) one;
//! [`systems`] finds a system built before by what it is built from;
//! [`check`] says what in the host's Nix settings is unsafe.

pub mod check;
pub mod fetch;
pub mod local;
pub mod plan;
pub mod probe;
pub mod runner;
pub mod systems;

#[derive(Debug, thiserror::Error)]
pub enum NixError {
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("nix-build failed ({status}){}; last lines:\n{tail}", cause.as_deref().map(|c| format!(": {c}")).unwrap_or_default())]
    BuildFailed {
        status: String,
        /// Why the channel could not be fetched, when that is why (Nix
        /// reports it as a warning before an error about the search path).
        cause: Option<String>,
        tail: String,
    },
    #[error("nix-build did not finish within {0} s and was stopped")]
    Timeout(u64),
    #[error("cannot fetch the channel {url}: {source}")]
    Fetch {
        url: String,
        /// Shared by every container that waited for the fetch.
        source: std::sync::Arc<fetch::FetchError>,
    },
    #[error("nix-build was stopped: {0}")]
    Stopped(crate::cancel::Reason),
    /// The build several containers waited for failed (every one of them
    /// gets this, the one that started it too).
    #[error("{source} (the build of system {key} started for {started_by}; its log, for root: {})", log.display())]
    Shared {
        key: String,
        started_by: String,
        log: std::path::PathBuf,
        source: std::sync::Arc<NixError>,
    },
    #[error("the shared build ended without a result (it panicked)")]
    Lost,
    #[error("identifying the system panicked: {0}")]
    Panicked(String),
    #[error("nix-build printed no store path (output: {0:?})")]
    NoOutput(String),
    #[error("cannot use the local channel {path} (read as uid {uid}): {why}")]
    LocalChannel {
        path: std::path::PathBuf,
        uid: u32,
        why: String,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: std::path::PathBuf,
        source: crate::sys::fs::FsError,
    },
}
