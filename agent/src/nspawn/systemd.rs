//! The systemd backend: each container is a transient unit
//! (`devhost-NAME.service`) started through systemd's D-Bus API with the
//! properties planned in [`super::unit`], registered with systemd-machined by
//! nspawn, so `systemctl`, `machinectl` and `journalctl -M NAME` see it.
//! Readiness is the start job finishing (Type=notify: nspawn relays READY=1);
//! containers outlive the agent as a matter of course.

use super::backend::{Backend, Running, StartRequest};
use super::ready::{wait_ready, ReadyCheck};
use super::unit::{limit_properties, unit_description, unit_name, unit_properties, Prop, UnitSpec};
use super::NspawnError;
use crate::container::{ContainerName, Limits};
use crate::progress::Progress;
use async_trait::async_trait;
use futures_util::StreamExt;
use std::path::Path;
use std::time::Duration;
use zbus_systemd::machine1::ManagerProxy as Machines;
use zbus_systemd::systemd1::{ManagerProxy, ServiceProxy, UnitProxy};
use zbus_systemd::zbus;
use zbus_systemd::zvariant::{OwnedObjectPath, OwnedValue, Value};

pub struct SystemdBackend {
    conn: zbus::Connection,
    ready: ReadyCheck,
    start_timeout: Duration,
    stop_timeout: Duration,
}

fn dbus_err<'a>(
    name: &'a ContainerName,
    what: &'static str,
) -> impl FnOnce(zbus::Error) -> NspawnError + 'a {
    move |e| NspawnError::Machine {
        name: name.to_string(),
        what,
        source: Box::new(e),
    }
}

fn to_value(p: &Prop) -> OwnedValue {
    let v: Value = match p {
        Prop::Str(s) => Value::from(s.clone()),
        Prop::Bool(b) => Value::from(*b),
        Prop::U64(n) => Value::from(*n),
        Prop::Exec(path, argv) => Value::from(vec![(path.clone(), argv.clone(), false)]),
        Prop::Pairs(pairs) => Value::from(pairs.clone()),
        Prop::ExitStatus(codes, signals) => Value::from((codes.clone(), signals.clone())),
    };
    OwnedValue::try_from(v).expect("no file descriptors in unit properties")
}

fn to_values(props: Vec<(String, Prop)>) -> Vec<(String, OwnedValue)> {
    props.into_iter().map(|(k, v)| (k, to_value(&v))).collect()
}

const LIVE_STATES: [&str; 4] = ["active", "activating", "deactivating", "reloading"];

impl SystemdBackend {
    /// Connect to the system bus (fails clearly when there is none).
    pub async fn connect(
        ready: ReadyCheck,
        start_timeout: Duration,
        stop_timeout: Duration,
    ) -> Result<Self, NspawnError> {
        let bus = |what| {
            move |source| NspawnError::Bus {
                what,
                source: Box::new(source),
            }
        };
        let conn = zbus::Connection::system().await.map_err(bus(
            "cannot connect to the D-Bus system bus for the systemd backend",
        ))?;
        let m = ManagerProxy::new(&conn)
            .await
            .map_err(bus("reaching systemd's manager"))?;
        // Without a subscription systemd sends no JobRemoved signals.
        m.subscribe().await.map_err(bus("subscribing to systemd"))?;
        Ok(SystemdBackend {
            conn,
            ready,
            start_timeout,
            stop_timeout,
        })
    }

