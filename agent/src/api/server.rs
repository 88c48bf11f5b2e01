//! The HTTP/JSON server on the agent's Unix socket. Each connection's peer
//! credentials (SO_PEERCRED) become a [`Caller`]; each route parses its input
//! into validated types and hands it to the supervisor. Long operations
//! answer 200 with NDJSON events ending in `done` or `error`.
//!
//! The socket is open to every local user, so nothing a caller sends is
//! read before it is known that the caller may send it: a uid holds at most
//! `access.max_connections_per_uid` connections; headers and bodies must
//! arrive within `access.header_timeout_secs` and `access.body_timeout_secs`;
//! a route is authorized from the peer's credentials
//! (and, for provisioning, the container's owner) before its body is read;
//! each route has its own body limit and deadline, and the large
//! provisioning bodies share one memory budget.

use super::types::{ApiError, EnsureBody, ErrorKind, Event, ListResponse};
use crate::access::Caller;
use crate::config::Config;
use crate::container::{Alias, ChannelUrl, ContainerName};
use crate::progress::Progress;
use crate::supervisor::{Handle, Op, SupervisorError};
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixListener;
use tokio::sync::Semaphore;
use tokio_stream::wrappers::ReceiverStream;

type Body = BoxBody<Bytes, Infallible>;

const MAX_BODY: usize = 64 * 1024;
/// Provisioning carries the files COPY needs (base64 in JSON).
const MAX_PROVISION_BODY: usize = 128 * 1024 * 1024;
/// Largest request head.
const MAX_HEADER_SIZE: usize = 16 * 1024;
/// Memory all provisioning bodies may take together, in MiB, from the first
/// byte read until their operation has ended (they wait in the queue and
/// run decoded); one that does not fit within its deadline is refused
/// (busy).
const PROVISION_BUDGET_MIB: u32 = 256;

/// Open connections per uid.
#[derive(Default)]
struct Connections(Mutex<HashMap<u32, u32>>);

/// One counted connection; uncounted when dropped.
struct Counted {
    all: Arc<Connections>,
    uid: u32,
}

impl Connections {
    fn admit(all: &Arc<Connections>, uid: u32, max: u32) -> Option<Counted> {
        let mut m = all.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(uid).or_insert(0);
        if uid != 0 && *n >= max {
            return None;
        }
        *n += 1;
        Some(Counted {
            all: all.clone(),
            uid,
        })
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut m = self.all.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.uid);
            }
        }
    }
}

/// What every connection shares.
struct Shared {
    handle: Handle,
    cfg: Arc<Config>,
    /// MiB of provisioning bodies being read, queued or run.
    provision_budget: Arc<Semaphore>,
    /// Open shells per uid.
    shells: Arc<Connections>,
    /// Running execs per uid.
    execs: Arc<Connections>,
}

