//! Property tests of the language (run through `props::check`, so
//! `FUZZ_SECS` runs them for long): no input makes the lexer, the parser or
//! the expansion panic; what is accepted keeps the rules the crate
//! promises; and a script printed back as text (a small printer kept here:
//! the crate has none) parses to the same statements.

use crate::ast::{Command, Part, Script, Statement, Word};
use crate::parse;
use crate::Action;
use proptest::prelude::*;
use std::collections::BTreeMap;

/// Text that is mostly what the lexer cares about: keywords, quotes,
/// `$`, braces, backslashes, operators, comments, blanks and newlines.
fn shellish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("COPY ".to_string()),
        Just("RUN ".to_string()),
        Just("ECHO ".to_string()),
        Just("\n".to_string()),
        Just("\\\n".to_string()),
        Just("${".to_string()),
        "[a-zA-Z0-9_/.]{1,6}",
        "[ \t\r'\"$\\\\{}()`#;&|<>@*?!-]",
        any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

/// Any text: arbitrary Unicode, or the lexer's own alphabet.
fn script_text() -> impl Strategy<Value = String> {
    prop_oneof![props::any_text(), shellish()]
}

fn var_name() -> impl Strategy<Value = String> {
    "[A-Za-z_][A-Za-z0-9_]{0,6}"
}

/// A word as the lexer gives it: literal runs merged, none empty.
fn word() -> impl Strategy<Value = Vec<Part>> {
    let part = prop_oneof![
        prop_oneof![props::any_text(), "[a-z '\"$\\\\\n#;{}]{0,6}"].prop_map(Part::Lit),
        var_name().prop_map(|name| Part::Var { name, col: 0 }),
    ];
    prop::collection::vec(part, 0..4).prop_map(|parts| {
        let mut out: Vec<Part> = Vec::new();
        for p in parts {
            match (out.last_mut(), p) {
                (_, Part::Lit(l)) if l.is_empty() => {}
                (Some(Part::Lit(prev)), Part::Lit(l)) => prev.push_str(&l),
                (_, p) => out.push(p),
            }
        }
        out
    })
}

fn w(parts: Vec<Part>) -> Word {
    Word { col: 0, parts }
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        (word(), word()).prop_map(|(l, r)| Command::Copy {
            local: w(l),
            remote: w(r)
        }),
        prop::collection::vec(word(), 1..4).prop_map(|ws| Command::Run {
            words: ws.into_iter().map(w).collect()
        }),
        (word(), word()).prop_map(|(e, r)| Command::Echo {
            expression: w(e),
            remote: w(r)
        }),
    ]
}

/// Single quotes keep everything but `'`, which is closed, escaped and
/// reopened; variables in braces, so no following text extends the name.
fn print_word(w: &Word) -> String {
    if w.parts.is_empty() {
        return "''".into();
    }
    w.parts
        .iter()
        .map(|p| match p {
            Part::Lit(l) => format!("'{}'", l.replace('\'', r"'\''")),
            Part::Var { name, .. } => format!("${{{name}}}"),
        })
        .collect()
}

fn print(statements: &[Command]) -> String {
    let mut out = String::new();
    for c in statements {
        let (keyword, words): (&str, Vec<&Word>) = match c {
            Command::Copy { local, remote } => ("COPY", vec![local, remote]),
            Command::Run { words } => ("RUN", words.iter().collect()),
            Command::Echo { expression, remote } => ("ECHO", vec![expression, remote]),
        };
        out.push_str(keyword);
        for w in words {
            out.push(' ');
            out.push_str(&print_word(w));
        }
        out.push('\n');
    }
    out
}

/// A command without positions (columns of words and variables).
fn unplaced(c: &Command) -> Command {
    let w = |w: &Word| Word {
        col: 0,
        parts: w
            .parts
            .iter()
            .map(|p| match p {
                Part::Var { name, .. } => Part::Var {
                    name: name.clone(),
                    col: 0,
                },
                lit => lit.clone(),
            })
            .collect(),
    };
    match c {
        Command::Copy { local, remote } => Command::Copy {
            local: w(local),
            remote: w(remote),
        },
        Command::Run { words } => Command::Run {
            words: words.iter().map(w).collect(),
        },
        Command::Echo { expression, remote } => Command::Echo {
            expression: w(expression),
            remote: w(remote),
        },
    }
}

