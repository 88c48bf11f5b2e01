//! The agent's API: HTTP/JSON over a Unix socket. Request and response types
//! are shared by the server and the CLI client; long operations answer with
//! a stream of newline-delimited JSON events.

pub mod client;
pub mod error;
pub mod exec;
pub mod frame;
#[cfg(test)]
mod proptests;
pub mod server;
pub mod shell;
pub mod types;
