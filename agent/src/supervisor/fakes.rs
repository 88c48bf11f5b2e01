//! In-memory stand-ins for what the supervisor drives — the backend, the
//! network (`ip`), nftables and Nix — so that its logic runs in-process,
//! without root, in milliseconds. They share one [`World`]: the typed calls
//! made, in order, and the reality they left (running containers, network
//! namespaces, host links, the NAT table). Any step can be told to fail at
//! its N-th call, or to hang there until released (a hung peer, or a crash
//! point when the test then drops the runtime). The way youki's
//! `syscall/test.rs` records typed arguments.

use crate::container::ContainerName;
use crate::net::apply::{Netlink, Nft};
use crate::net::plan::IpBatch;
use crate::net::NetError;
use crate::nix::fetch::{Fetch, FetchError, Fetched, Fetcher};
use crate::nix::runner::NixBuilder;
use crate::nix::NixError;
use crate::nspawn::backend::{Backend, Running, StartRequest};
use crate::nspawn::NspawnError;
use crate::progress::Progress;
use crate::provision::provisioner::{ProvisionFailure, Provisioner, Request};
use crate::provision::ProvisionError;
use async_trait::async_trait;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// A kind of side effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Step {
    Build,
    NetUp,
    Sysctls,
    NetDown,
    Start,
    Stop,
    Nft,
    /// One provisioning step.
    Provision,
    /// A channel fetched.
    Fetch,
}

/// One call, with what identifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// A build; the container whose profile it links.
    Build(String),
    /// Network set up for a namespace.
    NetUp(String),
    Sysctls(String),
    /// A namespace removed.
    NetDown(String),
    Start(String),
    Stop(String),
    /// The NAT table, with the container addresses in it.
    Nft(Vec<String>),
    /// Provisioning step `1`-based of a container.
    Provision(String, usize),
    /// A channel fetched, by URL.
    Fetch(String),
}

impl Call {
    pub fn step(&self) -> Step {
        match self {
            Call::Build(_) => Step::Build,
            Call::NetUp(_) => Step::NetUp,
            Call::Sysctls(_) => Step::Sysctls,
            Call::NetDown(_) => Step::NetDown,
            Call::Start(_) => Step::Start,
            Call::Stop(_) => Step::Stop,
            Call::Nft(_) => Step::Nft,
            Call::Provision(..) => Step::Provision,
            Call::Fetch(_) => Step::Fetch,
        }
    }
}

/// What the fakes did and what they left.
#[derive(Debug, Default)]
pub struct World {
    pub calls: Vec<Call>,
    /// Running containers and their (fake) nspawn pids.
    pub running: BTreeMap<ContainerName, u32>,
    pub netns: BTreeSet<String>,
    /// Host-side links and the namespace their peer is in.
    pub links: BTreeMap<String, String>,
    pub nft: Option<String>,
    /// Systems built (the fake store).
    pub store: BTreeSet<String>,
    next_pid: u32,
    counts: BTreeMap<Step, usize>,
}

/// What a step does on its N-th call (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Fail,
    Hang,
    /// Hang until released, then fail.
    HangThenFail,
}

/// The world and the faults planted in it; cheap to clone, shared.
#[derive(Clone, Default)]
pub struct Fakes {
    pub world: Arc<Mutex<World>>,
    faults: Arc<Mutex<BTreeMap<(Step, usize), Fault>>>,
    /// Notified when a step starts to hang.
    pub hanging: Arc<Notify>,
    /// Notified to let hanging steps go on.
    pub release: Arc<Notify>,
}

impl Fakes {
    /// Make the `nth` call of `step` (counted from now on) fail or hang.
    pub fn plant(&self, step: Step, nth: usize, fault: Fault) {
        let done = self
            .world
            .lock()
            .unwrap()
            .counts
            .get(&step)
            .copied()
            .unwrap_or(0);
        self.faults
            .lock()
            .unwrap()
            .insert((step, done + nth), fault);
    }

    /// Every side effect a job made from call number `since` on, as (step,
    /// its occurrence counted from there): the points a fault can be
    /// planted at to hit each of them. Not the NAT table's: the derived
    /// state applies only the newest of several changes, so how often it
    /// runs depends on timing.
    pub fn points_since(&self, since: usize) -> Vec<(Step, usize)> {
        let w = self.world.lock().unwrap();
        let mut seen: BTreeMap<Step, usize> = BTreeMap::new();
        w.calls[since..]
            .iter()
            .filter(|c| c.step() != Step::Nft)
            .map(|c| {
                let n = seen.entry(c.step()).or_insert(0);
                *n += 1;
                (c.step(), *n)
            })
            .collect()
    }

    /// How many calls were made so far (NAT table's included).
    pub fn call_count(&self) -> usize {
        self.world.lock().unwrap().calls.len()
    }

    pub fn clear_faults(&self) {
        self.faults.lock().unwrap().clear();
    }

    /// The calls so far, without the NAT table's.
    pub fn calls(&self) -> Vec<Call> {
        self.world
            .lock()
            .unwrap()
            .calls
            .iter()
            .filter(|c| c.step() != Step::Nft)
            .cloned()
            .collect()
    }

