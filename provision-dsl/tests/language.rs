//! The language, tested by value: ASTs and steps compared whole, and every
//! error message checked word for word.

use provision_dsl::*;
use std::collections::BTreeMap;

fn lit(col: usize, s: &str) -> Word {
    Word {
        col,
        parts: vec![Part::Lit(s.into())],
    }
}

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn statements_quoting_and_positions() {
    let src = "# provision the app\n\nCOPY app/ /srv/app/\nRUN 'cd /srv && make' install\nECHO \"$SECRET x\" /etc/app/secret\nRUN apt-get \\\n  install -y git\n";
    let script = parse(src).unwrap();
    assert_eq!(
        script,
        Script {
            file: "provision.sh".into(),
            statements: vec![
                Statement {
                    line: 3,
                    command: Command::Copy {
                        local: lit(6, "app/"),
                        remote: lit(11, "/srv/app/")
                    }
                },
                Statement {
                    line: 4,
                    command: Command::Run {
                        words: vec![lit(5, "cd /srv && make"), lit(23, "install")]
                    }
                },
                Statement {
                    line: 5,
                    command: Command::Echo {
                        expression: Word {
                            col: 6,
                            parts: vec![
                                Part::Var {
                                    name: "SECRET".into(),
                                    col: 7
                                },
                                Part::Lit(" x".into())
                            ]
                        },
                        remote: lit(18, "/etc/app/secret"),
                    },
                },
                Statement {
                    line: 6,
                    command: Command::Run {
                        words: vec![
                            lit(5, "apt-get"),
                            lit(3, "install"),
                            lit(11, "-y"),
                            lit(14, "git")
                        ]
                    }
                },
            ],
        }
    );
}

