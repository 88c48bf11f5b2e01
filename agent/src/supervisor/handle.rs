//! How API handlers and jobs talk to the supervisor task: one message per
//! request, each carrying the channel its answer comes back on.

use super::derived;
use super::op::{Op, Outcome};
use super::SupervisorError;
use crate::access::Caller;
use crate::api::types::{AgentInfo, ContainerInfo};
use crate::container::{ContainerName, Record};
use crate::progress::Progress;
use tokio::sync::{mpsc, oneshot, watch};

/// Quarantined names whose address is known, with that address.
pub type HeldAddresses = std::sync::Arc<Vec<(std::net::Ipv4Addr, String)>>;

pub(super) type Reply<T> = oneshot::Sender<T>;

pub(super) enum Msg {
    Run {
        name: ContainerName,
        op: Op,
        caller: Caller,
        progress: Progress,
        reply: Reply<Result<Outcome, SupervisorError>>,
    },
    List {
        reply: Reply<Vec<ContainerInfo>>,
    },
    Get {
        name: ContainerName,
        reply: Reply<Result<ContainerInfo, SupervisorError>>,
    },
    Info {
        reply: Reply<AgentInfo>,
    },
    Save {
        record: Record,
        reply: Reply<Result<(), SupervisorError>>,
    },
    Remove {
        name: ContainerName,
        reply: Reply<Result<(), SupervisorError>>,
    },
    /// A quarantined name is resolved: its files kept aside for good, the
    /// name released, and `record` (when adopted) its record again.
    Resolve {
        name: ContainerName,
        record: Option<Record>,
        reply: Reply<Result<(), SupervisorError>>,
    },
    Finished {
        name: ContainerName,
    },
    Console {
        name: ContainerName,
        lines: usize,
        reply: Reply<String>,
    },
    ConsoleSource {
        name: ContainerName,
        reply: Reply<Result<crate::logs::Source, SupervisorError>>,
    },
    Finding {
        text: String,
    },
    Cleanup {
        body: crate::api::types::CleanupBody,
        caller: Caller,
        reply: Reply<Result<crate::api::types::CleanupReport, SupervisorError>>,
    },
    /// The current records version (for [`Handle::synced`]).
    Version {
        reply: Reply<u64>,
    },
}

/// The handle API handlers and jobs use.
#[derive(Clone)]
pub struct Handle {
    pub(super) tx: mpsc::Sender<Msg>,
    pub(super) applied: watch::Receiver<derived::Applied>,
    /// Asks the derived-state task to try a failed sync again now.
    pub(super) retry: std::sync::Arc<tokio::sync::Notify>,
    /// The newest records the supervisor published.
    pub(super) records: watch::Receiver<derived::Snapshot>,
    /// What keeps containers awake.
    pub(super) busy: std::sync::Arc<crate::sleep::Busy>,
}

fn gone() -> SupervisorError {
    SupervisorError::ShuttingDown
}

