//! Reconcile records with reality when the agent starts. A record's phase
//! says what may be half done; the real world (processes, network
//! namespaces, veths, mounts) says what is. Every difference is repaired or
//! reported, and the findings stay visible through `devhost agent-info`.

use super::{steps, Subsystems};
use crate::container::{ContainerName, Phase, Record};
use crate::net::pool::AddressPool;
use crate::progress::Progress;
use crate::state::Quarantined;
use std::collections::{BTreeMap, BTreeSet};

/// The state the supervisor starts from.
pub struct Reconciled {
    pub records: Vec<Record>,
    /// Names held by a record kept aside, with what is known of it.
    pub quarantined: BTreeMap<ContainerName, Quarantined>,
    pub findings: Vec<String>,
}

pub async fn reconcile(env: &Subsystems) -> Reconciled {
    let loaded = env.store.load_all(env.clock.now().timestamp());
    let mut findings = loaded.findings;
    let quarantined = held_names(env, loaded.quarantined, &mut findings);
    let mut kept = Vec::new();
    let quiet = Progress::none();
    for mut r in loaded.records {
        let running = env.backend.find(&r.name).await.is_some();
        if !r.established {
            // Interrupted first creation: roll it back entirely (its build
            // died with the agent, builders and all: see nix::plan).
            match remove_completely(env, &r).await {
                Ok(()) => findings.push(format!(
                    "{}: creation was interrupted in phase {}; rolled back (ensure again to retry)",
                    r.name,
                    r.phase.as_str()
                )),
                Err(e) => {
                    findings.push(format!(
                        "{}: rolling back an interrupted creation failed: {e}",
                        r.name
                    ));
                    kept.push(r);
                }
            }
            continue;
        }
        let before = r.phase;
        let recorded = r.clone();
        match r.phase {
            Phase::Destroying => {
                match remove_completely(env, &r).await {
                    Ok(()) => findings.push(format!("{}: finished an interrupted destroy", r.name)),
                    Err(e) => {
                        findings.push(format!(
                            "{}: finishing an interrupted destroy failed: {e}",
                            r.name
                        ));
                        kept.push(r);
                    }
                }
                continue;
            }
            Phase::Stopping => {
                if let Err(e) = steps::stop_container(env, &r, &quiet).await {
                    findings.push(format!(
                        "{}: finishing an interrupted stop failed: {e}",
                        r.name
                    ));
                }
                r.phase = Phase::Stopped;
            }
            _ if running => {
                // It runs, so it is awake (a wake the agent did not see end).
                r.phase = Phase::Running;
                r.asleep_since = None;
            }
            // Asleep or stopped: kept so (a sleeping one stays routed).
            Phase::Stopped => {}
            _ if r.asleep_since.is_some() => {
                r.phase = Phase::Stopped;
                findings.push(format!(
                    "{}: waking it was interrupted (recorded {}); still asleep, the next request wakes it",
                    r.name,
                    before.as_str()
                ));
            }
            _ => {
                r.phase = Phase::Stopped;
                findings.push(format!(
                    "{}: recorded as {} but not running; marked stopped{}",
                    r.name,
                    before.as_str(),
                    if r.want_running {
                        " (start it with `devhost start`)"
                    } else {
                        ""
                    }
                ));
            }
        }
        if r.phase == Phase::Running && before != Phase::Running {
            findings.push(format!(
                "{}: found running (recorded {}); adopted",
                r.name,
                before.as_str()
            ));
        }
        let root = steps::root_dir(env, &r);
        if root.symlink_metadata().is_err() {
            findings.push(format!(
                "{}: its root directory {} is missing; record kept (a start makes an empty one: what was in it is gone)",
                r.name,
                root.display()
            ));
        }
        let plan = steps::net_plan(env, &r);
        if r.phase == Phase::Running && !env.netlink.netns_exists(&plan.netns) {
            findings.push(format!(
                "{}: running but its network namespace {} is gone; restart it to repair",
                r.name, plan.netns
            ));
        }
        if r != recorded {
            if let Err(e) = env.store.save(&r) {
                findings.push(format!(
                    "{}: saving the reconciled record failed: {e}",
                    r.name
                ));
            }
        }
        kept.push(r);
    }
    orphans(env, &kept, &quarantined, &mut findings).await;
    Reconciled {
        records: kept,
        quarantined,
        findings,
    }
}