#[test]
fn words_follow_posix_quoting() {
    let words = |src: &str| match &parse(src).unwrap().statements[0].command {
        Command::Run { words } => words.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(words(r#"RUN 'a b'"c d"e\ f"#), vec![lit(5, "a bc de f")]);
    assert_eq!(
        words(r#"RUN "a \$b \"q\" \\ \x""#),
        vec![lit(5, r#"a $b "q" \ \x"#)]
    );
    assert_eq!(
        words(r#"RUN 'it''s' '$HOME'"#),
        vec![lit(5, "its"), lit(13, "$HOME")]
    );
    assert_eq!(words("RUN a\\\nb"), vec![lit(5, "ab")]);
    assert_eq!(words("RUN \"multi\nline\""), vec![lit(5, "multi\nline")]);
    assert_eq!(
        words("RUN cost $ 5"),
        vec![lit(5, "cost"), lit(10, "$"), lit(12, "5")]
    );
    assert_eq!(
        words("RUN ${A}x$B_2"),
        vec![Word {
            col: 5,
            parts: vec![
                Part::Var {
                    name: "A".into(),
                    col: 5
                },
                Part::Lit("x".into()),
                Part::Var {
                    name: "B_2".into(),
                    col: 10
                }
            ]
        }]
    );
    assert_eq!(words("RUN a # comment"), vec![lit(5, "a")]);
    assert_eq!(words("RUN a#b"), vec![lit(5, "a#b")]);
}

#[test]
fn every_parse_error_names_place_and_rule() {
    let allowed = "a provisioning script may contain only COPY <local> <remote>, RUN <command…>, ECHO <expression> <remote path>, comments and blank lines";
    let cases: Vec<(&str, String)> = vec![
        ("set -e\n", format!("provision.sh:1:1: \"set\" is not allowed here; {allowed}")),
        ("\n  export A=1\n", format!("provision.sh:2:3: \"export\" is not allowed here; {allowed}")),
        ("run x\n", format!("provision.sh:1:1: \"run\" is not allowed here; {allowed}")),
        ("$CMD x\n", format!("provision.sh:1:1: \"$CMD\" is not allowed here; {allowed}")),
        ("COPY a\n", "provision.sh:1:1: COPY takes 2 arguments, not 1: COPY <local path> <remote path>".into()),
        ("COPY a b c\n", "provision.sh:1:10: COPY takes 2 arguments, not 3: COPY <local path> <remote path>".into()),
        ("ECHO x\n", "provision.sh:1:1: ECHO takes 2 arguments, not 1: ECHO <expression> <remote path>".into()),
        ("RUN\n", "provision.sh:1:1: RUN needs a command: RUN <command…>".into()),
        ("RUN 'abc\n", "provision.sh:1:5: unterminated single quote".into()),
        ("RUN x \"abc\n", "provision.sh:1:7: unterminated double quote".into()),
        ("RUN a && b\n", "provision.sh:1:7: `&` is a shell operator, which a provisioning script cannot use; to run it in the container, quote the whole command: RUN 'a & b'".into()),
        ("RUN a; b\n", "provision.sh:1:6: `;` is a shell operator, which a provisioning script cannot use; to run it in the container, quote the whole command: RUN 'a ; b'".into()),
        ("RUN a > f\n", "provision.sh:1:7: `>` is a shell operator, which a provisioning script cannot use; to run it in the container, quote the whole command: RUN 'a > b'".into()),
        ("RUN $(id)\n", "provision.sh:1:5: command substitution $(…) is not allowed; use RUN to run commands in the container".into()),
        ("RUN \"`id`\"\n", "provision.sh:1:6: command substitution `…` is not allowed; use RUN to run commands in the container".into()),
        ("RUN `id`\n", "provision.sh:1:5: command substitution `…` is not allowed; use RUN to run commands in the container".into()),
        ("RUN ${A:-x}\n", "provision.sh:1:5: only ${NAME} is allowed inside braces (no parameter operators like ${NAME:-default})".into()),
        ("RUN ${A\n", "provision.sh:1:5: unterminated ${ (missing })".into()),
        ("RUN ${}\n", "provision.sh:1:5: only named variables ($NAME, ${NAME}) are allowed".into()),
        ("RUN $1\n", "provision.sh:1:5: $1 is a special parameter; only named variables ($NAME, ${NAME}) are allowed".into()),
        ("RUN \"$@\"\n", "provision.sh:1:6: $@ is a special parameter; only named variables ($NAME, ${NAME}) are allowed".into()),
        ("RUN a\\", "provision.sh:1:6: a backslash at the end of the file continues nothing".into()),
    ];
    for (src, want) in cases {
        assert_eq!(parse(src).unwrap_err().to_string(), want, "for {src:?}");
    }
    let e = parse_file("environments/dev/provision.sh", "\n\nfoo\n").unwrap_err();
    assert_eq!(
        (e.file.as_str(), e.line, e.col),
        ("environments/dev/provision.sh", 3, 1)
    );
}

#[test]
fn expansion_and_path_checks() {
    let script = parse("COPY ./cfg//app/../app.conf /etc/app.conf\nRUN echo \"$GREETING\" ${USER}\nECHO \"$SECRET\" /etc/secret\n").unwrap();
    let steps = script
        .expand(&env(&[
            ("GREETING", "hello world"),
            ("USER", "s-dev"),
            ("SECRET", "two words"),
        ]))
        .unwrap();
    assert_eq!(
        steps,
        vec![
            Step {
                file: "provision.sh".into(),
                line: 1,
                action: Action::Copy {
                    local: "cfg/app.conf".into(),
                    remote: "/etc/app.conf".into()
                }
            },
            Step {
                file: "provision.sh".into(),
                line: 2,
                action: Action::Run {
                    command: "echo hello world s-dev".into()
                }
            },
            Step {
                file: "provision.sh".into(),
                line: 3,
                action: Action::Echo {
                    content: "two words\n".into(),
                    remote: "/etc/secret".into()
                }
            },
        ]
    );
    let cases = [
        ("RUN echo $NOPE\n", "provision.sh:1:10: $NOPE is not defined (an undefined variable is an error, not an empty string)"),
        ("COPY a relative/x\n", "provision.sh:1:8: remote path \"relative/x\" must be absolute (start with /)"),
        ("ECHO x /etc/../../root\n", "provision.sh:1:8: remote path \"/etc/../../root\" must not contain '..'"),
        ("COPY ../secrets /x\n", "provision.sh:1:6: local path \"../secrets\" leaves the environment directory"),
        ("COPY a/../../b /x\n", "provision.sh:1:6: local path \"a/../../b\" leaves the environment directory"),
        ("COPY /etc/passwd /x\n", "provision.sh:1:6: local path \"/etc/passwd\" must be relative to the environment directory"),
        ("COPY $DIR /x\n", "provision.sh:1:6: local path \"/abs\" must be relative to the environment directory"),
    ];
    for (src, want) in cases {
        let e = parse(src)
            .unwrap()
            .expand(&env(&[("DIR", "/abs")]))
            .unwrap_err();
        assert_eq!(e.to_string(), want, "for {src:?}");
    }
}

#[derive(Default)]
struct Recorder {
    done: Vec<String>,
    fail_on: Option<String>,
}

impl Executor for Recorder {
    type Error = String;
    async fn copy(&mut self, _s: &Step, local: &str, remote: &str) -> Result<(), String> {
        self.done.push(format!("copy {local} {remote}"));
        Ok(())
    }
    async fn run(&mut self, _s: &Step, command: &str) -> Result<(), String> {
        if self.fail_on.as_deref() == Some(command) {
            return Err("exit status 2".into());
        }
        self.done.push(format!("run {command}"));
        Ok(())
    }
    async fn echo(&mut self, _s: &Step, content: &str, remote: &str) -> Result<(), String> {
        self.done.push(format!("echo {content:?} {remote}"));
        Ok(())
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    // The executor futures here never wait: poll once with a no-op waker.
    let mut f = std::pin::pin!(f);
    let waker = std::task::Waker::noop();
    match f.as_mut().poll(&mut std::task::Context::from_waker(waker)) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("test executor should not wait"),
    }
}

#[test]
fn execution_stops_at_the_first_failure_and_says_where() {
    let steps = parse("COPY a /a\nRUN true\nRUN false\nECHO \"$S\" /s\n")
        .unwrap()
        .expand(&env(&[("S", "secret")]))
        .unwrap();
    let mut ok = Recorder::default();
    assert_eq!(block_on(execute(&steps, &mut ok)).unwrap(), 4);
    assert_eq!(
        ok.done,
        vec![
            "copy a /a",
            "run true",
            "run false",
            "echo \"secret\\n\" /s"
        ]
    );

    let mut failing = Recorder {
        fail_on: Some("false".into()),
        ..Recorder::default()
    };
    let e = block_on(execute(&steps, &mut failing)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "provision.sh:3: RUN false failed: exit status 2"
    );
    assert_eq!(
        failing.done,
        vec!["copy a /a", "run true"],
        "nothing after the failing step ran"
    );
}

#[test]
fn a_script_saved_with_crlf_line_ends_reads_as_with_lf() {
    let lf = "COPY app/ /srv/app/\nRUN apt-get \\\n  install -y git\nECHO x /etc/x\n";
    let crlf = lf.replace('\n', "\r\n");
    assert_eq!(parse(&crlf).unwrap(), parse(lf).unwrap());
    // Inside quotes a line end is kept as written.
    let quoted = parse("ECHO 'a\r\nb' /etc/x\r\n").unwrap();
    let Command::Echo { expression, .. } = &quoted.statements[0].command else {
        panic!("{quoted:?}")
    };
    assert_eq!(expression.parts, vec![Part::Lit("a\r\nb".into())]);
}
