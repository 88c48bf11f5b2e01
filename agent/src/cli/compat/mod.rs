//! Front-ends compatible with the tools batou and operators already call
//! (see docs/batou.md and the compatibility contract).

pub mod fc_build_dev_container;
pub mod fc_devhost;
pub mod nixos_container;
