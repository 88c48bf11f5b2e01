//! Cleanup on real containers with a clock the test sets (`devhost cleanup
//! --now`): a dry run changes nothing; unused containers are stopped and
//! disabled (no process, no HTTPS route, no DNS name, no certificate, record
//! kept, start refused), then deleted; pinned ones are kept, extended ones
//! later; a deploy re-enables; a container that cannot be deleted fails
//! alone while the sweep goes on; with activity counted, proxied requests
//! and provisioning postpone disabling. A sweep covers every container of
//! its agent, so each test has an agent of its own.

mod common;

use chrono::{DateTime, TimeDelta, Utc};
use common::*;
use std::process::{Command, Output};

const DNS: &str = "[dns]\nenable = true\nlisten = [\"127.0.0.1:@DNS_PORT@\"]\naddresses = [\"192.0.2.10\"]\n[certs]\nmode = \"local-ca\"\n";

fn day() -> TimeDelta {
    TimeDelta::days(1)
}

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

/// Whether `https://HOST/` gets a 200 through the edge.
fn served(agent: &TestAgent, host: &str) -> bool {
    let out = agent.curl_https(&agent.local_ca(), host, "/", &[]);
    out.status.success() && answer(&out, host, "/").status == 200
}

/// Whether the agent's zone has `host`.
fn in_zone(agent: &TestAgent, host: &str) -> bool {
    let out = agent.dig(&[host, "A"]);
    assert!(out.contains("status: "), "dig {host}: {out}");
    out.contains("status: NOERROR") && out.contains("192.0.2.10")
}

fn www(name: &str) -> String {
    format!("www.{name}.dev.test")
}

/// `devhost ensure NAME URL www`, served from the fixture's port 80.
fn ensure_www(agent: &TestAgent, name: &str) {
    let out = agent.devhost(&[
        "ensure",
        name,
        &channel().url,
        "www",
        "--upstream",
        "http:80",
    ]);
    assert_ok(&out, &format!("ensure {name}"));
}

fn last_deploy(agent: &TestAgent, name: &str) -> DateTime<Utc> {
    agent.status(name).last_deploy.parse().unwrap()
}

/// An agent with its zone and the local CA, and a container (alias `www`)
/// for each suffix: the agent, the names, and a second after the last
/// deploy (status shows seconds), from which the test's clock counts.
fn deployed(test: &str, suffixes: &[&str]) -> Option<(TestAgent, Vec<String>, DateTime<Utc>)> {
    prerequisites_and(test, &["dig", "curl"])?;
    let agent = TestAgent::start(Options {
        extra_toml: DNS.into(),
        ..Options::default()
    });
    let names: Vec<String> = suffixes.iter().map(|s| agent.name(s)).collect();
    for n in &names {
        ensure_www(&agent, n);
    }
    let t0 = match names.last() {
        Some(n) => last_deploy(&agent, n) + TimeDelta::seconds(1),
        None => Utc::now(),
    };
    Some((agent, names, t0))
}

