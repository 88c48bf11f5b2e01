//! The listeners and the request path. HTTPS: TLS (SNI picks the
//! container's certificate), HTTP/1.1 or HTTP/2, the Host looked up in the
//! route table, the request forwarded to the container with forwarding
//! headers, websocket upgrades spliced through; the apex, when the
//! dashboard is on, answered here (`dashboard/`). HTTP: ACME http-01
//! challenges answered, anything else a 301 to HTTPS for names the proxy
//! routes only (`redirect.rs`).
//! Bounded everywhere: connections (in all and per source, `slots.rs`),
//! handshake and header time, header size, idle time. Each forwarded
//! request keeps its container awake while it lasts, and one for a
//! sleeping container waits for it to wake (`wake.rs`).

use super::headers::{strip_hop_by_hop, to_upstream, upgrade_of};
use super::idle::Idle;
use super::pages::{full, redirect, Body, ProxyError};
use super::redirect::to_https;
use super::routes::HostName;
use super::slots::{Slot, SlotError, Slots};
use super::upstream::{client, UpstreamClient};
use super::{Edge, EdgeError};
use crate::metrics::{Metrics, Refusal, UpstreamError};
use crate::sys::listen;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::HOST;
use hyper::{Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

const ACME_HTTP_PREFIX: &str = "/.well-known/acme-challenge/";

/// What a proxy worker thread serves with: its own upstream pool (so a
/// request and its upstream connection stay on one thread).
struct Shared {
    edge: Arc<Edge>,
    client: UpstreamClient,
    tls: TlsAcceptor,
    https_port: u16,
}

/// An accepted connection on its way to a worker, with its slot.
struct Accepted {
    stream: std::net::TcpStream,
    peer: SocketAddr,
    tls: bool,
    slot: Slot,
}

/// Bind all listeners first (so a taken port fails the agent's start), then
/// serve them: accept loops here hand each connection, round robin, to one
/// of `edge.workers` threads, each a single-threaded runtime that serves
/// the connection from TLS to upstream and back (as nginx's workers do: no
/// hand-off between threads within a request).
pub async fn start(edge: Arc<Edge>) -> Result<(), EdgeError> {
    let cfg = &edge.cfg;
    let mut http = Vec::new();
    for a in &cfg.http {
        http.push(listen::tcp(*a)?);
    }
    let mut https = Vec::new();
    for a in &cfg.https {
        https.push(listen::tcp(*a)?);
    }
    let tls = TlsAcceptor::from(super::tls::server_config(edge.clone()));
    let mut workers = Vec::new();
    for i in 0..cfg.workers {
        let (tx, rx) = mpsc::unbounded_channel::<Accepted>();
        let shared = Shared {
            client: client(),
            tls: tls.clone(),
            https_port: cfg.https.first().map(|a| a.port()).unwrap_or(443),
            edge: edge.clone(),
        };
        std::thread::Builder::new()
            .name(format!("edge-{i}"))
            .spawn(move || worker(Arc::new(shared), rx))
            .map_err(|source| EdgeError::Worker { index: i, source })?;
        workers.push(tx);
    }
    let workers = Arc::new(Workers {
        txs: workers,
        next: AtomicUsize::new(0),
        slots: edge.slots.clone(),
        metrics: edge.metrics.clone(),
    });
    for (l, tls) in http
        .into_iter()
        .map(|l| (l, false))
        .chain(https.into_iter().map(|l| (l, true)))
    {
        let (edge, workers) = (edge.clone(), workers.clone());
        tokio::spawn(async move {
            // Bound already (clients queue in the backlog), served once
            // the routes exist.
            edge.routes_ready().await;
            accept_loop(l, workers, tls).await
        });
    }
    Ok(())
}

struct Workers {
    txs: Vec<mpsc::UnboundedSender<Accepted>>,
    next: AtomicUsize,
    slots: Arc<Slots>,
    metrics: Arc<Metrics>,
}

fn worker(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Accepted>) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("edge: proxy worker runtime: {e}");
            return;
        }
    };
    rt.block_on(async move {
        while let Some(a) = rx.recv().await {
            let Ok(stream) = TcpStream::from_std(a.stream) else {
                continue;
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                connection(stream, a.peer, shared, a.tls).await;
                drop(a.slot);
            });
        }
    });
}

