//! Admission: an operation meets the current record. Authorization (who may
//! create, who may manage which container), address allocation for a new
//! container, and the job that will carry the operation out.

use super::{ops, Op, Supervisor};
use crate::access::Caller;
use crate::api::types::ApiError;
use crate::container::{ContainerName, Phase, Record};
use crate::net::pool::AddressPool;
use std::collections::BTreeSet;

impl Supervisor {
    /// Authorize an operation against the current record and turn it into a job.
    pub(super) fn admit(
        &self,
        name: &ContainerName,
        op: &Op,
        caller: &Caller,
        current: Option<Record>,
    ) -> Result<ops::Job, ApiError> {
        let forbidden = |r: &Record| {
            ApiError::forbidden(format!(
                "container {name} belongs to uid {}; only its owner or an admin may {} it",
                r.owner_uid,
                op.verb()
            ))
        };
        match (op, current) {
            (Op::Ensure(spec), None) => {
                if !caller.may_create() {
                    return Err(ApiError::forbidden(format!(
                        "uid {} may not create containers (not root, not in group {:?} or {:?})",
                        caller.uid, self.env.cfg.access.user_group, self.env.cfg.access.admin_group
                    )));
                }
                name.check_new(self.records.keys())?;
                if self.env.nix_safety.builders_as_root && !caller.admin {
                    return Err(ApiError::forbidden(format!(
                        "this host's Nix builds as root (no build users), so a channel's code would run as root: only root and group {:?} may create containers until build users exist (see devhost info)",
                        self.env.cfg.access.admin_group
                    )));
                }
                let pool = AddressPool::new(self.env.cfg.pool);
                let used: BTreeSet<u32> =
                    self.records.values().map(|r| r.addresses.index).collect();
                let addresses = pool
                    .allocate(&used)
                    .map_err(|e| ApiError::failed(e.to_string()))?;
                let now = chrono::Utc::now();
                let mut limits_new = self.env.cfg.default_limits.clone();
                limits_new.merge(&spec.limits);
                let record = Record {
                    name: name.clone(),
                    owner_uid: caller.owner_for(spec.owner_uid),
                    channel: spec.channel.clone(),
                    aliases: spec.aliases.clone(),
                    addresses,
                    system_path: None,
                    created: now,
                    last_deploy: now,
                    enabled: true,
                    pinned: false,
                    keep_until: None,
                    last_activity: None,
                    phase: Phase::Creating,
                    established: false,
                    want_running: true,
                    limits: limits_new,
                    upstreams: spec.upstreams.clone().unwrap_or_default(),
                    disk_size: spec.disk_size,
                    image_url: spec.image_url.clone(),
                };
                Ok(ops::Job::Ensure {
                    new: true,
                    record,
                    caller: caller.clone(),
                    spec: spec.clone(),
                })
            }
            (Op::Ensure(spec), Some(r)) => {
                if !caller.may_manage(r.owner_uid) {
                    return Err(forbidden(&r));
                }
                Ok(ops::Job::Ensure {
                    new: false,
                    record: r,
                    caller: caller.clone(),
                    spec: spec.clone(),
                })
            }
            (Op::Destroy, None) => Ok(ops::Job::Nothing(format!(
                "no container named {name}; nothing to destroy"
            ))),
            (Op::Expire { .. }, None) => Ok(ops::Job::Nothing(format!(
                "container {name} no longer exists"
            ))),
            (_, None) => Err(ApiError::not_found(format!("no container named {name}"))),
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
                    Op::Ensure(_) => unreachable!("matched above"),
                })
            }
        }
    }
}