/// Serve until the listener fails or the task is dropped.
pub async fn serve(listener: UnixListener, handle: Handle, cfg: Arc<Config>) {
    let connections = Arc::new(Connections::default());
    let shared = Arc::new(Shared {
        handle,
        cfg,
        provision_budget: Arc::new(Semaphore::new(PROVISION_BUDGET_MIB as usize)),
        shells: Arc::new(Connections::default()),
        execs: Arc::new(Connections::default()),
    });
    loop {
        let (mut stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("accept on API socket: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(cred) = stream.peer_cred() else {
            continue;
        };
        let (uid, gid) = (cred.uid(), cred.gid());
        let max = shared.cfg.access.max_connections_per_uid;
        let Some(counted) = Connections::admit(&connections, uid, max) else {
            tokio::spawn(async move {
                let e = ApiError::new(
                    ErrorKind::Busy,
                    format!("uid {uid} already holds {max} connections to the agent (access.max_connections_per_uid)"),
                );
                let body = serde_json::to_string(&e).expect("serializes") + "\n";
                let head = format!(
                    "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = tokio::time::timeout(
                    Duration::from_secs(1),
                    stream.write_all((head + &body).as_bytes()),
                )
                .await;
            });
            continue;
        };
        let shared = shared.clone();
        let header_timeout = shared.cfg.access.header_timeout;
        tokio::spawn(async move {
            let _counted = counted;
            let access = shared.cfg.access.clone();
            let caller = tokio::task::spawn_blocking(move || Caller::resolve(uid, gid, &access))
                .await
                .unwrap_or(Caller {
                    uid,
                    gid,
                    admin: false,
                    user: false,
                });
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                let caller = caller.clone();
                async move { Ok::<_, Infallible>(route(req, &shared, caller).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .max_header_size(MAX_HEADER_SIZE)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
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

/// Refuse a caller outside both groups before anything of theirs is read.
fn may_change(caller: &Caller, cfg: &Config, verb: &str) -> Result<(), ApiError> {
    if caller.user {
        return Ok(());
    }
    let what = match verb {
        "ensure" => "create containers",
        "shell" => "open shells in containers",
        "exec" => "run commands in containers",
        _ => "change containers",
    };
    Err(ApiError::forbidden(format!(
        "uid {} may not {what} (not root, not in group {:?} or {:?})",
        caller.uid, cfg.access.user_group, cfg.access.admin_group
    )))
}

async fn route(req: Request<Incoming>, shared: &Shared, caller: Caller) -> Response<Body> {
    let handle = &shared.handle;
    let cfg = &shared.cfg;
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = req.method().clone();
    let result: Result<Response<Body>, ApiError> = match (&method, segs.as_slice()) {
        (&Method::GET, ["v1", "agent"]) => handle
            .info()
            .await
            .map(|i| json(StatusCode::OK, &i))
            .map_err(ApiError::from),
        (&Method::GET, ["v1", "containers"]) => handle
            .list()
            .await
            .map(|containers| json(StatusCode::OK, &ListResponse { containers }))
            .map_err(ApiError::from),
        (&Method::GET, ["v1", "containers", name]) => match name.parse::<ContainerName>() {
            Ok(n) => handle
                .get(n)
                .await
                .map(|i| json(StatusCode::OK, &i))
                .map_err(ApiError::from),
            Err(e) => Err(e.into()),
        },
        (&Method::GET, ["v1", "containers", name, "logs"]) => {
            logs(name, &query, handle, &caller, cfg).await
        }
        (&Method::GET, ["v1", "agent", "logs"]) => agent_logs(&query, &caller, cfg),
        (&Method::POST, ["v1", "containers", name, "shell"]) => {
            shell(req, shared, &caller, name, &query).await
        }
        (&Method::POST, ["v1", "containers", name, "exec"]) => {
            exec(req, shared, &caller, name).await
        }
        (&Method::POST, ["v1", "containers", name, verb]) => {
            post_op(req, shared, &caller, name, verb).await
        }
        (&Method::POST, ["v1", "cleanup"]) => {
            if !caller.admin {
                // Refused before the body is read.
                Err(SupervisorError::MayNotSweep(caller.uid).into())
            } else {
                match read_body(req, MAX_BODY, body_timeout(cfg)).await {
                    Ok(b) => match serde_json::from_slice(&b) {
                        Ok(body) => handle
                            .cleanup(body, caller)
                            .await
                            .map(|r| json(StatusCode::OK, &r))
                            .map_err(ApiError::from),
                        Err(e) => Err(ApiError::bad_request(format!(
                            "invalid cleanup request: {e}"
                        ))),
                    },
                    Err(e) => Err(e),
                }
            }
        }
        (&Method::DELETE, ["v1", "containers", name]) => match name.parse::<ContainerName>() {
            Ok(n) => may_change(&caller, cfg, "destroy")
                .map(|()| stream_op(handle.clone(), n, Op::Destroy, caller, None)),
            Err(e) => Err(e.into()),
        },
        _ => Err(ApiError::not_found(format!("no route {method} {path}"))),
    };
    result.unwrap_or_else(|e| error(&e))
}

/// Does the request ask to be upgraded to `token`?
fn wants_upgrade<B>(req: &Request<B>, token: &str) -> Result<(), ApiError> {
    let asks = req
        .headers()
        .get(hyper::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(token));
    if asks {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "this route needs `Connection: Upgrade` and `Upgrade: {token}`"
        )))
    }
}

fn switching(token: &str) -> Response<Body> {
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(hyper::header::CONNECTION, "upgrade")
        .header(hyper::header::UPGRADE, token)
        .body(Full::new(Bytes::new()).boxed())
        .expect("valid response")
}

/// `POST /v1/containers/NAME/exec`, an upgrade to an exec stream: the
/// caller and the container are checked, then the argv body is read and
/// checked, then — the body may take its time, and the container of the
/// name may be another by then — the caller and the container are checked
/// again and the way in decided, then `101` and the relay (see
/// [`super::exec`]).
async fn exec(
    req: Request<Incoming>,
    shared: &Shared,
    caller: &Caller,
    name: &str,
) -> Result<Response<Body>, ApiError> {
    use super::exec::{ExecArgv, ExecBody, MAX_EXECS_PER_UID, UPGRADE};
    wants_upgrade(&req, UPGRADE)?;
    may_change(caller, &shared.cfg, "exec")?;
    super::exec::authorize(&shared.handle, caller, name, "exec").await?;
    // The body is read apart from the request, whose parts keep the
    // upgrade.
    let (parts, body) = req.into_parts();
    let body = read_body_of(&parts.headers, body, MAX_BODY, body_timeout(&shared.cfg)).await?;
    let b: ExecBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid exec request: {e}")))?;
    let argv = ExecArgv::try_from(b.argv).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let (name, way) = super::exec::way_in(&shared.handle, caller, name, "exec").await?;
    // The container stays awake while the command runs.
    let awake = shared.handle.hold_awake(&name)?;
    let uid = caller.uid;
    let Some(counted) = Connections::admit(&shared.execs, uid, MAX_EXECS_PER_UID) else {
        return Err(ApiError::new(
            ErrorKind::Busy,
            format!("uid {uid} already runs {MAX_EXECS_PER_UID} commands through exec"),
        ));
    };
    let req = Request::from_parts(parts, ());
    tokio::spawn(async move {
        let _counted = counted;
        let _awake = awake;
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => super::exec::relay(upgraded, name, uid, way, argv).await,
            Err(e) => tracing::warn!("exec in {name}: upgrade failed: {e}"),
        }
    });
    Ok(switching(UPGRADE))
}

/// `POST /v1/containers/NAME/shell`, an upgrade to a terminal: checked,
/// then answered `101` and relayed (see [`super::shell`]).
async fn shell(
    req: Request<Incoming>,
    shared: &Shared,
    caller: &Caller,
    name: &str,
    query: &str,
) -> Result<Response<Body>, ApiError> {
    wants_upgrade(&req, super::shell::UPGRADE)?;
    may_change(caller, &shared.cfg, "shell")?;
    let (name, way, want) = super::shell::prepare(&shared.handle, caller, name, query).await?;
    // The container stays awake while the shell is open.
    let awake = shared.handle.hold_awake(&name)?;
    // Counted for the shell's life (the connection it came on is no longer
    // counted once upgraded).
    let max = super::shell::MAX_SHELLS_PER_UID;
    let uid = caller.uid;
    let Some(counted) = Connections::admit(&shared.shells, uid, max) else {
        return Err(ApiError::new(
            ErrorKind::Busy,
            format!("uid {uid} already has {max} shells open"),
        ));
    };
    tokio::spawn(async move {
        let _counted = counted;
        let _awake = awake;
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => super::shell::relay(upgraded, name, uid, way, want).await,
            Err(e) => tracing::warn!("shell in {name}: upgrade failed: {e}"),
        }
    });
    Ok(switching(super::shell::UPGRADE))
}

/// `POST /v1/containers/NAME/VERB`: the route, the name and the caller are
/// checked before the body is read.
async fn post_op(
    req: Request<Incoming>,
    shared: &Shared,
    caller: &Caller,
    name: &str,
    verb: &str,
) -> Result<Response<Body>, ApiError> {
    const VERBS: [&str; 10] = [
        "ensure",
        "provision",
        "start",
        "stop",
        "wake",
        "pin",
        "unpin",
        "extend",
        "adopt",
        "forget",
    ];
    if !VERBS.contains(&verb) {
        return Err(ApiError::not_found(format!(
            "unknown operation {verb:?} (use ensure, provision, start, stop, wake, pin, unpin, extend, adopt or forget)"
        )));
    }
    let name: ContainerName = name.parse()?;
    may_change(caller, &shared.cfg, verb)?;
    let mut hold = None;
    let op = match verb {
        "ensure" => ensure_op(
            &read_body(req, MAX_BODY, body_timeout(&shared.cfg)).await?,
            &shared.cfg,
        )?,
        "provision" => {
            // Only the owner (or an admin) may send the large body; the
            // supervisor checks again when the operation is admitted.
            let info = shared.handle.get(name.clone()).await?;
            if !caller.may_manage(info.owner_uid) {
                return Err(ApiError::forbidden(format!(
                    "container {name} belongs to uid {}; only its owner or an admin may provision it",
                    info.owner_uid
                )));
            }
            let (body, permit) =
                read_provision_body(req, &shared.provision_budget, body_timeout(&shared.cfg))
                    .await?;
            hold = Some(permit);
            provision_op(&body)?
        }
        "start" => Op::Start,
        "stop" => Op::Stop,
        "wake" => Op::Wake,
        "pin" => Op::Pin(true),
        "unpin" => Op::Pin(false),
        "adopt" => Op::Adopt,
        "forget" => Op::Forget,
        _ => extend_op(&read_body(req, MAX_BODY, body_timeout(&shared.cfg)).await?)?,
    };
    Ok(stream_op(
        shared.handle.clone(),
        name,
        op,
        caller.clone(),
        hold,
    ))
}

/// The declared length of a body, refused at once when over `limit`.
fn declared_length(req: &Request<Incoming>, limit: usize) -> Result<Option<u64>, ApiError> {
    declared_length_of(req.headers(), limit)
}

fn declared_length_of(headers: &hyper::HeaderMap, limit: usize) -> Result<Option<u64>, ApiError> {
    let Some(v) = headers.get(hyper::header::CONTENT_LENGTH) else {
        return Ok(None);
    };
    let n: u64 = v
        .to_str()
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ApiError::bad_request("invalid Content-Length"))?;
    if n > limit as u64 {
        return Err(too_large(limit));
    }
    Ok(Some(n))
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        ErrorKind::TooLarge,
        format!("the request body is larger than this route takes ({limit} bytes)"),
    )
}

