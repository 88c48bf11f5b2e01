//! Statements from logical lines: the first word must be a literal `COPY`,
//! `RUN` or `ECHO`, with the number of arguments each takes.

use crate::ast::{Command, Part, Script, Statement, Word};
use crate::error::{ParseError, ALLOWED};
use crate::lexer::lines;

/// Parse a script named `provision.sh`.
pub fn parse(src: &str) -> Result<Script, ParseError> {
    parse_file("provision.sh", src)
}

/// Parse a script; `file` names it in errors.
pub fn parse_file(file: &str, src: &str) -> Result<Script, ParseError> {
    let mut statements = Vec::new();
    for l in lines(file, src)? {
        let err = |col: usize, message: String| ParseError {
            file: file.to_string(),
            line: l.line,
            col,
            message,
        };
        let first = &l.words[0];
        let keyword = match first.parts.as_slice() {
            [Part::Lit(k)] => k.as_str(),
            _ => "",
        };
        let args = &l.words[1..];
        let arity = |n: usize, usage: &str| -> Result<(), ParseError> {
            if args.len() == n {
                Ok(())
            } else {
                let at = args.get(n).map(|w| w.col).unwrap_or(first.col);
                Err(err(
                    at,
                    format!("{keyword} takes {n} arguments, not {}: {usage}", args.len()),
                ))
            }
        };
        let command = match keyword {
            "COPY" => {
                arity(2, "COPY <local path> <remote path>")?;
                Command::Copy {
                    local: args[0].clone(),
                    remote: args[1].clone(),
                }
            }
            "ECHO" => {
                arity(2, "ECHO <expression> <remote path>")?;
                Command::Echo {
                    expression: args[0].clone(),
                    remote: args[1].clone(),
                }
            }
            "RUN" => {
                if args.is_empty() {
                    return Err(err(first.col, "RUN needs a command: RUN <command…>".into()));
                }
                Command::Run {
                    words: args.to_vec(),
                }
            }
            _ => {
                let shown = describe(first);
                return Err(err(
                    first.col,
                    format!("{shown} is not allowed here; {ALLOWED}"),
                ));
            }
        };
        statements.push(Statement {
            line: l.line,
            command,
        });
    }
    Ok(Script {
        file: file.to_string(),
        statements,
    })
}

fn describe(w: &Word) -> String {
    let text: String = w
        .parts
        .iter()
        .map(|p| match p {
            Part::Lit(s) => s.clone(),
            Part::Var { name, .. } => format!("${name}"),
        })
        .collect();
    format!("{text:?}")
}
