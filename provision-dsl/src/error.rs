//! Errors, each naming file, line and column, and saying what is allowed.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{col}: {message}")]
pub struct ParseError {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{col}: {message}")]
pub struct ExpandError {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// What every "not allowed" message ends with.
pub const ALLOWED: &str = "a provisioning script may contain only COPY <local> <remote>, RUN <command…>, ECHO <expression> <remote path>, comments and blank lines";
