//! The supervisor driven in-process, as Firecracker's `rpc_interface.rs`
//! tests drive its controller: operations go in through the [`Handle`], the
//! fakes ([`super::fakes`]) record what was done to the world, and the
//! records on disk (a temp dir) say what was saved. No root, no programs;
//! a crash is a dropped runtime, and the next start reconciles.

use super::fakes::{Call, Fakes, Fault, Step};
use super::*;
use std::time::Duration;

const OTHER_CHANNEL: &str = "https://channels.test/other/nixexprs.tar.xz";
const CHANNEL: &str = "https://example.org/nixexprs.tar.xz";
const PREFIX: &str = "dhu-";

struct Harness {
    dir: tempfile::TempDir,
    fakes: Fakes,
    /// What the host has and uses, as the preflight reads it.
    probe: crate::admission::probe::FakeProbe,
    clock: crate::clock::Clock,
    cfg: Config,
    /// What the supervisor counted.
    metrics: Arc<crate::metrics::Metrics>,
}

impl Harness {
    fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let cfg = Config::from_toml(&format!(
            r#"
[paths]
state_dir = "{d}/state"
run_dir = "{d}/run"
socket = "{d}/run/agent.sock"
containers_dir = "{d}/containers"
profiles_dir = "{d}/profiles"
gcroots_dir = "{d}/gcroots"
hosts_file = "{d}/hosts"
compat_dir = "{d}/compat"
[network]
pool = "10.233.0.0/24"
netns_prefix = "{PREFIX}"
nft_table = "dhu"
[nix]
gcroots_auto_dir = "{d}/gcroots-auto"
[edge]
enable = false
"#
        ))
        .unwrap();
        std::fs::write(dir.path().join("hosts"), "127.0.0.1 localhost\n").unwrap();
        Harness {
            dir,
            fakes: Fakes::default(),
            probe: crate::admission::probe::FakeProbe::roomy(),
            clock: crate::clock::Clock::manual("2026-01-31T03:00:00Z".parse().unwrap()),
            cfg,
            metrics: crate::metrics::Metrics::new(false),
        }
    }

    fn env(&self) -> Subsystems {
        Subsystems {
            cfg: self.cfg.clone(),
            store: Store::new(&self.cfg.paths.state_dir),
            backend: self.fakes.backend(),
            netlink: self.fakes.netlink(),
            nft: self.fakes.nft(),
            nix: self.fakes.nix(),
            provisioner: self.fakes.provisioner(),
            fetcher: self.fakes.fetcher(),
            nix_safety: Default::default(),
            builds: crate::supervisor::build::Builds::new(2),
            host_warnings: Vec::new(),
            edge: None,
            clock: self.clock.clone(),
            admission: crate::admission::Admission::new(
                &self.cfg,
                std::sync::Arc::new(self.probe.clone()),
            ),
            metrics: self.metrics.clone(),
            busy: std::sync::Arc::new(crate::sleep::Busy::new(self.clock.clone())),
            ssh_sessions: sleep::ssh_sessions,
        }
    }

    async fn start(&self) -> Handle {
        Supervisor::start(self.env()).await.unwrap()
    }

    fn record(&self, name: &str) -> Option<Record> {
        let p = self
            .cfg
            .paths
            .state_dir
            .join(format!("records/{name}.json"));
        std::fs::read(p)
            .ok()
            .map(|b| serde_json::from_slice(&b).unwrap())
    }

    fn running(&self, name: &str) -> bool {
        let w = self.fakes.world.lock().unwrap();
        w.running.keys().any(|n| n.as_str() == name)
    }

    fn hosts(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("hosts")).unwrap()
    }

    /// What of container `name` is left anywhere.
    fn traces(&self, name: &str) -> Vec<String> {
        let mut t = Vec::new();
        let w = self.fakes.world.lock().unwrap();
        if w.running.keys().any(|n| n.as_str() == name) {
            t.push("running".to_string());
        }
        if w.netns.contains(&format!("{PREFIX}{name}")) {
            t.push("netns".into());
        }
        if w.links.contains_key(&format!("ve-{name}")) {
            t.push("link".into());
        }
        drop(w);
        if self.record(name).is_some() {
            t.push("record".into());
        }
        if self.dir.path().join("containers").join(name).exists() {
            t.push("root".into());
        }
        if self.hosts().contains(&format!(" {name}\n")) {
            t.push("hosts line".into());
        }
        t
    }
}

