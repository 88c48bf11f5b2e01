//! What the supervisor counts (`crate::metrics`): each ensure, build, boot
//! and provisioning run timed with its outcome, nix-builds by outcome,
//! cleanup actions — read back from the exposition as Prometheus would.

use super::*;
use crate::metrics::exposition::{parse, Exposition};

fn scraped(h: &Harness) -> Exposition {
    parse(&h.metrics.encode()).unwrap()
}

/// How many `operation`s ended with `outcome`.
fn timed(e: &Exposition, operation: &str, outcome: &str) -> f64 {
    e.value(
        "devhost_operation_duration_seconds_count",
        &[("operation", operation), ("outcome", outcome)],
    )
    .unwrap()
}

fn nix_builds(e: &Exposition, outcome: &str) -> f64 {
    e.value("devhost_nix_builds_total", &[("outcome", outcome)])
        .unwrap()
}

#[tokio::test]
async fn an_ensure_is_timed_with_its_build_and_boot_and_a_failed_build_is_counted() {
    let h = Harness::new();
    let sup = h.start().await;
    run(&sup, "web01", ensure()).await.unwrap();
    let e = scraped(&h);
    for op in ["ensure", "build", "boot"] {
        assert_eq!(timed(&e, op, "success"), 1.0, "{op}");
        assert_eq!(timed(&e, op, "failure"), 0.0, "{op}");
    }
    assert_eq!(nix_builds(&e, "success"), 1.0);

    h.fakes.plant(Step::Build, 1, Fault::Fail);
    run(&sup, "web02", ensure_from(OTHER_CHANNEL))
        .await
        .unwrap_err();
    let e = scraped(&h);
    assert_eq!(timed(&e, "ensure", "failure"), 1.0);
    assert_eq!(timed(&e, "build", "failure"), 1.0);
    assert_eq!(
        timed(&e, "boot", "success"),
        1.0,
        "no boot after a failed build"
    );
    assert_eq!(nix_builds(&e, "failure"), 1.0);

    // A second ensure of the running container: an ensure, no build, no boot.
    run(&sup, "web01", ensure()).await.unwrap();
    let e = scraped(&h);
    assert_eq!(timed(&e, "ensure", "success"), 2.0);
    assert_eq!(timed(&e, "build", "success"), 1.0);
    assert_eq!(timed(&e, "boot", "success"), 1.0);
}

#[tokio::test]
async fn a_start_is_timed_as_a_boot_and_provisioning_as_provision() {
    let h = Harness::new();
    let sup = with_stopped(&h).await;
    let plan = Arc::new(crate::provision::Plan {
        steps: vec![],
        files: Default::default(),
        copy_as: None,
    });
    run(&sup, "web01", Op::Provision(plan.clone()))
        .await
        .unwrap_err();
    run(&sup, "web01", Op::Start).await.unwrap();
    run(&sup, "web01", Op::Provision(plan)).await.unwrap();
    let e = scraped(&h);
    assert_eq!(
        timed(&e, "boot", "success"),
        2.0,
        "the creation's and the start's"
    );
    assert_eq!(
        timed(&e, "provision", "failure"),
        1.0,
        "refused while stopped"
    );
    assert_eq!(timed(&e, "provision", "success"), 1.0);
}

#[tokio::test]
async fn cleanup_actions_are_counted_when_carried_out() {
    let h = Harness::new();
    let sup = h.start().await;
    run(&sup, "web01", ensure()).await.unwrap();
    let actions = |h: &Harness, action: &str| {
        scraped(h)
            .value(
                "devhost_cleanup_actions_total",
                &[("action", action), ("result", "done")],
            )
            .unwrap()
    };
    sweep(&sup).await;
    assert_eq!(
        (actions(&h, "disable"), actions(&h, "delete")),
        (0.0, 0.0),
        "kept"
    );
    h.clock.advance(chrono::TimeDelta::days(8));
    sweep(&sup).await;
    assert_eq!((actions(&h, "disable"), actions(&h, "delete")), (1.0, 0.0));
    h.clock.advance(chrono::TimeDelta::days(23));
    sweep(&sup).await;
    assert_eq!((actions(&h, "disable"), actions(&h, "delete")), (1.0, 1.0));
}