    /// Record `call`; then fail, hang or go on as planted.
    async fn enter(&self, call: Call) -> Result<(), String> {
        let step = call.step();
        let fault = {
            let mut w = self.world.lock().unwrap();
            w.calls.push(call);
            let n = w.counts.entry(step).or_insert(0);
            *n += 1;
            self.faults.lock().unwrap().get(&(step, *n)).copied()
        };
        match fault {
            None => Ok(()),
            Some(Fault::Fail) => Err(format!("{step:?} failed as planted")),
            Some(Fault::Hang) => {
                self.hanging.notify_one();
                self.release.notified().await;
                Ok(())
            }
            Some(Fault::HangThenFail) => {
                self.hanging.notify_one();
                self.release.notified().await;
                Err(format!("{step:?} failed as planted, after a while"))
            }
        }
    }

    pub fn backend(&self) -> Arc<dyn Backend> {
        Arc::new(FakeBackend(self.clone()))
    }
    pub fn netlink(&self) -> Arc<dyn Netlink> {
        Arc::new(FakeNetlink(self.clone()))
    }
    pub fn nft(&self) -> Arc<dyn Nft> {
        Arc::new(FakeNft(self.clone()))
    }
    pub fn nix(&self) -> Arc<dyn NixBuilder> {
        Arc::new(FakeNix(self.clone()))
    }
    pub fn fetcher(&self) -> Arc<dyn Fetcher> {
        Arc::new(FakeFetcher(self.clone()))
    }
    pub fn provisioner(&self) -> Arc<dyn Provisioner> {
        Arc::new(FakeProvisioner(self.clone()))
    }
}

/// A store-path-like hash of `s` (32 characters).
fn store_hash(s: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    d.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

struct FakeBackend(Fakes);
struct FakeNetlink(Fakes);
struct FakeNft(Fakes);
struct FakeNix(Fakes);
struct FakeProvisioner(Fakes);
struct FakeFetcher(Fakes);

/// A channel "in the store" at once; stops like the real one when told.
#[async_trait]
impl Fetcher for FakeFetcher {
    async fn fetch(&self, req: &Fetch<'_>) -> Result<Fetched, FetchError> {
        tokio::select! {
            r = self.0.enter(Call::Fetch(req.url.to_string())) => r.map_err(FetchError::Unreachable)?,
            why = req.cancel.cancelled() => return Err(FetchError::Stopped(why)),
            () = req.progress.gone() => return Err(FetchError::Stopped(crate::cancel::Reason::CallerGone)),
        }
        Ok(Fetched {
            entry: format!("file:///nix/store/{}-nixexprs.tar.xz", store_hash(req.url)),
            unchanged: false,
            bytes: 1,
        })
    }
}

/// Each step recorded; a failure planted there fails it as a step fails.
#[async_trait]
impl Provisioner for FakeProvisioner {
    async fn provision(&self, req: Request<'_>) -> Result<usize, ProvisionFailure> {
        for (i, step) in req.plan.steps.iter().enumerate() {
            self.0
                .enter(Call::Provision(req.name.to_string(), i + 1))
                .await
                .map_err(|e| provision_dsl::StepError {
                    location: step.location(),
                    what: format!("step {}", i + 1),
                    source: ProvisionError::InContainer(e),
                })?;
        }
        Ok(req.plan.steps.len())
    }
}

fn planted(name: &ContainerName, what: &'static str, e: String) -> NspawnError {
    NspawnError::Io {
        name: name.to_string(),
        what,
        source: std::io::Error::other(e),
    }
}

#[async_trait]
impl Backend for FakeBackend {
    fn kind(&self) -> &'static str {
        "fake"
    }

    async fn start(&self, req: &StartRequest, _: &Progress) -> Result<Running, NspawnError> {
        self.0
            .enter(Call::Start(req.name.to_string()))
            .await
            .map_err(|e| planted(&req.name, "starting", e))?;
        let mut w = self.0.world.lock().unwrap();
        w.next_pid += 1;
        let pid = 100_000 + w.next_pid;
        w.running.insert(req.name.clone(), pid);
        Ok(Running {
            name: req.name.clone(),
            pid,
        })
    }

    async fn find(&self, name: &ContainerName) -> Option<Running> {
        let w = self.0.world.lock().unwrap();
        w.running.get(name).map(|pid| Running {
            name: name.clone(),
            pid: *pid,
        })
    }

    async fn list(&self) -> Vec<Running> {
        let w = self.0.world.lock().unwrap();
        w.running
            .iter()
            .map(|(name, pid)| Running {
                name: name.clone(),
                pid: *pid,
            })
            .collect()
    }

    async fn stop(
        &self,
        name: &ContainerName,
        _: Duration,
        _: &Progress,
    ) -> Result<(), NspawnError> {
        if !self.0.world.lock().unwrap().running.contains_key(name) {
            return Ok(());
        }
        self.0
            .enter(Call::Stop(name.to_string()))
            .await
            .map_err(|e| planted(name, "stopping", e))?;
        self.0.world.lock().unwrap().running.remove(name);
        Ok(())
    }

    async fn set_limits(
        &self,
        _: &ContainerName,
        _: &crate::container::Limits,
    ) -> Result<bool, NspawnError> {
        Ok(false)
    }

    async fn leader(&self, name: &ContainerName) -> Option<u32> {
        self.0.world.lock().unwrap().running.get(name).copied()
    }

    async fn console_tail(&self, _: &ContainerName, _: &Path, _: usize) -> String {
        String::new()
    }
}

