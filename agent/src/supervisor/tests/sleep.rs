//! Scale to zero in the supervisor, against the fakes and a manual clock:
//! an idle container is stopped and recorded asleep with everything else
//! kept; what is open keeps it awake; a wake boots it through the boot
//! gate and the preflight, once however many ask at the same time; it
//! sleeps on across agent restarts and host boots; an interrupted fall or
//! wake is found asleep; cleanup disables and deletes it on its own
//! schedule.

use super::*;
use crate::admission::verdict::Inotify;
use crate::api::types::State;
use crate::edge::Wake;
use crate::sleep::SleepAfter;
use chrono::TimeDelta;

const HOUR: u64 = 3_600;

thread_local! {
    /// SSH sessions every fake container has, as a test on this thread
    /// says (a `#[tokio::test]` runs the supervisor's tasks on its thread).
    static SSH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The supervisor's view of SSH sessions, for the harness.
pub(super) fn ssh_sessions(_pid: u32) -> usize {
    SSH.with(|s| s.get())
}

/// An ensure of `web01` that sleeps after `secs` idle.
pub(super) fn ensure_sleeping(secs: u64) -> Op {
    let Op::Ensure(mut spec) = ensure() else {
        unreachable!("ensure() is an ensure")
    };
    spec.sleep_after = Some(SleepAfter::After(Duration::from_secs(secs)));
    Op::Ensure(spec)
}

/// `web01`, made to sleep after an hour idle, then idle for two.
async fn idle(h: &Harness) -> Handle {
    let sup = h.start().await;
    run(&sup, "web01", ensure_sleeping(HOUR)).await.unwrap();
    h.clock.advance(TimeDelta::hours(2));
    sup
}

/// `web01` put to sleep (see [`idle`]).
async fn asleep(h: &Harness) -> Handle {
    let sup = idle(h).await;
    run(&sup, "web01", Op::Sleep).await.unwrap();
    sup
}

fn starts(h: &Harness) -> usize {
    h.fakes
        .calls()
        .iter()
        .filter(|c| matches!(c, Call::Start(_)))
        .count()
}

fn name() -> ContainerName {
    "web01".parse().unwrap()
}

#[tokio::test]
async fn an_idle_container_is_stopped_asleep_with_its_record_address_and_names_kept() {
    let h = Harness::new();
    let sup = idle(&h).await;
    let before = h.record("web01").unwrap();
    let calls = h.fakes.call_count();
    let o = run(&sup, "web01", Op::Sleep).await.unwrap();
    assert_eq!(
        o.message,
        "container web01 is asleep (idle since 2026-01-31T03:00:00Z)"
    );
    let new_calls: Vec<Call> = h.fakes.world.lock().unwrap().calls[calls..]
        .iter()
        .filter(|c| c.step() != Step::Nft)
        .cloned()
        .collect();
    assert_eq!(new_calls, vec![Call::Stop("web01".into())], "only stopped");
    let r = h.record("web01").unwrap();
    assert_eq!(
        r,
        Record {
            phase: Phase::Stopped,
            asleep_since: Some(h.clock.now()),
            ..before.clone()
        },
        "enabled, wanted running, same address and deploy time"
    );
    assert!(!h.running("web01"));
    assert!(
        h.fakes
            .world
            .lock()
            .unwrap()
            .netns
            .contains(&format!("{PREFIX}web01")),
        "its network stays"
    );
    assert!(h
        .hosts()
        .contains(&format!("{} web01\n", r.addresses.local)));
    let info = sup.get(name()).await.unwrap();
    assert_eq!(info.state, State::Sleeping);
    assert_eq!(info.asleep_since.as_deref(), Some("2026-01-31T05:00:00Z"));
    assert_eq!(
        info.sleep.as_deref(),
        Some("after 1h idle; asleep since 2026-01-31T05:00:00Z; a request through the proxy, `devhost wake` or an ensure wakes it")
    );
}

#[tokio::test]
async fn a_container_used_within_its_period_stays_awake() {
    let h = Harness::new();
    let sup = h.start().await;
    run(&sup, "web01", ensure_sleeping(HOUR)).await.unwrap();
    h.clock.advance(TimeDelta::minutes(59));
    let o = run(&sup, "web01", Op::Sleep).await.unwrap();
    assert_eq!(
        o.message,
        "container web01 stays awake: idle since 2026-01-31T03:00:00Z; sleeps at 2026-01-31T04:00:00Z"
    );
    assert!(h.running("web01"));
    assert_eq!(h.record("web01").unwrap().asleep_since, None);
}

#[tokio::test]
async fn what_is_open_keeps_it_awake_and_its_end_starts_the_idle_time() {
    let h = Harness::new();
    let sup = h.start().await;
    run(&sup, "web01", ensure_sleeping(HOUR)).await.unwrap();
    // A shell, an exec session, a websocket through the proxy: a guard.
    let open = sup.hold_awake(&name()).unwrap();
    h.clock.advance(TimeDelta::hours(5));
    let o = run(&sup, "web01", Op::Sleep).await.unwrap();
    assert_eq!(
        o.message,
        "container web01 stays awake: awake: 1 open request or session"
    );
    drop(open);
    let o = run(&sup, "web01", Op::Sleep).await.unwrap();
    assert_eq!(
        o.message,
        "container web01 stays awake: idle since 2026-01-31T08:00:00Z; sleeps at 2026-01-31T09:00:00Z"
    );
    h.clock.advance(TimeDelta::hours(1));
    run(&sup, "web01", Op::Sleep).await.unwrap();
    assert!(h.record("web01").unwrap().asleep_since.is_some());
}

#[tokio::test]
async fn nothing_sleeps_unless_asked_to() {
    let h = Harness::new();
    let sup = h.start().await;
    run(&sup, "web01", ensure()).await.unwrap();
    h.clock.advance(TimeDelta::days(6));
    let o = run(&sup, "web01", Op::Sleep).await.unwrap();
    assert!(o.message.contains("stays awake"), "{}", o.message);
    assert!(h.running("web01"));
    let info = sup.get(name()).await.unwrap();
    assert_eq!(info.sleep.as_deref(), Some("off (host default)"));
    assert_eq!(info.sleep_after, "default");
}

#[tokio::test]
async fn the_hosts_default_applies_where_a_container_has_none_of_its_own() {
    let mut h = Harness::new();
    h.cfg.sleep.after = SleepAfter::After(Duration::from_secs(HOUR));
    let sup = h.start().await;
    run(&sup, "web01", ensure()).await.unwrap();
    let Op::Ensure(mut never) = ensure() else {
        unreachable!()
    };
    never.sleep_after = Some(SleepAfter::Off);
    run(&sup, "db", Op::Ensure(never)).await.unwrap();
    h.clock.advance(TimeDelta::hours(2));
    run(&sup, "web01", Op::Sleep).await.unwrap();
    run(&sup, "db", Op::Sleep).await.unwrap();
    assert!(h.record("web01").unwrap().asleep_since.is_some());
    assert!(h.running("db") && h.record("db").unwrap().asleep_since.is_none());
    let info = sup.get("db".parse().unwrap()).await.unwrap();
    assert_eq!(info.sleep.as_deref(), Some("off"));
}

#[tokio::test]
async fn the_sweep_puts_an_idle_container_to_sleep_by_itself() {
    let mut h = Harness::new();
    h.cfg.sleep.check_interval = Duration::from_millis(20);
    let _sup = idle(&h).await;
    for _ in 0..500 {
        if h.record("web01").unwrap().asleep_since.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let r = h.record("web01").unwrap();
    assert_eq!((r.phase, r.asleep_since.is_some()), (Phase::Stopped, true));
    assert!(!h.running("web01"));
}

#[tokio::test]
async fn a_wake_boots_it_through_the_usual_steps_and_it_is_awake_again() {
    let h = Harness::new();
    let sup = asleep(&h).await;
    let calls = h.fakes.calls().len();
    let o = run(&sup, "web01", Op::Wake).await.unwrap();
    assert!(
        o.message
            .starts_with("container web01 woken and running at "),
        "{}",
        o.message
    );
    let boot: Vec<Step> = h.fakes.calls()[calls..].iter().map(Call::step).collect();
    assert_eq!(boot, super::BOOT_STEPS);
    let r = h.record("web01").unwrap();
    assert_eq!((r.phase, r.asleep_since), (Phase::Running, None));
    assert!(sup.hold_awake(&name()).is_ok(), "requests are let in again");
    assert_eq!(
        run(&sup, "web01", Op::Wake).await.unwrap().message,
        "container web01 is awake"
    );
    assert_eq!(
        h.fakes.calls().len(),
        calls + BOOT_STEPS.len(),
        "nothing more"
    );
    // Woken just now: idle from here.
    let o = run(&sup, "web01", Op::Sleep).await.unwrap();
    assert!(o.message.contains("stays awake"), "{}", o.message);
}

#[tokio::test]
async fn many_requests_waking_it_at_once_share_one_boot() {
    let h = Harness::new();
    let sup = asleep(&h).await;
    h.fakes.plant(Step::Start, 1, Fault::Hang);
    let waker = std::sync::Arc::new(sup.waker());
    let wakes: Vec<_> = (0..10)
        .map(|_| {
            let w = waker.clone();
            tokio::spawn(async move { w.wake(&name()).await })
        })
        .collect();
    tokio::time::timeout(Duration::from_secs(10), h.fakes.hanging.notified())
        .await
        .unwrap();
    h.fakes.release.notify_one();
    for w in wakes {
        assert_eq!(w.await.unwrap(), Ok(()));
    }
    assert_eq!(starts(&h), 2, "the creation's boot and one wake");
    assert!(h.running("web01"));
}

#[tokio::test]
async fn a_wake_the_host_has_no_room_for_is_refused_and_it_sleeps_on() {
    let h = Harness::new();
    let sup = asleep(&h).await;
    h.probe.update(|f| {
        f.inotify = Some(Inotify {
            max_instances: 128,
            instances: 125,
            max_watches: 1 << 20,
            watches: 0,
        })
    });
    let e = run(&sup, "web01", Op::Wake).await.unwrap_err();
    assert!(
        matches!(
            e,
            SupervisorError::Admission(crate::admission::AdmissionError::Refused { .. })
        ),
        "{e:?}"
    );
    let r = h.record("web01").unwrap();
    assert_eq!((r.phase, r.asleep_since.is_some()), (Phase::Stopped, true));
    assert!(!h.running("web01"));
    assert_eq!(
        sup.waker().wake(&name()).await,
        Err(e.to_string()),
        "the proxy hears the same"
    );
}

#[test]
fn a_sleeping_container_sleeps_on_after_an_agent_restart_and_wakes() {
    let h = Harness::new();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        asleep(&h).await;
    });
    drop(rt);
    let before = h.record("web01").unwrap();
    let starts_before = starts(&h);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let sup = h.start().await;
        assert_eq!(h.record("web01").unwrap(), before, "reconcile keeps it");
        assert_eq!(starts(&h), starts_before, "not started");
        let info = sup.info().await.unwrap();
        assert!(
            !info.findings.iter().any(|f| f.contains("web01")),
            "nothing to report: {:?}",
            info.findings
        );
        assert_eq!(sup.get(name()).await.unwrap().state, State::Sleeping);
        run(&sup, "web01", Op::Wake).await.unwrap();
        assert!(h.running("web01"));
    });
}

