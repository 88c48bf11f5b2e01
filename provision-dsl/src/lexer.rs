//! Splitting a script into logical lines of words, by the POSIX sh rules the
//! language keeps: blanks separate words; `'…'` is literal; `"…"` is literal
//! but for `$VAR`/`${VAR}` and backslash before `$ \` " \\` and newline; a
//! backslash outside quotes escapes the next character, and before a newline
//! continues the line; `#` at the start of a word begins a comment. What sh
//! would treat as an operator, a substitution or a special parameter is an
//! error, not silently something else.

use crate::ast::{Part, Word};
use crate::error::ParseError;

pub struct Line {
    pub line: usize,
    pub words: Vec<Word>,
}

struct Lexer<'a> {
    file: &'a str,
    chars: Vec<char>,
    pos: usize,
    line: usize,
    col: usize,
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

impl<'a> Lexer<'a> {
    fn err(&self, line: usize, col: usize, message: impl Into<String>) -> ParseError {
        ParseError {
            file: self.file.to_string(),
            line,
            col,
            message: message.into(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek2(&self) -> Option<char> {
        self.chars.get(self.pos + 1).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.get(self.pos).copied()?;
        self.pos += 1;
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    /// After a `$` (already consumed at `col`): a variable, or a literal `$`.
    fn dollar(
        &mut self,
        line: usize,
        col: usize,
        parts: &mut Vec<Part>,
        lit: &mut String,
    ) -> Result<(), ParseError> {
        match self.peek() {
            Some('{') => {
                self.bump();
                let mut name = String::new();
                loop {
                    match self.bump() {
                        Some('}') => break,
                        Some('\n') | None => return Err(self.err(line, col, "unterminated ${ (missing })")),
                        Some(c) if is_name(c) => name.push(c),
                        Some(_) => {
                            return Err(self.err(line, col, "only ${NAME} is allowed inside braces (no parameter operators like ${NAME:-default})"))
                        }
                    }
                }
                if name.is_empty() || !is_name_start(name.chars().next().unwrap()) {
                    return Err(self.err(line, col, "only named variables ($NAME, ${NAME}) are allowed"));
                }
                flush(parts, lit);
                parts.push(Part::Var { name, col });
            }
            Some('(') => return Err(self.err(line, col, "command substitution $(…) is not allowed; use RUN to run commands in the container")),
            Some(c) if is_name_start(c) => {
                let mut name = String::new();
                while let Some(c) = self.peek().filter(|c| is_name(*c)) {
                    name.push(c);
                    self.bump();
                }
                flush(parts, lit);
                parts.push(Part::Var { name, col });
            }
            Some(c) if c.is_ascii_digit() || "@*#?$!-".contains(c) => {
                return Err(self.err(line, col, format!("${c} is a special parameter; only named variables ($NAME, ${{NAME}}) are allowed")))
            }
            // A `$` before a blank, a quote or the end stays a `$`, as in sh.
            _ => lit.push('$'),
        }
        Ok(())
    }

    fn word(&mut self) -> Result<Word, ParseError> {
        let wcol = self.col;
        let mut parts = Vec::new();
        let mut lit = String::new();
        while let Some(c) = self.peek() {
            let (line, col) = (self.line, self.col);
            match c {
                ' ' | '\t' | '\n' => break,
                // CRLF line ends: the `\r` ends the word, as the `\n` would
                // (inside quotes it is kept as written).
                '\r' if self.peek2() == Some('\n') => break,
                '\'' => {
                    self.bump();
                    loop {
                        match self.bump() {
                            Some('\'') => break,
                            Some(c) => lit.push(c),
                            None => return Err(self.err(line, col, "unterminated single quote")),
                        }
                    }
                }
                '"' => {
                    self.bump();
                    loop {
                        let (l2, c2) = (self.line, self.col);
                        match self.bump() {
                            Some('"') => break,
                            Some('\\') => match self.peek() {
                                Some('\n') => {
                                    self.bump();
                                }
                                Some(e @ ('$' | '`' | '"' | '\\')) => {
                                    self.bump();
                                    lit.push(e);
                                }
                                _ => lit.push('\\'),
                            },
                            Some('$') => self.dollar(l2, c2, &mut parts, &mut lit)?,
                            Some('`') => return Err(self.err(l2, c2, "command substitution `…` is not allowed; use RUN to run commands in the container")),
                            Some(c) => lit.push(c),
                            None => return Err(self.err(line, col, "unterminated double quote")),
                        }
                    }
                }
                '\\' => {
                    self.bump();
                    if self.peek() == Some('\r') && self.peek2() == Some('\n') {
                        self.bump();
                    }
                    match self.bump() {
                        Some('\n') => {}
                        Some(e) => lit.push(e),
                        None => return Err(self.err(line, col, "a backslash at the end of the file continues nothing")),
                    }
                }
                '$' => {
                    self.bump();
                    self.dollar(line, col, &mut parts, &mut lit)?;
                }
                '`' => return Err(self.err(line, col, "command substitution `…` is not allowed; use RUN to run commands in the container")),
                ';' | '&' | '|' | '<' | '>' | '(' | ')' => {
                    return Err(self.err(
                        line,
                        col,
                        format!("`{c}` is a shell operator, which a provisioning script cannot use; to run it in the container, quote the whole command: RUN 'a {c} b'"),
                    ))
                }
                c => {
                    self.bump();
                    lit.push(c);
                }
            }
        }
        flush(&mut parts, &mut lit);
        Ok(Word { col: wcol, parts })
    }
}

fn flush(parts: &mut Vec<Part>, lit: &mut String) {
    if !lit.is_empty() {
        match parts.last_mut() {
            Some(Part::Lit(prev)) => prev.push_str(lit),
            _ => parts.push(Part::Lit(std::mem::take(lit))),
        }
        lit.clear();
    }
}

/// The logical lines of `src` that hold words (comments and blank lines gone).
pub fn lines(file: &str, src: &str) -> Result<Vec<Line>, ParseError> {
    let mut lx = Lexer {
        file,
        chars: src.chars().collect(),
        pos: 0,
        line: 1,
        col: 1,
    };
    let mut out: Vec<Line> = Vec::new();
    let mut current: Option<Line> = None;
    while let Some(c) = lx.peek() {
        match c {
            ' ' | '\t' | '\r' => {
                lx.bump();
            }
            '\n' => {
                lx.bump();
                if let Some(l) = current.take() {
                    out.push(l);
                }
            }
            '\\' if lx.peek2() == Some('\n') => {
                lx.bump();
                lx.bump();
            }
            '\\' if lx.peek2() == Some('\r') && lx.chars.get(lx.pos + 2) == Some(&'\n') => {
                lx.bump();
                lx.bump();
                lx.bump();
            }
            '#' => {
                while lx.peek().is_some_and(|c| c != '\n') {
                    lx.bump();
                }
            }
            _ => {
                let line = lx.line;
                let w = lx.word()?;
                current
                    .get_or_insert(Line {
                        line,
                        words: Vec::new(),
                    })
                    .words
                    .push(w);
            }
        }
    }
    if let Some(l) = current.take() {
        out.push(l);
    }
    Ok(out)
}