async fn read_body(
    req: Request<Incoming>,
    limit: usize,
    deadline: Duration,
) -> Result<Bytes, ApiError> {
    let (parts, body) = req.into_parts();
    read_body_of(&parts.headers, body, limit, deadline).await
}

/// A body of at most `limit` bytes that arrives within `deadline`.
async fn read_body_of(
    headers: &hyper::HeaderMap,
    body: Incoming,
    limit: usize,
    deadline: Duration,
) -> Result<Bytes, ApiError> {
    declared_length_of(headers, limit)?;
    match tokio::time::timeout(deadline, Limited::new(body, limit).collect()).await {
        Err(_) => Err(ApiError::bad_request(format!(
            "the request body did not arrive within {} s",
            deadline.as_secs()
        ))),
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large(limit)),
        Ok(Err(e)) => Err(ApiError::bad_request(format!(
            "reading the request body: {e}"
        ))),
    }
}

/// A provisioning body: its declared length (required) must fit the shared
/// budget before any of it is read.
async fn read_provision_body(
    req: Request<Incoming>,
    budget: &Arc<Semaphore>,
    deadline: Duration,
) -> Result<(Bytes, tokio::sync::OwnedSemaphorePermit), ApiError> {
    let len = declared_length(&req, MAX_PROVISION_BODY)?.ok_or_else(|| {
        ApiError::bad_request("a provisioning request must declare its Content-Length")
    })?;
    let mib = len.div_ceil(1 << 20).max(1) as u32;
    let permit = tokio::time::timeout(deadline, budget.clone().acquire_many_owned(mib))
        .await
        .map_err(|_| {
            ApiError::new(
                ErrorKind::Busy,
                "the agent is reading other provisioning uploads; try again later",
            )
        })?
        .map_err(|_| ApiError::internal("the agent is shutting down"))?;
    Ok((read_body(req, len as usize, deadline).await?, permit))
}

