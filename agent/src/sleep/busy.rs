//! What keeps a container awake, as it happens: every source of activity
//! holds a [`BusyGuard`] for as long as it lasts (a proxied request until
//! its answer's body ended, an upgraded connection such as a websocket
//! until it closed, a shell or `exec` session, a provisioning run) or
//! [`Busy::touch`]es the container once (a start). Per container there is
//! one open count and the last moment anything began or ended.
//!
//! A request costs a shared read lock and a few atomic operations (the
//! write lock only for a container's first). The open count also carries
//! the container's "asleep" mark, so that putting it to sleep and a
//! request arriving cannot both win: [`Busy::try_sleep`] marks it only
//! while nothing is open and nothing happened since the idle moment it
//! decided on, and from then on [`Busy::enter`] is refused (the proxy
//! wakes the container instead) until [`Busy::wake`].

use crate::clock::Clock;
use crate::container::ContainerName;
use crate::shared::Shared;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

/// The mark in the open count: asleep, or falling asleep.
const ASLEEP: u64 = 1 << 63;

#[derive(Debug, Default)]
struct Entry {
    /// Open guards, and [`ASLEEP`].
    open: AtomicU64,
    /// The last activity, unix seconds (0: none seen).
    last: AtomicI64,
}

/// The registry: one per agent, shared by the edge, the API and the
/// supervisor.
#[derive(Debug)]
pub struct Busy {
    clock: Clock,
    /// No activity is known from before this (the agent's start).
    since: DateTime<Utc>,
    entries: Shared<HashMap<ContainerName, Arc<Entry>>>,
}

/// Activity under way; it ends (and is dated) when this is dropped.
#[derive(Debug)]
pub struct BusyGuard {
    entry: Arc<Entry>,
    clock: Clock,
}

/// [`Busy::enter`] refused: the container is asleep or falling asleep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("asleep")]
pub struct Asleep;

/// What the registry knows of one container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// Guards held now.
    pub open: u64,
    /// The last activity, or the agent's start when none was seen since.
    pub last: DateTime<Utc>,
    /// Marked asleep (or falling asleep).
    pub asleep: bool,
}

fn secs(t: DateTime<Utc>) -> i64 {
    t.timestamp()
}

impl Busy {
    /// A registry that knows nothing before `clock`'s now.
    pub fn new(clock: Clock) -> Busy {
        Busy {
            since: clock.now(),
            clock,
            entries: Shared::default(),
        }
    }

    fn entry(&self, name: &ContainerName) -> Arc<Entry> {
        if let Some(e) = self.entries.read().get(name) {
            return e.clone();
        }
        self.entries
            .write()
            .entry(name.clone())
            .or_default()
            .clone()
    }

    /// Activity begins; it lasts until the guard is dropped. Refused while
    /// the container is marked asleep.
    pub fn enter(&self, name: &ContainerName) -> Result<BusyGuard, Asleep> {
        let entry = self.entry(name);
        let before = entry.open.fetch_add(1, Ordering::SeqCst);
        if before & ASLEEP != 0 {
            entry.open.fetch_sub(1, Ordering::SeqCst);
            return Err(Asleep);
        }
        entry
            .last
            .fetch_max(secs(self.clock.now()), Ordering::SeqCst);
        Ok(BusyGuard {
            entry,
            clock: self.clock.clone(),
        })
    }

    /// Activity now that does not last (a start, a wake).
    pub fn touch(&self, name: &ContainerName) {
        self.entry(name)
            .last
            .fetch_max(secs(self.clock.now()), Ordering::SeqCst);
    }

    /// What is known of `name`.
    pub fn seen(&self, name: &ContainerName) -> Seen {
        let Some(e) = self.entries.read().get(name).cloned() else {
            return Seen {
                open: 0,
                last: self.since,
                asleep: false,
            };
        };
        let open = e.open.load(Ordering::SeqCst);
        let last = DateTime::from_timestamp(e.last.load(Ordering::SeqCst), 0)
            .unwrap_or(self.since)
            .max(self.since);
        Seen {
            open: open & !ASLEEP,
            last,
            asleep: open & ASLEEP != 0,
        }
    }

