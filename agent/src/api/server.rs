//! The HTTP/JSON server on the agent's Unix socket. Each connection's peer
//! credentials (SO_PEERCRED) become a [`Caller`]; each route parses its input
//! into validated types and hands it to the supervisor. Long operations
//! answer 200 with NDJSON events ending in `done` or `error`.

use super::types::{ApiError, EnsureBody, Event, ListResponse};
use crate::access::Caller;
use crate::config::Config;
use crate::container::{Alias, ChannelUrl, ContainerName};
use crate::progress::Progress;
use crate::supervisor::{Handle, Op};
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::UnixListener;
use tokio_stream::wrappers::ReceiverStream;

type Body = BoxBody<Bytes, Infallible>;

const MAX_BODY: usize = 64 * 1024;
/// Provisioning carries the files COPY needs (base64 in JSON).
const MAX_PROVISION_BODY: usize = 128 * 1024 * 1024;

/// Serve until the listener fails or the task is dropped.
pub async fn serve(listener: UnixListener, handle: Handle, cfg: Arc<Config>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("accept on API socket: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let handle = handle.clone();
        let cfg = cfg.clone();
        tokio::spawn(async move {
            let Ok(cred) = stream.peer_cred() else { return };
            let (uid, gid) = (cred.uid(), cred.gid());
            let access = cfg.access.clone();
            let caller = tokio::task::spawn_blocking(move || Caller::resolve(uid, gid, &access))
                .await
                .unwrap_or(Caller {
                    uid,
                    gid,
                    admin: false,
                    user: false,
                });
            let service = hyper::service::service_fn(move |req| {
                let handle = handle.clone();
                let caller = caller.clone();
                let cfg = cfg.clone();
                async move { Ok::<_, Infallible>(route(req, handle, caller, cfg).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn json<T: serde::Serialize>(status: StatusCode, v: &T) -> Response<Body> {
    let mut body = serde_json::to_vec(v).expect("API types serialize");
    body.push(b'\n');
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)).boxed())
        .expect("valid response")
}

fn error(e: &ApiError) -> Response<Body> {
    json(
        StatusCode::from_u16(e.kind.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        e,
    )
}

fn text(body: String) -> Response<Body> {
    Response::builder()
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(body)).boxed())
        .expect("valid response")
}

async fn route(
    req: Request<Incoming>,
    handle: Handle,
    caller: Caller,
    cfg: Arc<Config>,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = req.method().clone();
    let result: Result<Response<Body>, ApiError> = match (&method, segs.as_slice()) {
        (&Method::GET, ["v1", "agent"]) => handle.info().await.map(|i| json(StatusCode::OK, &i)),
        (&Method::GET, ["v1", "containers"]) => handle
            .list()
            .await
            .map(|containers| json(StatusCode::OK, &ListResponse { containers })),
        (&Method::GET, ["v1", "containers", name]) => match name.parse::<ContainerName>() {
            Ok(n) => handle.get(n).await.map(|i| json(StatusCode::OK, &i)),
            Err(e) => Err(e.into()),
        },
        (&Method::GET, ["v1", "containers", name, "logs"]) => {
            logs(name, &query, &handle, &caller, &cfg).await
        }
        (&Method::POST, ["v1", "containers", name, verb]) => {
            let op = match *verb {
                "ensure" => read_body(req, MAX_BODY).await.and_then(|b| ensure_op(&b)),
                "provision" => read_body(req, MAX_PROVISION_BODY)
                    .await
                    .and_then(|b| provision_op(&b)),
                "start" => Ok(Op::Start),
                "stop" => Ok(Op::Stop),
                "pin" => Ok(Op::Pin(true)),
                "unpin" => Ok(Op::Pin(false)),
                "extend" => read_body(req, MAX_BODY).await.and_then(|b| extend_op(&b)),
                other => Err(ApiError::not_found(format!(
                    "unknown operation {other:?} (use ensure, provision, start, stop, pin, unpin or extend)"
                ))),
            };
            match (name.parse::<ContainerName>(), op) {
                (Ok(n), Ok(op)) => Ok(stream_op(handle, n, op, caller)),
                (Err(e), _) => Err(e.into()),
                (_, Err(e)) => Err(e),
            }
        }
        (&Method::POST, ["v1", "cleanup"]) => match read_body(req, MAX_BODY).await {
            Ok(b) => match serde_json::from_slice(&b) {
                Ok(body) => handle
                    .cleanup(body, caller)
                    .await
                    .map(|r| json(StatusCode::OK, &r)),
                Err(e) => Err(ApiError::bad_request(format!(
                    "invalid cleanup request: {e}"
                ))),
            },
            Err(e) => Err(e),
        },
        (&Method::DELETE, ["v1", "containers", name]) => match name.parse::<ContainerName>() {
            Ok(n) => Ok(stream_op(handle, n, Op::Destroy, caller)),
            Err(e) => Err(e.into()),
        },
        _ => Err(ApiError::not_found(format!("no route {method} {path}"))),
    };
    result.unwrap_or_else(|e| error(&e))
}

async fn read_body(req: Request<Incoming>, limit: usize) -> Result<Bytes, ApiError> {
    Limited::new(req.into_body(), limit)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| {
            ApiError::bad_request(format!(
                "reading the request body: {e} (limit {limit} bytes)"
            ))
        })
}

fn provision_op(body: &[u8]) -> Result<Op, ApiError> {
    let b: crate::api::types::ProvisionBody = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid provision request: {e}")))?;
    Ok(Op::Provision(std::sync::Arc::new(
        crate::provision::Plan::from_body(b)?,
    )))
}

fn extend_op(body: &[u8]) -> Result<Op, ApiError> {
    let b: crate::cleanup::ExtendBody = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid extend request: {e}")))?;
    // The range (1 to cleanup.max_extend_days) is the job's to check.
    Ok(Op::Extend { days: b.days })
}

fn ensure_op(body: &[u8]) -> Result<Op, ApiError> {
    let b: EnsureBody = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid ensure request: {e}")))?;
    let channel: ChannelUrl = b.channel.parse()?;
    let mut aliases: Vec<Alias> = Vec::new();
    for a in &b.aliases {
        for alias in Alias::parse_list(a)? {
            if !aliases.contains(&alias) {
                aliases.push(alias);
            }
        }
    }
    let limits = b.limits.unwrap_or_default();
    limits
        .validate()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let upstreams = match b.upstreams {
        None => None,
        Some(map) => {
            let mut out = std::collections::BTreeMap::new();
            for (key, value) in map {
                if !key.is_empty() && !aliases.iter().any(|a| a.as_str() == key) {
                    return Err(ApiError::bad_request(format!(
                        "upstream for {key:?}: not one of the container's aliases"
                    )));
                }
                let up = crate::edge::config::parse_upstream(&value)
                    .map_err(|e| ApiError::bad_request(format!("upstream for {key:?}: {e}")))?;
                out.insert(key, up);
            }
            Some(out)
        }
    };
    Ok(Op::Ensure {
        channel,
        aliases,
        owner_uid: b.owner_uid,
        limits,
        upstreams,
    })
}

/// Run an operation and stream its progress; the last event is its result.
fn stream_op(handle: Handle, name: ContainerName, op: Op, caller: Caller) -> Response<Body> {
    let (progress, rx) = Progress::channel(1024);
    tokio::spawn(async move {
        let result = handle.run(name, op, caller, progress.clone()).await;
        let last = match result {
            Ok(o) => Event::Done {
                message: o.message,
                container: o.container.map(Box::new),
            },
            Err(error) => Event::Error { error },
        };
        progress.finish(last).await;
    });
    let stream = ReceiverStream::new(rx).map(|ev| {
        let mut line = serde_json::to_vec(&ev).expect("events serialize");
        line.push(b'\n');
        Ok::<_, Infallible>(Frame::data(Bytes::from(line)))
    });
    Response::builder()
        .header("content-type", "application/x-ndjson")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .expect("valid response")
}

async fn logs(
    name: &str,
    query: &str,
    handle: &Handle,
    caller: &Caller,
    cfg: &Config,
) -> Result<Response<Body>, ApiError> {
    let name: ContainerName = name.parse()?;
    let info = handle.get(name.clone()).await?;
    if !caller.may_manage(info.owner_uid) {
        return Err(ApiError::forbidden(format!(
            "the logs of {name} may hold secrets; only its owner (uid {}) or an admin may read them",
            info.owner_uid
        )));
    }
    let mut kind: &str = "console";
    let mut lines: usize = 200;
    for kv in query.split('&').filter(|s| !s.is_empty()) {
        match kv.split_once('=') {
            Some(("kind", v @ ("console" | "build" | "provision"))) => kind = v,
            Some(("lines", v)) => {
                lines = v
                    .parse()
                    .map_err(|_| ApiError::bad_request(format!("lines={v:?} is not a number")))?
            }
            _ => {
                return Err(ApiError::bad_request(format!(
                    "unknown log query {kv:?} (use kind=console|build|provision, lines=N)"
                )))
            }
        }
    }
    let store = crate::state::Store::new(&cfg.paths.state_dir);
    let body = match kind {
        "build" => crate::nspawn::ready::tail_lines(&store.build_log(&name), lines),
        "provision" => crate::nspawn::ready::tail_lines(&store.provision_log(&name), lines),
        _ => handle.console(name, lines).await?,
    };
    Ok(text(body))
}
