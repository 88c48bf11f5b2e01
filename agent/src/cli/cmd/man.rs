//! `devhost __man DIR` (the package's build runs it; not among the
//! definitions, so no page or completion names it): manual pages generated
//! from the command-line definitions (clap_mangen) — `devhost.1` and one
//! `devhost-VERB.1` per subcommand — written into DIR.

use crate::cli::devhost::Cli;
use clap::CommandFactory;
use std::path::Path;

/// The verb, as the first argument.
pub const VERB: &str = "__man";

/// Write the pages into `dir` (made if missing); their file names.
pub fn write(dir: &Path) -> std::io::Result<Vec<String>> {
    std::fs::create_dir_all(dir)?;
    // Subcommands' pages are named `devhost-VERB.1`, hidden ones have none.
    clap_mangen::generate_to(Cli::command(), dir)?;
    let mut written: Vec<String> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|f| f.starts_with("devhost") && f.ends_with(".1"))
        .collect();
    written.sort();
    Ok(written)
}

pub fn run(dir: &Path) -> i32 {
    match write(dir) {
        Ok(files) => {
            for f in files {
                println!("{}", dir.join(f).display());
            }
            crate::cli::EXIT_OK
        }
        Err(e) => {
            eprintln!("error: writing manual pages into {}: {e}", dir.display());
            crate::cli::EXIT_FAILED
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_page_for_devhost_and_each_verb() {
        let d = tempfile::tempdir().unwrap();
        let files = super::write(d.path()).unwrap();
        for f in [
            "devhost.1",
            "devhost-exec.1",
            "devhost-logs.1",
            "devhost-shell.1",
        ] {
            assert!(files.contains(&f.to_string()), "{f} in {files:?}");
        }
        assert!(
            !files.iter().any(|f| f.contains("__man")),
            "hidden verbs have none"
        );
        let exec = std::fs::read_to_string(d.path().join("devhost-exec.1")).unwrap();
        assert!(
            exec.starts_with(".ie"),
            "roff: {}",
            &exec[..40.min(exec.len())]
        );
        assert!(exec.contains("devhost\\-exec"), "{exec}");
    }
}