    /// Mark `name` asleep if nothing is open and nothing happened after
    /// `idle_since` (the moment the decision counted from); `false` when
    /// activity came in between (nothing is marked then).
    pub fn try_sleep(&self, name: &ContainerName, idle_since: DateTime<Utc>) -> bool {
        let entry = self.entry(name);
        if entry
            .open
            .compare_exchange(0, ASLEEP, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return false;
        }
        // A guard dropped just before the mark dated its end first.
        if entry.last.load(Ordering::SeqCst) > secs(idle_since) {
            entry.open.fetch_and(!ASLEEP, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// Clear the mark: the container is awake (or will not sleep after all).
    pub fn wake(&self, name: &ContainerName) {
        self.entry(name).open.fetch_and(!ASLEEP, Ordering::SeqCst);
    }

    /// Forget containers that no longer exist.
    pub fn retain(&self, keep: impl Fn(&ContainerName) -> bool) {
        self.entries.write().retain(|n, _| keep(n));
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        // Dated before it stops counting: a sleep decided in between sees it.
        self.entry
            .last
            .fetch_max(secs(self.clock.now()), Ordering::SeqCst);
        self.entry.open.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn name(n: &str) -> ContainerName {
        n.parse().unwrap()
    }

    fn setup() -> (Clock, Busy, ContainerName) {
        let clock = Clock::manual(at("2026-01-31T03:00:00Z"));
        (clock.clone(), Busy::new(clock), name("web01"))
    }

    #[test]
    fn nothing_seen_counts_from_the_agents_start() {
        let (_, busy, web) = setup();
        assert_eq!(
            busy.seen(&web),
            Seen {
                open: 0,
                last: at("2026-01-31T03:00:00Z"),
                asleep: false
            }
        );
    }

    #[test]
    fn a_guard_counts_while_held_and_dates_its_end() {
        let (clock, busy, web) = setup();
        clock.advance(TimeDelta::seconds(10));
        let g = busy.enter(&web).unwrap();
        let g2 = busy.enter(&web).unwrap();
        clock.advance(TimeDelta::seconds(50));
        assert_eq!(busy.seen(&web).open, 2);
        assert_eq!(busy.seen(&web).last, at("2026-01-31T03:00:10Z"));
        drop(g);
        drop(g2);
        assert_eq!(
            busy.seen(&web),
            Seen {
                open: 0,
                last: at("2026-01-31T03:01:00Z"),
                asleep: false
            }
        );
        assert_eq!(busy.seen(&name("other")).open, 0, "per container");
    }

    #[test]
    fn sleep_is_refused_while_open_or_after_newer_activity() {
        let (clock, busy, web) = setup();
        let idle_since = clock.now();
        let g = busy.enter(&web).unwrap();
        assert!(!busy.try_sleep(&web, idle_since), "open");
        clock.advance(TimeDelta::seconds(5));
        drop(g);
        assert!(!busy.try_sleep(&web, idle_since), "ended after idle_since");
        assert!(!busy.seen(&web).asleep, "no mark left behind");
        assert!(busy.enter(&web).is_ok());
    }

    #[test]
    fn once_asleep_entering_is_refused_until_woken() {
        let (clock, busy, web) = setup();
        busy.touch(&web);
        assert!(busy.try_sleep(&web, clock.now()));
        assert!(busy.seen(&web).asleep);
        assert_eq!(busy.enter(&web).unwrap_err(), Asleep);
        assert_eq!(busy.seen(&web).open, 0, "a refused entry does not count");
        busy.wake(&web);
        let g = busy.enter(&web).unwrap();
        assert_eq!(busy.seen(&web).open, 1);
        drop(g);
    }

    #[test]
    fn requests_racing_a_sleep_either_enter_first_or_are_refused() {
        let clock = Clock::system();
        let busy = Arc::new(Busy::new(clock.clone()));
        let web = name("web01");
        // Decided idle as of a moment in the future: only open guards stop it.
        let idle_since = clock.now() + TimeDelta::days(1);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (busy, web) = (busy.clone(), web.clone());
                std::thread::spawn(move || {
                    let mut entered = 0;
                    for _ in 0..10_000 {
                        if let Ok(g) = busy.enter(&web) {
                            entered += 1;
                            // While held, the container is never marked.
                            assert!(!busy.seen(&web).asleep);
                            drop(g);
                        }
                    }
                    entered
                })
            })
            .collect();
        let mut slept = false;
        while !slept {
            slept = busy.try_sleep(&web, idle_since);
        }
        for t in threads {
            t.join().unwrap();
        }
        assert!(busy.seen(&web).asleep);
        assert_eq!(busy.seen(&web).open, 0);
    }
}