fn ensure() -> Op {
    ensure_from(CHANNEL)
}

fn ensure_from(channel: &str) -> Op {
    Op::Ensure(EnsureSpec {
        channel: channel.parse().unwrap(),
        aliases: vec![],
        owner_uid: None,
        limits: Default::default(),
        upstreams: None,
        disk_size: None,
        image_url: None,
        update_channel: true,
        sleep_after: None,
    })
}

async fn run(h: &Handle, name: &str, op: Op) -> Result<Outcome, SupervisorError> {
    h.run(name.parse().unwrap(), op, Caller::root(), Progress::none())
        .await
}

fn user(uid: u32) -> Caller {
    Caller {
        uid,
        gid: 100,
        admin: false,
        user: true,
    }
}

const CREATE_STEPS: [Step; 5] = [
    Step::Fetch,
    Step::Build,
    Step::NetUp,
    Step::Sysctls,
    Step::Start,
];

#[tokio::test]
async fn a_new_container_is_built_networked_and_started_in_that_order() {
    let h = Harness::new();
    let sup = h.start().await;
    run(&sup, "web01", ensure()).await.unwrap();
    assert_eq!(
        h.fakes.calls(),
        vec![
            Call::Fetch(CHANNEL.into()),
            Call::Build("web01".into()),
            Call::NetUp(format!("{PREFIX}web01")),
            Call::Sysctls(format!("{PREFIX}web01")),
            Call::Start("web01".into()),
        ]
    );
    let r = h.record("web01").unwrap();
    assert_eq!((r.phase, r.established), (Phase::Running, true));
    assert!(h
        .hosts()
        .contains(&format!("{} web01\n", r.addresses.local)));
    // The NAT set names it (applied while it boots, not after).
    let nat = h
        .fakes
        .world
        .lock()
        .unwrap()
        .calls
        .iter()
        .rev()
        .find(|c| matches!(c, Call::Nft(_)))
        .cloned();
    assert_eq!(nat, Some(Call::Nft(vec![r.addresses.local.to_string()])));
}

#[tokio::test]
async fn a_failure_at_any_step_of_a_creation_leaves_nothing() {
    for step in CREATE_STEPS {
        let h = Harness::new();
        let sup = h.start().await;
        h.fakes.plant(step, 1, Fault::Fail);
        let e = run(&sup, "web01", ensure()).await.unwrap_err();
        assert!(
            matches!(e, SupervisorError::Build { .. } | SupervisorError::Step(_)),
            "{step:?}: {e:?}"
        );
        assert!(e.to_string().contains("failed as planted"), "{step:?}: {e}");
        assert_eq!(h.traces("web01"), Vec::<String>::new(), "after {step:?}");
        // A retry starts clean and succeeds.
        run(&sup, "web01", ensure()).await.unwrap();
        assert_eq!(h.record("web01").unwrap().phase, Phase::Running);
    }
}

/// Run `op` on `name` in a runtime of its own until a fake step hangs, then
/// drop that runtime: the agent crashed there.
fn crash_during(h: &Harness, name: &str, op: Op) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let sup = h.start().await;
        let name = name.to_string();
        tokio::spawn(async move { run(&sup, &name, op).await });
        tokio::time::timeout(Duration::from_secs(10), h.fakes.hanging.notified())
            .await
            .expect("the planted step was reached");
    });
    drop(rt);
    h.fakes.clear_faults();
}

#[test]
fn a_crash_at_any_step_of_a_creation_is_rolled_back_at_the_next_start() {
    for step in CREATE_STEPS {
        let h = Harness::new();
        h.fakes.plant(step, 1, Fault::Hang);
        crash_during(&h, "web01", ensure());
        let saved = h
            .record("web01")
            .expect("the phase was saved before the step");
        assert!(!saved.established);
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let sup = h.start().await;
            let info = sup.info().await.unwrap();
            assert!(
                info.findings
                    .iter()
                    .any(|f| f.starts_with("web01: creation was interrupted in phase")),
                "{step:?}: {:?}",
                info.findings
            );
            assert_eq!(h.traces("web01"), Vec::<String>::new(), "after {step:?}");
            run(&sup, "web01", ensure()).await.unwrap();
        });
    }
}