async fn accept_loop(listener: TcpListener, workers: Arc<Workers>, tls: bool) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and the like: back off instead of spinning.
                tracing::warn!("edge: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let slot = match workers.slots.take(peer.ip()) {
            Ok(slot) => slot,
            Err(e) => {
                // Full: refuse at once rather than queue without bound.
                tracing::debug!("edge: closed a connection from {peer}: {e}");
                workers.metrics.proxy.refused(match e {
                    SlotError::Full { .. } => Refusal::Total,
                    SlotError::SourceFull { .. } => Refusal::PerSource,
                });
                drop(stream);
                continue;
            }
        };
        let Ok(stream) = stream.into_std() else {
            continue;
        };
        let i = workers.next.fetch_add(1, Ordering::Relaxed) % workers.txs.len();
        let _ = workers.txs[i].send(Accepted {
            stream,
            peer,
            tls,
            slot,
        });
    }
}

fn builder(shared: &Shared) -> auto::Builder<TokioExecutor> {
    let cfg = &shared.edge.cfg;
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.header_read_timeout)
        .max_buf_size(cfg.max_header_bytes)
        // Head and body in one buffer: one TLS record per write, not one
        // per slice.
        .writev(false);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(cfg.max_header_bytes as u32)
        .max_concurrent_streams(256)
        .keep_alive_interval(Duration::from_secs(30));
    b
}

async fn connection(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>, tls: bool) {
    let _ = stream.set_nodelay(true);
    let cfg = &shared.edge.cfg;
    let io = Idle::new(stream, cfg.idle_timeout);
    let client_ip = peer.ip();
    if !tls {
        let s = shared.clone();
        let svc = hyper::service::service_fn(move |req| {
            let s = s.clone();
            async move { Ok::<_, Infallible>(plain_http(&s, req)) }
        });
        let _ = builder(&shared)
            .serve_connection(TokioIo::new(io), svc)
            .await;
        return;
    }
    let handshake = cfg.handshake_timeout;
    let stream = match tokio::time::timeout(handshake, shared.tls.accept(io)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!("edge: TLS handshake with {peer}: {e}");
            return;
        }
        Err(_) => return,
    };
    if stream.get_ref().1.alpn_protocol() == Some(super::tls::ACME_TLS_ALPN) {
        // ACME tls-alpn-01: the handshake was the answer; nothing follows.
        return;
    }
    let sni = stream.get_ref().1.server_name().and_then(HostName::parse);
    let s = shared.clone();
    let svc = hyper::service::service_fn(move |req| {
        let s = s.clone();
        let sni = sni.clone();
        async move { Ok::<_, Infallible>(proxy(&s, req, client_ip, sni.as_ref()).await) }
    });
    let _ = builder(&shared)
        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
        .await;
}

/// The host a request names (HTTP/2's authority or HTTP/1's Host header):
/// as sent, and normalized for lookups.
fn request_host(req: &Request<Incoming>) -> Option<(String, HostName)> {
    let raw = match req.uri().authority() {
        Some(a) => a.as_str().to_string(),
        None => req.headers().get(HOST)?.to_str().ok()?.to_string(),
    };
    let host = HostName::parse(&raw)?;
    Some((raw, host))
}

fn path_and_query(req: &Request<Incoming>) -> &str {
    req.uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
}

fn plain_http(shared: &Shared, req: Request<Incoming>) -> Response<Body> {
    let resp = answer_plain(shared, req).unwrap_or_else(Response::from);
    shared
        .edge
        .metrics
        .proxy
        .http_request(resp.status().as_u16());
    resp
}

fn answer_plain(shared: &Shared, req: Request<Incoming>) -> Result<Response<Body>, ProxyError> {
    if let Some(token) = req.uri().path().strip_prefix(ACME_HTTP_PREFIX) {
        // ACME http-01: the answer while the order is pending, else 404.
        let key_auth = shared
            .edge
            .responder
            .http_answer(token)
            .ok_or(ProxyError::NoChallenge)?;
        return Ok(Response::builder()
            .header(hyper::header::CONTENT_TYPE, "application/octet-stream")
            .body(full(key_auth))
            .expect("valid response"));
    }
    let host = request_host(&req).map(|(_, host)| host);
    let table = shared.edge.routes();
    let location = to_https(&table, host, path_and_query(&req), shared.https_port)?;
    Ok(redirect(&location))
}