#[test]
fn after_a_host_boot_sleeping_containers_sleep_on_and_the_others_start() {
    let h = Harness::new();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let sup = asleep(&h).await;
        run(&sup, "db", ensure()).await.unwrap();
    });
    drop(rt);
    // The host went down: nothing runs, and the boot id is another.
    h.fakes.world.lock().unwrap().running.clear();
    std::fs::write(h.cfg.paths.state_dir.join("boot-id"), "another boot\n").unwrap();
    let starts_before = starts(&h);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let _sup = h.start().await;
        for _ in 0..1000 {
            if h.running("db") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(h.running("db"), "the running one is started again");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(starts(&h), starts_before + 1, "only db");
        let r = h.record("web01").unwrap();
        assert_eq!((r.phase, r.asleep_since.is_some()), (Phase::Stopped, true));
    });
}

#[test]
fn a_crash_while_falling_asleep_is_finished_asleep_at_the_next_start() {
    let h = Harness::new();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        idle(&h).await;
    });
    drop(rt);
    h.fakes.plant(Step::Stop, 1, Fault::Hang);
    // A restart counts idle time from itself: the clock moves on after it.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let sup = h.start().await;
        h.clock.advance(TimeDelta::hours(2));
        let s = sup.clone();
        tokio::spawn(async move { run(&s, "web01", Op::Sleep).await });
        tokio::time::timeout(Duration::from_secs(10), h.fakes.hanging.notified())
            .await
            .expect("the stop was reached");
    });
    drop(rt);
    h.fakes.clear_faults();
    let r = h.record("web01").unwrap();
    assert_eq!((r.phase, r.asleep_since.is_some()), (Phase::Stopping, true));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        h.start().await;
    });
    let r = h.record("web01").unwrap();
    assert_eq!((r.phase, r.asleep_since.is_some()), (Phase::Stopped, true));
    assert!(!h.running("web01"));
}