impl Handle {
    /// Send the message `make` builds around a reply channel; its answer.
    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Msg) -> Result<T, SupervisorError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())
    }

    pub async fn run(
        &self,
        name: ContainerName,
        op: Op,
        caller: Caller,
        progress: Progress,
    ) -> Result<Outcome, SupervisorError> {
        self.ask(|reply| Msg::Run {
            name,
            op,
            caller,
            progress,
            reply,
        })
        .await?
    }

    pub async fn list(&self) -> Result<Vec<ContainerInfo>, SupervisorError> {
        self.ask(|reply| Msg::List { reply }).await
    }

    /// A container's status (anyone may read it).
    pub async fn get(&self, name: ContainerName) -> Result<ContainerInfo, SupervisorError> {
        self.ask(|reply| Msg::Get { name, reply }).await?
    }

    /// The last lines of a container's console (file or journal).
    pub async fn console(
        &self,
        name: ContainerName,
        lines: usize,
    ) -> Result<String, SupervisorError> {
        self.ask(|reply| Msg::Console { name, lines, reply }).await
    }

    /// Where a container's console is read from as it grows (file or
    /// journal).
    pub async fn console_source(
        &self,
        name: ContainerName,
    ) -> Result<crate::logs::Source, SupervisorError> {
        self.ask(|reply| Msg::ConsoleSource { name, reply }).await?
    }

    pub async fn info(&self) -> Result<AgentInfo, SupervisorError> {
        self.ask(|reply| Msg::Info { reply }).await
    }

    /// Run (or with `dry_run`, only decide) the cleanup sweep; admin only.
    pub async fn cleanup(
        &self,
        body: crate::api::types::CleanupBody,
        caller: Caller,
    ) -> Result<crate::api::types::CleanupReport, SupervisorError> {
        self.ask(|reply| Msg::Cleanup {
            body,
            caller,
            reply,
        })
        .await?
    }

    /// Keep `name` awake while the guard lives: what a shell or an `exec`
    /// session holds for its whole life (taken before it starts, so that a
    /// container falling asleep right then refuses it rather than dying
    /// under it).
    pub fn hold_awake(
        &self,
        name: &ContainerName,
    ) -> Result<crate::sleep::BusyGuard, SupervisorError> {
        self.busy
            .enter(name)
            .map_err(|_| SupervisorError::Asleep(name.clone()))
    }

    /// Wakes sleeping containers for the proxy (one wake per container
    /// however many requests wait for it).
    pub fn waker(&self) -> super::Waker {
        super::Waker::new(self.clone())
    }

    /// Persist a record (jobs call this before each phase's side effects).
    pub(crate) async fn save(&self, record: &Record) -> Result<(), SupervisorError> {
        let record = record.clone();
        self.ask(|reply| Msg::Save { record, reply }).await?
    }

    /// Wait until the hosts block, NAT table and compatibility records
    /// reflect every record change made so far.
    pub(crate) async fn synced(&self) -> Result<(), SupervisorError> {
        let version = self.ask(|reply| Msg::Version { reply }).await?;
        let mut applied = self.applied.clone();
        let mut a = applied
            .wait_for(|a| a.version >= version)
            .await
            .map_err(|_| gone())?
            .clone();
        if a.error.is_some() {
            // Failed before (perhaps for an earlier job): once more, now.
            let tried = a.attempt;
            self.retry.notify_one();
            a = applied
                .wait_for(|a| a.attempt > tried)
                .await
                .map_err(|_| gone())?
                .clone();
        }
        match a.error {
            None => Ok(()),
            Some(e) => Err(SupervisorError::Derived(e)),
        }
    }

    pub(crate) async fn remove(&self, name: &ContainerName) -> Result<(), SupervisorError> {
        let name = name.clone();
        self.ask(|reply| Msg::Remove { name, reply }).await?
    }

    pub(crate) async fn resolve(
        &self,
        name: &ContainerName,
        record: Option<Record>,
    ) -> Result<(), SupervisorError> {
        let name = name.clone();
        self.ask(|reply| Msg::Resolve {
            name,
            record,
            reply,
        })
        .await?
    }

    /// A finding for `devhost info` (what a sweep or boot noticed).
    pub(crate) async fn finding(&self, text: String) {
        let _ = self.tx.send(Msg::Finding { text }).await;
    }

    /// The records as last published (jobs read the others' from here).
    pub(super) fn records(&self) -> std::sync::Arc<Vec<Record>> {
        self.records.borrow().records.clone()
    }

    /// The records published last, and the addresses quarantined names
    /// hold: what readers outside the supervisor (the metrics) see, without
    /// asking the supervisor task.
    pub fn published(&self) -> (std::sync::Arc<Vec<Record>>, HeldAddresses) {
        let s = self.records.borrow();
        (s.records.clone(), s.held.clone())
    }

    /// A job on `name` has ended: the next queued one may start.
    pub(super) async fn finished(&self, name: ContainerName) {
        let _ = self.tx.send(Msg::Finished { name }).await;
    }
}