#[tokio::test]
async fn destroy_removes_everything_and_a_second_one_is_nothing() {
    let h = Harness::new();
    let sup = h.start().await;
    run(&sup, "web01", ensure()).await.unwrap();
    let o = run(&sup, "web01", Op::Destroy).await.unwrap();
    assert_eq!(o.message, "container web01 destroyed");
    assert_eq!(h.traces("web01"), Vec::<String>::new());
    let o = run(&sup, "web01", Op::Destroy).await.unwrap();
    assert_eq!(o.message, "no container named web01; nothing to destroy");
}

#[tokio::test]
async fn operations_on_one_name_wait_their_turn_and_other_names_do_not() {
    let h = Harness::new();
    let sup = h.start().await;
    h.fakes.plant(Step::Build, 1, Fault::Hang);
    let (s1, s2) = (sup.clone(), sup.clone());
    let first = tokio::spawn(async move { run(&s1, "aaa", ensure()).await });
    h.fakes.hanging.notified().await;
    // A second ensure of the same name waits behind the hanging one …
    let second = tokio::spawn(async move { run(&s2, "aaa", ensure()).await });
    // … while another name (of another system) goes through.
    run(&sup, "bbb", ensure_from(OTHER_CHANNEL)).await.unwrap();
    assert!(!first.is_finished() && !second.is_finished());
    h.fakes.release.notify_one();
    first.await.unwrap().unwrap();
    let o = second.await.unwrap().unwrap();
    assert_eq!(o.message, "container aaa is running at 10.233.0.2");
    let builds: Vec<Call> = h
        .fakes
        .calls()
        .into_iter()
        .filter(|c| matches!(c, Call::Build(_)))
        .collect();
    assert_eq!(
        builds,
        vec![Call::Build("aaa".into()), Call::Build("bbb".into())],
        "the second ensure of aaa did not build again"
    );
}

#[tokio::test]
async fn too_many_waiting_operations_on_one_name_are_refused() {
    let h = Harness::new();
    let sup = h.start().await;
    h.fakes.plant(Step::Build, 1, Fault::Hang);
    let s = sup.clone();
    let first = tokio::spawn(async move { run(&s, "aaa", ensure()).await });
    h.fakes.hanging.notified().await;
    let mut waiting = Vec::new();
    for _ in 0..8 {
        let s = sup.clone();
        waiting.push(tokio::spawn(async move { run(&s, "aaa", Op::Stop).await }));
    }
    // Let them queue (each send is handled in order by the one task).
    let _ = sup.info().await.unwrap();
    let e = tokio::time::timeout(Duration::from_secs(10), run(&sup, "aaa", Op::Stop))
        .await
        .expect("refused at once, not queued")
        .unwrap_err();
    assert!(
        matches!(e, SupervisorError::QueueFull { max: 8, .. }),
        "{e:?}"
    );
    h.fakes.release.notify_one();
    first.await.unwrap().unwrap();
    for w in waiting {
        w.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn stop_and_start_keep_the_address_and_rebuild_the_network() {
    let h = Harness::new();
    let sup = h.start().await;
    run(&sup, "web01", ensure()).await.unwrap();
    let before = h.record("web01").unwrap().addresses;
    run(&sup, "web01", Op::Stop).await.unwrap();
    assert_eq!(h.record("web01").unwrap().phase, Phase::Stopped);
    run(&sup, "web01", Op::Start).await.unwrap();
    let r = h.record("web01").unwrap();
    assert_eq!((r.phase, r.addresses), (Phase::Running, before));
    let ns = format!("{PREFIX}web01");
    assert_eq!(
        h.fakes.calls()[5..],
        [
            Call::Stop("web01".into()),
            Call::NetDown(ns.clone()),
            Call::NetUp(ns.clone()),
            Call::Sysctls(ns),
            Call::Start("web01".into()),
        ]
    );
}

#[test]
fn a_container_that_died_is_found_stopped_at_the_next_start() {
    let h = Harness::new();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let sup = h.start().await;
        run(&sup, "web01", ensure()).await.unwrap();
    });
    drop(rt);
    h.fakes.world.lock().unwrap().running.clear();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let sup = h.start().await;
        let info = sup.get("web01".parse().unwrap()).await.unwrap();
        assert_eq!(info.state, crate::api::types::State::Stopped);
    });
}

