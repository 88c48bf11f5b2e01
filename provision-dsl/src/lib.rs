//! The provisioning language of devhost: the `provision.sh` files batou ≤ 2.5.4
//! runs, restricted to what they may contain — `COPY <local> <remote>`,
//! `RUN <command…>`, `ECHO <expression> <remote path>`, comments, blank lines
//! and line continuations, with POSIX-sh word quoting and `$VAR`/`${VAR}`
//! expansion. This crate does no I/O:
//!
//! - [`parse`] turns text into a [`Script`] of unexpanded words;
//! - [`Script::expand`] substitutes variables from an environment (undefined
//!   ones are errors) and checks paths, giving [`Step`]s;
//! - [`execute`] drives an [`Executor`] (implemented by the agent) through them.
//!
//! Every error names the file, line and column and says what is allowed.

mod ast;
mod error;
mod exec;
mod expand;
mod lexer;
mod parser;
#[cfg(test)]
mod proptests;

pub use ast::{Command, Part, Script, Statement, Word};
pub use error::{ExpandError, ParseError};
pub use exec::{execute, Executor, StepError};
pub use expand::{Action, Step};
pub use parser::{parse, parse_file};