fn body_timeout(cfg: &Config) -> Duration {
    cfg.access.body_timeout
}

fn provision_op(body: &[u8]) -> Result<Op, ApiError> {
    let b: crate::api::types::ProvisionBody = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid provision request: {e}")))?;
    Ok(Op::Provision(std::sync::Arc::new(
        crate::provision::Plan::from_body(b)?,
    )))
}

fn extend_op(body: &[u8]) -> Result<Op, ApiError> {
    let b: crate::api::types::ExtendBody = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid extend request: {e}")))?;
    // The range (1 to cleanup.max_extend_days) is the job's to check.
    Ok(Op::Extend { days: b.days })
}

fn ensure_op(body: &[u8], cfg: &Config) -> Result<Op, ApiError> {
    let b: EnsureBody = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid ensure request: {e}")))?;
    let channel: ChannelUrl = match (b.channel.as_str(), &b.hydra_eval) {
        ("", Some(eval)) => cfg
            .fc_devhost
            .hydra_channel(eval)
            .map_err(ApiError::bad_request)?
            .parse()?,
        ("", None) => {
            return Err(ApiError::bad_request(
                "no channel: give a channel URL (or a Hydra evaluation)",
            ))
        }
        (url, None) => url.parse()?,
        (_, Some(_)) => {
            return Err(ApiError::bad_request(
                "give a channel URL or a Hydra evaluation, not both",
            ))
        }
    };
    if let Some(u) = &b.image_url {
        if u.is_empty() || u.len() > 2048 || u.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(ApiError::bad_request(format!(
                "invalid image URL {u:?}: 1–2048 characters without white space"
            )));
        }
    }
    if let Some(d) = b.disk_size {
        crate::container::limits::check_disk_size(d)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
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
    let upstreams = b
        .upstreams
        .map(|map| crate::container::Upstreams::parse(&map, &aliases))
        .transpose()
        .map_err(ApiError::bad_request)?;
    let sleep_after = b
        .sleep_after
        .as_deref()
        .map(crate::sleep::SleepAfter::parse)
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(Op::Ensure(crate::supervisor::EnsureSpec {
        channel,
        aliases,
        owner_uid: b.owner_uid,
        limits,
        upstreams,
        disk_size: b.disk_size,
        image_url: b.image_url,
        update_channel: b.update_channel.unwrap_or(true),
        sleep_after,
    }))
}

