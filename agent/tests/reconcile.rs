//! On start the agent reconciles its records with reality (processes,
//! network namespaces, NAT table, hosts block, compatibility records) and
//! repairs or reports every difference.

mod common;

use common::*;
use nix::sys::signal::Signal;
use std::process::Command;

fn findings(agent: &TestAgent) -> Vec<String> {
    let out = agent.devhost(&["--json", "info"]);
    assert_ok(&out, "info");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn reconcile_repairs_and_reports_differences() {
    let Some(()) = prerequisites("reconcile_repairs_and_reports_differences") else {
        return;
    };
    let ch = channel();
    let mut agent = TestAgent::start(Options::default());
    let died = agent.name("died");
    let lied = agent.name("lied");
    assert_ok(&agent.devhost(&["ensure", &died, &ch.url]), "ensure died");
    assert_ok(&agent.devhost(&["ensure", &lied, &ch.url]), "ensure lied");
    let died_addr = agent.address(&died);
    let lied_addr = agent.address(&lied);

    agent.stop_agent(Signal::SIGTERM);
    // While the agent is away: a container dies, a record says "stopped" for
    // a running container, someone deletes the NAT table and the hosts
    // block, an orphaned namespace and a stale compat record appear.
    let pid = nspawn_pids(&agent.dir.join("containers"))
        .into_iter()
        .find(|(_, n)| n == &died)
        .unwrap()
        .0;
    for child in std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap()
        .split_whitespace()
    {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.parse().unwrap()),
            Signal::SIGKILL,
        )
        .unwrap();
    }
    agent.wait_no_process(&died);
    let rec_path = agent.dir.join(format!("state/records/{lied}.json"));
    let rec = std::fs::read_to_string(&rec_path)
        .unwrap()
        .replace("\"phase\": \"running\"", "\"phase\": \"stopped\"");
    std::fs::write(&rec_path, rec).unwrap();
    assert!(Command::new("nft")
        .args(["delete", "table", "ip", &agent.table])
        .status()
        .unwrap()
        .success());
    std::fs::write(agent.dir.join("hosts"), "127.0.0.1 localhost\n").unwrap();
    let orphan_ns = format!("{}{}", agent.netns_prefix, agent.name("orph"));
    assert!(Command::new("ip")
        .args(["netns", "add", &orphan_ns])
        .status()
        .unwrap()
        .success());
    let stale = agent
        .dir
        .join(format!("compat/{}.json", agent.name("gone")));
    std::fs::write(&stale, "{}").unwrap();

    agent.spawn();
    let f = findings(&agent);
    let has = |needle: &str| f.iter().any(|x| x.contains(needle));
    assert!(
        has(&format!(
            "{died}: recorded as running but not running; marked stopped"
        )),
        "{f:#?}"
    );
    assert!(
        has(&format!(
            "{lied}: found running (recorded stopped); adopted"
        )),
        "{f:#?}"
    );
    assert!(
        has(&format!(
            "network namespace {orphan_ns} had no container record; removed"
        )),
        "{f:#?}"
    );
    assert!(has("stale compatibility record removed"), "{f:#?}");

    assert_eq!(agent.status(&died).state.as_str(), "stopped");
    assert_eq!(agent.status(&lied).state.as_str(), "running");
    assert!(!std::path::Path::new("/run/netns").join(&orphan_ns).exists());
    assert!(!stale.exists());
    let table = agent.nft_table().expect("NAT table recreated");
    assert!(
        table.contains(&died_addr.to_string()) && table.contains(&lied_addr.to_string()),
        "{table}"
    );
    let hosts = agent.hosts();
    assert!(
        hosts.contains(&format!("{died_addr} {died}"))
            && hosts.contains(&format!("{lied_addr} {lied}")),
        "{hosts}"
    );

    // The dead one starts again.
    assert_ok(&agent.devhost(&["start", &died]), "start after death");
    assert_eq!(
        http_get(died_addr, 80).unwrap().trim(),
        format!("hello from fc {died}")
    );
}

#[test]
fn one_agent_per_state_and_socket() {
    let Some(()) = prerequisites("one_agent_per_state_and_socket") else {
        return;
    };
    let agent = TestAgent::start(Options::default());
    let out = Command::new(DEVHOST)
        .args(["agent", "--config"])
        .arg(&agent.config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out).contains("another devhost agent is already running"),
        "{}",
        text(&out)
    );
    assert_ok(&agent.devhost(&["list"]), "first agent still serves");

    let bad = agent.dir.join("bad.toml");
    std::fs::write(&bad, "[network]\npool = \"10.0.0.1/8\"\n").unwrap();
    let out = Command::new(DEVHOST)
        .args(["agent", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("network.pool: 10.0.0.1/8 has host bits set"),
        "{}",
        text(&out)
    );
}

/// Issue 15's first finding: a truncated record of a running container used
/// to make the agent remove its network, hand its address out again and let
/// another user's ensure remove its root.
#[test]
fn a_corrupt_record_is_quarantined_and_its_running_container_kept() {
    let Some(()) = prerequisites("a_corrupt_record_is_quarantined_and_its_running_container_kept")
    else {
        return;
    };
    let ch = channel();
    let mut agent = TestAgent::start(Options::default());
    let name = agent.name("qa");
    let users = users_gid();
    assert_ok(
        &agent.devhost_as(ALICE, users, &["ensure", &name, &ch.url]),
        "alice's ensure",
    );
    let addr = agent.address(&name);
    let ns = format!("{}{name}", agent.netns_prefix);

    agent.stop_agent(Signal::SIGTERM);
    let rec_path = agent.dir.join(format!("state/records/{name}.json"));
    let whole = std::fs::read(&rec_path).unwrap();
    std::fs::write(&rec_path, &whole[..40]).unwrap();
    agent.spawn();

    let f = findings(&agent);
    assert!(
        f.iter()
            .any(|x| x.contains(&format!("{name}: quarantined"))),
        "{f:#?}"
    );
    assert!(!f.iter().any(|x| x.contains(&ns)), "{f:#?}");
    // Still running, still networked, still answering at its address.
    assert!(std::path::Path::new("/run/netns").join(&ns).exists());
    assert!(nspawn_pids(&agent.dir.join("containers"))
        .iter()
        .any(|(_, n)| n == &name));
    assert!(agent.hosts().contains(&format!("{addr} {name}")));

    // Bob cannot take the name; a new container gets another address.
    let out = agent.devhost_as(BOB, users, &["ensure", &name, &ch.url]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("is quarantined"), "{}", text(&out));
    let other = agent.name("qb");
    assert_ok(
        &agent.devhost_as(BOB, users, &["ensure", &other, &ch.url]),
        "bob's other ensure",
    );
    assert_ne!(agent.address(&other), addr);

    // An admin repairs the record and adopts it: alice's again, running.
    std::fs::write(
        agent.dir.join(format!("state/quarantine/{name}.json")),
        &whole,
    )
    .unwrap();
    assert_ok(&agent.devhost(&["adopt", &name]), "adopt");
    let st = agent.status(&name);
    assert_eq!((st.state.as_str(), st.owner_uid), ("running", ALICE));
    assert!(!agent
        .dir
        .join(format!("state/quarantine/{name}.json"))
        .exists());
}
