//! Admission in the supervisor, against the fake probe: refusals before the
//! build and at the boot slot leave nothing of a creation (and a refused
//! start leaves the container stopped with its record); boots wait for a
//! slot in order, never more at once than the bound, and say so; a waiter
//! that is destroyed, or whose client goes away, leaves the line.

use super::*;
use crate::admission::verdict::{Disk, Inotify};
use crate::admission::{AdmissionError, Shortfall};
use crate::api::types::{ApiError, ErrorKind, Event};

fn full_inotify(h: &Harness) {
    h.probe.update(|f| {
        f.inotify = Some(Inotify {
            max_instances: 128,
            instances: 125,
            max_watches: 1 << 20,
            watches: 0,
        })
    });
}

fn roomy(h: &Harness) {
    h.probe.set(
        crate::admission::probe::FakeProbe::roomy()
            .facts
            .lock()
            .unwrap()
            .clone(),
    );
}

fn refused(e: &SupervisorError) -> &[Shortfall] {
    match e {
        SupervisorError::Admission(AdmissionError::Refused { shortfalls, .. }) => shortfalls,
        other => panic!("not a refusal: {other:?}"),
    }
}

/// Poll `cond` until it holds (or fail after 10 s).
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting for {what}");
}

fn starts(h: &Harness) -> Vec<String> {
    h.fakes
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Start(n) => Some(n),
            _ => None,
        })
        .collect()
}

fn lines(events: &mut tokio::sync::mpsc::Receiver<Event>) -> Vec<String> {
    let mut out = Vec::new();
    while let Ok(ev) = events.try_recv() {
        if let Event::Log { line } = ev {
            out.push(line);
        }
    }
    out
}

#[tokio::test]
async fn a_creation_the_host_has_no_room_for_is_refused_before_its_build_and_leaves_nothing() {
    let h = Harness::new();
    h.probe.update(|f| {
        f.disk = Some(Disk {
            path: h.dir.path().join("containers"),
            free: 10 << 20,
        })
    });
    let sup = h.start().await;
    let e = run(&sup, "web01", ensure()).await.unwrap_err();
    assert_eq!(
        refused(&e),
        [Shortfall::Disk {
            path: h.dir.path().join("containers"),
            free: 10 << 20,
            min: 1 << 30,
        }]
    );
    assert_eq!(
        e.to_string(),
        format!(
            "web01 cannot boot on this host now: {}/containers has 10 MiB free, less than admission.min_free_disk_mib (1024 MiB); free space there or lower admission.min_free_disk_mib",
            h.dir.path().display()
        )
    );
    // A refusal an admin resolves: 409, exit 1 in the CLI.
    assert_eq!(ApiError::from(e).kind, ErrorKind::Conflict);
    assert_eq!(h.fakes.calls(), vec![], "no fetch, no build, nothing");
    assert_eq!(h.traces("web01"), Vec::<String>::new());
    // Once there is room, the same ensure goes through.
    roomy(&h);
    run(&sup, "web01", ensure()).await.unwrap();
}

#[tokio::test]
async fn a_creation_refused_when_its_boot_slot_is_taken_leaves_nothing() {
    let h = Harness::new();
    let sup = h.start().await;
    h.fakes.plant(Step::Build, 1, Fault::Hang);
    let s = sup.clone();
    let job = tokio::spawn(async move { run(&s, "web01", ensure()).await });
    h.fakes.hanging.notified().await;
    // While it builds, other containers take the inotify instances.
    full_inotify(&h);
    h.fakes.release.notify_one();
    let e = job.await.unwrap().unwrap_err();
    assert_eq!(
        refused(&e),
        [Shortfall::Sysctl {
            limit: crate::admission::verdict::Sysctl::InotifyInstances,
            max: 128,
            in_use: 125,
            booting: 0,
            reserved: 0,
            need: crate::config::admission::INOTIFY_INSTANCES_PER_CONTAINER,
        }]
    );
    assert!(
        e.to_string().starts_with(
            "web01 cannot boot on this host now: fs.inotify.max_user_instances = 128: 125 instances in use, a container needs about"
        ),
        "{e}"
    );
    let steps: Vec<Step> = h.fakes.calls().iter().map(Call::step).collect();
    assert_eq!(
        steps,
        [
            Step::Fetch,
            Step::Build,
            Step::NetUp,
            Step::Sysctls,
            Step::NetDown
        ],
        "networked, never started, the network removed again"
    );
    assert_eq!(h.traces("web01"), Vec::<String>::new());
}

