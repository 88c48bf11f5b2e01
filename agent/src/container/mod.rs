//! What a container is, independent of how it is run: validated names and the
//! persistent record.

pub mod names;
pub mod record;

pub use names::{Alias, ChannelUrl, ContainerName, NameError};
pub use record::{Addresses, Phase, Record};
