//! The syntax tree: statements of unexpanded words, each with its position.

/// A piece of a word: literal text, or a variable to expand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Lit(String),
    /// `$NAME` or `${NAME}`; `col` is where the `$` stands.
    Var {
        name: String,
        col: usize,
    },
}

/// One shell word (quotes removed), with the column it starts at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    pub col: usize,
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Copy { local: Word, remote: Word },
    Run { words: Vec<Word> },
    Echo { expression: Word, remote: Word },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// 1-based line where the statement starts.
    pub line: usize,
    pub command: Command,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    pub file: String,
    pub statements: Vec<Statement>,
}