/// One HTTPS request, answered and counted (`crate::metrics`).
async fn proxy(
    shared: &Shared,
    req: Request<Incoming>,
    client_ip: IpAddr,
    sni: Option<&HostName>,
) -> Response<Body> {
    let started = Instant::now();
    let metrics = &shared.edge.metrics.proxy;
    // Looked up again only when counted per container (a flag: cardinality).
    let container = metrics
        .per_container()
        .then(|| request_host(&req))
        .flatten()
        .and_then(|(_, host)| {
            shared
                .edge
                .routes()
                .lookup(&host)
                .map(|r| r.container.to_string())
        });
    let resp = match forward(shared, req, client_ip, sni).await {
        Ok(resp) => resp,
        Err(e) => {
            if let ProxyError::Upstream { source, .. } = &e {
                metrics.upstream_error(if source.is_connect() {
                    UpstreamError::Connect
                } else {
                    UpstreamError::Other
                });
            }
            Response::from(e)
        }
    };
    metrics.https_request(
        resp.status().as_u16(),
        started.elapsed(),
        container.as_deref(),
    );
    resp
}

async fn forward(
    shared: &Shared,
    mut req: Request<Incoming>,
    client_ip: IpAddr,
    sni: Option<&HostName>,
) -> Result<Response<Body>, ProxyError> {
    let (raw_host, host) = request_host(&req).ok_or(ProxyError::NoHost)?;
    let table = shared.edge.routes();
    if let Some(sni) = sni {
        if table.container_of(sni) != table.container_of(&host) {
            return Err(ProxyError::Misdirected {
                sni: sni.clone(),
                host,
            });
        }
    }
    if table.is_served_apex(&host) {
        let path = req.uri().path();
        return super::dashboard::answer(
            &shared.edge,
            req.method(),
            path,
            client_ip,
            shared.https_port,
        );
    }
    let route = table
        .lookup(&host)
        .ok_or_else(|| ProxyError::UnknownHost(host.clone()))?;
    shared.edge.touch(route.container.as_str());
    // Held until the answer's body ended or the upgraded connection closed;
    // a sleeping container is woken first.
    let busy = super::wake::awake(&shared.edge, route).await?;
    let scheme = route.upstream.scheme.as_str();
    let pq = path_and_query(&req);
    let uri: Uri = format!("{scheme}://{}:{}{pq}", route.address, route.upstream.port)
        .parse()
        .map_err(|_| ProxyError::BadPath)?;
    let upgrade = upgrade_of(req.headers());
    let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let mut up = Request::new(body);
    *up.method_mut() = parts.method;
    *up.uri_mut() = uri;
    *up.version_mut() = Version::HTTP_11;
    *up.headers_mut() = to_upstream(parts.headers, &raw_host, client_ip, "https");
    let mut resp = shared
        .client
        .request(up)
        .await
        .map_err(|source| ProxyError::Upstream {
            container: route.container.clone(),
            upstream: route.upstream,
            source,
        })?;
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade {
            let theirs = hyper::upgrade::on(&mut resp);
            tokio::spawn(async move {
                let _busy = busy;
                if let (Ok(a), Ok(b)) = (client_upgrade.await, theirs.await) {
                    let _ =
                        tokio::io::copy_bidirectional(&mut TokioIo::new(a), &mut TokioIo::new(b))
                            .await;
                }
            });
        }
        let keep = upgrade_of(resp.headers());
        strip_hop_by_hop(resp.headers_mut(), keep);
        let (parts, body) = resp.into_parts();
        return Ok(Response::from_parts(parts, body.boxed()));
    }
    strip_hop_by_hop(resp.headers_mut(), None);
    let (parts, body) = resp.into_parts();
    let body = body.map_frame(move |frame| {
        let _held = &busy;
        frame
    });
    Ok(Response::from_parts(parts, body.boxed()))
}
