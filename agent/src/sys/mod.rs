//! The only place for raw system calls: crash-safe file writes, writes into
//! untrusted container roots, tree removal that stays on one filesystem, and
//! process inspection through /proc.

pub mod fs;
pub mod proc;
