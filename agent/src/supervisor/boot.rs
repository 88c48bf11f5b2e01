//! Starting containers again after a host boot, a few at a time.

use super::{Handle, Op};
use crate::access::Caller;
use crate::container::ContainerName;
use crate::progress::Progress;
use std::sync::Arc;

/// After a host boot, start the containers that were running before, a few
/// at a time so that a host with many containers does not boot-storm.
pub(super) async fn start_after_boot(
    handle: Handle,
    names: Vec<ContainerName>,
    concurrency: usize,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = Vec::new();
    for name in names {
        let permit = permits.clone().acquire_owned().await.expect("never closed");
        let handle = handle.clone();
        tasks.push(tokio::spawn(async move {
            let result = handle
                .run(name.clone(), Op::Start, Caller::root(), Progress::none())
                .await;
            drop(permit);
            let text = match result {
                Ok(_) => format!("{name}: started after host boot"),
                Err(e) => format!("{name}: starting after host boot failed: {e}"),
            };
            tracing::info!("{text}");
            handle.finding(text).await;
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}
