//! Records the agent cannot trust: kept aside with everything of their
//! container, their names and addresses held until an admin adopts or
//! forgets them; roots without records never built on; a failed save
//! leaving nothing behind in memory.

use super::*;

/// `web01` created and running; the agent stopped (its runtime, on a
/// thread of its own, dropped); its record truncated.
fn with_truncated_record(h: &Harness) -> (Record, Vec<u8>) {
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                let sup = h.start().await;
                run(&sup, "web01", ensure()).await.unwrap();
            });
        })
        .join()
        .unwrap()
    });
    let path = h.cfg.paths.state_dir.join("records/web01.json");
    let whole = std::fs::read(&path).unwrap();
    std::fs::write(&path, &whole[..30]).unwrap();
    (serde_json::from_slice(&whole).unwrap(), whole)
}

fn quarantine_file(h: &Harness) -> std::path::PathBuf {
    h.cfg.paths.state_dir.join("quarantine/web01.json")
}

fn admin() -> Caller {
    Caller {
        uid: 1001,
        gid: 100,
        admin: true,
        user: true,
    }
}

#[tokio::test]
async fn a_record_that_does_not_parse_is_kept_aside_and_its_container_left_alone() {
    let h = Harness::new();
    let (_, whole) = with_truncated_record(&h);
    let sup = h.start().await;
    let info = sup.info().await.unwrap();
    assert_eq!(info.quarantined.len(), 1, "{info:?}");
    assert_eq!(info.quarantined[0].name, "web01");
    assert!(info.quarantined[0].why.starts_with("not a record: "));
    assert_eq!(std::fs::read(quarantine_file(&h)).unwrap(), &whole[..30]);
    // Its process, network, root and hosts line are all still there.
    assert_eq!(
        h.traces("web01"),
        vec!["running", "netns", "link", "root", "hosts line"]
    );
    assert!(sup.list().await.unwrap().is_empty());
    assert!(!h
        .fakes
        .calls()
        .iter()
        .any(|c| matches!(c, Call::Stop(_) | Call::NetDown(_))));
}

#[test]
fn a_quarantined_name_stays_held_across_restarts() {
    let h = Harness::new();
    with_truncated_record(&h);
    for _ in 0..2 {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let sup = h.start().await;
            let e = run(&sup, "web01", ensure()).await.unwrap_err();
            assert!(matches!(e, SupervisorError::Quarantined { .. }), "{e:?}");
        });
        drop(rt);
    }
    assert!(h.running("web01"));
}

#[tokio::test]
async fn no_operation_but_adopt_and_forget_touches_a_quarantined_name() {
    let h = Harness::new();
    with_truncated_record(&h);
    let sup = h.start().await;
    for op in [ensure(), Op::Destroy, Op::Stop, Op::Start, Op::Pin(true)] {
        let verb = op.verb();
        let e = run(&sup, "web01", op).await.unwrap_err();
        assert!(
            matches!(e, SupervisorError::Quarantined { .. }),
            "{verb}: {e:?}"
        );
    }
    // Another user's new name that differs only in case is refused too.
    let e = sup
        .run(
            "WEB01".parse().unwrap(),
            ensure(),
            user(2000),
            Progress::none(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, SupervisorError::Name(_)), "{e:?}");
    assert!(h.running("web01"));
}

#[tokio::test]
async fn a_quarantined_containers_address_is_never_given_out() {
    let h = Harness::new();
    let (old, _) = with_truncated_record(&h);
    let sup = h.start().await;
    // The truncated file does not tell the address; the old tool's
    // compatibility record does.
    run(&sup, "web02", ensure()).await.unwrap();
    let new = h.record("web02").unwrap();
    assert_ne!(new.addresses.index, old.addresses.index);
}

#[tokio::test]
async fn only_an_admin_adopts_and_only_a_record_that_parses() {
    let h = Harness::new();
    let (old, whole) = with_truncated_record(&h);
    let sup = h.start().await;
    let e = sup
        .run(
            "web01".parse().unwrap(),
            Op::Adopt,
            user(1000),
            Progress::none(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, SupervisorError::AdminOnly { .. }), "{e:?}");
    let e = sup
        .run(
            "web01".parse().unwrap(),
            Op::Adopt,
            admin(),
            Progress::none(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            SupervisorError::Record {
                source: crate::state::StateError::StillBad { .. },
                ..
            }
        ),
        "{e:?}"
    );
    // The admin repairs the file; the container is taken back as it runs.
    std::fs::write(quarantine_file(&h), &whole).unwrap();
    sup.run(
        "web01".parse().unwrap(),
        Op::Adopt,
        admin(),
        Progress::none(),
    )
    .await
    .unwrap();
    let r = h.record("web01").unwrap();
    assert_eq!((r.phase, r.addresses), (Phase::Running, old.addresses));
    assert!(!quarantine_file(&h).exists());
    let kept = std::fs::read_dir(h.cfg.paths.state_dir.join("quarantine/resolved"))
        .unwrap()
        .count();
    assert_eq!(kept, 1, "the bad file is kept");
    assert!(sup.info().await.unwrap().quarantined.is_empty());
    run(&sup, "web01", Op::Stop).await.unwrap();
    assert!(!h.running("web01"));
}

