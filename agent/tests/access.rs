//! Bad input is refused with a message naming the problem and changes
//! nothing; only owners (or admins) may touch a container.

mod common;

use common::*;
use std::io::{Read, Write};

fn assert_nothing_created(agent: &TestAgent) {
    let records: Vec<_> = std::fs::read_dir(agent.dir.join("state/records"))
        .unwrap()
        .flatten()
        .collect();
    assert!(records.is_empty(), "records created: {records:?}");
    assert!(
        !agent.dir.join("containers").exists()
            || std::fs::read_dir(agent.dir.join("containers"))
                .unwrap()
                .next()
                .is_none()
    );
    let netns: Vec<_> = std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&agent.netns_prefix)
        })
        .collect();
    assert!(netns.is_empty(), "netns created: {netns:?}");
    assert_eq!(agent.hosts(), "127.0.0.1 localhost\n");
}

/// One raw HTTP request on the API socket; (status line, body).
fn raw(agent: &TestAgent, request: &str) -> (String, String) {
    let mut s = std::os::unix::net::UnixStream::connect(&agent.socket).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp.lines().next().unwrap_or("").to_string();
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let Some(()) = prerequisites("bad_input_is_refused_and_changes_nothing") else {
        return;
    };
    let ch = channel();
    let agent = TestAgent::start(Options::default());
    let good = agent.name("ok");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["ensure", "../etc", &ch.url],
            "invalid container name \"../etc\"",
        ),
        (vec!["ensure", "-rf", &ch.url], "must not start with '-'"),
        (
            vec!["ensure", "abcdefghijkl", &ch.url],
            "at most 11 characters",
        ),
        (vec!["ensure", "a b", &ch.url], "only letters, digits"),
        (
            vec!["ensure", &good, "ftp://example.org/x.tar.xz"],
            "invalid channel URL \"ftp://example.org/x.tar.xz\"",
        ),
        (
            vec!["ensure", &good, "relative/path"],
            "use an http(s):// URL",
        ),
        (vec!["ensure", &good, "nixpkgs=/x"], "invalid channel URL"),
        (
            vec!["ensure", &good, &ch.url, "www b@d"],
            "invalid alias \"b@d\"",
        ),
        (vec!["ensure", &good, &ch.url, "-x"], "invalid alias \"-x\""),
    ];
    for (args, want) in cases {
        let out = agent.fc_build(&args);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(
            text(&out).contains(want),
            "{args:?}: expected {want:?} in:\n{}",
            text(&out)
        );
    }
    for args in [vec!["frobnicate", "x"], vec!["ensure", "x"], vec![]] {
        let out = agent.fc_build(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(
            text(&out).contains("usage: fc-build-dev-container"),
            "{}",
            text(&out)
        );
    }

    // The API itself refuses what a hand-made client might send.
    let body = format!(r#"{{"channel":"{}","alias":["www"]}}"#, ch.url);
    let (status, msg) = raw(&agent, &format!(
        "POST /v1/containers/{good}/ensure HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    assert!(status.contains(" 400 "), "{status}");
    let err: serde_json::Value = serde_json::from_str(msg.trim()).unwrap();
    assert_eq!(err["kind"], "bad_request");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `alias`"),
        "{err}"
    );
    let (status, msg) = raw(&agent, "POST /v1/containers/..%2Fx/ensure HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
    assert!(status.contains(" 400 "), "{status} {msg}");
    let (status, _) = raw(
        &agent,
        "GET /v1/nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(status.contains(" 404 "), "{status}");

    assert_nothing_created(&agent);
}

#[test]
fn only_owners_and_admins_manage_a_container() {
    let Some(()) = prerequisites("only_owners_and_admins_manage_a_container") else {
        return;
    };
    let ch = channel();
    let agent = TestAgent::start(Options::default());
    // uids without passwd entries; gid 100 is the "users" group the test agent trusts.
    let users_gid = nix::unistd::Group::from_name("users")
        .unwrap()
        .expect("group users")
        .gid
        .as_raw();
    let (alice, bob, mallory) = (61001, 61002, 61003);
    let name = agent.name("own");

    let out = agent.devhost_as(mallory, mallory, &["ensure", &name, &ch.url]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("may not create containers"),
        "{}",
        text(&out)
    );
    assert!(
        agent.try_status(&name).is_none(),
        "a refused ensure creates nothing"
    );

    assert_ok(
        &agent.devhost_as(alice, users_gid, &["ensure", &name, &ch.url]),
        "owner ensure",
    );
    assert_eq!(agent.status(&name).owner_uid, alice);

    for args in [
        vec!["destroy", name.as_str()],
        vec!["stop", name.as_str()],
        vec!["ensure", name.as_str(), ch.url.as_str()],
    ] {
        let out = agent.devhost_as(bob, users_gid, &args);
        assert!(!out.status.success(), "bob could {args:?}");
        assert!(
            text(&out).contains(&format!("belongs to uid {alice}")),
            "{}",
            text(&out)
        );
    }
    let out = agent.devhost_as(bob, users_gid, &["logs", &name]);
    assert!(
        !out.status.success() && text(&out).contains("may hold secrets"),
        "{}",
        text(&out)
    );
    assert_eq!(
        agent.status(&name).state.as_str(),
        "running",
        "refused operations changed nothing"
    );

    // Everybody may list (batou runs `nixos-container list` without sudo).
    let list = agent.devhost_as(mallory, mallory, &["list"]);
    assert_ok(&list, "list by anyone");
    assert!(text(&list).contains(&name));

    assert_ok(
        &agent.devhost_as(alice, users_gid, &["stop", &name]),
        "owner stop",
    );
    // root (here: the admin) may destroy anyone's container.
    assert_ok(&agent.devhost(&["destroy", &name]), "root destroy");
    assert!(agent.try_status(&name).is_none());
}

#[test]
fn sudo_callers_own_what_they_create() {
    let Some(()) = prerequisites("sudo_callers_own_what_they_create") else {
        return;
    };
    let ch = channel();
    let agent = TestAgent::start(Options::default());
    let users_gid = nix::unistd::Group::from_name("users")
        .unwrap()
        .expect("group users")
        .gid
        .as_raw();
    // `sudo fc-build-dev-container ensure …` from uid 61001: root runs it
    // with the variables sudo sets, and it acts as the user who ran sudo.
    let name = agent.name("sudo");
    let out = std::process::Command::new(FC_BUILD)
        .args(["ensure", &name, &ch.url, ""])
        .env("DEVHOST_SOCKET", &agent.socket)
        .env("SUDO_UID", "61001")
        .env("SUDO_GID", users_gid.to_string())
        .output()
        .unwrap();
    assert_ok(&out, "ensure under sudo");
    assert_eq!(agent.status(&name).owner_uid, 61001);
    // The owner manages it without sudo; a non-root caller cannot claim another owner.
    assert_ok(
        &agent.devhost_as(61001, users_gid, &["stop", &name]),
        "owner stop",
    );
    // Root naming an owner itself (SUDO_UID alone is no sudo): root creates
    // the container for that uid, as admins may.
    let named = agent.name("named");
    let out = std::process::Command::new(FC_BUILD)
        .args(["ensure", &named, &ch.url, ""])
        .env("DEVHOST_SOCKET", &agent.socket)
        .env("SUDO_UID", "61004")
        .env_remove("SUDO_GID")
        .output()
        .unwrap();
    assert_ok(&out, "root's ensure for uid 61004");
    assert_eq!(agent.status(&named).owner_uid, 61004);
    let other = agent.name("claim");
    let mut cmd = std::process::Command::new(DEVHOST);
    cmd.args(["ensure", &other, &ch.url])
        .env("DEVHOST_SOCKET", &agent.socket)
        .env("SUDO_UID", "0");
    std::os::unix::process::CommandExt::uid(&mut cmd, 61002);
    std::os::unix::process::CommandExt::gid(&mut cmd, users_gid);
    assert_ok(&cmd.output().unwrap(), "ensure by a user claiming uid 0");
    assert_eq!(
        agent.status(&other).owner_uid,
        61002,
        "SUDO_UID is honoured for root callers only"
    );
}