#[test]
fn a_crash_while_waking_is_found_asleep_at_the_next_start() {
    let h = Harness::new();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        asleep(&h).await;
    });
    drop(rt);
    h.fakes.plant(Step::Start, 1, Fault::Hang);
    crash_during(&h, "web01", Op::Wake);
    let r = h.record("web01").unwrap();
    assert_eq!((r.phase, r.asleep_since.is_some()), (Phase::Starting, true));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let sup = h.start().await;
        let r = h.record("web01").unwrap();
        assert_eq!((r.phase, r.asleep_since.is_some()), (Phase::Stopped, true));
        let info = sup.info().await.unwrap();
        assert!(
            info.findings.iter().any(|f| f
                == "web01: waking it was interrupted (recorded starting); still asleep, the next request wakes it"),
            "{:?}",
            info.findings
        );
        run(&sup, "web01", Op::Wake).await.unwrap();
        assert!(h.running("web01"));
    });
}

#[tokio::test]
async fn cleanup_disables_and_deletes_a_sleeping_container_on_its_own_schedule() {
    let h = Harness::new();
    let sup = asleep(&h).await;
    // Deployed at 03:00, asleep since 05:00: the week counts from the deploy.
    h.clock.advance(TimeDelta::days(3));
    sweep(&sup).await;
    let r = h.record("web01").unwrap();
    assert!(r.enabled && r.asleep_since.is_some(), "kept asleep");
    h.clock.advance(TimeDelta::days(4) - TimeDelta::hours(2));
    sweep(&sup).await;
    let r = h.record("web01").unwrap();
    assert_eq!(
        (r.enabled, r.phase, r.asleep_since),
        (false, Phase::Stopped, None),
        "disabled 7 days after the deploy, no longer asleep"
    );
    assert_eq!(sup.get(name()).await.unwrap().state, State::Stopped);
    let e = run(&sup, "web01", Op::Wake).await.unwrap_err();
    assert!(matches!(e, SupervisorError::NotAsleep(_)), "{e:?}");
    h.clock.advance(TimeDelta::days(23));
    sweep(&sup).await;
    assert_eq!(
        h.traces("web01"),
        Vec::<String>::new(),
        "deleted after 30 days"
    );
}

