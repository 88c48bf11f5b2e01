//! Single flight: work that many callers need at the same time (the build
//! of one system, the download of one channel) runs once, and every caller
//! waiting for it gets its result — or its error. The work runs in a task of
//! its own, so no single caller owns it: a caller that goes away only leaves
//! the queue, and the work stops once nobody waits for it any more. What the
//! work reports goes to every caller's progress (and log) as it comes.

use crate::api::types::Event;
use crate::cancel::{Cancel, Canceller, Reason};
use crate::progress::Progress;
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::io::Write;
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::watch;

/// Where a caller wants the work's output: its progress, and a log file of
/// its own (a container's build log).
pub struct Sink {
    pub progress: Progress,
    pub log: Option<std::fs::File>,
}

impl Sink {
    fn put(&mut self, event: &Event) {
        if let Event::Log { line } = event {
            self.progress.log(line.clone());
            if let Some(f) = &mut self.log {
                let _ = writeln!(f, "{line}");
            }
        }
    }
}

/// Why a caller stopped waiting without a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Left {
    #[error("{0}")]
    Stopped(Reason),
    #[error("the work ended without a result (it panicked)")]
    Lost,
}

type Sinks = Arc<Mutex<Vec<(u64, Sink)>>>;

struct Shared<V> {
    result: watch::Receiver<Option<V>>,
    canceller: Canceller,
    started_by: String,
    sinks: Sinks,
    next_sink: std::sync::atomic::AtomicU64,
}

impl<V> Drop for Shared<V> {
    /// The last waiter is gone: the work is wanted no more.
    fn drop(&mut self) {
        self.canceller.cancel(Reason::Unwanted);
    }
}

/// A place in the queue for one flight's result.
pub struct Ticket<V> {
    shared: Arc<Shared<V>>,
    /// This caller's sink, taken out when it stops waiting: nothing of the
    /// work reaches a caller that left (its stream ends with its own error).
    sink: u64,
    /// This caller started the work.
    pub leader: bool,
}

impl<V> Drop for Ticket<V> {
    fn drop(&mut self) {
        self.shared
            .sinks
            .lock()
            .expect("not poisoned")
            .retain(|(id, _)| *id != self.sink);
    }
}

type Map<K, V> = Arc<Mutex<HashMap<K, Weak<Shared<V>>>>>;

/// The flights in progress, by key.
pub struct Flights<K, V> {
    map: Map<K, V>,
}

