//! Running containers with systemd-nspawn: the argv is planned purely
//! ([`argv`]); a [`backend::Backend`] starts, finds and stops the process.
//! The direct backend runs nspawn itself, detached, so containers outlive the
//! agent; a systemd (D-Bus) backend slots in behind the same trait.

pub mod argv;
pub mod backend;
pub mod cgroup;
pub mod direct;
pub mod ready;
pub mod systemd;
pub mod unit;

#[derive(Debug, thiserror::Error)]
pub enum NspawnError {
    #[error("cannot start systemd-nspawn for {name}: {source}")]
    Spawn {
        name: String,
        source: std::io::Error,
    },
    #[error("container {name} exited during boot ({status}); last log lines:\n{tail}")]
    ExitedDuringBoot {
        name: String,
        status: String,
        tail: String,
    },
    #[error("container {name} was not ready after {secs} s (waiting for {waiting_for}); it was stopped; last log lines:\n{tail}")]
    ReadyTimeout {
        name: String,
        secs: u64,
        waiting_for: String,
        tail: String,
    },
    #[error("container {name}: {what}: {source}")]
    Io {
        name: String,
        what: &'static str,
        source: std::io::Error,
    },
    /// systemd refused or failed a call about this container.
    #[error("container {name}: {what}: {source}")]
    Machine {
        name: String,
        what: &'static str,
        source: Box<zbus::Error>,
    },
    #[error("container {name} did not stop even after SIGKILL")]
    Unkillable { name: String },
    /// The systemd backend could not reach systemd.
    #[error("{what}: {source}")]
    Bus {
        what: &'static str,
        source: Box<zbus::Error>,
    },
}
