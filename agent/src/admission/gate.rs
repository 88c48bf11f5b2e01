//! The boot gate: at most N containers boot at once (from the backend's
//! start until ready), the rest wait first come, first served and are told
//! where they are in the line ("3 ahead, 8 booting"). A waiter that gives up
//! (its future dropped: the client left, a destroy came) leaves the line; a
//! slot handed to one that just gave up goes on to the next. A slot held is
//! also the boot's reservation in the preflight: while it boots, what it
//! will take of the host's limits is counted as taken.
//!
//! Not a `tokio::sync::Semaphore`: its line is FIFO too, but a waiter's
//! position in it cannot be read; here one lock holds the line and the count.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Where a waiter stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waiting {
    /// Waiters before this one.
    pub ahead: usize,
    /// Slots held (boots under way).
    pub booting: usize,
}

#[derive(Debug, Default)]
struct Line {
    /// Slots held, including those handed to a waiter not yet awake.
    held: usize,
    waiting: VecDeque<u64>,
    /// Waiters a slot was handed to.
    granted: BTreeSet<u64>,
    next: u64,
}

#[derive(Debug)]
pub struct BootGate {
    bound: usize,
    line: Mutex<Line>,
    /// Bumped on every change, so that waiters look again.
    changed: watch::Sender<u64>,
}

/// A boot slot, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    gate: Arc<BootGate>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.gate.release();
    }
}

/// A place in the line; leaving it (dropped) gives up the place, or the
/// slot handed to it meanwhile.
struct Ticket<'a> {
    gate: &'a Arc<BootGate>,
    id: u64,
    done: bool,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut line = self.gate.line.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = line.waiting.iter().position(|t| *t == self.id) {
            line.waiting.remove(i);
            drop(line);
            self.gate.bump();
        } else if line.granted.remove(&self.id) {
            drop(line);
            self.gate.release();
        }
    }
}

impl BootGate {
    pub fn new(bound: usize) -> Arc<BootGate> {
        assert!(bound > 0, "a gate that admits nobody");
        Arc::new(BootGate {
            bound,
            line: Mutex::new(Line::default()),
            changed: watch::Sender::new(0),
        })
    }

    pub fn bound(&self) -> usize {
        self.bound
    }

    /// Slots held now.
    pub fn booting(&self) -> usize {
        self.lock().held
    }