#[tokio::test]
async fn a_stop_makes_a_sleeping_container_stopped_which_no_wake_starts() {
    let h = Harness::new();
    let sup = asleep(&h).await;
    run(&sup, "web01", Op::Stop).await.unwrap();
    let r = h.record("web01").unwrap();
    assert_eq!(
        (r.phase, r.asleep_since, r.want_running),
        (Phase::Stopped, None, false)
    );
    let e = run(&sup, "web01", Op::Wake).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "container web01 is stopped, not asleep; `devhost start web01` starts it"
    );
    run(&sup, "web01", Op::Start).await.unwrap();
    assert!(h.running("web01"));
}

#[tokio::test]
async fn an_ensure_wakes_it_and_keeps_its_setting() {
    let h = Harness::new();
    let sup = asleep(&h).await;
    run(&sup, "web01", ensure()).await.unwrap();
    let r = h.record("web01").unwrap();
    assert_eq!((r.phase, r.asleep_since), (Phase::Running, None));
    assert_eq!(r.sleep_after, SleepAfter::After(Duration::from_secs(HOUR)));
    assert!(h.running("web01"));
}

#[tokio::test]
async fn provisioning_or_a_shell_on_a_sleeping_container_says_how_to_wake_it() {
    let h = Harness::new();
    let sup = asleep(&h).await;
    let plan = crate::provision::Plan {
        steps: vec![],
        files: Default::default(),
        copy_as: None,
    };
    let e = run(&sup, "web01", Op::Provision(Arc::new(plan)))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "container web01 is asleep (or falling asleep); `devhost wake web01` wakes it"
    );
    let e = sup.hold_awake(&name()).unwrap_err();
    assert!(matches!(e, SupervisorError::Asleep(_)), "{e:?}");
}

#[tokio::test]
async fn a_provisioning_run_keeps_it_awake_until_it_ends() {
    let h = Harness::new();
    let sup = h.start().await;
    run(&sup, "web01", ensure_sleeping(HOUR)).await.unwrap();
    h.fakes.plant(Step::Provision, 1, Fault::Hang);
    let s = sup.clone();
    let provisioning =
        tokio::spawn(async move { run(&s, "web01", super::faults::three_steps()).await });
    tokio::time::timeout(Duration::from_secs(10), h.fakes.hanging.notified())
        .await
        .unwrap();
    h.clock.advance(TimeDelta::hours(2));
    // The sweep's view while it runs: busy.
    let info = sup.get(name()).await.unwrap();
    assert_eq!(
        info.sleep.as_deref(),
        Some("after 1h idle; awake: 1 open request or session")
    );
    h.fakes.release.notify_one();
    provisioning.await.unwrap().unwrap();
    let o = run(&sup, "web01", Op::Sleep).await.unwrap();
    assert!(
        o.message
            .contains("stays awake: idle since 2026-01-31T05:00:00Z"),
        "{}",
        o.message
    );
}

#[tokio::test]
async fn an_ssh_session_into_it_keeps_it_awake() {
    let h = Harness::new();
    let sup = idle(&h).await;
    SSH.with(|s| s.set(1));
    let o = run(&sup, "web01", Op::Sleep).await;
    SSH.with(|s| s.set(0));
    assert_eq!(
        o.unwrap().message,
        "container web01 stays awake: awake: 1 SSH connection"
    );
    assert!(h.running("web01"));
}