#[tokio::test]
async fn a_refused_start_leaves_the_container_stopped_with_its_record() {
    let h = Harness::new();
    let sup = h.start().await;
    run(&sup, "web01", ensure()).await.unwrap();
    run(&sup, "web01", Op::Stop).await.unwrap();
    full_inotify(&h);
    let before = starts(&h).len();
    for op in [Op::Start, ensure()] {
        let e = run(&sup, "web01", op).await.unwrap_err();
        assert_eq!(refused(&e).len(), 1, "{e}");
        let r = h.record("web01").expect("the record stays");
        assert_eq!(r.phase, Phase::Stopped);
        assert!(!h.running("web01"));
    }
    assert_eq!(starts(&h).len(), before, "not started");
    roomy(&h);
    run(&sup, "web01", Op::Start).await.unwrap();
    assert_eq!(h.record("web01").unwrap().phase, Phase::Running);
}

#[tokio::test]
async fn boots_wait_in_order_never_more_than_the_bound_and_say_so() {
    let mut h = Harness::new();
    h.cfg.admission.max_parallel_boots = 2;
    let sup = h.start().await;
    const N: usize = 5;
    for i in 1..=N {
        h.fakes.plant(Step::Start, i, Fault::Hang);
    }
    let mut jobs = Vec::new();
    let mut events = Vec::new();
    for i in 0..N {
        let (progress, rx) = Progress::channel(256);
        let s = sup.clone();
        let name = format!("c{i}");
        events.push(rx);
        jobs.push(tokio::spawn(async move {
            s.run(name.parse().unwrap(), ensure(), Caller::root(), progress)
                .await
        }));
    }
    until("two boots", || starts(&h).len() == 2).await;
    // The other three built and wait at the gate, each told where it is.
    let mut first_waits: BTreeMap<usize, String> = BTreeMap::new();
    until("three waiters", || {
        for (i, rx) in events.iter_mut().enumerate() {
            for l in lines(rx) {
                if l.starts_with("waiting for a boot slot") {
                    first_waits.entry(i).or_insert(l);
                }
            }
        }
        first_waits.len() == 3
    })
    .await;
    let mut told: Vec<&str> = first_waits.values().map(String::as_str).collect();
    told.sort();
    assert_eq!(
        told,
        [
            "waiting for a boot slot (0 ahead, 2 booting)",
            "waiting for a boot slot (1 ahead, 2 booting)",
            "waiting for a boot slot (2 ahead, 2 booting)",
        ]
    );
    // The order they came in, by what they were told.
    let mut arrival: Vec<(String, String)> = first_waits
        .iter()
        .map(|(i, l)| (l.clone(), format!("c{i}")))
        .collect();
    arrival.sort();
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(starts(&h).len(), 2, "no third boot while two run");
    for released in 1..=N {
        h.fakes.release.notify_one();
        let want = (2 + released).min(N);
        until("the next boot", || starts(&h).len() == want).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(starts(&h).len(), want, "one more per slot given back");
    }
    for j in jobs {
        j.await.unwrap().unwrap();
    }
    let waiters_started: Vec<String> = starts(&h)[2..].to_vec();
    let arrived: Vec<String> = arrival.into_iter().map(|(_, n)| n).collect();
    assert_eq!(waiters_started, arrived, "first come, first served");
}

type Creation = tokio::task::JoinHandle<Result<Outcome, SupervisorError>>;

