//! Admission: an operation meets the current record. Authorization (who may
//! create, who may manage which container), address allocation for a new
//! container, and the job that will carry the operation out.

use super::op::Admits;
use super::{ops, Op, Supervisor, SupervisorError};
use crate::access::Caller;
use crate::container::{ContainerName, Record};
use crate::net::pool::AddressPool;
use crate::state::Quarantined;
use std::collections::BTreeSet;

impl Supervisor {
    /// Authorize an operation against the current record and turn it into a job.
    pub(super) fn admit(
        &self,
        name: &ContainerName,
        op: &Op,
        caller: &Caller,
        current: Option<Record>,
    ) -> Result<ops::Job, SupervisorError> {
        let forbidden = |r: &Record| SupervisorError::NotOwner {
            name: name.clone(),
            owner: r.owner_uid,
            verb: op.verb(),
        };
        match (self.quarantined.get(name), op.admits()) {
            (Some(q), Admits::Quarantined) => return self.admit_quarantined(name, op, caller, q),
            (Some(q), _) => {
                return Err(SupervisorError::Quarantined {
                    name: name.clone(),
                    file: q.file.clone(),
                    why: q.why.clone(),
                })
            }
            (None, Admits::Quarantined) => {
                return Err(SupervisorError::NotQuarantined(name.clone()))
            }
            (None, Admits::Existing) if current.is_none() => {
                return Err(SupervisorError::NoSuchContainer(name.clone()))
            }
            (None, _) => {}
        }
        match (op, current) {
            (Op::Ensure(spec), None) => {
                if !caller.may_create() {
                    return Err(SupervisorError::MayNotCreate {
                        uid: caller.uid,
                        user_group: self.env.cfg.access.user_group.clone(),
                        admin_group: self.env.cfg.access.admin_group.clone(),
                    });
                }
                name.check_new(self.records.keys().chain(self.quarantined.keys()))?;
                let root = self.env.cfg.paths.containers_dir.join(name.as_str());
                if root.symlink_metadata().is_ok() {
                    // Not ours to build on, nor to remove on a rollback.
                    return Err(SupervisorError::RootExists {
                        name: name.clone(),
                        root,
                    });
                }
                if self.env.nix_safety.builders_as_root && !caller.admin {
                    return Err(SupervisorError::BuildsAsRoot {
                        admin_group: self.env.cfg.access.admin_group.clone(),
                    });
                }
                let pool = AddressPool::new(self.env.cfg.network.pool);
                let used: BTreeSet<u32> = self
                    .records
                    .values()
                    .map(|r| r.addresses.index)
                    .chain(self.quarantined.values().filter_map(|q| q.index))
                    .collect();
                let addresses = pool.allocate(&used).map_err(SupervisorError::Addresses)?;
                let mut limits = self.env.cfg.default_limits.clone();
                limits.merge(&spec.limits);
                let mut record = Record::new(
                    name.clone(),
                    caller.owner_for(spec.owner_uid),
                    spec.channel.clone(),
                    addresses,
                    self.env.clock.now(),
                );
                record.aliases = spec.aliases.clone();
                record.limits = limits;
                record.upstreams = spec.upstreams.clone().unwrap_or_default();
                record.disk_size = spec.disk_size;
                record.image_url = spec.image_url.clone();
                record.sleep_after = spec.sleep_after.unwrap_or_default();
                Ok(ops::Job::Create {
                    record,
                    caller: caller.clone(),
                })
            }
            (Op::Ensure(spec), Some(r)) => {
                if !caller.may_manage(r.owner_uid) {
                    return Err(forbidden(&r));
                }
                Ok(ops::Job::Refresh {
                    record: r,
                    spec: spec.clone(),
                })
            }
            (Op::Destroy, None) => Ok(ops::Job::Nothing(format!(
                "no container named {name}; nothing to destroy"
            ))),
            (Op::Expire { .. } | Op::Sleep, None) => Ok(ops::Job::Nothing(format!(
                "container {name} no longer exists"
            ))),
            (_, None) => Err(SupervisorError::NoSuchContainer(name.clone())),
            (op, Some(r)) => {
                if !caller.may_manage(r.owner_uid) {
                    return Err(forbidden(&r));
                }
                Ok(match op {
                    Op::Start => ops::Job::Start(r),
                    Op::Provision(plan) => ops::Job::Provision(r, plan.clone()),
                    Op::Stop => ops::Job::Stop(r),
                    Op::Pin(pinned) => ops::Job::Pin(r, *pinned),
                    Op::Extend { days } => ops::Job::Extend(r, *days),
                    Op::Expire { now } => ops::Job::Expire(r, *now),
                    Op::Destroy => ops::Job::Destroy(r),
                    Op::Wake => ops::Job::Wake(r),
                    Op::Sleep => ops::Job::Sleep(r),
                    Op::Ensure(_) | Op::Adopt | Op::Forget => unreachable!("matched above"),
                })
            }
        }
    }

    /// Adopt or forget a quarantined name: admins only.
    fn admit_quarantined(
        &self,
        name: &ContainerName,
        op: &Op,
        caller: &Caller,
        q: &Quarantined,
    ) -> Result<ops::Job, SupervisorError> {
        if !caller.admin {
            return Err(SupervisorError::AdminOnly {
                uid: caller.uid,
                verb: op.verb(),
            });
        }
        let pool = AddressPool::new(self.env.cfg.network.pool);
        match op {
            Op::Adopt => {
                let record = self.env.store.quarantined_record(name).map_err(|source| {
                    SupervisorError::Record {
                        what: "adopting",
                        name: name.clone(),
                        source,
                    }
                })?;
                let clash = self
                    .records
                    .values()
                    .find(|r| r.addresses.index == record.addresses.index);
                if let Some(other) = clash {
                    return Err(SupervisorError::AddressTaken {
                        name: name.clone(),
                        address: record.addresses.local,
                        other: other.name.clone(),
                    });
                }
                Ok(ops::Job::Adopt(record))
            }
            Op::Forget => {
                // What remains is found by name; the address only matters
                // for what the file still tells.
                let addresses = q
                    .index
                    .and_then(|i| pool.pair(i))
                    .or_else(|| pool.pair(0))
                    .expect("a pool has a block");
                let record = crate::container::Record::new(
                    name.clone(),
                    0,
                    "file:///forgotten".parse().expect("a channel URL"),
                    addresses,
                    self.env.clock.now(),
                );
                Ok(ops::Job::Forget(record))
            }
            _ => unreachable!("only adopt and forget admit quarantined names"),
        }
    }
}
