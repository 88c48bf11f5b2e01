//! Bad command lines, given to the real front-ends against a running agent:
//! none panics; each is refused with exit status 2 and a message naming
//! the value (and the range it must be in), and nothing is created. Every
//! command would create a container if its bad value were let through.

mod common;

use common::*;
use std::process::Output;

/// The agent's containers and records: there must be none.
#[track_caller]
fn assert_nothing_created(agent: &TestAgent) {
    let out = agent.devhost(&["--json", "list"]);
    assert_ok(&out, "list");
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["containers"], serde_json::json!([]), "no container");
    let records: Vec<_> = std::fs::read_dir(agent.dir.join("state/records"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(records.is_empty(), "no record: {records:?}");
}

/// `out` is a refusal: exit status 2, `says` on stderr, no panic.
#[track_caller]
fn assert_refused(out: &Output, says: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "exit status 2:\n{}", text(out));
    assert!(stderr.contains(says), "says {says:?}:\n{stderr}");
    assert!(!stderr.contains("panicked"), "no panic:\n{stderr}");
}

#[test]
fn an_argument_that_is_not_utf8_is_refused_by_every_front_end() {
    let Some(()) = prerequisites("an_argument_that_is_not_utf8_is_refused_by_every_front_end")
    else {
        return;
    };
    let agent = TestAgent::start(Options::default());
    let url = channel().url.clone();
    let name = agent.name("u8");
    let bad_name = [name.as_bytes(), b"\xff"].concat();
    let lossy_name = format!("{name}\u{fffd}");
    let cases: [(&str, Vec<&[u8]>, String); 4] = [
        (
            DEVHOST,
            vec![b"ensure", name.as_bytes(), url.as_bytes(), b"www\xff"],
            "argument 4 is not valid UTF-8: \"www\u{fffd}\"".into(),
        ),
        (
            FC_BUILD,
            vec![b"ensure", name.as_bytes(), url.as_bytes(), b"www\xfe"],
            "argument 4 is not valid UTF-8: \"www\u{fffd}\"".into(),
        ),
        (
            FC_DEVHOST,
            vec![b"ensure", b"--channel-url", url.as_bytes(), &bad_name],
            format!("argument 4 is not valid UTF-8: \"{lossy_name}\""),
        ),
        (
            NIXOS_CONTAINER,
            vec![b"start", &bad_name],
            format!("argument 2 is not valid UTF-8: \"{lossy_name}\""),
        ),
    ];
    for (program, args, says) in cases {
        let out = agent.run_bytes(program, &args);
        assert_refused(&out, &says);
    }
    assert_nothing_created(&agent);
}

#[test]
fn memory_beyond_its_range_is_refused_naming_the_value_and_the_range() {
    let Some(()) =
        prerequisites("memory_beyond_its_range_is_refused_naming_the_value_and_the_range")
    else {
        return;
    };
    let agent = TestAgent::start(Options::default());
    let url = &channel().url;
    let name = agent.name("mem");
    let huge = "99999999999999999999G";
    let says = format!("invalid memory \"{huge}\": must be between 16M and 1024T");
    let out = agent.devhost(&["ensure", &name, url, "--memory", huge]);
    assert_refused(&out, &says);
    let out = agent.fc_devhost(&["ensure", "--memory", huge, "--channel-url", url, &name]);
    assert_refused(&out, &says);
    assert_nothing_created(&agent);
}

#[test]
fn a_negative_cpu_count_is_refused_saying_what_is_wrong() {
    let Some(()) = prerequisites("a_negative_cpu_count_is_refused_saying_what_is_wrong") else {
        return;
    };
    let agent = TestAgent::start(Options::default());
    let url = &channel().url;
    let name = agent.name("cpu");
    let says = "invalid cpu \"-1\": must be between 0.01 and 1024 CPUs";
    let out = agent.devhost(&["ensure", &name, url, "--cpu", "-1"]);
    assert_refused(&out, says);
    let out = agent.fc_devhost(&["ensure", "--cpu", "-1", "--channel-url", url, &name]);
    assert_refused(&out, says);
    assert_nothing_created(&agent);
}

#[test]
fn counts_out_of_range_are_refused_naming_the_value_and_the_range() {
    let Some(()) = prerequisites("counts_out_of_range_are_refused_naming_the_value_and_the_range")
    else {
        return;
    };
    let agent = TestAgent::start(Options::default());
    let url = &channel().url;
    let name = agent.name("cnt");
    for (args, says) in [
        (
            vec!["ensure", &name, url, "--tasks", "-1"],
            "invalid value '-1' for '--tasks <TASKS>': must be a whole number from 1 to 4194304",
        ),
        (
            vec!["ensure", &name, url, "--tasks", "99999999999999999999999"],
            "invalid value '99999999999999999999999' for '--tasks <TASKS>': must be a whole number from 1 to 4194304",
        ),
        (
            vec!["ensure", &name, url, "--io-weight", "0"],
            "invalid value '0' for '--io-weight <IO_WEIGHT>': must be a whole number from 1 to 10000",
        ),
        (
            vec!["extend", &name, "--days", "-1"],
            "invalid value '-1' for '--days <DAYS>': must be a whole number from 1 to 4294967295",
        ),
        (
            vec!["logs", &name, "--lines", "-5"],
            "invalid value '-5' for '--lines <LINES>': must be a whole number from 0 to 4294967295",
        ),
    ] {
        assert_refused(&agent.devhost(&args), says);
    }
    let out = agent.fc_devhost(&["ensure", "--disk-size", "-3", "--channel-url", url, &name]);
    assert_refused(
        &out,
        "invalid disk size \"-3\": must be between 1M and 1024T",
    );
    assert_nothing_created(&agent);
}