/// Run an operation and stream its progress; the last event is its result.
/// `hold` (a provisioning upload's share of the budget) is kept until the
/// operation has ended.
fn stream_op(
    handle: Handle,
    name: ContainerName,
    op: Op,
    caller: Caller,
    hold: Option<tokio::sync::OwnedSemaphorePermit>,
) -> Response<Body> {
    let (progress, rx) = Progress::channel(1024);
    tokio::spawn(async move {
        let result = handle.run(name, op, caller, progress.clone()).await;
        drop(hold);
        let last = match result {
            Ok(o) => Event::Done {
                message: o.message,
                container: o.container.map(Box::new),
            },
            Err(e) => Event::Error { error: e.into() },
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

/// The query of a logs request: `kind=console|build|provision` (not for
/// the agent's log), `lines=N`, `follow=1`, `since=SECONDS` (since the
/// epoch).
fn log_query(query: &str, kinds: bool) -> Result<(String, crate::logs::Want), ApiError> {
    let mut kind = "console".to_string();
    let mut want = crate::logs::Want {
        lines: 200,
        since: None,
        follow: false,
    };
    for kv in query.split('&').filter(|s| !s.is_empty()) {
        match kv.split_once('=') {
            Some(("kind", v @ ("console" | "build" | "provision"))) if kinds => {
                kind = v.to_string()
            }
            Some(("lines", v)) => {
                want.lines = v
                    .parse()
                    .map_err(|_| ApiError::bad_request(format!("lines={v:?} is not a number")))?
            }
            Some(("follow", "1" | "true")) => want.follow = true,
            Some(("follow", "0" | "false")) => want.follow = false,
            Some(("since", v)) => {
                let t = v
                    .parse::<i64>()
                    .ok()
                    .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "since={v:?} is not a time in seconds since the epoch"
                        ))
                    })?;
                want.since = Some(t);
            }
            _ => {
                return Err(ApiError::bad_request(format!(
                    "unknown log query {kv:?} (use {}lines=N, follow=1, since=SECONDS)",
                    if kinds {
                        "kind=console|build|provision, "
                    } else {
                        ""
                    }
                )))
            }
        }
    }
    Ok((kind, want))
}

/// A log as `want` asks, streamed as it is read (and, following, as it
/// grows) until the client goes away.
fn log_response(
    source: crate::logs::Source,
    want: crate::logs::Want,
    what: &str,
) -> Result<Response<Body>, ApiError> {
    crate::logs::check(&source, &want, what).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let stream = ReceiverStream::new(crate::logs::stream(source, want))
        .map(|b| Ok::<_, Infallible>(Frame::data(b)));
    Ok(Response::builder()
        .header("content-type", "text/plain; charset=utf-8")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .expect("valid response"))
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
    let (kind, want) = log_query(query, true)?;
    let store = crate::state::Store::new(&cfg.paths.state_dir);
    let file = |path| crate::logs::Source::File {
        path,
        timestamped: false,
        rotated: None,
    };
    let (source, what) = match kind.as_str() {
        "build" => (file(store.build_log(&name)), format!("build log of {name}")),
        "provision" => (
            file(store.provision_log(&name)),
            format!("provisioning log of {name}"),
        ),
        _ => (
            handle.console_source(name.clone()).await?,
            format!("console log of {name} (direct backend)"),
        ),
    };
    log_response(source, want, &what)
}

/// `GET /v1/agent/logs`: the agent's own log, for root and admins.
fn agent_logs(query: &str, caller: &Caller, cfg: &Config) -> Result<Response<Body>, ApiError> {
    if !caller.admin {
        return Err(ApiError::forbidden(format!(
            "uid {} may not read the agent's log (root or group {:?} only: it names every container, user and command)",
            caller.uid, cfg.access.admin_group
        )));
    }
    let (_, want) = log_query(query, false)?;
    let (path, rotated) = crate::logs::agentlog::paths(&cfg.paths.state_dir);
    let source = crate::logs::Source::File {
        path,
        timestamped: true,
        rotated: Some(rotated),
    };
    log_response(source, want, "agent's log")
}
