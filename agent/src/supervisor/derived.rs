//! Files and kernel state derived from the records as a whole: the hosts
//! block, the NAT table, `/etc/devhost/NAME.json` and
//! `/etc/devhost/vm-configs/NAME.json`. A task of their own keeps
//! them in step: it always applies the newest snapshot of the records
//! (coalescing bursts of changes into one update) and writes only what
//! changed; jobs wait for it only before they report success, so NAT and
//! hosts updates overlap with a container's boot.

use super::Subsystems;
use crate::container::{Phase, Record};
use crate::net::{compat, hosts, nft};
use crate::sys::fs::{atomic_write, replace_file};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use tokio::sync::watch;

/// A version of the records, as the supervisor publishes it.
#[derive(Clone, Default)]
pub struct Snapshot {
    pub version: u64,
    pub records: Arc<Vec<Record>>,
    /// Quarantined containers whose address is known: they keep their
    /// hosts line and NAT while an admin decides.
    pub held: Arc<Vec<(Ipv4Addr, String)>>,
}

/// What the derived task has applied: the version and its outcome.
#[derive(Clone, Debug, Default)]
pub struct Applied {
    pub version: u64,
    /// Counts every attempt, retries of the same version included.
    pub attempt: u64,
    pub error: Option<Arc<DerivedError>>,
}

/// How long a failed sync waits before it is tried again by itself (unless
/// a new snapshot or a waiting job asks sooner).
const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// Run the derived-state task until the supervisor goes away.
pub async fn run(
    env: Arc<Subsystems>,
    mut snapshots: watch::Receiver<Snapshot>,
    applied: watch::Sender<Applied>,
    retry: Arc<tokio::sync::Notify>,
) {
    let mut d = Derived::default();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let snap = snapshots.borrow_and_update().clone();
        let refs: Vec<&Record> = snap.records.iter().collect();
        let mut result = d.sync(&env, &refs, &snap.held, false).await;
        if let Some(edge) = &env.edge {
            if let Err(e) = edge.apply(snap.records.clone()) {
                result = result.and(Err(DerivedError::Edge(e)));
            }
        }
        if let Err(e) = &result {
            tracing::error!("{e}");
            // Try everything again next time, whatever we believe is there.
            d = Derived::default();
        }
        let failed = result.is_err();
        applied.send_replace(Applied {
            version: snap.version,
            attempt,
            error: result.err().map(Arc::new),
        });
        if failed {
            // Try again: on a new snapshot, when a job waits for it, or
            // after a while by itself.
            tokio::select! {
                changed = snapshots.changed() => if changed.is_err() { return },
                () = retry.notified() => {}
                () = tokio::time::sleep(RETRY_AFTER) => {}
            }
        } else if snapshots.changed().await.is_err() {
            return;
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DerivedError {
    #[error("updating {}: {source}", path.display())]
    Mkdir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("updating {}: {source}", path.display())]
    File {
        path: std::path::PathBuf,
        source: crate::sys::fs::FsError,
    },
    #[error("updating nftables table {table}: {source}")]
    Nat {
        table: String,
        source: crate::net::NetError,
    },
    #[error("updating routes and certificates: {0}")]
    Edge(#[source] crate::edge::EdgeError),
}

/// A container is named in the hosts block, NAT set and compatibility
/// records once it has run or is starting — not while its first build and
/// network setup are under way (so that update overlaps the boot).
pub fn published(r: &Record) -> bool {
    r.established || matches!(r.phase, Phase::Starting | Phase::Running)
}

#[derive(Default)]
pub struct Derived {
    hosts: Option<Vec<(Ipv4Addr, String)>>,
    nat: Option<Vec<Ipv4Addr>>,
    compat: BTreeMap<String, String>,
    vm_configs: BTreeMap<String, String>,
}

/// The directory of `fc-devhost`'s `NAME.json` records.
pub fn vm_configs_dir(env: &Subsystems) -> std::path::PathBuf {
    env.cfg.paths.compat_dir.join("vm-configs")
}

/// Write `wanted` (file stem → content) into `dir` as `STEM.json`, each
/// file only when it differs from `written` (what this task wrote last),
/// and remove those of `written` no longer wanted.
fn sync_files(
    dir: &std::path::Path,
    wanted: &BTreeMap<String, String>,
    written: &BTreeMap<String, String>,
    force: bool,
) -> Result<(), DerivedError> {
    if !force && wanted == written {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|source| DerivedError::Mkdir {
        path: dir.to_path_buf(),
        source,
    })?;
    for (name, json) in wanted {
        if force || written.get(name) != Some(json) {
            let p = dir.join(format!("{name}.json"));
            atomic_write(&p, json.as_bytes(), 0o644)
                .map_err(|source| DerivedError::File { path: p, source })?;
        }
    }
    for name in written.keys() {
        if !wanted.contains_key(name) {
            let _ = std::fs::remove_file(dir.join(format!("{name}.json")));
        }
    }
    Ok(())
}

impl Derived {
    pub async fn sync(
        &mut self,
        env: &Subsystems,
        all: &[&Record],
        held: &[(Ipv4Addr, String)],
        force: bool,
    ) -> Result<(), DerivedError> {
        let cfg = &env.cfg;
        let records: Vec<&Record> = all.iter().copied().filter(|r| published(r)).collect();
        // Hosts: every container, by name.
        let entries: Vec<(Ipv4Addr, String)> = records
            .iter()
            .map(|r| (r.addresses.local, r.name.to_string()))
            .chain(held.iter().cloned())
            .collect();
        if force || self.hosts.as_ref() != Some(&entries) {
            let path = &cfg.paths.hosts_file;
            let existing = std::fs::read_to_string(path).unwrap_or_default();
            let text = hosts::render(&existing, &entries);
            if text != existing {
                replace_file(path, text.as_bytes(), 0o644).map_err(|source| {
                    DerivedError::File {
                        path: path.clone(),
                        source,
                    }
                })?;
            }
            self.hosts = Some(entries);
        }
        // NAT: every container address.
        let mut addrs: Vec<Ipv4Addr> = records
            .iter()
            .map(|r| r.addresses.local)
            .chain(held.iter().map(|(a, _)| *a))
            .collect();
        addrs.sort();
        if force || self.nat.as_ref() != Some(&addrs) {
            let script = nft::ruleset(&nft::NatSpec {
                table: &cfg.network.nft_table,
                pool: cfg.network.pool,
                out_interface: &cfg.network.nat_interface,
                containers: addrs.clone(),
            });
            env.nft
                .apply(&script)
                .await
                .map_err(|source| DerivedError::Nat {
                    table: cfg.network.nft_table.clone(),
                    source,
                })?;
            self.nat = Some(addrs);
        }
        // Compatibility records: the old tool's and fc-devhost's.
        let wanted: BTreeMap<String, String> = records
            .iter()
            .map(|r| (r.name.to_string(), compat::host_json(r)))
            .collect();
        sync_files(&cfg.paths.compat_dir, &wanted, &self.compat, force)?;
        self.compat = wanted;
        let wanted: BTreeMap<String, String> = records
            .iter()
            .map(|r| {
                let owner = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(r.owner_uid))
                    .ok()
                    .flatten()
                    .map(|u| u.name);
                (
                    r.name.to_string(),
                    crate::fcdevhost::vm_config_json(r, owner),
                )
            })
            .collect();
        sync_files(&vm_configs_dir(env), &wanted, &self.vm_configs, force)?;
        self.vm_configs = wanted;
        Ok(())
    }
}
