//! Scale to zero: a running container that nobody used for its `sleep
//! after` period is stopped ("asleep") with its record, address, routes,
//! DNS names and certificate kept, and the first request through the proxy
//! starts it again. What this module holds is pure or nearly so:
//!
//! - [`SleepAfter`]: the setting (per container, or the host's default) as
//!   written (`off`, `default`, `30m`, `2h`, `1d`) and as used;
//! - [`busy`]: the activity every source reports (proxied requests and the
//!   connections they hold open, websockets included, shells and `exec`
//!   sessions, provisioning runs, starts): an open count and the last
//!   moment per container, cheap (a read lock and atomics), and the one
//!   place where "falls asleep now" and "a request arrives now" meet;
//! - [`idle`]: the decision "idle long enough?" as a pure function of a
//!   snapshot of that activity, the setting and a moment;
//! - [`ssh`]: SSH sessions into a container (established TCP connections
//!   to its port 22, read from `/proc/PID/net/tcp{,6}` of a process in its
//!   network namespace), parsed purely.
//!
//! The supervisor applies the decision (`supervisor/sleep.rs`: the sweep,
//! the fall-asleep and wake jobs); the edge wakes on request
//! (`edge/wake.rs`).

pub mod busy;
pub mod idle;
mod setting;
pub mod ssh;

pub use busy::{Busy, BusyGuard};
pub use idle::{decide, Snapshot, Verdict};
pub use setting::{SleepAfter, SleepAfterError};