impl<K, V> Default for Flights<K, V> {
    fn default() -> Self {
        Flights {
            map: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

impl<K, V> Flights<K, V>
where
    K: Eq + Hash + Clone + Send + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Join the flight for `key`, or start it with `work` (given the
    /// [`Cancel`] that fires once nobody waits, and the [`Progress`] whose
    /// lines reach every waiter). `who` names the caller in what others see.
    pub fn join<F, Fut>(&self, key: K, who: &str, sink: Sink, work: F) -> Ticket<V>
    where
        F: FnOnce(Cancel, Progress) -> Fut,
        Fut: Future<Output = V> + Send + 'static,
    {
        let mut map = self.map.lock().expect("not poisoned");
        if let Some(shared) = map.get(&key).and_then(Weak::upgrade) {
            if shared.result.borrow().is_none() {
                let id = shared
                    .next_sink
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                shared.sinks.lock().expect("not poisoned").push((id, sink));
                return Ticket {
                    shared,
                    sink: id,
                    leader: false,
                };
            }
        }
        let (canceller, cancel) = crate::cancel::pair();
        let (tx, rx) = watch::channel(None);
        let sinks: Sinks = Arc::new(Mutex::new(vec![(0, sink)]));
        let (progress, mut events) = Progress::channel(1024);
        let shared = Arc::new(Shared {
            result: rx,
            canceller,
            started_by: who.to_string(),
            sinks: sinks.clone(),
            next_sink: 1.into(),
        });
        map.insert(key.clone(), Arc::downgrade(&shared));
        drop(map);
        let me = Arc::downgrade(&shared);
        let flights = self.map.clone();
        let run = work(cancel, progress);
        tokio::spawn(async move {
            let forward = async {
                while let Some(event) = events.recv().await {
                    for (_, s) in sinks.lock().expect("not poisoned").iter_mut() {
                        s.put(&event);
                    }
                }
            };
            // `run` drops its progress when done: the forwarding then ends
            // with every line delivered, before the result is.
            let (value, ()) = tokio::join!(run, forward);
            {
                let mut map = flights.lock().expect("not poisoned");
                if map.get(&key).is_some_and(|w| w.ptr_eq(&me)) {
                    map.remove(&key);
                }
            }
            let _ = tx.send(Some(value));
        });
        Ticket {
            shared,
            sink: 0,
            leader: true,
        }
    }

    /// How many flights are under way.
    pub fn len(&self) -> usize {
        self.map.lock().expect("not poisoned").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<V: Clone> Ticket<V> {
    /// Who started the work.
    pub fn started_by(&self) -> &str {
        &self.shared.started_by
    }

    /// The work's result; or why this caller stopped waiting: `cancel`
    /// fired, or nobody listens to `progress` any more. Leaving never
    /// stops the work while others wait for it.
    pub async fn wait(self, cancel: &Cancel, progress: &Progress) -> Result<V, Left> {
        let mut rx = self.shared.result.clone();
        tokio::select! {
            r = rx.wait_for(Option::is_some) => match r {
                Ok(v) => Ok(v.clone().expect("waited for Some")),
                Err(_) => Err(Left::Lost),
            },
            why = cancel.cancelled() => Err(Left::Stopped(why)),
            () = progress.gone() => Err(Left::Stopped(Reason::CallerGone)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;
    use tokio::sync::Notify;

    fn sink() -> Sink {
        Sink {
            progress: Progress::none(),
            log: None,
        }
    }

    #[tokio::test]
    async fn callers_of_one_key_share_one_run_and_its_result() {
        let flights: Flights<&str, Result<u32, String>> = Flights::default();
        let runs = Arc::new(AtomicUsize::new(0));
        let go = Arc::new(Notify::new());
        let tickets: Vec<_> = (0..5)
            .map(|i| {
                let (runs, go) = (runs.clone(), go.clone());
                flights.join("k", &format!("c{i}"), sink(), move |_, _| async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    go.notified().await;
                    Ok(42)
                })
            })
            .collect();
        assert_eq!(
            tickets.iter().map(|t| t.leader).collect::<Vec<_>>(),
            [true, false, false, false, false]
        );
        assert!(tickets.iter().all(|t| t.started_by() == "c0"));
        go.notify_one();
        for t in tickets {
            assert_eq!(
                t.wait(&Cancel::never(), &Progress::none()).await,
                Ok(Ok(42))
            );
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert!(flights.is_empty());
    }

    #[tokio::test]
    async fn every_waiter_gets_the_error_and_the_next_caller_tries_again() {
        let flights: Flights<&str, Result<u32, String>> = Flights::default();
        let a = flights.join("k", "a", sink(), |_, _| async { Err("broken".into()) });
        let b = flights.join("k", "b", sink(), |_, _| async { Ok(1) });
        let never = Cancel::never();
        assert_eq!(
            a.wait(&never, &Progress::none()).await,
            Ok(Err("broken".into()))
        );
        assert_eq!(
            b.wait(&never, &Progress::none()).await,
            Ok(Err("broken".into()))
        );
        let c = flights.join("k", "c", sink(), |_, _| async { Ok(2) });
        assert!(c.leader, "a finished flight is not joined");
        assert_eq!(c.wait(&never, &Progress::none()).await, Ok(Ok(2)));
    }

    #[tokio::test]
    async fn other_keys_run_apart() {
        let flights: Flights<&str, u32> = Flights::default();
        let a = flights.join("a", "x", sink(), |_, _| async { 1 });
        let b = flights.join("b", "y", sink(), |_, _| async { 2 });
        assert!(a.leader && b.leader);
        let never = Cancel::never();
        assert_eq!(a.wait(&never, &Progress::none()).await, Ok(1));
        assert_eq!(b.wait(&never, &Progress::none()).await, Ok(2));
    }

    /// Work that runs until cancelled and says why.
    fn until_cancelled(
        flights: &Flights<&'static str, String>,
        who: &str,
    ) -> (Ticket<String>, Arc<Notify>) {
        let started = Arc::new(Notify::new());
        let s = started.clone();
        let t = flights.join("k", who, sink(), move |cancel, _| async move {
            s.notify_one();
            cancel.cancelled().await.to_string()
        });
        (t, started)
    }

    #[tokio::test]
    async fn the_work_goes_on_while_one_waiter_remains_and_stops_when_none_does() {
        let flights: Flights<&'static str, String> = Flights::default();
        let (first, started) = until_cancelled(&flights, "a");
        started.notified().await;
        let (second, _) = until_cancelled(&flights, "b");
        assert!(!second.leader);
        let (c1, cancel1) = crate::cancel::pair();
        c1.cancel(Reason::CallerGone);
        assert_eq!(
            first.wait(&cancel1, &Progress::none()).await,
            Err(Left::Stopped(Reason::CallerGone))
        );
        assert_eq!(flights.len(), 1, "still wanted by b");
        let (c2, cancel2) = crate::cancel::pair();
        let waiting = tokio::spawn(async move { second.wait(&cancel2, &Progress::none()).await });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        c2.cancel(Reason::Destroyed);
        assert_eq!(
            waiting.await.unwrap(),
            Err(Left::Stopped(Reason::Destroyed))
        );
        // Nobody waits: the work is cancelled and its flight ends.
        tokio::time::timeout(Duration::from_secs(5), async {
            while !flights.is_empty() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .expect("the flight ends");
    }

    #[tokio::test]
    async fn a_waiter_that_left_hears_nothing_more_of_the_work() {
        let flights: Flights<&str, u32> = Flights::default();
        let (go, said) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let (p1, mut rx1) = Progress::channel(16);
        let (g, s) = (go.clone(), said.clone());
        let a = flights.join(
            "k",
            "a",
            Sink {
                progress: p1.clone(),
                log: None,
            },
            move |_, progress| async move {
                g.notified().await;
                progress.log("after a left");
                s.notify_one();
                1
            },
        );
        let (p2, _rx2) = Progress::channel(16);
        let b = flights.join(
            "k",
            "b",
            Sink {
                progress: p2.clone(),
                log: None,
            },
            |_, _| async { 0 },
        );
        let (c, cancel) = crate::cancel::pair();
        c.cancel(Reason::CallerGone);
        assert!(a.wait(&cancel, &p1).await.is_err());
        drop(p1);
        go.notify_one();
        said.notified().await;
        assert_eq!(b.wait(&Cancel::never(), &p2).await, Ok(1));
        // The work held no sender of a's: its stream has ended, empty.
        assert!(rx1.recv().await.is_none());
    }

    #[tokio::test]
    async fn every_waiter_sees_the_works_lines_before_its_result() {
        let flights: Flights<&str, u32> = Flights::default();
        let go = Arc::new(Notify::new());
        let (p1, mut rx1) = Progress::channel(16);
        let (p2, mut rx2) = Progress::channel(16);
        let g = go.clone();
        let a = flights.join(
            "k",
            "a",
            Sink {
                progress: p1.clone(),
                log: None,
            },
            move |_, progress| async move {
                g.notified().await;
                progress.log("line one");
                7
            },
        );
        let b = flights.join(
            "k",
            "b",
            Sink {
                progress: p2.clone(),
                log: None,
            },
            |_, _| async { 0 },
        );
        go.notify_one();
        assert_eq!(a.wait(&Cancel::never(), &p1).await, Ok(7));
        assert_eq!(b.wait(&Cancel::never(), &p2).await, Ok(7));
        for rx in [&mut rx1, &mut rx2] {
            match rx.try_recv() {
                Ok(Event::Log { line }) => assert_eq!(line, "line one"),
                other => panic!("{other:?}"),
            }
        }
    }
}