#[async_trait]
impl Netlink for FakeNetlink {
    async fn run(&self, batches: &[IpBatch]) -> Result<(), NetError> {
        let fail = |stderr: String| NetError::Command {
            command: "ip (fake)".into(),
            stderr,
        };
        for b in batches.iter().filter(|b| b.netns.is_none()) {
            for line in &b.lines {
                let w: Vec<&str> = line.split_whitespace().collect();
                match w.as_slice() {
                    ["netns", "add", ns] => {
                        self.0
                            .enter(Call::NetUp(ns.to_string()))
                            .await
                            .map_err(fail)?;
                        self.0.world.lock().unwrap().netns.insert(ns.to_string());
                    }
                    ["netns", "delete", ns] => {
                        self.0
                            .enter(Call::NetDown(ns.to_string()))
                            .await
                            .map_err(fail)?;
                        let mut world = self.0.world.lock().unwrap();
                        world.netns.remove(*ns);
                        world.links.retain(|_, peer| peer != ns);
                    }
                    ["link", "add", host_if, "type", "veth", "peer", "name", _, "netns", ns] => {
                        let mut world = self.0.world.lock().unwrap();
                        if !world.netns.contains(*ns) {
                            return Err(fail(format!("no namespace {ns}")));
                        }
                        world.links.insert(host_if.to_string(), ns.to_string());
                    }
                    ["link", "delete", host_if] => {
                        self.0.world.lock().unwrap().links.remove(*host_if);
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    fn netns_exists(&self, netns: &str) -> bool {
        self.0.world.lock().unwrap().netns.contains(netns)
    }

    fn link_exists(&self, ifname: &str) -> bool {
        self.0.world.lock().unwrap().links.contains_key(ifname)
    }

    fn list_netns(&self, prefix: &str) -> Vec<String> {
        let w = self.0.world.lock().unwrap();
        w.netns
            .iter()
            .filter(|n| n.starts_with(prefix))
            .cloned()
            .collect()
    }

    async fn set_sysctls(&self, netns: &str, _: &[(&str, &str)]) -> Result<(), NetError> {
        self.0
            .enter(Call::Sysctls(netns.to_string()))
            .await
            .map_err(|stderr| NetError::Command {
                command: format!("setting sysctls in {netns}"),
                stderr,
            })
    }
}

#[async_trait]
impl Nft for FakeNft {
    async fn apply(&self, script: &str) -> Result<(), NetError> {
        let addresses: Vec<String> = script
            .split(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|w| w.split('.').count() == 4 && !w.ends_with(".0"))
            .map(String::from)
            .collect();
        self.0
            .enter(Call::Nft(addresses))
            .await
            .map_err(|stderr| NetError::Command {
                command: "nft -f - (fake)".into(),
                stderr,
            })?;
        self.0.world.lock().unwrap().nft = Some(script.to_string());
        Ok(())
    }

    async fn list_table(&self, _: &str) -> Option<String> {
        self.0.world.lock().unwrap().nft.clone()
    }
}

#[async_trait]
impl NixBuilder for FakeNix {
    async fn build(
        &self,
        _program: &str,
        args: &[String],
        _log: &Path,
        _timeout: Duration,
        started_by: &crate::container::ContainerName,
        progress: &Progress,
        cancel: &crate::cancel::Cancel,
    ) -> Result<String, NixError> {
        let name = started_by.to_string();
        // The channel Nix reads: what the fake fetcher made of the URL.
        let channel = args
            .iter()
            .find_map(|a| a.strip_prefix("nixpkgs="))
            .unwrap_or_default();
        // A hanging build stops as the real one does.
        tokio::select! {
            r = self.0.enter(Call::Build(name.clone())) => r.map_err(|tail| NixError::BuildFailed {
                status: "exit status: 1".into(),
                cause: None,
                tail,
            })?,
            why = cancel.cancelled() => return Err(NixError::Stopped(why)),
            () = progress.gone() => return Err(NixError::Stopped(crate::cancel::Reason::CallerGone)),
        }
        // One system per channel, as the real build gives.
        self.0.world.lock().unwrap().store.insert(format!(
            "/nix/store/{}-nixos-system-unnamed",
            &store_hash(channel)
        ));
        Ok(format!(
            "/nix/store/{}-nixos-system-unnamed",
            &store_hash(channel)
        ))
    }

    fn in_store(&self, path: &str) -> bool {
        self.0.world.lock().unwrap().store.contains(path)
    }

    async fn add_root(&self, system: &str, link: &Path, gcroots_auto: &Path) -> bool {
        self.in_store(system)
            && crate::nix::systems::link_system(link, system, gcroots_auto).is_ok()
    }
}