    async fn manager(&self) -> zbus::Result<ManagerProxy<'_>> {
        ManagerProxy::new(&self.conn).await
    }

    async fn main_pid(&self, path: &OwnedObjectPath) -> u32 {
        match ServiceProxy::builder(&self.conn).path(path.clone()) {
            Ok(b) => match b.build().await {
                Ok(s) => s.main_pid().await.unwrap_or(0),
                Err(_) => 0,
            },
            Err(_) => 0,
        }
    }

    /// Wait for the JobRemoved signal of `job`; its result ("done", "failed", …).
    async fn wait_job(
        &self,
        removed: &mut (impl futures_util::Stream<Item = zbus_systemd::systemd1::JobRemoved> + Unpin),
        job: &OwnedObjectPath,
        timeout: Duration,
    ) -> Option<String> {
        let wait = async {
            while let Some(sig) = removed.next().await {
                if let Ok(args) = sig.args() {
                    if args.job() == job {
                        return Some(args.result().to_string());
                    }
                }
            }
            None
        };
        tokio::time::timeout(timeout, wait).await.ok().flatten()
    }

    /// The last lines the unit wrote to the journal (since `from`: a
    /// unit's journal also holds earlier containers of the same name).
    async fn journal_tail(
        &self,
        unit: &str,
        from: Option<chrono::DateTime<chrono::Utc>>,
        lines: usize,
    ) -> String {
        let want = crate::logs::Want {
            lines,
            since: None,
            follow: false,
        };
        let argv = crate::logs::journal_argv(unit, from, &want);
        let out = tokio::process::Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(std::process::Stdio::null())
            .output()
            .await;
        match out {
            Ok(o) => String::from_utf8_lossy(&o.stdout).trim_end().to_string(),
            Err(e) => format!("(journalctl failed: {e})"),
        }
    }
}