#[tokio::test]
async fn only_the_owner_or_an_admin_manages_a_container() {
    let h = Harness::new();
    let sup = h.start().await;
    let alice = user(1000);
    sup.run(
        "web01".parse().unwrap(),
        ensure(),
        alice.clone(),
        Progress::none(),
    )
    .await
    .unwrap();
    let before = h.fakes.calls().len();
    for op in [Op::Stop, Op::Destroy, ensure(), Op::Pin(true)] {
        let e = sup
            .run("web01".parse().unwrap(), op, user(1001), Progress::none())
            .await
            .unwrap_err();
        assert!(
            matches!(e, SupervisorError::NotOwner { owner: 1000, .. }),
            "{e:?}"
        );
    }
    assert_eq!(h.fakes.calls().len(), before, "nothing was done");
    sup.run("web01".parse().unwrap(), Op::Stop, alice, Progress::none())
        .await
        .unwrap();
}

#[tokio::test]
async fn an_operation_on_no_container_is_refused_unless_it_may_be() {
    let h = Harness::new();
    let sup = h.start().await;
    for op in [Op::Start, Op::Stop, Op::Pin(true), Op::Extend { days: 1 }] {
        assert_eq!(op.admits(), op::Admits::Existing);
        let e = run(&sup, "nope", op).await.unwrap_err();
        assert!(
            matches!(&e, SupervisorError::NoSuchContainer(n) if n.as_str() == "nope"),
            "{e:?}"
        );
        assert_eq!(e.to_string(), "no container named nope");
    }
    for op in [
        Op::Destroy,
        Op::Expire {
            now: chrono::Utc::now(),
        },
    ] {
        assert_eq!(op.admits(), op::Admits::Always);
        run(&sup, "nope", op).await.unwrap();
    }
    assert_eq!(h.fakes.calls(), vec![]);
}

/// A cleanup sweep as root, as of the clock's now.
async fn sweep(sup: &Handle) -> crate::api::types::CleanupReport {
    sup.cleanup(
        crate::api::types::CleanupBody {
            dry_run: false,
            now: None,
        },
        Caller::root(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn cleanup_disables_after_a_week_and_deletes_after_a_month() {
    let h = Harness::new();
    let sup = h.start().await;
    run(&sup, "web01", ensure()).await.unwrap();
    h.clock.advance(chrono::TimeDelta::days(3));
    sweep(&sup).await;
    assert!(h.record("web01").unwrap().enabled, "kept");
    h.clock.advance(chrono::TimeDelta::days(5));
    sweep(&sup).await;
    let r = h.record("web01").unwrap();
    assert_eq!(
        (r.enabled, r.phase),
        (false, Phase::Stopped),
        "disabled and stopped"
    );
    assert!(!h.running("web01"));
    h.clock.advance(chrono::TimeDelta::days(23));
    sweep(&sup).await;
    assert_eq!(h.traces("web01"), Vec::<String>::new(), "deleted");
}

/// What a boot of an existing container does: the network made again
/// (the old namespace removed first), then the container started.
const BOOT_STEPS: [Step; 4] = [Step::NetDown, Step::NetUp, Step::Sysctls, Step::Start];

/// A supervisor holding `web01`, created and then stopped.
async fn with_stopped(h: &Harness) -> Handle {
    let sup = h.start().await;
    run(&sup, "web01", ensure()).await.unwrap();
    run(&sup, "web01", Op::Stop).await.unwrap();
    sup
}

#[tokio::test]
async fn a_failure_at_any_step_of_a_start_leaves_it_stopped_for_a_retry() {
    // An ensure of a stopped container boots it the same way.
    for op in [Op::Start, ensure()] {
        for step in BOOT_STEPS {
            let h = Harness::new();
            let sup = with_stopped(&h).await;
            h.fakes.plant(step, 1, Fault::Fail);
            let e = run(&sup, "web01", op.clone()).await.unwrap_err();
            assert!(e.to_string().contains("failed as planted"), "{step:?}: {e}");
            let r = h
                .record("web01")
                .expect("a failed start keeps the container");
            assert_eq!(r.phase, Phase::Stopped, "{} at {step:?}", op.verb());
            assert!(!h.running("web01"), "{} at {step:?}", op.verb());
            run(&sup, "web01", op.clone()).await.unwrap();
            assert_eq!(h.record("web01").unwrap().phase, Phase::Running);
            assert!(h.running("web01"));
        }
    }
}

#[test]
fn a_crash_at_any_step_of_a_start_is_found_stopped_at_the_next_start() {
    for step in BOOT_STEPS {
        let h = Harness::new();
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            with_stopped(&h).await;
        });
        drop(rt);
        h.fakes.plant(step, 1, Fault::Hang);
        crash_during(&h, "web01", Op::Start);
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let sup = h.start().await;
            let findings = sup.info().await.unwrap().findings;
            assert!(
                findings.iter().any(|f| f.starts_with("web01: recorded as")
                    && f.contains("but not running; marked stopped")),
                "{step:?}: {findings:?}"
            );
            assert_eq!(h.record("web01").unwrap().phase, Phase::Stopped);
            run(&sup, "web01", Op::Start).await.unwrap();
            assert!(h.running("web01"), "{step:?}");
        });
    }
}