fn commands(s: &Script) -> Vec<Command> {
    s.statements
        .iter()
        .map(|st| unplaced(&st.command))
        .collect()
}

/// Positions are 1-based and inside the text.
fn placed_within(s: &Script, src: &str) -> Result<(), TestCaseError> {
    let lines = src.chars().filter(|c| *c == '\n').count() + 1;
    let mut last = 0;
    for Statement { line, .. } in &s.statements {
        prop_assert!(*line > last && *line <= lines, "line {line} of {lines}");
        last = *line;
    }
    Ok(())
}

#[test]
fn parsing_any_text_never_panics() {
    props::check(
        "parsing_any_text_never_panics",
        1000,
        script_text(),
        |src| {
            match parse(&src) {
                Ok(s) => {
                    placed_within(&s, &src)?;
                    // What parsed prints and parses again to the same.
                    let again = parse(&print(&commands(&s))).expect("printed script parses");
                    prop_assert_eq!(commands(&again), commands(&s));
                }
                Err(e) => {
                    let lines = src.chars().filter(|c| *c == '\n').count() + 1;
                    prop_assert!(e.line >= 1 && e.line <= lines, "{e}");
                    prop_assert!(e.col >= 1, "{e}");
                    prop_assert!(e.to_string().starts_with("provision.sh:"), "{e}");
                }
            }
            Ok(())
        },
    );
}

#[test]
fn printed_scripts_parse_to_the_same_statements() {
    props::check(
        "printed_scripts_parse_to_the_same_statements",
        500,
        prop::collection::vec(command(), 0..6),
        |cmds| {
            let text = print(&cmds);
            let s = parse(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
            prop_assert_eq!(commands(&s), cmds);
            placed_within(&s, &text)?;
            Ok(())
        },
    );
}

fn env() -> impl Strategy<Value = BTreeMap<String, String>> {
    let value = prop_oneof![
        props::any_text(),
        "[a-z./]{0,8}",
        Just("..".to_string()),
        Just("/".to_string())
    ];
    prop::collection::btree_map(var_name(), value, 0..4)
}

#[test]
fn expanded_steps_keep_their_paths_inside() {
    let scripts = prop_oneof![
        prop::collection::vec(command(), 0..6).prop_map(|c| print(&c)),
        script_text(),
    ];
    props::check(
        "expanded_steps_keep_their_paths_inside",
        500,
        (scripts, env()),
        |(text, env)| {
            let Ok(script) = parse(&text) else {
                return Ok(());
            };
            let Ok(steps) = script.expand(&env) else {
                return Ok(());
            };
            prop_assert_eq!(steps.len(), script.statements.len());
            let remote_ok = |r: &str| {
                r.starts_with('/') && !r.split('/').any(|c| c == "..") && !r.contains('\0')
            };
            for step in &steps {
                match &step.action {
                    Action::Copy { local, remote } => {
                        prop_assert!(remote_ok(remote), "{remote:?}");
                        prop_assert!(!local.is_empty() && !local.starts_with('/'), "{local:?}");
                        prop_assert!(!local.contains('\0'), "{local:?}");
                        let base = local.trim_end_matches('/');
                        prop_assert!(
                            base == "."
                                || base
                                    .split('/')
                                    .all(|c| !c.is_empty() && c != "." && c != ".."),
                            "{local:?} is not normalized"
                        );
                    }
                    Action::Echo { content, remote } => {
                        prop_assert!(remote_ok(remote), "{remote:?}");
                        prop_assert!(content.ends_with('\n'));
                    }
                    Action::Run { .. } => {}
                }
            }
            Ok(())
        },
    );
}
