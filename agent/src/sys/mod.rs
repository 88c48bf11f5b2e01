//! The only place for raw system calls: crash-safe file writes, writes into
//! untrusted container roots, tree removal that stays on one filesystem,
//! process inspection through /proc, dropping to a user's credentials, and
//! entering a container's namespaces with its init's privilege.

pub mod fs;
pub mod identity;
pub mod listen;
pub mod ns;
pub mod proc;
pub mod quota;