/// One boot slot; `aaa`'s boot hangs in it and `bbb` waits in line (its
/// progress and the lines it has said so far are returned).
async fn bbb_waits_behind_aaas_boot() -> (
    Harness,
    Handle,
    Creation,
    Creation,
    tokio::sync::mpsc::Receiver<Event>,
    Vec<String>,
) {
    let mut h = Harness::new();
    h.cfg.admission.max_parallel_boots = 1;
    let sup = h.start().await;
    h.fakes.plant(Step::Start, 1, Fault::Hang);
    let s = sup.clone();
    let first = tokio::spawn(async move { run(&s, "aaa", ensure()).await });
    until("the first boot", || starts(&h).len() == 1).await;
    let (progress, mut rx) = Progress::channel(256);
    let s = sup.clone();
    let waiter = tokio::spawn(async move {
        s.run("bbb".parse().unwrap(), ensure(), Caller::root(), progress)
            .await
    });
    let mut seen = Vec::new();
    until("bbb in line", || {
        seen.extend(lines(&mut rx));
        seen.iter()
            .any(|l| l.starts_with("waiting for a boot slot"))
    })
    .await;
    (h, sup, first, waiter, rx, seen)
}

#[tokio::test]
async fn a_waiter_that_is_destroyed_leaves_the_line_and_nothing_behind() {
    let (h, sup, first, waiter, _rx, seen) = bbb_waits_behind_aaas_boot().await;
    assert!(
        seen.iter()
            .any(|l| l == "waiting for a boot slot (0 ahead, 1 booting)"),
        "{seen:?}"
    );
    run(&sup, "bbb", Op::Destroy).await.unwrap();
    let e = waiter.await.unwrap().unwrap_err();
    assert!(
        matches!(
            e,
            SupervisorError::Admission(AdmissionError::Stopped {
                why: crate::cancel::Reason::Destroyed,
                ..
            })
        ),
        "{e:?}"
    );
    assert_eq!(h.traces("bbb"), Vec::<String>::new());
    h.fakes.release.notify_one();
    first.await.unwrap().unwrap();
    // Its place and no slot stay taken: the next boot goes at once.
    let (progress, mut rx) = Progress::channel(256);
    sup.run("ccc".parse().unwrap(), ensure(), Caller::root(), progress)
        .await
        .unwrap();
    assert!(
        !lines(&mut rx)
            .iter()
            .any(|l| l.starts_with("waiting for a boot slot")),
        "ccc did not wait"
    );
    assert_eq!(starts(&h), ["aaa", "ccc"]);
}

#[tokio::test]
async fn memory_limits_beyond_the_hosts_memory_are_a_warning() {
    let h = Harness::new();
    h.probe.update(|f| f.memory = Some(1 << 30));
    let sup = h.start().await;
    let big = |gib: u64| {
        let Op::Ensure(mut spec) = ensure() else {
            unreachable!()
        };
        spec.limits.memory_max = Some(gib << 30);
        Op::Ensure(spec)
    };
    let (progress, mut rx) = Progress::channel(256);
    sup.run("web01".parse().unwrap(), big(1), Caller::root(), progress)
        .await
        .unwrap();
    assert!(!lines(&mut rx).iter().any(|l| l.starts_with("warning")));
    let (progress, mut rx) = Progress::channel(256);
    sup.run("web02".parse().unwrap(), big(2), Caller::root(), progress)
        .await
        .expect("a warning, not a refusal");
    let warned: Vec<String> = lines(&mut rx)
        .into_iter()
        .filter(|l| l.starts_with("warning"))
        .collect();
    assert_eq!(
        warned,
        ["warning: the memory limits of 2 containers add up to 3072 MiB, more than this host's 1024 MiB (MemTotal): they can be out of memory before their limits"]
    );
}

#[tokio::test]
async fn a_waiter_whose_client_goes_away_leaves_the_line_and_nothing_behind() {
    let (h, sup, first, waiter, rx, _) = bbb_waits_behind_aaas_boot().await;
    drop(rx);
    let e = waiter.await.unwrap().unwrap_err();
    assert!(
        matches!(
            e,
            SupervisorError::Admission(AdmissionError::Stopped {
                why: crate::cancel::Reason::CallerGone,
                ..
            })
        ),
        "{e:?}"
    );
    assert_eq!(h.traces("bbb"), Vec::<String>::new());
    h.fakes.release.notify_one();
    first.await.unwrap().unwrap();
    run(&sup, "ccc", ensure()).await.unwrap();
    assert_eq!(starts(&h), ["aaa", "ccc"]);
}
