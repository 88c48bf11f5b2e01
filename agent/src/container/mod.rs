//! What a container is, independent of how it is run: validated names and the
//! persistent record.

pub mod limits;
pub mod names;
#[cfg(test)]
mod proptests;
pub mod record;
pub mod upstream;

pub use limits::Limits;
pub use names::{Alias, ChannelUrl, ContainerName, NameError};
pub use record::{Addresses, Phase, Record};
pub use upstream::{Scheme, Upstream, Upstreams};
