//! Failures say what happened and leave nothing behind; the readiness
//! fallback and local channels work.

mod common;

use common::*;

#[test]
fn failed_build_reports_nix_error_and_leaves_nothing() {
    let Some(()) = prerequisites("failed_build_reports_nix_error_and_leaves_nothing") else {
        return;
    };
    let agent = TestAgent::start(Options {
        nix_extra_config: "devhost.fixture.httpPorts = throw \"broken on purpose\";".into(),
        ..Options::default()
    });
    let ch = channel();
    let name = agent.name("nobld");
    let out = agent.fc_build(&["ensure", &name, &ch.url, "www"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("nix-build failed") && t.contains("broken on purpose"),
        "the Nix error reaches the user:\n{t}"
    );
    let first: std::net::Ipv4Addr = format!("10.231.{}.2", agent.subnet).parse().unwrap();
    assert_eq!(agent.traces_of(&name, first), Vec::<String>::new());

    // A channel that is not there at all.
    let missing = ch.url.replace("nixexprs.tar.xz", "missing.tar.xz");
    let out = agent.fc_build(&["ensure", &name, &missing, ""]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("cannot be downloaded"),
        "{}",
        text(&out)
    );
    assert_eq!(agent.traces_of(&name, first), Vec::<String>::new());
}

#[test]
fn failed_boot_reports_exit_and_log_and_leaves_nothing() {
    let Some(()) = prerequisites("failed_boot_reports_exit_and_log_and_leaves_nothing") else {
        return;
    };
    let agent = TestAgent::start(Options {
        nix_extra_config: "devhost.fixture.failBoot = true;".into(),
        ..Options::default()
    });
    let name = agent.name("noboot");
    let out = agent.devhost(&["ensure", &name, &channel().url]);
    assert_eq!(out.status.code(), Some(1));
    let t = text(&out);
    assert!(t.contains("exited during boot"), "{t}");
    assert!(
        t.contains("fixture init: failing at boot as configured"),
        "last log lines included:\n{t}"
    );
    let first: std::net::Ipv4Addr = format!("10.231.{}.2", agent.subnet).parse().unwrap();
    assert_eq!(agent.traces_of(&name, first), Vec::<String>::new());
}

#[test]
fn ready_timeout_says_what_happened() {
    let Some(()) = prerequisites("ready_timeout_says_what_happened") else {
        return;
    };
    // An init that never notifies, with the agent waiting for READY=1.
    let agent = TestAgent::start(Options {
        nix_extra_config: "devhost.fixture.notify = false;".into(),
        ready_timeout_secs: 3,
        ..Options::default()
    });
    let name = agent.name("slow");
    let out = agent.devhost(&["ensure", &name, &channel().url]);
    assert_eq!(out.status.code(), Some(1));
    let t = text(&out);
    assert!(
        t.contains("was not ready after 3 s (waiting for READY=1 from the container's init)"),
        "{t}"
    );
    assert!(
        t.contains("fixture init: serving on ports 80"),
        "last log lines included:\n{t}"
    );
    let first: std::net::Ipv4Addr = format!("10.231.{}.2", agent.subnet).parse().unwrap();
    assert_eq!(agent.traces_of(&name, first), Vec::<String>::new());
}

#[test]
fn tcp_readiness_fallback_and_file_channel() {
    let Some(()) = prerequisites("tcp_readiness_fallback_and_file_channel") else {
        return;
    };
    let agent = TestAgent::start(Options {
        nix_extra_config: "devhost.fixture.notify = false;".into(),
        extra_toml: "readiness = \"tcp\"\nready_tcp_port = 80\n".into(),
        ..Options::default()
    });
    let ch = channel();
    let name = agent.name("tcp");
    let url = format!("file://{}", ch.unpacked.display());
    let out = agent.devhost(&["ensure", &name, &url, "www"]);
    assert_ok(&out, "ensure with TCP readiness from a file:// channel");
    assert!(
        text(&out).contains("waiting for TCP port 80"),
        "{}",
        text(&out)
    );
    // Ready means reachable, at once.
    assert_eq!(
        http_get(agent.address(&name), 80).unwrap().trim(),
        format!("hello from fc {name}")
    );
    let plain = agent.name("plain");
    assert_ok(
        &agent.devhost(&["ensure", &plain, ch.unpacked.to_str().unwrap()]),
        "plain path channel",
    );
}
