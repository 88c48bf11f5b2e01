//! From statements to steps: variables expanded from a given environment
//! (an undefined variable is an error, never an empty string), then paths
//! checked — remote paths absolute and without `..`, local paths relative to
//! the environment directory and never leaving it.

use crate::ast::{Command, Part, Script, Word};
use crate::error::ExpandError;
use std::collections::BTreeMap;

/// What a step does, with every word expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Copy a file or tree from the environment directory into the
    /// container. `local` is normalized and relative; a trailing `/` (copy
    /// the directory's contents) is kept, as rsync reads it.
    Copy { local: String, remote: String },
    /// Run `command` with a shell inside the container (the words joined by
    /// blanks, as batou's `RUN() { ssh … "$*"; }` does).
    Run { command: String },
    /// Write `content` (the expression and a newline, as `echo` writes it)
    /// to `remote` inside the container.
    Echo { content: String, remote: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub file: String,
    pub line: usize,
    pub action: Action,
}

impl Step {
    /// `provision.sh:12` — where the step comes from.
    pub fn location(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

impl Script {
    /// Expand every statement with `env` and check its paths.
    pub fn expand(&self, env: &BTreeMap<String, String>) -> Result<Vec<Step>, ExpandError> {
        let mut steps = Vec::new();
        for st in &self.statements {
            let err = |col: usize, message: String| ExpandError {
                file: self.file.clone(),
                line: st.line,
                col,
                message,
            };
            let word = |w: &Word| -> Result<String, ExpandError> {
                let mut s = String::new();
                for p in &w.parts {
                    match p {
                        Part::Lit(l) => s.push_str(l),
                        Part::Var { name, col } => match env.get(name) {
                            Some(v) => s.push_str(v),
                            None => {
                                return Err(err(*col, format!("${name} is not defined (an undefined variable is an error, not an empty string)")))
                            }
                        },
                    }
                }
                Ok(s)
            };
            let remote_path = |w: &Word| -> Result<String, ExpandError> {
                let p = word(w)?;
                if !p.starts_with('/') {
                    return Err(err(
                        w.col,
                        format!("remote path {p:?} must be absolute (start with /)"),
                    ));
                }
                if p.split('/').any(|c| c == "..") || p.contains('\0') {
                    return Err(err(
                        w.col,
                        format!("remote path {p:?} must not contain '..'"),
                    ));
                }
                Ok(p)
            };
            let action = match &st.command {
                Command::Copy { local, remote } => {
                    let l = word(local)?;
                    let local = normalize_local(&l)
                        .map_err(|why| err(local.col, format!("local path {l:?} {why}")))?;
                    Action::Copy {
                        local,
                        remote: remote_path(remote)?,
                    }
                }
                Command::Run { words } => {
                    let parts: Result<Vec<String>, ExpandError> = words.iter().map(word).collect();
                    Action::Run {
                        command: parts?.join(" "),
                    }
                }
                Command::Echo { expression, remote } => Action::Echo {
                    content: format!("{}\n", word(expression)?),
                    remote: remote_path(remote)?,
                },
            };
            steps.push(Step {
                file: self.file.clone(),
                line: st.line,
                action,
            });
        }
        Ok(steps)
    }
}

/// A relative path that stays inside its base directory, normalized
/// (`./a//b/../c/` → `a/c/`).
fn normalize_local(p: &str) -> Result<String, &'static str> {
    if p.is_empty() {
        return Err("is empty");
    }
    if p.starts_with('/') {
        return Err("must be relative to the environment directory");
    }
    if p.contains('\0') {
        return Err("contains a NUL byte");
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err("leaves the environment directory");
                }
            }
            c => parts.push(c),
        }
    }
    let mut out = if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    };
    if p.ends_with('/') && out != "." {
        out.push('/');
    } else if p.ends_with('/') {
        out = "./".to_string();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::normalize_local;

    #[test]
    fn local_paths() {
        assert_eq!(normalize_local("a/b"), Ok("a/b".into()));
        assert_eq!(normalize_local("./a//b/../c/"), Ok("a/c/".into()));
        assert_eq!(normalize_local("."), Ok(".".into()));
        assert_eq!(normalize_local("./"), Ok("./".into()));
        assert_eq!(
            normalize_local("a/../.."),
            Err("leaves the environment directory")
        );
        assert_eq!(
            normalize_local("/etc"),
            Err("must be relative to the environment directory")
        );
        assert_eq!(normalize_local(""), Err("is empty"));
    }
}