#[async_trait]
impl Backend for SystemdBackend {
    fn kind(&self) -> &'static str {
        "systemd"
    }

    async fn start(&self, req: &StartRequest, progress: &Progress) -> Result<Running, NspawnError> {
        let name = &req.name;
        let unit = unit_name(name);
        let props = unit_properties(&UnitSpec {
            name,
            argv: &req.argv,
            netns_path: &req.netns_path,
            start_timeout_secs: self.start_timeout.as_secs(),
            stop_timeout_secs: self.stop_timeout.as_secs(),
            limits: &req.limits,
        });
        let m = self
            .manager()
            .await
            .map_err(dbus_err(name, "talking to systemd"))?;
        // A failed unit of an earlier run would block the name.
        let _ = m.reset_failed_unit(unit.clone()).await;
        let mut removed = m
            .receive_job_removed()
            .await
            .map_err(dbus_err(name, "subscribing to jobs"))?;
        // What this start logs; the journal of the unit has more.
        let from = chrono::Utc::now();
        let job = m
            .start_transient_unit(unit.clone(), "fail".into(), to_values(props), vec![])
            .await
            .map_err(dbus_err(name, "starting the transient unit"))?;
        progress.log(format!(
            "started {unit}; waiting for {}",
            self.ready.describe()
        ));
        let started = std::time::Instant::now();
        let result = self
            .wait_job(
                &mut removed,
                &job,
                self.start_timeout + Duration::from_secs(5),
            )
            .await;
        if result.as_deref() == Some("done") {
            progress.log(format!(
                "{unit} start job done after {} ms",
                started.elapsed().as_millis()
            ));
        }
        match result.as_deref() {
            Some("done") => {}
            other => {
                let what = other.unwrap_or("no answer from systemd");
                let tail = self.journal_tail(&unit, Some(from), 20).await;
                return Err(match other {
                    Some("timeout") | None => NspawnError::ReadyTimeout {
                        name: name.to_string(),
                        secs: self.start_timeout.as_secs(),
                        waiting_for: self.ready.describe(),
                        tail,
                    },
                    _ => NspawnError::ExitedDuringBoot {
                        name: name.to_string(),
                        status: format!("{unit} start job: {what}"),
                        tail,
                    },
                });
            }
        }
        let fallback = self.ready != ReadyCheck::Notify;
        if fallback
            && tokio::time::timeout(
                self.start_timeout,
                wait_ready(self.ready, None, req.address),
            )
            .await
            .is_err()
        {
            let _ = self.stop(name, Duration::from_secs(5), progress).await;
            return Err(NspawnError::ReadyTimeout {
                name: name.to_string(),
                secs: self.start_timeout.as_secs(),
                waiting_for: self.ready.describe(),
                tail: self.journal_tail(&unit, Some(from), 20).await,
            });
        }
        self.find(name)
            .await
            .ok_or_else(|| NspawnError::ExitedDuringBoot {
                name: name.to_string(),
                status: format!("{unit} was active and is gone"),
                tail: String::new(),
            })
    }

    async fn find(&self, name: &ContainerName) -> Option<Running> {
        let m = self.manager().await.ok()?;
        let path = m.get_unit(unit_name(name)).await.ok()?;
        let u = UnitProxy::builder(&self.conn)
            .path(path.clone())
            .ok()?
            .build()
            .await
            .ok()?;
        let state = u.active_state().await.ok()?;
        if !LIVE_STATES.contains(&state.as_str()) {
            return None;
        }
        Some(Running {
            name: name.clone(),
            pid: self.main_pid(&path).await,
        })
    }

    async fn list(&self) -> Vec<Running> {
        let Ok(m) = self.manager().await else {
            return Vec::new();
        };
        let units = m
            .list_units_by_patterns(
                LIVE_STATES.iter().map(|s| s.to_string()).collect(),
                vec!["devhost-*.service".into()],
            )
            .await
            .unwrap_or_default();
        let mut out = Vec::new();
        for u in units {
            let Some(n) =
                u.0.strip_prefix("devhost-")
                    .and_then(|s| s.strip_suffix(".service"))
            else {
                continue;
            };
            let Ok(name) = n.parse::<ContainerName>() else {
                continue;
            };
            // Only our containers' units, not another unit named devhost-*.
            if u.1 != unit_description(&name) {
                continue;
            }
            let pid = self.main_pid(&u.6).await;
            out.push(Running { name, pid });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    async fn stop(
        &self,
        name: &ContainerName,
        timeout: Duration,
        progress: &Progress,
    ) -> Result<(), NspawnError> {
        if self.find(name).await.is_none() {
            return Ok(());
        }
        let unit = unit_name(name);
        let m = self
            .manager()
            .await
            .map_err(dbus_err(name, "talking to systemd"))?;
        let mut removed = m
            .receive_job_removed()
            .await
            .map_err(dbus_err(name, "subscribing to jobs"))?;
        progress.log(format!(
            "stopping {unit}: poweroff (timeout {} s)",
            timeout.as_secs()
        ));
        let job = m
            .stop_unit(unit.clone(), "replace".into())
            .await
            .map_err(dbus_err(name, "stopping the unit"))?;
        // systemd itself kills the unit after its TimeoutStopUSec.
        let done = self
            .wait_job(&mut removed, &job, timeout + Duration::from_secs(10))
            .await;
        if done.is_none() || self.find(name).await.is_some() {
            progress.log(format!("{unit} did not stop; terminating machine {name}"));
            if let Ok(machines) = Machines::new(&self.conn).await {
                let _ = machines.terminate_machine(name.to_string()).await;
            }
            let _ = m.kill_unit(unit.clone(), "all".into(), 9).await;
            for _ in 0..100 {
                if self.find(name).await.is_none() {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            return Err(NspawnError::Unkillable {
                name: name.to_string(),
            });
        }
        Ok(())
    }

    async fn set_limits(&self, name: &ContainerName, limits: &Limits) -> Result<bool, NspawnError> {
        if self.find(name).await.is_none() || limits.is_empty() {
            return Ok(false);
        }
        let m = self
            .manager()
            .await
            .map_err(dbus_err(name, "talking to systemd"))?;
        m.set_unit_properties(unit_name(name), true, to_values(limit_properties(limits)))
            .await
            .map_err(dbus_err(name, "setting limits"))?;
        Ok(true)
    }

    async fn leader(&self, name: &ContainerName) -> Option<u32> {
        let run = self.find(name).await?;
        crate::sys::proc::children(run.pid).into_iter().next()
    }

    async fn console_tail(
        &self,
        name: &ContainerName,
        _console_log: &Path,
        lines: usize,
    ) -> String {
        self.journal_tail(&unit_name(name), None, lines).await
    }

    fn console_source(&self, name: &ContainerName, _console_log: &Path) -> crate::logs::Source {
        crate::logs::Source::Journal {
            unit: unit_name(name),
            from: None,
        }
    }
}
