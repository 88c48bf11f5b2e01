//! The operations on one container, as the API hands them to the
//! supervisor: validated values only, each with the states of the
//! container in which it is admitted (as Firecracker documents its
//! `VmmAction`s). [`Outcome`] is what a finished one reports.

use crate::api::types::ContainerInfo;
use crate::container::{Alias, ChannelUrl, Limits, Upstreams};
use std::sync::Arc;

/// What an ensure asks for, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct EnsureSpec {
    pub channel: ChannelUrl,
    pub aliases: Vec<Alias>,
    /// For whom root or an admin creates it (others create for themselves).
    pub owner_uid: Option<u32>,
    /// Fields given replace the recorded ones.
    pub limits: Limits,
    /// Replaces the recorded upstreams when given.
    pub upstreams: Option<Upstreams>,
    /// Disk size asked for (bytes), recorded when given.
    pub disk_size: Option<u64>,
    /// VM image URL asked for, recorded when given.
    pub image_url: Option<String>,
    /// Whether a re-ensure moves an existing container to `channel` (else
    /// it keeps the channel it has).
    pub update_channel: bool,
    /// Replaces the recorded sleep setting when given.
    pub sleep_after: Option<crate::sleep::SleepAfter>,
}

/// An operation on one container, validated. Operations on one name run
/// one at a time, in the order they came; each is authorized against the
/// record as it is when its turn comes (owner or admin; creating needs the
/// user group).
#[derive(Debug, Clone)]
pub enum Op {
    /// Admitted always: creates the container when there is none (name
    /// lower case, not taken ignoring case), else refreshes and starts it.
    Ensure(EnsureSpec),
    /// Admitted for an existing container; one that cleanup disabled only
    /// once a pin or an extension keeps it.
    Start,
    /// Admitted for an existing container (not running is fine).
    Stop,
    /// Admitted always: nothing to do when there is no such container.
    Destroy,
    /// Admitted for an existing container; it must run.
    Provision(Arc<crate::provision::Plan>),
    /// Pin (true) or unpin: cleanup never touches a pinned container.
    /// Admitted for an existing container.
    Pin(bool),
    /// Not disabled before this many days from now (1 to
    /// `cleanup.max_extend_days`). Admitted for an existing container.
    Extend { days: u32 },
    /// One container's turn in a cleanup sweep decided as of `now`.
    /// Admitted always: a container destroyed meanwhile is nothing to do.
    Expire { now: chrono::DateTime<chrono::Utc> },
    /// Take a quarantined record back (an admin repaired or checked it):
    /// it becomes the container's record again, its phase what is really
    /// running. Admitted only for a quarantined name, for admins.
    Adopt,
    /// Start a container that was put to sleep (nothing to do when it
    /// runs). Admitted for an existing container; one that is stopped but
    /// not asleep is refused (`start` starts it).
    Wake,
    /// Put a running container to sleep if it is (still) idle for its
    /// period, as the sleep sweep saw it. Admitted always: a container
    /// destroyed meanwhile is nothing to do. The agent's own.
    Sleep,
    /// Remove everything of a quarantined name, as destroy would, and
    /// release the name and address (the file stays in
    /// `quarantine/resolved/`). Admitted only for a quarantined name, for
    /// admins.
    Forget,
}

/// Whether an operation is admitted when its container does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admits {
    /// Whether it exists or not.
    Always,
    /// Only an existing container ("no container named …" otherwise).
    Existing,
    /// Only a name whose record is quarantined; every other operation on
    /// such a name is refused.
    Quarantined,
}

impl Op {
    /// See each variant.
    pub fn admits(&self) -> Admits {
        match self {
            Op::Ensure(_) | Op::Destroy | Op::Expire { .. } | Op::Sleep => Admits::Always,
            Op::Start | Op::Stop | Op::Provision(_) | Op::Pin(_) | Op::Extend { .. } | Op::Wake => {
                Admits::Existing
            }
            Op::Adopt | Op::Forget => Admits::Quarantined,
        }
    }

    pub fn verb(&self) -> &'static str {
        match self {
            Op::Ensure(_) => "ensure",
            Op::Start => "start",
            Op::Stop => "stop",
            Op::Destroy => "destroy",
            Op::Provision(_) => "provision",
            Op::Pin(true) => "pin",
            Op::Pin(false) => "unpin",
            Op::Extend { .. } => "extend",
            Op::Expire { .. } => "clean up",
            Op::Wake => "wake",
            Op::Sleep => "put to sleep",
            Op::Adopt => "adopt",
            Op::Forget => "forget",
        }
    }
}

/// What a finished operation reports.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub message: String,
    pub container: Option<ContainerInfo>,
    /// What a cleanup turn decided (only `Op::Expire`).
    pub cleanup: Option<crate::cleanup::Decision>,
}