#[tokio::test]
async fn forgetting_removes_what_the_name_had_and_frees_it() {
    let h = Harness::new();
    with_truncated_record(&h);
    let sup = h.start().await;
    sup.run(
        "web01".parse().unwrap(),
        Op::Forget,
        admin(),
        Progress::none(),
    )
    .await
    .unwrap();
    sup.synced().await.unwrap();
    assert_eq!(h.traces("web01"), Vec::<String>::new());
    assert!(sup.info().await.unwrap().quarantined.is_empty());
    run(&sup, "web01", ensure()).await.unwrap();
    assert!(h.running("web01"));
}

#[tokio::test]
async fn a_root_without_a_record_is_neither_built_on_nor_removed() {
    let h = Harness::new();
    let root = h.dir.path().join("containers/web01");
    std::fs::create_dir_all(root.join("home")).unwrap();
    std::fs::write(root.join("home/data"), "keep me").unwrap();
    let sup = h.start().await;
    assert!(sup
        .info()
        .await
        .unwrap()
        .findings
        .iter()
        .any(|f| f.contains("a container root without a record; kept")));
    let e = run(&sup, "web01", ensure()).await.unwrap_err();
    assert!(matches!(e, SupervisorError::RootExists { .. }), "{e:?}");
    assert_eq!(
        std::fs::read_to_string(root.join("home/data")).unwrap(),
        "keep me"
    );
    assert!(h.record("web01").is_none());
    assert!(sup.list().await.unwrap().is_empty());
    assert!(h.fakes.calls().is_empty());
}

#[tokio::test]
async fn a_first_save_that_fails_leaves_no_phantom() {
    let h = Harness::new();
    let sup = h.start().await;
    // The temporary file of the save cannot be made.
    let blocker = h
        .cfg
        .paths
        .state_dir
        .join("records")
        .join(crate::sys::fs::temp_name("web01.json".as_ref()));
    std::fs::create_dir_all(&blocker).unwrap();
    let e = run(&sup, "web01", ensure()).await.unwrap_err();
    assert!(matches!(e, SupervisorError::Record { .. }), "{e:?}");
    assert!(sup.list().await.unwrap().is_empty());
    assert!(h.fakes.calls().is_empty());
    std::fs::remove_dir(&blocker).unwrap();
    run(&sup, "web01", ensure()).await.unwrap();
    assert_eq!(h.record("web01").unwrap().phase, Phase::Running);
}

#[tokio::test]
async fn a_failed_save_keeps_the_record_as_it_was() {
    let h = Harness::new();
    let sup = h.start().await;
    run(&sup, "web01", ensure()).await.unwrap();
    let blocker = h
        .cfg
        .paths
        .state_dir
        .join("records")
        .join(crate::sys::fs::temp_name("web01.json".as_ref()));
    std::fs::create_dir_all(&blocker).unwrap();
    let e = run(&sup, "web01", Op::Pin(true)).await.unwrap_err();
    assert!(matches!(e, SupervisorError::Record { .. }), "{e:?}");
    let info = sup.get("web01".parse().unwrap()).await.unwrap();
    assert!(!info.pinned, "memory says what the disk says");
    assert!(!h.record("web01").unwrap().pinned);
}

/// What a test does to a whole record file.
type Damage = fn(&[u8]) -> Vec<u8>;

/// A whole record of `web01` that says it is `web02`'s.
fn renamed(whole: &[u8]) -> Vec<u8> {
    String::from_utf8(whole.to_vec())
        .unwrap()
        .replace("\"name\": \"web01\"", "\"name\": \"web02\"")
        .into_bytes()
}

#[test]
fn every_kind_of_damaged_record_is_quarantined() {
    let damages: [(&str, Damage); 5] = [
        ("empty", |_| Vec::new()),
        ("not JSON", |_| b"\x00\xffgarbage".to_vec()),
        ("wrong types", |_| br#"{"name": 7, "phase": []}"#.to_vec()),
        ("half", |w| w[..w.len() / 2].to_vec()),
        ("another container's", renamed),
    ];
    for (what, damage) in damages {
        let h = Harness::new();
        let (_, whole) = with_truncated_record(&h);
        let bytes = damage(&whole);
        std::fs::write(h.cfg.paths.state_dir.join("records/web01.json"), &bytes).unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let sup = h.start().await;
            let q = sup.info().await.unwrap().quarantined;
            assert_eq!(q.len(), 1, "{what}: {q:?}");
            assert_eq!(q[0].name, "web01", "{what}");
            assert!(sup.list().await.unwrap().is_empty(), "{what}");
        });
        assert_eq!(
            std::fs::read(quarantine_file(&h)).unwrap(),
            bytes,
            "{what}: kept as it was"
        );
        assert!(h.running("web01"), "{what}: left running");
    }
}

#[test]
fn a_record_whose_root_is_gone_is_kept_and_reported() {
    let h = Harness::new();
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                let sup = h.start().await;
                run(&sup, "web01", ensure()).await.unwrap();
                run(&sup, "web01", Op::Stop).await.unwrap();
            });
        })
        .join()
        .unwrap()
    });
    std::fs::remove_dir_all(h.dir.path().join("containers/web01")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let sup = h.start().await;
        let findings = sup.info().await.unwrap().findings;
        assert!(
            findings
                .iter()
                .any(|f| f.starts_with("web01: its root directory") && f.contains("is missing")),
            "{findings:?}"
        );
        assert!(h.record("web01").is_some(), "the record is kept");
    });
}
