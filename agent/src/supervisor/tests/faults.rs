//! Every side effect of every operation, failed and crashed at: the list of
//! fault points is not written down but found by running each operation
//! once and recording what it does, so a new step is covered without
//! editing this file. After each fault the records must agree with the
//! world (a running container runs, a stopped one does not, a container
//! without a record has left nothing), no record is lost or half-written,
//! and the operation succeeds when tried again. A failed update of the
//! derived state (the NAT table) is tried again by the next operation.

use super::*;

/// An operation on `web01` and how to bring the supervisor to where it
/// starts from.
#[derive(Clone, Copy, Debug)]
enum Case {
    Create,
    Start,
    EnsureStopped,
    Stop,
    Destroy,
    CleanupDisable,
    CleanupDelete,
    Provision,
    /// An idle container put to sleep.
    Sleep,
    /// A sleeping container woken.
    Wake,
}

const CASES: [Case; 10] = [
    Case::Create,
    Case::Start,
    Case::EnsureStopped,
    Case::Stop,
    Case::Destroy,
    Case::CleanupDisable,
    Case::CleanupDelete,
    Case::Provision,
    Case::Sleep,
    Case::Wake,
];

/// A provisioning plan of three RUN steps.
pub(super) fn three_steps() -> Op {
    let steps = (1..=3)
        .map(|i| provision_dsl::Step {
            file: "provision.sh".into(),
            line: i,
            action: provision_dsl::Action::Run {
                command: format!("step {i}"),
            },
        })
        .collect();
    Op::Provision(Arc::new(crate::provision::Plan {
        steps,
        files: Default::default(),
        copy_as: None,
    }))
}

impl Case {
    async fn setup(self, h: &Harness, sup: &Handle) {
        match self {
            Case::Create => {}
            Case::Start | Case::EnsureStopped => {
                run(sup, "web01", ensure()).await.unwrap();
                run(sup, "web01", Op::Stop).await.unwrap();
            }
            Case::Stop | Case::Destroy | Case::Provision => {
                run(sup, "web01", ensure()).await.unwrap();
            }
            Case::CleanupDisable => {
                run(sup, "web01", ensure()).await.unwrap();
                h.clock.advance(chrono::TimeDelta::days(8));
            }
            Case::CleanupDelete => {
                run(sup, "web01", ensure()).await.unwrap();
                h.clock.advance(chrono::TimeDelta::days(31));
            }
            Case::Sleep | Case::Wake => {
                run(sup, "web01", super::sleep::ensure_sleeping(60))
                    .await
                    .unwrap();
                h.clock.advance(chrono::TimeDelta::hours(1));
                if matches!(self, Case::Wake) {
                    run(sup, "web01", Op::Sleep).await.unwrap();
                }
            }
        }
    }

    /// Run the operation; whether it reported success.
    async fn act(self, sup: &Handle) -> bool {
        match self {
            Case::Create | Case::EnsureStopped => run(sup, "web01", ensure()).await.is_ok(),
            Case::Start => run(sup, "web01", Op::Start).await.is_ok(),
            Case::Stop => run(sup, "web01", Op::Stop).await.is_ok(),
            Case::Destroy => run(sup, "web01", Op::Destroy).await.is_ok(),
            Case::Provision => run(sup, "web01", three_steps()).await.is_ok(),
            Case::Sleep => run(sup, "web01", Op::Sleep).await.is_ok(),
            Case::Wake => run(sup, "web01", Op::Wake).await.is_ok(),
            Case::CleanupDisable | Case::CleanupDelete => sweep(sup).await.failures() == 0,
        }
    }

    /// The fault points of this case: a clean run, recorded.
    fn points(self) -> Vec<(Step, usize)> {
        let h = Harness::new();
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let sup = h.start().await;
            self.setup(&h, &sup).await;
            let since = h.fakes.call_count();
            assert!(self.act(&sup).await, "{self:?} succeeds without faults");
            let points = h.fakes.points_since(since);
            assert!(!points.is_empty(), "{self:?} has side effects");
            points
        })
    }
}