#[test]
fn a_dry_run_says_what_it_would_do_and_changes_nothing() {
    let Some((agent, names, t0)) = deployed(
        "a_dry_run_says_what_it_would_do_and_changes_nothing",
        &["a", "b", "c"],
    ) else {
        return;
    };
    let before: Vec<_> = names.iter().map(|n| agent.status(n)).collect();
    let (out, r) = sweep(&agent, t0 + day() * 8, true);
    assert_ok(&out, "dry run");
    for n in &names {
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
    let after: Vec<_> = names.iter().map(|n| agent.status(n)).collect();
    assert_eq!(before, after, "a dry run changes no record");
    assert!(served(&agent, &www(&names[0])), "a dry run stops nothing");
    let table = text(&agent.devhost(&["cleanup", "--dry-run", "--now", &stamp(t0 + day() * 8)]));
    assert!(table.contains("(dry run, nothing changed)"), "{table}");
    assert!(
        table.contains(&format!("{}  would disable", names[0])),
        "{table}"
    );
}

#[test]
fn only_root_or_the_admin_group_may_sweep() {
    let Some((agent, _, _)) = deployed("only_root_or_the_admin_group_may_sweep", &[]) else {
        return;
    };
    let out = agent.devhost_as(65534, 65534, &["cleanup", "--dry-run"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("may not run the cleanup"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_sweep_time_that_is_not_rfc3339_is_refused() {
    let Some((agent, _, _)) = deployed("a_sweep_time_that_is_not_rfc3339_is_refused", &[]) else {
        return;
    };
    let out = agent.devhost(&["cleanup", "--now", "yesterday"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("\"yesterday\" is not an RFC 3339 time"));
}

#[test]
fn an_unused_container_is_disabled() {
    let Some((agent, names, t0)) = deployed("an_unused_container_is_disabled", &["a", "p"]) else {
        return;
    };
    let (a, pinned) = (&names[0], &names[1]);
    assert!(served(&agent, &www(a)) && in_zone(&agent, &www(a)));
    assert_ok(&agent.devhost(&["pin", pinned]), "pin");
    let (out, r) = sweep(&agent, t0 + day() * 8, false);
    assert_ok(&out, "sweep");
    assert_eq!(
        (&r[a]["action"], &r[a]["result"]),
        (&"disable".into(), &"done".into()),
        "{r}"
    );
    let s = agent
        .try_status(a)
        .expect("a disabled container keeps its record");
    assert_eq!((s.state.as_str(), s.enabled), ("stopped", false), "{s:?}");
    assert_eq!(s.certificate, None, "certificate dropped: {s:?}");
    agent.wait_no_process(a);
    assert!(
        !served(&agent, &www(a)),
        "no HTTPS route to a disabled container"
    );
    assert!(
        !in_zone(&agent, &www(a)),
        "no DNS name for a disabled container"
    );
    assert!(served(&agent, &www(pinned)), "others untouched");
    let compat: serde_json::Value =
        serde_json::from_slice(&std::fs::read(agent.dir.join(format!("compat/{a}.json"))).unwrap())
            .unwrap();
    assert_eq!(compat["enabled"], false);
    let log = agent.log();
    assert!(
        log.contains("cleanup: disabling: last deploy 8 days ago"),
        "decision logged with the age:\n{log}"
    );
}

#[test]
fn a_pinned_container_is_kept_until_it_is_unpinned() {
    let Some((agent, names, t0)) =
        deployed("a_pinned_container_is_kept_until_it_is_unpinned", &["c"])
    else {
        return;
    };
    let c = &names[0];
    assert_ok(&agent.devhost(&["pin", c]), "pin");
    let (out, r) = sweep(&agent, t0 + day() * 44, false);
    assert_ok(&out, "sweep");
    assert_eq!(
        (&r[c]["action"], &r[c]["reason"]),
        (&"keep".into(), &"pinned".into())
    );
    assert!(served(&agent, &www(c)), "still served");
    assert_ok(&agent.devhost(&["unpin", c]), "unpin");
    let (out, r) = sweep(&agent, t0 + day() * 44, false);
    assert_ok(&out, "sweep after unpin");
    assert_eq!(
        (&r[c]["action"], &r[c]["result"]),
        (&"delete".into(), &"done".into()),
        "{r}"
    );
}

#[test]
fn an_extended_container_is_kept_until_its_extension_ends() {
    let Some((agent, names, t0)) = deployed(
        "an_extended_container_is_kept_until_its_extension_ends",
        &["b"],
    ) else {
        return;
    };
    let b = &names[0];
    let out = agent.devhost(&["extend", b, "--days", "20"]);
    assert_ok(&out, "extend");
    assert!(text(&out).contains("to be disabled at"), "{}", text(&out));
    let (out, r) = sweep(&agent, t0 + day() * 8, false);
    assert_ok(&out, "sweep");
    assert_eq!(r[b]["action"], "keep", "{r}");
    assert!(
        r[b]["reason"]
            .as_str()
            .unwrap()
            .contains("to be disabled at"),
        "{r}"
    );
    assert!(served(&agent, &www(b)), "still served");
    let (out, r) = sweep(&agent, t0 + day() * 31, false);
    assert_ok(&out, "sweep after the extension");
    assert_eq!(r[b]["action"], "disable", "{r}");
}

#[test]
fn an_extension_beyond_max_extend_days_is_refused() {
    let Some((agent, names, _)) =
        deployed("an_extension_beyond_max_extend_days_is_refused", &["b"])
    else {
        return;
    };
    let out = agent.devhost(&["extend", &names[0], "--days", "1000"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("cleanup.max_extend_days"),
        "{}",
        text(&out)
    );
    assert_eq!(agent.status(&names[0]).keep_until, None);
}

#[test]
fn a_deploy_re_enables_a_disabled_container() {
    let Some((agent, names, t0)) = deployed("a_deploy_re_enables_a_disabled_container", &["a"])
    else {
        return;
    };
    let a = &names[0];
    let (out, _) = sweep(&agent, t0 + day() * 8, false);
    assert_ok(&out, "sweep");
    assert!(!agent.status(a).enabled, "disabled by the sweep");
    ensure_www(&agent, a);
    let s = agent.status(a);
    assert_eq!((s.state.as_str(), s.enabled), ("running", true), "{s:?}");
    assert!(
        served(&agent, &www(a)) && in_zone(&agent, &www(a)),
        "served again"
    );
}

#[test]
fn a_container_unused_for_31_days_is_deleted() {
    let Some((agent, names, t0)) =
        deployed("a_container_unused_for_31_days_is_deleted", &["a", "p"])
    else {
        return;
    };
    let (a, pinned) = (&names[0], &names[1]);
    assert_ok(&agent.devhost(&["pin", pinned]), "pin");
    let (out, r) = sweep(&agent, t0 + day() * 31, false);
    assert_ok(&out, "sweep at +31 days");
    assert_eq!(
        (&r[a]["action"], &r[a]["result"]),
        (&"delete".into(), &"done".into()),
        "{r}"
    );
    assert!(agent.try_status(a).is_none(), "a deleted");
    let list = text(&agent.devhost(&["list"]));
    assert!(
        !list.contains(a.as_str()) && list.contains(pinned.as_str()),
        "{list}"
    );
    assert!(!in_zone(&agent, &www(a)));
}

/// Keeps a file in a container's root immutable while it lives (so the
/// container cannot be deleted), also if the test fails.
struct Immutable(std::path::PathBuf);

impl Immutable {
    fn make(agent: &TestAgent, name: &str) -> Immutable {
        let stuck = agent
            .dir
            .join(format!("containers/{name}/etc/devhost-test-immutable"));
        std::fs::write(&stuck, "x").unwrap();
        let out = Command::new("chattr")
            .arg("+i")
            .arg(&stuck)
            .output()
            .unwrap();
        assert_ok(&out, "chattr +i");
        Immutable(stuck)
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).output();
    }
}

#[test]
fn one_failed_deletion_does_not_stop_the_sweep() {
    let Some(()) = prerequisites_and("one_failed_deletion_does_not_stop_the_sweep", &["chattr"])
    else {
        return;
    };
    let Some((agent, names, t0)) =
        deployed("one_failed_deletion_does_not_stop_the_sweep", &["b", "c"])
    else {
        return;
    };
    let (b, c) = (&names[0], &names[1]);
    let stuck = Immutable::make(&agent, b);
    let (out, r) = sweep(&agent, t0 + day() * 44, false);
    drop(stuck);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failure is the sweep's exit code"
    );
    assert_eq!(r[b]["action"], "delete", "{r}");
    assert!(
        r[b]["result"].as_str().unwrap().starts_with("failed: "),
        "{r}"
    );
    assert_eq!(
        (&r[c]["action"], &r[c]["result"]),
        (&"delete".into(), &"done".into()),
        "{r}"
    );
    assert!(
        agent.try_status(c).is_none(),
        "c deleted despite b's failure"
    );
}

#[test]
fn a_failed_deletion_is_retried_by_the_next_sweep() {
    let Some(()) = prerequisites_and(
        "a_failed_deletion_is_retried_by_the_next_sweep",
        &["chattr"],
    ) else {
        return;
    };
    let Some((agent, names, t0)) =
        deployed("a_failed_deletion_is_retried_by_the_next_sweep", &["b"])
    else {
        return;
    };
    let b = &names[0];
    let stuck = Immutable::make(&agent, b);
    let (out, r) = sweep(&agent, t0 + day() * 44, false);
    drop(stuck);
    assert_eq!(out.status.code(), Some(1), "{r}");
    let (out, r) = sweep(&agent, t0 + day() * 44, false);
    assert_ok(&out, "retry");
    assert_eq!(r[b]["result"], "done", "{r}");
    let (out, r) = sweep(&agent, t0 + day() * 44, false);
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

/// An agent counting activity, with a container (alias `www`) last
/// deployed ten days ago as far as its record says: the agent and its name.
fn ten_days_old(test: &str) -> Option<(TestAgent, String)> {
    prerequisites_and(test, &["curl"])?;
    let mut agent = TestAgent::start(Options {
        extra_toml: "[cleanup]\ncount_activity = true\n".into(),
        ..Options::default()
    });
    let name = agent.name("old");
    ensure_www(&agent, &name);
    agent.stop_agent(nix::sys::signal::Signal::SIGTERM);
    age_record(&agent, &name, 10);
    agent.spawn();
    Some((agent, name))
}

/// The entry's reason starts with `want`.
#[track_caller]
fn assert_reason(r: &serde_json::Value, name: &str, want: &str) {
    assert!(r[name]["reason"].as_str().unwrap().starts_with(want), "{r}");
}

#[test]
fn with_activity_counted_a_proxied_request_postpones_disabling() {
    let Some((agent, web)) =
        ten_days_old("with_activity_counted_a_proxied_request_postpones_disabling")
    else {
        return;
    };
    assert!(served(&agent, &www(&web)));
    let (out, r) = sweep(&agent, Utc::now(), false);
    assert_ok(&out, "sweep");
    assert_eq!(r[&web]["action"], "keep", "{r}");
    assert_reason(&r, &web, "last use 0 minutes ago");
}

#[test]
fn with_activity_counted_provisioning_postpones_disabling() {
    let Some((agent, prov)) =
        ten_days_old("with_activity_counted_provisioning_postpones_disabling")
    else {
        return;
    };
    let envdir = agent.dir.join("envdir");
    std::fs::create_dir_all(&envdir).unwrap();
    std::fs::write(envdir.join("provision.sh"), "RUN true\n").unwrap();
    assert_ok(
        &agent.devhost(&["provision", &prov, envdir.to_str().unwrap()]),
        "provision",
    );
    let s = agent.status(&prov);
    assert!(s.last_activity.is_some(), "provision recorded: {s:?}");
    let (out, r) = sweep(&agent, Utc::now(), false);
    assert_ok(&out, "sweep");
    assert_eq!(r[&prov]["action"], "keep", "{r}");
    assert_reason(&r, &prov, "last use 0 minutes ago");
}

#[test]
fn with_activity_counted_an_idle_container_is_disabled_by_its_last_deploy() {
    let Some((agent, idle)) =
        ten_days_old("with_activity_counted_an_idle_container_is_disabled_by_its_last_deploy")
    else {
        return;
    };
    let (out, r) = sweep(&agent, Utc::now(), false);
    assert_ok(&out, "sweep");
    assert_eq!(r[&idle]["action"], "disable", "{r}");
    assert!(!agent.status(&idle).enabled);
    assert_reason(&r, &idle, "last deploy 10 days ago");
}

#[test]
fn starting_a_container_disabled_by_cleanup_is_refused_saying_what_to_do() {
    let Some((agent, idle)) =
        ten_days_old("starting_a_container_disabled_by_cleanup_is_refused_saying_what_to_do")
    else {
        return;
    };
    let (out, _) = sweep(&agent, Utc::now(), false);
    assert_ok(&out, "sweep");
    let out = agent.devhost(&["start", &idle]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("was disabled by cleanup (last deploy 10 days ago")
            && text(&out).contains("devhost extend"),
        "{}",
        text(&out)
    );
    assert_eq!(agent.status(&idle).state.as_str(), "stopped");
}

#[test]
fn a_container_disabled_by_cleanup_starts_again_after_an_extension() {
    let Some((agent, idle)) =
        ten_days_old("a_container_disabled_by_cleanup_starts_again_after_an_extension")
    else {
        return;
    };
    let (out, _) = sweep(&agent, Utc::now(), false);
    assert_ok(&out, "sweep");
    let out = agent.devhost(&["extend", &idle, "--days", "3"]);
    assert_ok(&out, "extend");
    assert!(
        text(&out).contains("it is still disabled"),
        "{}",
        text(&out)
    );
    assert_ok(&agent.devhost(&["start", &idle]), "start after extend");
    let s = agent.status(&idle);
    assert_eq!((s.state.as_str(), s.enabled), ("running", true), "{s:?}");
    assert!(served(&agent, &www(&idle)), "routed again");
}

#[test]
fn a_proxied_request_recorded_by_a_sweep_survives_an_agent_restart() {
    let Some((mut agent, web)) =
        ten_days_old("a_proxied_request_recorded_by_a_sweep_survives_an_agent_restart")
    else {
        return;
    };
    assert!(served(&agent, &www(&web)));
    // The sweep writes the proxied request into the record.
    let (out, _) = sweep(&agent, Utc::now(), false);
    assert_ok(&out, "sweep");
    agent.stop_agent(nix::sys::signal::Signal::SIGTERM);
    agent.spawn();
    let s = agent.status(&web);
    assert!(s.last_activity.is_some(), "{s:?}");
    let (_, r) = sweep(&agent, Utc::now() + day() * 6, true);
    assert_eq!(r[&web]["action"], "keep", "{r}");
    let (_, r) = sweep(&agent, Utc::now() + day() * 8, true);
    assert_eq!(r[&web]["action"], "disable", "{r}");
}
