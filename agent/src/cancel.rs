//! Why long work should stop before it is done: its caller went away, or
//! an operation arrived that makes it pointless (a destroy of the container
//! being built). The supervisor holds the [`Canceller`] of each running
//! job; the job hands the [`Cancel`] to what waits long (the build), which
//! stops and says why.

use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The client that asked for the operation disconnected.
    CallerGone,
    /// A destroy of the same container is waiting.
    Destroyed,
    /// Shared work nobody waits for any more.
    Unwanted,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Reason::CallerGone => "its caller went away",
            Reason::Destroyed => "the container is being destroyed",
            Reason::Unwanted => "nobody waits for it any more",
        })
    }
}

/// The side that waits: resolves once cancelled.
#[derive(Debug, Clone)]
pub struct Cancel {
    rx: Option<watch::Receiver<Option<Reason>>>,
}

/// The side that cancels.
#[derive(Debug)]
pub struct Canceller {
    tx: watch::Sender<Option<Reason>>,
}

/// A pair: cancel through the first, wait on the second.
pub fn pair() -> (Canceller, Cancel) {
    let (tx, rx) = watch::channel(None);
    (Canceller { tx }, Cancel { rx: Some(rx) })
}

impl Canceller {
    /// Cancel (the first reason given stays).
    pub fn cancel(&self, why: Reason) {
        self.tx.send_if_modified(|r| {
            let first = r.is_none();
            if first {
                *r = Some(why);
            }
            first
        });
    }
}

impl Cancel {
    /// Never cancelled (internal work nobody waits for).
    pub fn never() -> Cancel {
        Cancel { rx: None }
    }

    /// Resolves with the reason once cancelled; never otherwise (also not
    /// when the canceller is dropped: the job then simply finishes).
    pub async fn cancelled(&self) -> Reason {
        let Some(mut rx) = self.rx.clone() else {
            return std::future::pending().await;
        };
        let why = rx.wait_for(Option::is_some).await.map(|r| *r);
        match why {
            Ok(Some(why)) => why,
            _ => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn the_first_reason_is_the_one_reported() {
        let (c, wait) = pair();
        c.cancel(Reason::Destroyed);
        c.cancel(Reason::CallerGone);
        assert_eq!(wait.cancelled().await, Reason::Destroyed);
    }

    #[tokio::test]
    async fn a_dropped_canceller_cancels_nothing() {
        let (c, wait) = pair();
        drop(c);
        let r = tokio::time::timeout(Duration::from_millis(20), wait.cancelled()).await;
        assert!(r.is_err());
        let r = tokio::time::timeout(Duration::from_millis(20), Cancel::never().cancelled()).await;
        assert!(r.is_err());
    }
}
