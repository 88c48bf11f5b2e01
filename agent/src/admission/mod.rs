//! Admission of container boots against what the host can take. A storm of
//! ensures must not boot hundreds of containers at once, nor boot containers
//! that will die half-way for a kernel limit (at 128 inotify instances about
//! half of 50 systemd containers die at boot with "Too many open files").
//! So boots pass a gate ([`gate::BootGate`]: at most N at once, the rest in
//! line and told so), and a preflight ([`verdict::decide`], pure, on facts a
//! [`probe::HostProbe`] reads) refuses up front, naming the limit and the
//! setting that raises it. The supervisor runs both (`supervisor/preflight.rs`):
//! cheaply before a creation's build, and with the reservations of the boots
//! under way when a boot takes its slot.

pub mod gate;
pub mod probe;
pub mod verdict;

pub use verdict::{decide, Claims, HostFacts, Memory, Needs, Shortfall, Verdict, Warning};

use crate::container::ContainerName;
use std::path::PathBuf;
use std::sync::Arc;

/// The gate, the probe and what a boot needs: shared by all jobs.
pub struct Admission {
    pub needs: Needs,
    containers_dir: PathBuf,
    probe: Arc<dyn probe::HostProbe>,
    gate: Arc<gate::BootGate>,
}

impl Admission {
    pub fn new(cfg: &crate::config::Config, probe: Arc<dyn probe::HostProbe>) -> Admission {
        Admission {
            needs: cfg.admission.needs,
            containers_dir: cfg.paths.containers_dir.clone(),
            probe,
            gate: gate::BootGate::new(cfg.admission.max_parallel_boots),
        }
    }

    /// Reading the real host (`/proc`).
    pub fn real(cfg: &crate::config::Config) -> Admission {
        Admission::new(cfg, Arc::new(probe::ProcProbe::default()))
    }

    pub fn gate(&self) -> &Arc<gate::BootGate> {
        &self.gate
    }

    /// What the host has and uses now (read off the async threads).
    pub async fn facts(&self) -> HostFacts {
        let (probe, dir) = (self.probe.clone(), self.containers_dir.clone());
        tokio::task::spawn_blocking(move || probe.facts(&dir))
            .await
            .unwrap_or_default()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    /// The host has no room for the boot: what would be exceeded.
    #[error("{name} cannot boot on this host now: {}", join(.shortfalls))]
    Refused {
        name: ContainerName,
        shortfalls: Vec<Shortfall>,
    },
    /// Waiting for a boot slot ended before one was free.
    #[error("waiting for a boot slot for {name} was stopped: {why}")]
    Stopped {
        name: ContainerName,
        why: crate::cancel::Reason,
    },
}

fn join(shortfalls: &[Shortfall]) -> String {
    let texts: Vec<String> = shortfalls.iter().map(|s| s.to_string()).collect();
    texts.join("; and ")
}
