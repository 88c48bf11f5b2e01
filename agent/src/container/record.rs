//! The container record: the one persistent description of a container, as
//! the supervisor owns it. Every field a user or another subsystem needs is
//! here; what is derived (paths, interface names) is computed from it.

use super::limits::Limits;
use super::names::{Alias, ChannelUrl, ContainerName};
use super::Upstreams;
use crate::sleep::SleepAfter;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// Where a container is in its life. The phase is written *before* the side
/// effects it names, so after a crash the agent knows what may be half done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Record written, nothing else yet.
    Creating,
    /// nix-build running.
    Building,
    /// Root dir, network namespace, veth, routes being set up.
    Networking,
    /// systemd-nspawn started, waiting for readiness.
    Starting,
    Running,
    Stopping,
    Stopped,
    Destroying,
}

impl Phase {
    /// Every phase, in the order of a container's life.
    pub const ALL: [Phase; 8] = [
        Phase::Creating,
        Phase::Building,
        Phase::Networking,
        Phase::Starting,
        Phase::Running,
        Phase::Stopping,
        Phase::Stopped,
        Phase::Destroying,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Creating => "creating",
            Phase::Building => "building",
            Phase::Networking => "networking",
            Phase::Starting => "starting",
            Phase::Running => "running",
            Phase::Stopping => "stopping",
            Phase::Stopped => "stopped",
            Phase::Destroying => "destroying",
        }
    }
}

/// The address pair of one container: `host` on `ve-NAME` in the host's
/// namespace, `local` on `eth0` inside; both /32 with host routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Addresses {
    /// Index in the address pool (stable for the container's life).
    pub index: u32,
    pub host: Ipv4Addr,
    pub local: Ipv4Addr,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub name: ContainerName,
    /// uid the container belongs to (who may manage it besides admins).
    pub owner_uid: u32,
    pub channel: ChannelUrl,
    pub aliases: Vec<Alias>,
    pub addresses: Addresses,
    /// The built system (`/nix/store/…`); `None` until the first build.
    pub system_path: Option<String>,
    pub created: DateTime<Utc>,
    /// Set by every ensure; the cleanup clock.
    pub last_deploy: DateTime<Utc>,
    /// False once cleanup disabled it (no routes, not started at boot).
    pub enabled: bool,
    /// Never disabled or deleted by cleanup (`devhost pin`).
    #[serde(default)]
    pub pinned: bool,
    /// Not disabled before this moment (`devhost extend`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_until: Option<DateTime<Utc>>,
    /// Last proxied request or provisioning run, as of the last sweep (used
    /// by cleanup when `cleanup.count_activity` is on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_activity: Option<DateTime<Utc>>,
    pub phase: Phase,
    /// True once the container first ran: before that, a crash rolls the
    /// whole creation back; after it, the container is kept and repaired.
    pub established: bool,
    /// What the owner last asked for: running (ensure/start) or not (stop).
    pub want_running: bool,
    /// Resource limits (enforced by the systemd backend).
    #[serde(default)]
    pub limits: Limits,
    /// Where the proxy sends requests (for the container and per alias);
    /// what is not set uses the agent's `edge.upstream`.
    #[serde(default, skip_serializing_if = "Upstreams::is_empty")]
    pub upstreams: Upstreams,
    /// The disk size asked for (`fc-devhost ensure --disk-size`), bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_size: Option<u64>,
    /// The VM image asked for (`fc-devhost ensure --image-url`): a
    /// container needs none; recorded as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    /// Put to sleep after this long idle (`default`: the host's
    /// `[sleep] after`).
    #[serde(default, skip_serializing_if = "SleepAfter::is_default")]
    pub sleep_after: SleepAfter,
    /// Asleep since then: stopped for want of use, with its routes, names
    /// and certificate kept; the next request through the proxy (or `devhost
    /// wake`, an ensure, a start) starts it again. Saved before it is
    /// stopped, cleared when it runs again, by a stop and by cleanup's
    /// disabling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asleep_since: Option<DateTime<Utc>>,
}

impl Record {
    /// A container about to be created at `now`: phase `Creating`, enabled,
    /// wanted running, nothing built yet, no aliases, limits or upstreams.
    pub fn new(
        name: ContainerName,
        owner_uid: u32,
        channel: ChannelUrl,
        addresses: Addresses,
        now: DateTime<Utc>,
    ) -> Record {
        Record {
            name,
            owner_uid,
            channel,
            aliases: Vec::new(),
            addresses,
            system_path: None,
            created: now,
            last_deploy: now,
            enabled: true,
            pinned: false,
            keep_until: None,
            last_activity: None,
            phase: Phase::Creating,
            established: false,
            want_running: true,
            limits: Limits::default(),
            upstreams: Upstreams::default(),
            disk_size: None,
            image_url: None,
            sleep_after: SleepAfter::Default,
            asleep_since: None,
        }
    }

    /// What the cleanup policy looks at.
    pub fn usage(&self, running: bool) -> crate::cleanup::Usage {
        crate::cleanup::Usage {
            last_deploy: self.last_deploy,
            last_activity: self.last_activity,
            keep_until: self.keep_until,
            pinned: self.pinned,
            enabled: self.enabled,
            running,
        }
    }
}

pub fn host_interface(name: &ContainerName) -> String {
    format!("ve-{name}")
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A running, established record for tests of what is derived from records.
    pub fn record(name: &str, local: &str, aliases: &[&str]) -> Record {
        let mut r = Record::new(
            name.parse().unwrap(),
            0,
            "https://example.org/nixexprs.tar.xz".parse().unwrap(),
            Addresses {
                index: 1,
                host: "10.233.0.1".parse().unwrap(),
                local: local.parse().unwrap(),
            },
            chrono::Utc::now(),
        );
        r.aliases = aliases.iter().map(|a| a.parse().unwrap()).collect();
        r.phase = Phase::Running;
        r.established = true;
        r
    }
}