    /// Waiters now.
    pub fn waiting(&self) -> usize {
        self.lock().waiting.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Line> {
        self.line.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// A slot given back: to the first waiter, or free.
    fn release(&self) {
        let mut line = self.lock();
        match line.waiting.pop_front() {
            Some(next) => {
                line.granted.insert(next);
            }
            None => line.held -= 1,
        }
        drop(line);
        self.bump();
    }

    /// Take a slot, waiting in line for one if all are held; `report` is
    /// told where this waiter stands when it starts to wait and whenever
    /// that changes. Cancel by dropping the future.
    pub async fn enter(self: &Arc<Self>, mut report: impl FnMut(Waiting)) -> Slot {
        let mut changed = self.changed.subscribe();
        let mut ticket = {
            let mut line = self.lock();
            if line.held < self.bound && line.waiting.is_empty() {
                line.held += 1;
                return Slot { gate: self.clone() };
            }
            let id = line.next;
            line.next += 1;
            line.waiting.push_back(id);
            Ticket {
                gate: self,
                id,
                done: false,
            }
        };
        self.bump();
        let mut last = None;
        loop {
            changed.borrow_and_update();
            let now = {
                let mut line = self.lock();
                if line.granted.remove(&ticket.id) {
                    ticket.done = true;
                    return Slot { gate: self.clone() };
                }
                Waiting {
                    ahead: line
                        .waiting
                        .iter()
                        .position(|t| *t == ticket.id)
                        .expect("a waiter not granted is in line"),
                    booting: line.held,
                }
            };
            if last != Some(now) {
                report(now);
                last = Some(now);
            }
            if changed.changed().await.is_err() {
                unreachable!("the gate holds the sender");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Let the spawned tasks run until they wait.
    async fn settle() {
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    #[tokio::test]
    async fn the_bound_is_kept_and_slots_come_back() {
        let gate = BootGate::new(2);
        let a = gate.enter(|_| panic!("no wait")).await;
        let b = gate.enter(|_| panic!("no wait")).await;
        assert_eq!((gate.booting(), gate.waiting()), (2, 0));
        let g = gate.clone();
        let c = tokio::spawn(async move { g.enter(|_| {}).await });
        settle().await;
        assert!(!c.is_finished());
        assert_eq!((gate.booting(), gate.waiting()), (2, 1));
        drop(a);
        let c = c.await.unwrap();
        assert_eq!((gate.booting(), gate.waiting()), (2, 0));
        drop((b, c));
        assert_eq!(gate.booting(), 0);
    }

    #[tokio::test]
    async fn waiters_are_served_in_order_and_told_where_they_stand() {
        let gate = BootGate::new(1);
        let first = gate.enter(|_| {}).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..4 {
            let (g, order) = (gate.clone(), order.clone());
            let reports = Arc::new(Mutex::new(Vec::new()));
            let r = reports.clone();
            tasks.push((
                tokio::spawn(async move {
                    let slot = g.enter(|w| r.lock().unwrap().push(w)).await;
                    order.lock().unwrap().push(i);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    drop(slot);
                }),
                reports,
            ));
            // Each in line before the next comes.
            settle().await;
        }
        drop(first);
        for (t, _) in &mut tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3]);
        // The last one saw the line shorten in front of it.
        let w = |ahead| Waiting { ahead, booting: 1 };
        assert_eq!(*tasks[3].1.lock().unwrap(), vec![w(3), w(2), w(1), w(0)]);
        assert_eq!(*tasks[0].1.lock().unwrap(), vec![w(0)]);
        assert_eq!(gate.booting(), 0);
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_leaves_the_line() {
        let gate = BootGate::new(1);
        let held = gate.enter(|_| {}).await;
        let g = gate.clone();
        let quitter = tokio::spawn(async move { g.enter(|_| {}).await });
        settle().await;
        let reports = Arc::new(Mutex::new(Vec::new()));
        let (g, r) = (gate.clone(), reports.clone());
        let patient = tokio::spawn(async move { g.enter(|w| r.lock().unwrap().push(w)).await });
        settle().await;
        assert_eq!(gate.waiting(), 2);
        quitter.abort();
        settle().await;
        assert_eq!(gate.waiting(), 1);
        drop(held);
        let slot = patient.await.unwrap();
        let w = |ahead| Waiting { ahead, booting: 1 };
        assert_eq!(*reports.lock().unwrap(), vec![w(1), w(0)]);
        drop(slot);
        assert_eq!((gate.booting(), gate.waiting()), (0, 0));
    }

    #[tokio::test]
    async fn a_slot_handed_to_a_waiter_that_just_gave_up_goes_on() {
        let gate = BootGate::new(1);
        let held = gate.enter(|_| {}).await;
        // Polled once (in line), then dropped after the slot was handed
        // to it but before it woke.
        let g = gate.clone();
        let mut quitter = Box::pin(async move { g.enter(|_| {}).await });
        tokio::select! {
            biased;
            _ = &mut quitter => panic!("all slots are held"),
            () = std::future::ready(()) => {}
        }
        let g = gate.clone();
        let next = tokio::spawn(async move { g.enter(|_| {}).await });
        settle().await;
        drop(held);
        assert_eq!((gate.booting(), gate.waiting()), (1, 1));
        drop(quitter);
        let slot = tokio::time::timeout(Duration::from_secs(5), next)
            .await
            .expect("the next waiter got the slot")
            .unwrap();
        drop(slot);
        assert_eq!((gate.booting(), gate.waiting()), (0, 0));
    }

    #[tokio::test]
    async fn never_more_than_the_bound_at_once() {
        let gate = BootGate::new(3);
        let now = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (g, now, most) = (gate.clone(), now.clone(), most.clone());
                tokio::spawn(async move {
                    use std::sync::atomic::Ordering::SeqCst;
                    let _slot = g.enter(|_| {}).await;
                    let n = now.fetch_add(1, SeqCst) + 1;
                    most.fetch_max(n, SeqCst);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    now.fetch_sub(1, SeqCst);
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(most.load(std::sync::atomic::Ordering::SeqCst), 3);
        assert_eq!(gate.booting(), 0);
    }
}