/// The records agree with the world: what `web01`'s record says is so.
fn consistent(h: &Harness, after_restart: bool) -> Result<(), String> {
    let raw = std::fs::read(h.cfg.paths.state_dir.join("records/web01.json"));
    let r: Option<Record> = match raw {
        Err(_) => None,
        Ok(b) => Some(serde_json::from_slice(&b).map_err(|e| format!("half-written record: {e}"))?),
    };
    let Some(r) = r else {
        return match h.traces("web01") {
            t if t.is_empty() => Ok(()),
            t => Err(format!("no record, but left: {t:?}")),
        };
    };
    let running = h.running("web01");
    match r.phase {
        Phase::Running if !running => Err("recorded running, not running".into()),
        Phase::Running if r.asleep_since.is_some() => Err("running, recorded asleep".into()),
        Phase::Stopped if running => Err("recorded stopped, running".into()),
        Phase::Running | Phase::Stopped => Ok(()),
        // A failed destroy keeps its phase for the retry; a restart ends it.
        Phase::Destroying if !after_restart => Ok(()),
        p => Err(format!("left in phase {}", p.as_str())),
    }
}

#[test]
fn a_failure_at_every_side_effect_of_every_operation_keeps_records_true() {
    let mut covered = 0;
    for case in CASES {
        // The first NAT table update after the operation began fails too.
        let points = case.points().into_iter().chain([(Step::Nft, 1)]);
        for (step, nth) in points {
            let h = Harness::new();
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                let sup = h.start().await;
                case.setup(&h, &sup).await;
                h.fakes.plant(step, nth, Fault::Fail);
                case.act(&sup).await;
                h.fakes.clear_faults();
                sup.synced().await.ok();
                consistent(&h, false)
                    .unwrap_or_else(|e| panic!("{case:?}, {step:?} #{nth} failed: {e}"));
                assert!(
                    case.act(&sup).await,
                    "{case:?} succeeds when tried again after {step:?} #{nth} failed"
                );
                consistent(&h, false)
                    .unwrap_or_else(|e| panic!("{case:?} again after {step:?} #{nth}: {e}"));
            });
            covered += 1;
        }
    }
    eprintln!("fault points failed at: {covered}");
    assert!(
        covered > CASES.len(),
        "{covered} fault points: the cases ran"
    );
}

#[test]
fn a_crash_at_every_side_effect_of_every_operation_is_reconciled() {
    let mut covered = 0;
    for case in CASES {
        for (step, nth) in case.points() {
            let h = Harness::new();
            std::thread::scope(|s| {
                s.spawn(|| {
                    let rt = tokio::runtime::Runtime::new().unwrap();
                    rt.block_on(async {
                        let sup = h.start().await;
                        case.setup(&h, &sup).await;
                        h.fakes.plant(step, nth, Fault::Hang);
                        tokio::spawn(async move { case.act(&sup).await });
                        tokio::time::timeout(Duration::from_secs(10), h.fakes.hanging.notified())
                            .await
                            .unwrap_or_else(|_| panic!("{case:?}: {step:?} #{nth} reached"));
                    });
                })
                .join()
                .unwrap()
            });
            h.fakes.clear_faults();
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                let sup = h.start().await;
                consistent(&h, true)
                    .unwrap_or_else(|e| panic!("{case:?}, crash at {step:?} #{nth}: {e}"));
                // The operation once more after the restart: whatever it
                // finds done or half done, the records stay true.
                let _ = case.act(&sup).await;
                consistent(&h, true).unwrap_or_else(|e| {
                    panic!("{case:?} again after a crash at {step:?} #{nth}: {e}")
                });
            });
            covered += 1;
        }
    }
    eprintln!("fault points crashed at: {covered}");
    assert!(
        covered > CASES.len(),
        "{covered} fault points: the cases ran"
    );
}

#[tokio::test]
async fn a_failed_provisioning_step_stops_the_run_and_is_named() {
    let h = Harness::new();
    let sup = h.start().await;
    run(&sup, "web01", ensure()).await.unwrap();
    h.fakes.plant(Step::Provision, 2, Fault::Fail);
    let e = run(&sup, "web01", three_steps()).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "provision.sh:2: step 2 failed: Provision failed as planted"
    );
    let steps: Vec<Call> = h
        .fakes
        .calls()
        .into_iter()
        .filter(|c| c.step() == Step::Provision)
        .collect();
    assert_eq!(
        steps,
        vec![
            Call::Provision("web01".into(), 1),
            Call::Provision("web01".into(), 2)
        ],
        "step 3 never ran"
    );
    assert!(h.running("web01"));
    assert_eq!(h.record("web01").unwrap().phase, Phase::Running);
}
