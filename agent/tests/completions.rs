//! `devhost completions bash|zsh|fish` and the manual pages of `devhost
//! __man DIR`, as a shell and `man` take them: the bash script loads into a
//! real bash and completes subcommands and options; every page parses in
//! groff (with preconv, as man runs it) without a warning and renders with
//! `man -l`.

mod common;

use common::*;
use std::process::Command;

/// What bash completes for the words `line` (the last one being typed),
/// with `devhost completions bash` loaded into a fresh bash.
fn bash_completes(line: &[&str]) -> Vec<String> {
    let words = line
        .iter()
        .map(|w| format!("'{w}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let script = format!(
        r#"set -e
source <("{DEVHOST}" completions bash)
spec=$(complete -p devhost)
fn=$(printf '%s\n' "$spec" | sed -E 's/.* -F ([^ ]+) .*/\1/')
COMP_WORDS=({words})
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
COMP_LINE="${{COMP_WORDS[*]}}"
COMP_POINT=${{#COMP_LINE}}
"$fn" devhost "${{COMP_WORDS[$COMP_CWORD]}}" "${{COMP_WORDS[$COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}"
"#
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &script])
        .output()
        .expect("bash");
    assert_ok(&out, "the completion script in bash");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn bash_completes_subcommands_and_options() {
    assert_eq!(bash_completes(&["devhost", "sh"]), ["shell"]);
    assert_eq!(bash_completes(&["devhost", "ex"]), ["exec", "extend"]);
    assert_eq!(bash_completes(&["devhost", "logs", "--fo"]), ["--follow"]);
    assert_eq!(
        bash_completes(&["devhost", "completions", "z"]),
        ["zsh"],
        "the shells it makes scripts for"
    );
}

#[test]
fn scripts_for_zsh_and_fish_name_the_subcommands() {
    for shell in ["zsh", "fish"] {
        let out = Command::new(DEVHOST)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert_ok(&out, shell);
        let s = String::from_utf8_lossy(&out.stdout);
        assert!(s.contains("exec") && s.contains("--follow"), "{shell}: {s}");
    }
    let out = Command::new(DEVHOST)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn manual_pages_render() {
    for prog in ["man", "groff"] {
        assert!(
            Command::new("sh")
                .args(["-c", &format!("command -v {prog}")])
                .output()
                .is_ok_and(|o| o.status.success()),
            "{prog} is needed (scripts/install-deps installs it)"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(DEVHOST)
        .args(["__man", dir.path().to_str().unwrap()])
        .env_remove("SUDO_UID")
        .output()
        .unwrap();
    assert_ok(&out, "devhost __man");
    let mut pages: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    for p in [
        "devhost.1",
        "devhost-exec.1",
        "devhost-logs.1",
        "devhost-completions.1",
    ] {
        assert!(pages.contains(&p.to_string()), "{p} in {pages:?}");
    }
    for p in &pages {
        let path = dir.path().join(p);
        let groff = Command::new("groff")
            .args(["-k", "-man", "-Tutf8", "-ww", "-z"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            groff.status.success() && groff.stderr.is_empty(),
            "{p}: {}",
            text(&groff)
        );
    }
    let man = Command::new("man")
        .args(["-l", "-P", "cat"])
        .arg(dir.path().join("devhost-exec.1"))
        .env("MANWIDTH", "100")
        .output()
        .unwrap();
    assert_ok(&man, "man -l devhost-exec.1");
    // Justified: the words with one space between them.
    let shown = String::from_utf8_lossy(&man.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        shown.contains("SYNOPSIS devhost exec")
            && shown.contains("The exit status is the command's (128 + N when signal N ended it"),
        "{shown}"
    );
}

#[test]
fn manual_pages_under_sudo_are_written_as_the_user_who_ran_it() {
    let Some(()) = prerequisites("manual_pages_under_sudo_are_written_as_the_user_who_ran_it")
    else {
        return;
    };
    // A directory only root may write to: under sudo, `devhost __man`
    // writes as the user who ran sudo, so not there.
    let dir = tempfile::tempdir().unwrap();
    let pages = dir.path().join("man1");
    std::fs::create_dir(&pages).unwrap();
    let out = Command::new(DEVHOST)
        .args(["__man", pages.to_str().unwrap()])
        .env("SUDO_UID", ALICE.to_string())
        .env("SUDO_GID", users_gid().to_string())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("Permission denied"), "{}", text(&out));
    assert_eq!(
        std::fs::read_dir(&pages).unwrap().count(),
        0,
        "nothing written"
    );
}
