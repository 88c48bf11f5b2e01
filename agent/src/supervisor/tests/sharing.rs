//! Containers on one channel share one built system: found again by key,
//! built once for everyone who asks at the same time, its failure told to
//! every waiter; builds of different systems wait for a slot.

use super::*;

fn builds(h: &Harness) -> Vec<Call> {
    h.fakes
        .calls()
        .into_iter()
        .filter(|c| matches!(c, Call::Build(_)))
        .collect()
}

fn profile_target(h: &Harness, name: &str) -> Option<std::path::PathBuf> {
    std::fs::read_link(h.cfg.paths.profiles_dir.join(name).join("system")).ok()
}

/// Wait until `n` builds have been started.
async fn started_builds(h: &Harness, n: usize) {
    tokio::time::timeout(Duration::from_secs(5), async {
        while builds(h).len() < n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("the builds start");
}

/// Wait until `name`'s status says it waits for something.
async fn waiting(sup: &Handle, name: &str) -> String {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Ok(Some(w)) = sup.get(name.parse().unwrap()).await.map(|i| i.waiting) {
                return w;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("it says it waits")
}

#[tokio::test]
async fn containers_on_one_channel_share_one_build_and_one_system() {
    let h = Harness::new();
    let sup = h.start().await;
    run(&sup, "web01", ensure()).await.unwrap();
    let o = run(&sup, "web02", ensure()).await.unwrap();
    assert_eq!(builds(&h), vec![Call::Build("web01".into())]);
    let (a, b) = (h.record("web01").unwrap(), h.record("web02").unwrap());
    assert!(a.system_path.is_some());
    assert_eq!(a.system_path, b.system_path);
    assert_eq!(
        profile_target(&h, "web02").map(|p| p.display().to_string()),
        a.system_path,
        "each container links the system in its own profile"
    );
    assert!(o.message.starts_with("container web02 created"), "{o:?}");
}

#[tokio::test]
async fn another_channel_is_another_system() {
    let h = Harness::new();
    let sup = h.start().await;
    run(&sup, "web01", ensure()).await.unwrap();
    run(&sup, "web02", ensure_from(OTHER_CHANNEL))
        .await
        .unwrap();
    assert_eq!(
        builds(&h),
        vec![Call::Build("web01".into()), Call::Build("web02".into())]
    );
    assert_ne!(
        h.record("web01").unwrap().system_path,
        h.record("web02").unwrap().system_path
    );
}

#[tokio::test]
async fn with_sharing_off_every_container_builds_its_own() {
    let mut h = Harness::new();
    h.cfg.nix.share_systems = false;
    let sup = h.start().await;
    run(&sup, "web01", ensure()).await.unwrap();
    run(&sup, "web02", ensure()).await.unwrap();
    assert_eq!(
        builds(&h),
        vec![Call::Build("web01".into()), Call::Build("web02".into())]
    );
}

#[tokio::test]
async fn destroying_one_container_leaves_the_others_system_linked_and_reused() {
    let h = Harness::new();
    let sup = h.start().await;
    run(&sup, "web01", ensure()).await.unwrap();
    run(&sup, "web02", ensure()).await.unwrap();
    let system = h.record("web02").unwrap().system_path;
    run(&sup, "web01", Op::Destroy).await.unwrap();
    assert_eq!(profile_target(&h, "web01"), None);
    assert_eq!(
        profile_target(&h, "web02").map(|p| p.display().to_string()),
        system
    );
    run(&sup, "web03", ensure()).await.unwrap();
    assert_eq!(h.record("web03").unwrap().system_path, system);
    assert_eq!(builds(&h).len(), 1);
}

#[tokio::test]
async fn simultaneous_ensures_of_one_system_run_one_build_and_say_whom_they_wait_for() {
    let h = Harness::new();
    let sup = h.start().await;
    h.fakes.plant(Step::Build, 1, Fault::Hang);
    let first = tokio::spawn({
        let sup = sup.clone();
        async move { run(&sup, "a1", ensure()).await }
    });
    h.fakes.hanging.notified().await;
    let others: Vec<_> = ["a2", "a3", "a4"]
        .into_iter()
        .map(|n| {
            let sup = sup.clone();
            tokio::spawn(async move { run(&sup, n, ensure()).await })
        })
        .collect();
    let w = waiting(&sup, "a3").await;
    assert!(
        w.starts_with("waiting for the build of system ") && w.ends_with(" (started by a1)"),
        "{w}"
    );
    h.fakes.release.notify_one();
    first.await.unwrap().unwrap();
    for o in others {
        o.await.unwrap().unwrap();
    }
    assert_eq!(builds(&h), vec![Call::Build("a1".into())]);
    let systems: std::collections::BTreeSet<_> = ["a1", "a2", "a3", "a4"]
        .iter()
        .map(|n| h.record(n).unwrap().system_path.unwrap())
        .collect();
    assert_eq!(systems.len(), 1);
    assert_eq!(sup.get("a2".parse().unwrap()).await.unwrap().waiting, None);
}

#[tokio::test]
async fn a_failed_shared_build_fails_every_waiter_with_its_log_and_leaves_nothing() {
    let h = Harness::new();
    let sup = h.start().await;
    h.fakes.plant(Step::Build, 1, Fault::HangThenFail);
    let spawn = |n: &'static str| {
        let sup = sup.clone();
        tokio::spawn(async move { run(&sup, n, ensure()).await })
    };
    // b1 starts the build (which of three started at once reaches it
    // first is not fixed); b2 and b3 come while it runs.
    let mut ensures = vec![spawn("b1")];
    h.fakes.hanging.notified().await;
    ensures.extend([spawn("b2"), spawn("b3")]);
    waiting(&sup, "b2").await;
    waiting(&sup, "b3").await;
    h.fakes.release.notify_one();
    for (e, name) in ensures.into_iter().zip(["b1", "b2", "b3"]) {
        let e = e.await.unwrap().unwrap_err();
        match &e {
            SupervisorError::Build {
                source:
                    crate::nix::NixError::Shared {
                        started_by, log, ..
                    },
                ..
            } => {
                assert_eq!(started_by, "b1");
                assert!(log.starts_with(h.cfg.paths.state_dir.join("systems")));
            }
            other => panic!("{name}: {other:?}"),
        }
        assert!(e.to_string().contains("failed as planted"), "{e}");
        assert_eq!(h.traces(name), Vec::<String>::new(), "{name}");
    }
    assert_eq!(builds(&h).len(), 1);
    // Nothing of the failure is kept: the next ensure builds again.
    run(&sup, "b2", ensure()).await.unwrap();
    assert_eq!(builds(&h).len(), 2);
}

#[tokio::test]
async fn a_waiter_whose_client_goes_away_leaves_the_build_to_the_others() {
    let h = Harness::new();
    let sup = h.start().await;
    h.fakes.plant(Step::Build, 1, Fault::Hang);
    let first = tokio::spawn({
        let sup = sup.clone();
        async move { run(&sup, "c1", ensure()).await }
    });
    h.fakes.hanging.notified().await;
    let (progress, rx) = Progress::channel(16);
    let leaving = tokio::spawn({
        let sup = sup.clone();
        async move {
            sup.run("c2".parse().unwrap(), ensure(), Caller::root(), progress)
                .await
        }
    });
    waiting(&sup, "c2").await;
    drop(rx);
    let e = leaving.await.unwrap().unwrap_err();
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
    assert_eq!(h.traces("c2"), Vec::<String>::new());
    h.fakes.release.notify_one();
    first.await.unwrap().unwrap();
    assert!(h.running("c1"));
}

#[tokio::test]
async fn the_starter_leaving_does_not_stop_the_build_others_wait_for() {
    let h = Harness::new();
    let sup = h.start().await;
    h.fakes.plant(Step::Build, 1, Fault::Hang);
    let (progress, rx) = Progress::channel(16);
    let leaving = tokio::spawn({
        let sup = sup.clone();
        async move {
            sup.run("d1".parse().unwrap(), ensure(), Caller::root(), progress)
                .await
        }
    });
    h.fakes.hanging.notified().await;
    let staying = tokio::spawn({
        let sup = sup.clone();
        async move { run(&sup, "d2", ensure()).await }
    });
    waiting(&sup, "d2").await;
    drop(rx);
    assert!(leaving.await.unwrap().is_err());
    h.fakes.release.notify_one();
    staying.await.unwrap().unwrap();
    assert_eq!(builds(&h), vec![Call::Build("d1".into())]);
    assert!(h.running("d2"));
}

#[tokio::test]
async fn builds_of_different_systems_beyond_the_bound_wait_for_a_slot() {
    // The harness allows two builds at once.
    let h = Harness::new();
    let sup = h.start().await;
    h.fakes.plant(Step::Build, 1, Fault::Hang);
    h.fakes.plant(Step::Build, 2, Fault::Hang);
    let channels = [
        "https://c.test/1.tar.xz",
        "https://c.test/2.tar.xz",
        "https://c.test/3.tar.xz",
    ];
    let (progress, mut rx) = Progress::channel(64);
    let mut ensures = Vec::new();
    for (i, ch) in channels.iter().enumerate() {
        let sup = sup.clone();
        let op = ensure_from(ch);
        let progress = if i == 2 {
            progress.clone()
        } else {
            Progress::none()
        };
        let name = format!("e{i}");
        ensures.push(tokio::spawn(async move {
            sup.run(name.parse().unwrap(), op, Caller::root(), progress)
                .await
        }));
        if i < 2 {
            h.fakes.hanging.notified().await;
        }
    }
    // The third waits for a slot, and says so.
    let said = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match rx.recv().await {
                Some(crate::api::types::Event::Log { line }) if line.contains("build slot") => {
                    return line
                }
                Some(_) => {}
                None => panic!("progress ended"),
            }
        }
    })
    .await
    .expect("the third says it waits");
    assert!(said.contains("nix.max_builds = 2"), "{said}");
    assert_eq!(builds(&h).len(), 2);
    h.fakes.release.notify_one();
    started_builds(&h, 3).await;
    h.fakes.release.notify_one();
    for e in ensures {
        e.await.unwrap().unwrap();
    }
    assert_eq!(builds(&h).len(), 3);
}
