//! `devhost completions bash|zsh|fish`: the shell's completion script,
//! generated from the command-line definitions (clap_complete), so it
//! knows every subcommand and option of this very binary.

use crate::cli::devhost::Cli;
use clap::CommandFactory;

/// The shells a script is made for.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

impl From<CompletionShell> for clap_complete::Shell {
    fn from(s: CompletionShell) -> clap_complete::Shell {
        match s {
            CompletionShell::Bash => clap_complete::Shell::Bash,
            CompletionShell::Zsh => clap_complete::Shell::Zsh,
            CompletionShell::Fish => clap_complete::Shell::Fish,
        }
    }
}

/// The script for `shell`.
pub fn script(shell: CompletionShell) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(
        clap_complete::Shell::from(shell),
        &mut Cli::command(),
        "devhost",
        &mut out,
    );
    out
}

pub fn run(shell: CompletionShell) -> i32 {
    use std::io::Write;
    match std::io::stdout().write_all(&script(shell)) {
        Ok(()) => crate::cli::EXIT_OK,
        Err(e) => {
            eprintln!("error: writing the script: {e}");
            crate::cli::EXIT_FAILED
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_names_the_subcommands() {
        for shell in [
            CompletionShell::Bash,
            CompletionShell::Zsh,
            CompletionShell::Fish,
        ] {
            let s = String::from_utf8(script(shell)).unwrap();
            for verb in ["shell", "exec", "logs", "ensure", "completions"] {
                assert!(s.contains(verb), "{shell:?} knows {verb}");
            }
            assert!(!s.contains("__man"), "{shell:?}: hidden verbs stay hidden");
        }
    }
}
