//! Cleanup of unused containers: the old role's policy (stop and disable
//! after 7 days without a deploy, destroy after 30) with pins, extensions and
//! optional activity. The decision is the pure [`policy`]; the sweep runs in
//! the supervisor (each container through its own queue, like every other
//! operation); the timer that calls `devhost cleanup` daily is the NixOS
//! module's.

pub mod policy;

pub use policy::{deadlines, decide, Action, Deadlines, Decision, Policy, Usage};
