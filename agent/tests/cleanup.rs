//! Cleanup on real containers with a clock the test sets (`devhost cleanup
//! --now`): a dry run changes nothing; unused containers are stopped and
//! disabled (no process, no HTTPS route, no DNS name, no certificate, record
//! kept, start refused), then deleted; pinned ones are kept, extended ones
//! later; a deploy re-enables; a container that cannot be deleted fails
//! alone while the sweep goes on; with activity counted, proxied requests
//! and provisioning postpone disabling.

mod common;

use chrono::{DateTime, TimeDelta, Utc};
use common::*;
use std::process::{Command, Output};

const DNS: &str = "[dns]\nenable = true\nlisten = [\"127.0.0.1:@DNS_PORT@\"]\naddresses = [\"192.0.2.10\"]\n[certs]\nmode = \"local-ca\"\n";

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `devhost --json cleanup [--dry-run] --now NOW`: the exit code and the
/// report's entries by name.
fn sweep(agent: &TestAgent, now: DateTime<Utc>, dry_run: bool) -> (Output, serde_json::Value) {
    let now = stamp(now);
    let mut args = vec!["--json", "cleanup", "--now", &now];
    if dry_run {
        args.push("--dry-run");
    }
    let out = agent.devhost(&args);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("cleanup --json: {e}: {}", text(&out)));
    let mut by_name = serde_json::Map::new();
    for c in report["containers"].as_array().unwrap() {
        by_name.insert(c["name"].as_str().unwrap().to_string(), c.clone());
    }
    (out, serde_json::Value::Object(by_name))
}

fn served(agent: &TestAgent, host: &str) -> bool {
    let ca = agent.dir.join("state/certs/local-ca/root.pem");
    let out = curl_https_on(agent.https_port, &ca, host, "/", &[]);
    out.status.success() && answer(&out, host, "/").status == 200
}

fn in_zone(agent: &TestAgent, host: &str) -> bool {
    let out = dig_at(agent.dns_port, &[host, "A"]);
    assert!(out.contains("status: "), "dig {host}: {out}");
    out.contains("status: NOERROR") && out.contains("192.0.2.10")
}

/// `devhost ensure NAME URL www`, served from the fixture's port 80.
fn ensure_www(agent: &TestAgent, name: &str, url: &str) {
    let out = agent.devhost(&["ensure", name, url, "www", "--upstream", "http:80"]);
    assert_ok(&out, &format!("ensure {name}"));
}