#[tokio::test]
async fn a_failed_stop_is_reported_and_a_retry_stops_it() {
    let h = Harness::new();
    let sup = h.start().await;
    run(&sup, "web01", ensure()).await.unwrap();
    h.fakes.plant(Step::Stop, 1, Fault::Fail);
    let e = run(&sup, "web01", Op::Stop).await.unwrap_err();
    assert!(e.to_string().contains("failed as planted"), "{e}");
    assert!(h.running("web01"));
    run(&sup, "web01", Op::Stop).await.unwrap();
    assert_eq!(h.record("web01").unwrap().phase, Phase::Stopped);
    assert!(!h.running("web01"));
}

#[test]
fn a_crash_during_a_stop_is_finished_at_the_next_start() {
    let h = Harness::new();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let sup = h.start().await;
        run(&sup, "web01", ensure()).await.unwrap();
    });
    drop(rt);
    h.fakes.plant(Step::Stop, 1, Fault::Hang);
    crash_during(&h, "web01", Op::Stop);
    assert_eq!(h.record("web01").unwrap().phase, Phase::Stopping);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        h.start().await;
    });
    assert_eq!(h.record("web01").unwrap().phase, Phase::Stopped);
    assert!(!h.running("web01"));
}

/// What a destroy does to the world before it removes files and record.
const DESTROY_STEPS: [Step; 2] = [Step::Stop, Step::NetDown];

#[tokio::test]
async fn a_failure_at_any_step_of_a_destroy_keeps_the_record_for_a_retry() {
    for step in DESTROY_STEPS {
        let h = Harness::new();
        let sup = h.start().await;
        run(&sup, "web01", ensure()).await.unwrap();
        h.fakes.plant(step, 1, Fault::Fail);
        let e = run(&sup, "web01", Op::Destroy).await.unwrap_err();
        assert!(e.to_string().contains("failed as planted"), "{step:?}: {e}");
        let r = h
            .record("web01")
            .expect("the record outlives a failed destroy");
        assert_eq!(r.phase, Phase::Destroying, "{step:?}");
        run(&sup, "web01", Op::Destroy).await.unwrap();
        assert_eq!(h.traces("web01"), Vec::<String>::new(), "after {step:?}");
    }
}

#[test]
fn a_crash_at_any_step_of_a_destroy_is_finished_at_the_next_start() {
    for step in DESTROY_STEPS {
        let h = Harness::new();
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let sup = h.start().await;
            run(&sup, "web01", ensure()).await.unwrap();
        });
        drop(rt);
        h.fakes.plant(step, 1, Fault::Hang);
        crash_during(&h, "web01", Op::Destroy);
        assert_eq!(h.record("web01").unwrap().phase, Phase::Destroying);
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let sup = h.start().await;
            let findings = sup.info().await.unwrap().findings;
            assert!(
                findings.contains(&"web01: finished an interrupted destroy".to_string()),
                "{step:?}: {findings:?}"
            );
        });
        assert_eq!(h.traces("web01"), Vec::<String>::new(), "after {step:?}");
    }
}

#[tokio::test]
async fn a_second_ensure_of_a_running_container_builds_and_starts_nothing() {
    let h = Harness::new();
    let sup = h.start().await;
    run(&sup, "web01", ensure()).await.unwrap();
    let calls = h.fakes.calls();
    let first = h.record("web01").unwrap().last_deploy;
    h.clock.advance(chrono::TimeDelta::seconds(1));
    let o = run(&sup, "web01", ensure()).await.unwrap();
    assert_eq!(o.message, "container web01 is running at 10.233.0.2");
    assert_eq!(h.fakes.calls(), calls);
    let r = h.record("web01").unwrap();
    assert_eq!(r.last_deploy, first + chrono::TimeDelta::seconds(1));
}

