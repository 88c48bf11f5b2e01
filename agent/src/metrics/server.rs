//! The `/metrics` endpoint: HTTP/1.1 (hyper) on a TCP listener of its own
//! (`metrics.listen`), bound before the agent reports ready so a port in
//! use fails the start with the address named. `GET /metrics` answers the
//! exposition; any other path is 404, another method 405. Bounded like the
//! agent's other listeners: at most `metrics.max_connections` open (more
//! are closed at once), headers within `metrics.header_timeout_secs`, and
//! one scrape encoded at a time (it reads `/proc`) off the async threads.
//! Nothing here is secret but container names; it has no authentication,
//! so it listens on loopback unless the operator chooses otherwise.

use super::{Metrics, CONTENT_TYPE};
use crate::config::metrics::MetricsConfig;
use crate::sys::listen::{self, ListenError};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{header, Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Mutex, Semaphore};

/// The largest request header read (a scrape's is a few hundred bytes).
const MAX_HEADER_BYTES: usize = 8 * 1024;

/// Bind `metrics.listen` (if set); serve with [`serve`].
pub fn bind(cfg: &MetricsConfig) -> Result<Option<TcpListener>, ListenError> {
    cfg.listen.map(listen::tcp).transpose()
}

/// Serve scrapes until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, cfg: MetricsConfig) {
    let slots = Arc::new(Semaphore::new(cfg.max_connections));
    let one_scrape = Arc::new(Mutex::new(()));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("metrics: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(
                "metrics: closed a connection from {peer}: {} are open (metrics.max_connections)",
                cfg.max_connections
            );
            continue;
        };
        let (metrics, one_scrape) = (metrics.clone(), one_scrape.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let svc = hyper::service::service_fn(move |req| {
                let (metrics, one_scrape) = (metrics.clone(), one_scrape.clone());
                async move { Ok::<_, Infallible>(answer(req, metrics, &one_scrape).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(cfg.header_timeout)
                .max_buf_size(MAX_HEADER_BYTES)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(format!("{text}\n"))))
        .expect("valid response")
}

async fn answer(
    req: Request<Incoming>,
    metrics: Arc<Metrics>,
    one_scrape: &Mutex<()>,
) -> Response<Full<Bytes>> {
    if req.uri().path() != "/metrics" {
        return plain(StatusCode::NOT_FOUND, "not found; metrics are at /metrics");
    }
    if req.method() != Method::GET {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET");
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET"));
        return r;
    }
    let _one = one_scrape.lock().await;
    match tokio::task::spawn_blocking(move || metrics.encode()).await {
        Ok(text) => Response::builder()
            .header(header::CONTENT_TYPE, CONTENT_TYPE)
            .header(header::CACHE_CONTROL, "no-store")
            .body(Full::new(Bytes::from(text)))
            .expect("valid response"),
        Err(e) => {
            tracing::error!("metrics: encoding failed: {e}");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "encoding the metrics failed",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn started() -> (std::net::SocketAddr, Arc<Metrics>) {
        started_with(Duration::from_secs(10)).await
    }

    async fn started_with(header_timeout: Duration) -> (std::net::SocketAddr, Arc<Metrics>) {
        let cfg = MetricsConfig {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            max_connections: 2,
            header_timeout,
            ..MetricsConfig::default()
        };
        let listener = bind(&cfg).unwrap().unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Metrics::new(false);
        tokio::spawn(serve(listener, metrics.clone(), cfg));
        (addr, metrics)
    }

    async fn get(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, String, String) {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "localhost")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, ct, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn get_metrics_is_the_exposition_and_nothing_else_is_served() {
        let (addr, metrics) = started().await;
        metrics.proxy.http_request(301);
        let (status, ct, body) = get(addr, "GET", "/metrics").await;
        assert_eq!(status, 200);
        assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8");
        assert!(
            body.contains("devhost_proxy_requests_total{scheme=\"http\",class=\"3xx\"} 1\n"),
            "{body}"
        );
        assert_eq!(get(addr, "GET", "/").await.0, 404);
        assert_eq!(get(addr, "GET", "/metrics/x").await.0, 404);
        assert_eq!(get(addr, "POST", "/metrics").await.0, 405);
    }

    #[tokio::test]
    async fn connections_over_the_bound_are_closed() {
        let (addr, _) = started().await;
        // Two held (headers never finished), the third closed at once.
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\n").await.unwrap();
            held.push(s);
        }
        // Accepted in order: both hold their slots before the third is taken.
        let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf))
            .await
            .expect("closed, not left hanging")
            .unwrap_or(0);
        assert_eq!(n, 0, "closed without an answer");
        drop(held);
    }

    #[tokio::test]
    async fn a_client_that_sends_no_request_is_cut_off() {
        let (addr, _) = started_with(Duration::from_secs(1)).await;
        let t = std::time::Instant::now();
        let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 256];
        let n = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf))
            .await
            .expect("cut off by the header timeout")
            .unwrap_or(0);
        let waited = t.elapsed();
        assert!(waited >= Duration::from_millis(900), "{waited:?}");
        // hyper may answer 408 before closing; nothing else.
        let said = String::from_utf8_lossy(&buf[..n]).to_string();
        assert!(n == 0 || said.starts_with("HTTP/1.1 408"), "{said}");
    }
}
