//! Waiting for something to happen: one poll loop for every test.

use std::fmt::Display;
use std::time::{Duration, Instant};

/// How often a condition is checked.
const INTERVAL: Duration = Duration::from_millis(50);

/// Until when to wait: a timeout from now, or a deadline.
pub trait Limit {
    fn deadline(self) -> Instant;
}

impl Limit for Duration {
    fn deadline(self) -> Instant {
        Instant::now() + self
    }
}

impl Limit for Instant {
    fn deadline(self) -> Instant {
        self
    }
}

/// What a condition says: `true`, `Some(value)` or `Ok(value)` when it
/// holds; `false`, `None` or `Err(what is seen instead)` while it does not.
pub trait Outcome {
    type Value;
    fn into_result(self) -> Result<Self::Value, String>;
}

impl Outcome for bool {
    type Value = ();
    fn into_result(self) -> Result<(), String> {
        if self {
            Ok(())
        } else {
            Err("not yet".into())
        }
    }
}

impl<T> Outcome for Option<T> {
    type Value = T;
    fn into_result(self) -> Result<T, String> {
        self.ok_or_else(|| "not yet".into())
    }
}

impl<T, E: Display> Outcome for Result<T, E> {
    type Value = T;
    fn into_result(self) -> Result<T, String> {
        self.map_err(|e| e.to_string())
    }
}

/// Check `condition` every 50 ms until it holds or `limit` has passed:
/// its value, or what it said last.
pub fn poll_until<O: Outcome>(
    limit: impl Limit,
    mut condition: impl FnMut() -> O,
) -> Result<O::Value, String> {
    let deadline = limit.deadline();
    loop {
        let last = match condition().into_result() {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(last);
        }
        std::thread::sleep(INTERVAL.min(deadline - now));
    }
}

/// [`poll_until`], panicking on time-out with `what` was waited for and
/// what the condition said last.
#[track_caller]
pub fn wait_until<O: Outcome>(
    limit: impl Limit,
    what: impl Display,
    condition: impl FnMut() -> O,
) -> O::Value {
    let start = Instant::now();
    match poll_until(limit, condition) {
        Ok(v) => v,
        Err(last) => panic!(
            "timed out after {:.1?} waiting until {what}; last seen: {last}",
            start.elapsed()
        ),
    }
}