#[tokio::test]
async fn provisioning_a_stopped_container_is_refused() {
    let h = Harness::new();
    let sup = with_stopped(&h).await;
    let calls = h.fakes.calls();
    let plan = crate::provision::Plan {
        steps: vec![],
        files: Default::default(),
        copy_as: None,
    };
    let e = run(&sup, "web01", Op::Provision(Arc::new(plan)))
        .await
        .unwrap_err();
    assert!(matches!(e, SupervisorError::NotRunning(_)), "{e:?}");
    assert_eq!(
        e.to_string(),
        "container web01 is not running; start it first"
    );
    assert_eq!(h.fakes.calls(), calls);
}

#[tokio::test]
async fn a_pinned_container_outlives_every_sweep_until_unpinned() {
    let h = Harness::new();
    let sup = h.start().await;
    run(&sup, "web01", ensure()).await.unwrap();
    run(&sup, "web01", Op::Pin(true)).await.unwrap();
    h.clock.advance(chrono::TimeDelta::days(60));
    sweep(&sup).await;
    let r = h.record("web01").expect("kept");
    assert!(r.enabled && h.running("web01"));
    run(&sup, "web01", Op::Pin(false)).await.unwrap();
    sweep(&sup).await;
    assert_eq!(h.traces("web01"), Vec::<String>::new(), "deleted");
}

#[tokio::test]
async fn an_extension_postpones_the_disabling() {
    let h = Harness::new();
    let sup = h.start().await;
    run(&sup, "web01", ensure()).await.unwrap();
    run(&sup, "web01", Op::Extend { days: 14 }).await.unwrap();
    h.clock.advance(chrono::TimeDelta::days(10));
    sweep(&sup).await;
    assert!(h.record("web01").unwrap().enabled, "kept while extended");
    h.clock.advance(chrono::TimeDelta::days(5));
    sweep(&sup).await;
    assert!(!h.record("web01").unwrap().enabled, "disabled after it");
}

#[tokio::test]
async fn a_container_disabled_by_cleanup_starts_again_only_once_extended() {
    let h = Harness::new();
    let sup = h.start().await;
    run(&sup, "web01", ensure()).await.unwrap();
    h.clock.advance(chrono::TimeDelta::days(8));
    sweep(&sup).await;
    let e = run(&sup, "web01", Op::Start).await.unwrap_err();
    assert!(matches!(e, SupervisorError::Disabled { .. }), "{e:?}");
    assert!(!h.running("web01"));
    run(&sup, "web01", Op::Extend { days: 3 }).await.unwrap();
    run(&sup, "web01", Op::Start).await.unwrap();
    assert!(h.running("web01") && h.record("web01").unwrap().enabled);
}

mod metrics;
mod quarantine;
mod sharing;
mod sleep;

mod admission;

#[tokio::test]
async fn a_destroy_stops_the_build_it_would_wait_behind() {
    let h = Harness::new();
    let sup = h.start().await;
    h.fakes.plant(Step::Build, 1, Fault::Hang);
    let building = tokio::spawn({
        let sup = sup.clone();
        async move { run(&sup, "web01", ensure()).await }
    });
    h.fakes.hanging.notified().await;
    let destroyed = tokio::time::timeout(Duration::from_secs(5), run(&sup, "web01", Op::Destroy))
        .await
        .expect("the destroy does not wait for the build");
    destroyed.unwrap();
    let e = building.await.unwrap().unwrap_err();
    assert!(
        matches!(
            e,
            SupervisorError::Build {
                source: crate::nix::NixError::Stopped(crate::cancel::Reason::Destroyed),
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(h.traces("web01"), Vec::<String>::new());
}

#[tokio::test]
async fn a_build_stops_when_its_caller_goes_away() {
    let h = Harness::new();
    let sup = h.start().await;
    h.fakes.plant(Step::Build, 1, Fault::Hang);
    let (progress, rx) = Progress::channel(16);
    let building = tokio::spawn({
        let sup = sup.clone();
        async move {
            sup.run("web01".parse().unwrap(), ensure(), Caller::root(), progress)
                .await
        }
    });
    h.fakes.hanging.notified().await;
    drop(rx);
    let e = tokio::time::timeout(Duration::from_secs(5), building)
        .await
        .expect("the build stops")
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(
            e,
            SupervisorError::Build {
                source: crate::nix::NixError::Stopped(crate::cancel::Reason::CallerGone),
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(h.traces("web01"), Vec::<String>::new());
    run(&sup, "web01", ensure()).await.unwrap();
}
mod faults;
