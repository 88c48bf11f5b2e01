//! Building a container's system with the real `nix-build`: the generated
//! `configuration.nix` and the argv are pure ([`plan`]); [`runner`] runs the
//! build, streams its output and keeps the tail for errors; [`local`] reads
//! a local channel with its caller's rights; [`check`] says what in the
//! host's Nix settings is unsafe.

pub mod check;
pub mod fetch;
pub mod local;
pub mod plan;
pub mod probe;
pub mod reuse;
pub mod runner;

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
        source: fetch::FetchError,
    },
    #[error("nix-build was stopped: {0}")]
    Stopped(crate::cancel::Reason),
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
