//! Progress of a long operation, streamed to the CLI that asked for it: log
//! lines and phase changes. A slow or vanished client never slows a build:
//! events that do not fit the channel are dropped (they stay in the log files).

use crate::api::types::Event;
use crate::container::Phase;
use tokio::sync::mpsc;

#[derive(Clone, Debug)]
pub struct Progress {
    tx: Option<mpsc::Sender<Event>>,
}

impl Progress {
    pub fn channel(capacity: usize) -> (Progress, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel(capacity);
        (Progress { tx: Some(tx) }, rx)
    }

    /// Progress nobody listens to (internal operations, reconcile).
    pub fn none() -> Progress {
        Progress { tx: None }
    }

    pub fn log(&self, line: impl Into<String>) {
        if let Some(tx) = &self.tx {
            let _ = tx.try_send(Event::Log { line: line.into() });
        }
    }

    pub fn phase(&self, phase: Phase) {
        if let Some(tx) = &self.tx {
            let _ = tx.try_send(Event::Phase { phase });
        }
    }

    /// Resolves once nobody listens any more (the client disconnected);
    /// never for progress nobody listened to in the first place.
    pub async fn gone(&self) {
        match &self.tx {
            Some(tx) => tx.closed().await,
            None => std::future::pending().await,
        }
    }

    /// The final event must not be dropped: wait for room.
    pub async fn finish(&self, event: Event) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(event).await;
        }
    }
}