fn last_deploy(agent: &TestAgent, name: &str) -> DateTime<Utc> {
    agent.status_json(name).unwrap()["last_deploy"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn cleanup_disables_deletes_pins_extends() {
    let Some(()) = prerequisites_and(
        "cleanup_disables_deletes_pins_extends",
        &["dig", "curl", "chattr"],
    ) else {
        return;
    };
    let agent = TestAgent::start(Options {
        extra_toml: DNS.into(),
        ..Options::default()
    });
    let ch = channel();
    let (a, b, c) = (agent.name("a"), agent.name("b"), agent.name("c"));
    for n in [&a, &b, &c] {
        ensure_www(&agent, n, &ch.url);
    }
    let www_a = format!("www.{a}.dev.test");
    assert!(served(&agent, &www_a) && in_zone(&agent, &www_a));
    // The latest deploy, rounded up to the second (status shows seconds).
    let t0 = last_deploy(&agent, &c) + TimeDelta::seconds(1);
    let day = TimeDelta::days(1);

    // Dry run 8 days on: all three would be disabled; nothing changes.
    let before: Vec<_> = [&a, &b, &c]
        .iter()
        .map(|n| agent.status_json(n).unwrap())
        .collect();
    let (out, r) = sweep(&agent, t0 + day * 8, true);
    assert_ok(&out, "dry run");
    for n in [&a, &b, &c] {
        assert_eq!(r[n]["action"], "disable", "{r}");
        assert_eq!(r[n]["result"], "dry run", "{r}");
        assert_eq!(r[n]["unused_days"], 8, "{r}");
        assert!(
            r[n]["reason"]
                .as_str()
                .unwrap()
                .starts_with("last deploy 8 days ago"),
            "{r}"
        );
    }
    let after: Vec<_> = [&a, &b, &c]
        .iter()
        .map(|n| agent.status_json(n).unwrap())
        .collect();
    assert_eq!(before, after, "a dry run changes no record");
    assert!(served(&agent, &www_a), "a dry run stops nothing");
    let table = text(&agent.devhost(&["cleanup", "--dry-run", "--now", &stamp(t0 + day * 8)]));
    assert!(table.contains("(dry run, nothing changed)"), "{table}");
    assert!(table.contains(&format!("{a}  would disable")), "{table}");

    // Only root or the admin group may sweep.
    let out = agent.devhost_as(65534, 65534, &["cleanup", "--dry-run"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("may not run the cleanup"),
        "{}",
        text(&out)
    );
    // A bad moment is refused, naming the problem.
    let out = agent.devhost(&["cleanup", "--now", "yesterday"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("\"yesterday\" is not an RFC 3339 time"));

    // Pin c, extend b by 20 days, sweep 8 days on: only a is disabled.
    assert_ok(&agent.devhost(&["pin", &c]), "pin");
    let out = agent.devhost(&["extend", &b, "--days", "20"]);
    assert_ok(&out, "extend");
    assert!(text(&out).contains("to be disabled at"), "{}", text(&out));
    let out = agent.devhost(&["extend", &b, "--days", "1000"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("cleanup.max_extend_days"),
        "{}",
        text(&out)
    );
    let (out, r) = sweep(&agent, t0 + day * 8, false);
    assert_ok(&out, "sweep");
    assert_eq!(
        (&r[&a]["action"], &r[&a]["result"]),
        (&"disable".into(), &"done".into()),
        "{r}"
    );
    assert_eq!(r[&b]["action"], "keep", "{r}");
    assert!(
        r[&b]["reason"]
            .as_str()
            .unwrap()
            .contains("to be disabled at"),
        "{r}"
    );
    assert_eq!(
        (&r[&c]["action"], &r[&c]["reason"]),
        (&"keep".into(), &"pinned".into())
    );

    let s = agent
        .status_json(&a)
        .expect("a disabled container keeps its record");
    assert_eq!(
        (&s["state"], &s["enabled"]),
        (&"stopped".into(), &false.into()),
        "{s}"
    );
    assert_eq!(
        s["certificate"],
        serde_json::Value::Null,
        "certificate dropped: {s}"
    );
    agent.wait_no_process(&a);
    assert!(
        !served(&agent, &www_a),
        "no HTTPS route to a disabled container"
    );
    assert!(
        !in_zone(&agent, &www_a),
        "no DNS name for a disabled container"
    );
    assert!(
        served(&agent, &format!("www.{b}.dev.test")),
        "others untouched"
    );
    let compat: serde_json::Value =
        serde_json::from_slice(&std::fs::read(agent.dir.join(format!("compat/{a}.json"))).unwrap())
            .unwrap();
    assert_eq!(compat["enabled"], false);
    let log = agent.log();
    assert!(
        log.contains("cleanup: disabling: last deploy 8 days ago"),
        "decision logged with the age:\n{log}"
    );

    // A deploy re-enables.
    ensure_www(&agent, &a, &ch.url);
    let s = agent.status_json(&a).unwrap();
    assert_eq!(
        (&s["state"], &s["enabled"]),
        (&"running".into(), &true.into()),
        "{s}"
    );
    assert!(
        served(&agent, &www_a) && in_zone(&agent, &www_a),
        "served again"
    );
    let ta = last_deploy(&agent, &a) + TimeDelta::seconds(1);

    // 31 days after a's new deploy: a deleted; b (extended to t0+20) only
    // disabled; c pinned. One failing deletion does not stop the rest: an
    // immutable file in b's root is no reason to spare a.
    let (out, r) = sweep(&agent, ta + day * 31, false);
    assert_ok(&out, "sweep at +31 days");
    assert_eq!(
        (&r[&a]["action"], &r[&a]["result"]),
        (&"delete".into(), &"done".into()),
        "{r}"
    );
    assert_eq!(r[&b]["action"], "disable", "{r}");
    assert_eq!(r[&c]["action"], "keep", "{r}");
    assert!(agent.status_json(&a).is_none(), "a deleted");
    let list = text(&agent.devhost(&["list"]));
    assert!(!list.contains(&a) && list.contains(&b), "{list}");
    assert!(!in_zone(&agent, &www_a));

    let stuck = agent
        .dir
        .join(format!("containers/{b}/etc/devhost-test-immutable"));
    std::fs::write(&stuck, "x").unwrap();
    /// Keeps a file immutable while it lives, also if the test fails.
    struct Immutable<'a>(&'a std::path::Path);
    impl Drop for Immutable<'_> {
        fn drop(&mut self) {
            let _ = Command::new("chattr").arg("-i").arg(self.0).output();
        }
    }
    let out = Command::new("chattr")
        .arg("+i")
        .arg(&stuck)
        .output()
        .unwrap();
    assert_ok(&out, "chattr +i");
    let guard = Immutable(&stuck);
    assert_ok(&agent.devhost(&["unpin", &c]), "unpin");
    let (out, r) = sweep(&agent, t0 + day * 44, false);
    drop(guard);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failure is the sweep's exit code"
    );
    assert_eq!(r[&b]["action"], "delete", "{r}");
    assert!(
        r[&b]["result"].as_str().unwrap().starts_with("failed: "),
        "{r}"
    );
    assert_eq!(
        (&r[&c]["action"], &r[&c]["result"]),
        (&"delete".into(), &"done".into()),
        "{r}"
    );
    assert!(
        agent.status_json(&c).is_none(),
        "c deleted despite b's failure"
    );

    // Retried, b goes too; nothing of the three is left.
    let (out, r) = sweep(&agent, t0 + day * 44, false);
    assert_ok(&out, "retry");
    assert_eq!(r[&b]["result"], "done", "{r}");
    let (out, r) = sweep(&agent, t0 + day * 44, false);
    assert_ok(&out, "empty sweep");
    assert_eq!(r, serde_json::json!({}));
    assert!(
        nspawn_pids(&agent.dir.join("containers")).is_empty(),
        "no container process left"
    );
}

/// Rewrite a stored record's `last_deploy` (the agent is stopped): a
/// container last deployed `days` ago, without waiting for it.
fn age_record(agent: &TestAgent, name: &str, days: i64) {
    let path = agent.dir.join(format!("state/records/{name}.json"));
    let mut r: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    r["last_deploy"] = stamp(Utc::now() - TimeDelta::days(days)).into();
    std::fs::write(&path, serde_json::to_vec(&r).unwrap()).unwrap();
}

#[test]
fn cleanup_counts_activity_when_configured() {
    let Some(()) = prerequisites_and("cleanup_counts_activity_when_configured", &["curl"]) else {
        return;
    };
    let mut agent = TestAgent::start(Options {
        extra_toml: "[cleanup]\ncount_activity = true\n".into(),
        ..Options::default()
    });
    let ch = channel();
    let (web, prov, idle) = (agent.name("web"), agent.name("prov"), agent.name("idle"));
    for n in [&web, &prov, &idle] {
        ensure_www(&agent, n, &ch.url);
    }
    // Ten days since the last deploy of each, as far as the records say.
    agent.stop_agent(nix::sys::signal::Signal::SIGTERM);
    for n in [&web, &prov, &idle] {
        age_record(&agent, n, 10);
    }
    agent.spawn();

    // web gets a request through the proxy, prov a provisioning run.
    assert!(served(&agent, &format!("www.{web}.dev.test")));
    let envdir = agent.dir.join("envdir");
    std::fs::create_dir_all(&envdir).unwrap();
    std::fs::write(envdir.join("provision.sh"), "RUN true\n").unwrap();
    assert_ok(
        &agent.devhost(&["provision", &prov, envdir.to_str().unwrap()]),
        "provision",
    );
    let s = agent.status_json(&prov).unwrap();
    assert!(s["last_activity"].is_string(), "provision recorded: {s}");

    let (out, r) = sweep(&agent, Utc::now(), false);
    assert_ok(&out, "sweep");
    for n in [&web, &prov] {
        assert_eq!(r[n]["action"], "keep", "{r}");
        assert!(
            r[n]["reason"]
                .as_str()
                .unwrap()
                .starts_with("last use 0 minutes ago"),
            "{r}"
        );
    }
    assert_eq!(r[&idle]["action"], "disable", "{r}");
    assert_eq!(agent.status_json(&idle).unwrap()["enabled"], false);
    assert!(
        r[&idle]["reason"]
            .as_str()
            .unwrap()
            .starts_with("last deploy 10 days ago"),
        "{r}"
    );

    // Start of a container disabled by a sweep on the real clock is refused
    // with what to do; after an extension it starts, enabled again.
    let out = agent.devhost(&["start", &idle]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("was disabled by cleanup (last deploy 10 days ago")
            && text(&out).contains("devhost extend"),
        "{}",
        text(&out)
    );
    assert_eq!(agent.status_json(&idle).unwrap()["state"], "stopped");
    let out = agent.devhost(&["extend", &idle, "--days", "3"]);
    assert_ok(&out, "extend");
    assert!(
        text(&out).contains("it is still disabled"),
        "{}",
        text(&out)
    );
    assert_ok(&agent.devhost(&["start", &idle]), "start after extend");
    let s = agent.status_json(&idle).unwrap();
    assert_eq!(
        (&s["state"], &s["enabled"]),
        (&"running".into(), &true.into()),
        "{s}"
    );
    assert!(
        served(&agent, &format!("www.{idle}.dev.test")),
        "routed again"
    );

    // The proxied request was written into web's record by the sweep: it
    // survives a restart of the agent.
    agent.stop_agent(nix::sys::signal::Signal::SIGTERM);
    agent.spawn();
    let s = agent.status_json(&web).unwrap();
    assert!(s["last_activity"].is_string(), "{s}");
    let (_, r) = sweep(&agent, Utc::now() + TimeDelta::days(6), true);
    assert_eq!(r[&web]["action"], "keep", "{r}");
    let (_, r) = sweep(&agent, Utc::now() + TimeDelta::days(8), true);
    assert_eq!(r[&web]["action"], "disable", "{r}");

    for n in [&web, &prov, &idle] {
        assert_ok(&agent.devhost(&["destroy", n]), "destroy");
    }
}