/// The names quarantined files hold, each with its address block when the
/// file or the old tool's compatibility record (`NAME.json`, field `ip`)
/// still tells it.
fn held_names(
    env: &Subsystems,
    files: Vec<Quarantined>,
    findings: &mut Vec<String>,
) -> BTreeMap<ContainerName, Quarantined> {
    let pool = AddressPool::new(env.cfg.network.pool);
    let mut held = BTreeMap::new();
    for mut q in files {
        let Some(name) = q.name.clone() else {
            findings.push(format!(
                "{}: quarantined, not named for a container; holds nothing",
                q.file.display()
            ));
            continue;
        };
        if q.index.is_none() {
            q.index = std::fs::read(env.cfg.paths.compat_dir.join(format!("{name}.json")))
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v.get("ip")?.as_str()?.parse().ok())
                .and_then(|ip| pool.index_of(ip));
        }
        findings.push(format!(
            "{name}: quarantined ({}): {}; name{} held until `devhost adopt {name}` or `devhost forget {name}`",
            q.file.display(),
            q.why,
            match q.index.and_then(|i| pool.pair(i)) {
                Some(a) => format!(" and address {}", a.local),
                None => String::new(),
            }
        ));
        // The first file of a name (NAME.json) is the one adopt reads.
        held.entry(name).or_insert(q);
    }
    held
}

/// Everything of a container, its record last (what destroy does).
async fn remove_completely(env: &Subsystems, r: &Record) -> Result<(), super::SupervisorError> {
    steps::remove_everything(env, r, &Progress::none()).await?;
    Ok(env.store.remove(&r.name)?)
}

/// Things of ours on the host that no record explains.
async fn orphans(
    env: &Subsystems,
    records: &[Record],
    quarantined: &BTreeMap<ContainerName, Quarantined>,
    findings: &mut Vec<String>,
) {
    let held: BTreeSet<&str> = quarantined.keys().map(|n| n.as_str()).collect();
    let names: BTreeSet<&str> = records
        .iter()
        .map(|r| r.name.as_str())
        .chain(held.iter().copied())
        .collect();
    let prefix = &env.cfg.network.netns_prefix;
    for ns in env.netlink.list_netns(prefix) {
        let name = &ns[prefix.len()..];
        if name.parse::<crate::container::ContainerName>().is_err() {
            continue; // not a name this agent could have made
        }
        if !names.contains(name) {
            let cmd = crate::net::plan::IpBatch::host(vec![format!("netns delete {ns}")]);
            match env.netlink.run(&[cmd]).await {
                Ok(()) => findings.push(format!(
                    "network namespace {ns} had no container record; removed"
                )),
                Err(e) => findings.push(format!(
                    "network namespace {ns} has no container record; removing it failed: {e}"
                )),
            }
        }
    }
    for run in env.backend.list().await {
        if held.contains(run.name.as_str()) {
            findings.push(format!(
                "systemd-nspawn pid {} runs container {}, whose record is quarantined; left alone",
                run.pid, run.name
            ));
        } else if !names.contains(run.name.as_str()) {
            findings.push(format!(
                "systemd-nspawn pid {} runs container {} from {} without a record; left running (stop it by hand)",
                run.pid,
                run.name,
                env.cfg.paths.containers_dir.display()
            ));
        }
    }
    for e in std::fs::read_dir(&env.cfg.paths.containers_dir)
        .into_iter()
        .flatten()
        .flatten()
    {
        let fname = e.file_name().to_string_lossy().into_owned();
        if fname.parse::<ContainerName>().is_ok() && !names.contains(fname.as_str()) {
            findings.push(format!(
                "{}: a container root without a record; kept (a container {fname} cannot be created until an admin moves it away)",
                e.path().display()
            ));
        }
    }
    let containers_dir = env.cfg.paths.containers_dir.display().to_string();
    if let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") {
        for line in mountinfo.lines() {
            if let Some(mp) = line.split(' ').nth(4) {
                if mp.starts_with(&format!("{containers_dir}/")) {
                    findings.push(format!(
                        "mount at {mp} inside the container roots on the host; not touched"
                    ));
                }
            }
        }
    }
    // Compatibility records of containers that no longer exist.
    let dirs = [
        env.cfg.paths.compat_dir.clone(),
        super::derived::vm_configs_dir(env),
    ];
    for e in dirs
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flat_map(|rd| rd.flatten())
    {
        let fname = e.file_name().to_string_lossy().into_owned();
        let Some(stem) = fname.strip_suffix(".json") else {
            continue;
        };
        if stem.parse::<crate::container::ContainerName>().is_ok() && !names.contains(stem) {
            let _ = std::fs::remove_file(e.path());
            findings.push(format!(
                "{}: stale compatibility record removed",
                e.path().display()
            ));
        }
    }
}
