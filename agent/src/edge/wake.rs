//! A request for a container that sleeps (or is falling asleep) is held
//! while it wakes: the proxy asks the supervisor to start it (one start
//! however many requests wait: the waker shares it, see
//! `supervisor/sleep.rs`), then waits until the container's upstream
//! accepts a connection, and forwards the request. All within
//! `sleep.wake_timeout_secs`; past that the answer is a 503 page that says
//! the container is starting and retries by itself. Waiting requests hold
//! their connection's slot (`slots.rs`) as any other does.
//!
//! Every forwarded request holds a [`BusyGuard`] for its life (the
//! answer's body, or the upgraded connection): that is what keeps its
//! container awake.

use super::pages::ProxyError;
use super::routes::Route;
use super::Edge;
use crate::container::ContainerName;
use crate::sleep::BusyGuard;
use futures_util::future::BoxFuture;
use std::net::Ipv4Addr;
use std::time::Duration;
use tokio::time::Instant;

/// Starts a sleeping container and returns once it runs (or why not).
pub trait Wake: Send + Sync {
    fn wake(&self, container: &ContainerName) -> BoxFuture<'static, Result<(), String>>;
}

/// The container of `route` is up for a request: the guard that keeps it
/// so while the request lasts; a sleeping one is woken first.
pub async fn awake(edge: &Edge, route: &Route) -> Result<BusyGuard, ProxyError> {
    let container = &route.container;
    if !route.sleeping {
        if !route.running {
            return Err(ProxyError::NotRunning(container.clone()));
        }
        if let Ok(guard) = edge.busy.enter(container) {
            return Ok(guard);
        }
        // Refused: it is falling asleep right now. Wake it again.
    }
    let starting = || ProxyError::Starting(container.clone());
    let Some(waker) = edge.waker.get().cloned() else {
        return Err(starting());
    };
    let deadline = Instant::now() + edge.wake_timeout;
    let woken = tokio::time::timeout_at(deadline, async {
        waker.wake(container).await.map_err(|why| {
            tracing::warn!(%container, "edge: waking for a request failed: {why}");
            ProxyError::WakeFailed(container.clone())
        })?;
        let guard = edge.busy.enter(container).map_err(|_| starting())?;
        answers(route.address, route.upstream.port).await;
        Ok(guard)
    })
    .await;
    woken.unwrap_or_else(|_| Err(starting()))
}

/// Until `address:port` accepts a TCP connection (the container's service
/// may come up after the container reports ready), polled with a growing
/// pause.
async fn answers(address: Ipv4Addr, port: u16) {
    let mut pause = Duration::from_millis(5);
    loop {
        if tokio::net::TcpStream::connect((address, port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}
