//! The agent process: checks the host, takes the state lock, reconciles,
//! serves the API socket, tells systemd it is ready, and exits on SIGTERM
//! *without* stopping containers (they run on; the next agent adopts them).

use crate::api::server::serve;
use crate::config::{BackendKind, Config};
use crate::net::apply::{IpCommand, NftCommand};
use crate::nix::runner::NixBuild;
use crate::nspawn::backend::Backend;
use crate::nspawn::direct::DirectBackend;
use crate::nspawn::systemd::SystemdBackend;
use crate::shared::Shared;
use crate::state::Store;
use crate::supervisor::{Subsystems, Supervisor};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use tokio::net::UnixListener;
use tokio::signal::unix::{signal, SignalKind};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("another agent is listening on {0}")]
    SocketInUse(String),
    #[error("{0} not found in PATH (install systemd-container)")]
    NoNspawn(String),
    #[error(transparent)]
    Backend(#[from] crate::nspawn::NspawnError),
    #[error(transparent)]
    Edge(#[from] crate::edge::EdgeError),
    #[error(transparent)]
    Supervisor(#[from] crate::supervisor::SupervisorError),
    #[error("metrics: {0}")]
    Metrics(#[from] crate::sys::listen::ListenError),
}

fn io<'a>(
    what: &'static str,
    path: &'a std::path::Path,
) -> impl FnOnce(std::io::Error) -> DaemonError + 'a {
    move |source| DaemonError::Io {
        what,
        path: path.display().to_string(),
        source,
    }
}

/// Host settings that make containers fail in obscure ways when too low.
pub fn host_warnings() -> Vec<String> {
    let mut w = Vec::new();
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    if let Some(n) = read("/proc/sys/fs/inotify/max_user_instances") {
        if n < 1024 {
            w.push(format!(
                "fs.inotify.max_user_instances is {n}: every container's instances count against root's, a systemd container takes about 8, and the agent refuses boots that would not fit (admission.inotify_instances_per_container, about {} containers); set it to 8192 (the NixOS role does)",
                n / crate::config::admission::INOTIFY_INSTANCES_PER_CONTAINER
            ));
        }
    }
    let own_seccomp = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Seccomp:").map(|v| v.trim().to_string()))
        });
    if own_seccomp.as_deref().is_some_and(|m| m != "0") {
        w.push("the agent runs under a seccomp filter (its service sets SystemCallFilter=, ProtectClock=, LockPersonality= or the like): the kernel will not let it read a container's filters, so RUN outside systemd containers, COPY and ECHO fail; remove those settings".into());
    }
    if read("/proc/sys/net/ipv4/ip_forward") == Some(0) {
        w.push("net.ipv4.ip_forward is 0: containers reach the host but not the outside world; set it to 1 (the NixOS module does)".into());
    }
    w
}

pub async fn run(cfg: Config) -> Result<(), DaemonError> {
    let paths = &cfg.paths;
    for d in [&paths.state_dir, &paths.run_dir] {
        std::fs::create_dir_all(d).map_err(io("creating", d))?;
    }
    std::fs::set_permissions(&paths.state_dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io("chmod", &paths.state_dir))?;
    let store = Store::new(&paths.state_dir);
    let _lock = store.lock()?;
    let mut warnings = host_warnings();
    let nix_safety = crate::nix::check::check(&crate::nix::plan::sibling_program(
        &cfg.nix.nix_build,
        "nix",
    ))
    .await;
    warnings.extend(nix_safety.warnings.iter().cloned());
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let ready = cfg.nspawn.ready;
    let mut cfg = cfg;
    cfg.nspawn.program = resolve_program(&cfg.nspawn.program)
        .ok_or_else(|| DaemonError::NoNspawn(cfg.nspawn.program.clone()))?;
    let paths = &cfg.paths;
    let use_systemd = match cfg.nspawn.backend {
        BackendKind::Auto => std::path::Path::new("/run/systemd/system").is_dir(),
        BackendKind::Direct => false,
        BackendKind::Systemd => true,
    };
    let ready_timeout = cfg.nspawn.ready_timeout;
    let backend: Arc<dyn Backend> = if use_systemd {
        let stop_timeout = cfg.nspawn.stop_timeout;
        Arc::new(SystemdBackend::connect(ready, ready_timeout, stop_timeout).await?)
    } else {
        Arc::new(DirectBackend::new(
            paths.containers_dir.clone(),
            paths.run_dir.clone(),
            ready,
            ready_timeout,
        ))
    };
    tracing::info!("{} backend", backend.kind());
    let socket = paths.socket.clone();
    if let Some(parent) = socket.parent() {
        std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
    }
    if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
        return Err(DaemonError::SocketInUse(socket.display().to_string()));
    }
    let _ = std::fs::remove_file(&socket);
    let metrics = crate::metrics::Metrics::new(cfg.metrics.per_container);
    // The edge and the metrics bind their ports before anything else is
    // served: a port in use fails the start with the address named.
    let metrics_listener = crate::metrics::server::bind(&cfg.metrics)?;
    let clock = crate::clock::Clock::system();
    // What keeps containers awake: the proxy, the API's shells and execs
    // and the supervisor's jobs report to it; the sleep sweep reads it.
    let busy = Arc::new(crate::sleep::Busy::new(clock.clone()));
    let edge = if cfg.edge.enable {
        let label = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "devhost".into());
        let (certs, problems) = crate::certs::Certificates::open(
            &cfg.edge.certs.dir,
            &label,
            cfg.edge.certs.local_ca_days,
        )
        .map_err(crate::edge::EdgeError::from)?;
        for p in problems {
            tracing::warn!("edge: stored certificate not served: {p}");
        }
        let certs = Arc::new(certs);
        // The zone is served beside the proxy: the DNS server reads it,
        // the edge names the routed containers in it, the responder puts
        // DNS-01 answers there.
        let zone = cfg
            .edge
            .dns
            .as_ref()
            .map(|d| Arc::new(Shared::new(crate::dns::Zone::new(d.zone.clone()))));
        if let (Some(d), Some(zone)) = (&cfg.edge.dns, &zone) {
            crate::dns::server::start(zone.clone(), &d.listen)
                .await
                .map_err(crate::edge::EdgeError::from)?;
        }
        let responder = Arc::new(crate::certs::responder::Responder::new(zone.clone()));
        let edge = crate::edge::Edge::new(
            cfg.edge.clone(),
            crate::edge::Shares {
                certs: certs.clone(),
                responder,
                zone,
                cleanup: cfg.cleanup.policy,
                metrics: metrics.clone(),
                busy: busy.clone(),
                wake_timeout: cfg.sleep.wake_timeout,
            },
        );
        edge.start().await?;
        let certs = match cfg.edge.certs.issuer {
            crate::config::certs::Issuer::LocalCa => {
                format!("local CA, root {}", certs.root_path().display())
            }
            crate::config::certs::Issuer::Acme(c) => {
                format!("ACME {} at {}", c.as_str(), cfg.edge.certs.acme.directory)
            }
        };
        tracing::info!(
            "edge: serving *.{} on {:?} (HTTPS) and {:?} (HTTP); certificates: {certs}",
            cfg.edge.domain,
            cfg.edge.https,
            cfg.edge.http,
        );
        Some(edge)
    } else {
        None
    };
    let env = Subsystems {
        admission: crate::admission::Admission::real(&cfg),
        edge: edge.clone(),
        cfg: cfg.clone(),
        store,
        backend,
        netlink: Arc::new(IpCommand),
        nft: Arc::new(NftCommand),
        nix: Arc::new(NixBuild),
        nix_safety,
        builds: crate::supervisor::build::Builds::new(cfg.nix.max_builds),
        host_warnings: warnings,
        clock,
        busy,
        ssh_sessions: crate::sleep::ssh::sessions,
        provisioner: std::sync::Arc::new(crate::provision::provisioner::Enter),
        fetcher: std::sync::Arc::new(crate::nix::fetch::Http),
        metrics: metrics.clone(),
    };
    let backend_kind = env.backend.kind();
    let observed_edge = env.edge.clone();
    let handle = Supervisor::start(env).await?;
    if let Some(edge) = &edge {
        edge.set_waker(Arc::new(handle.waker()));
    }
    metrics.observe(Arc::new(crate::metrics::source::AgentSource {
        handle: handle.clone(),
        edge: observed_edge,
        backend: backend_kind,
        pool: crate::net::pool::AddressPool::new(cfg.network.pool),
        containers_dir: cfg.paths.containers_dir.clone(),
        probe: crate::admission::probe::ProcProbe::default(),
    }));
    if let Some(listener) = metrics_listener {
        tracing::info!(
            "metrics: serving /metrics on {}",
            cfg.metrics
                .listen
                .map(|a| a.to_string())
                .unwrap_or_default()
        );
        tokio::spawn(crate::metrics::server::serve(
            listener,
            metrics.clone(),
            cfg.metrics,
        ));
    }
    let listener = UnixListener::bind(&socket).map_err(io("binding", &socket))?;
    std::fs::set_permissions(
        &socket,
        std::fs::Permissions::from_mode(cfg.access.socket_mode),
    )
    .map_err(io("chmod", &socket))?;
    tracing::info!("devhost agent listening on {}", socket.display());
    notify_systemd_ready();
    let server = tokio::spawn(serve(listener, handle, Arc::new(cfg.clone())));
    let mut term =
        signal(SignalKind::terminate()).map_err(io("installing signal handler", &socket))?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(io("installing signal handler", &socket))?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("devhost agent stopping; containers keep running");
    server.abort();
    let _ = std::fs::remove_file(&socket);
    Ok(())
}

/// An absolute path for `program` (systemd needs one for ExecStart).
fn resolve_program(program: &str) -> Option<String> {
    if program.contains('/') {
        return std::path::Path::new(program)
            .is_file()
            .then(|| program.to_string());
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
}

/// `READY=1` to systemd when started as a Type=notify service.
fn notify_systemd_ready() {
    if let Some(path) = std::env::var_os("NOTIFY_SOCKET") {
        let p = path.to_string_lossy().into_owned();
        if let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() {
            let target = if let Some(abs) = p.strip_prefix('@') {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(abs.as_bytes()).ok()
            } else {
                std::os::unix::net::SocketAddr::from_pathname(&p).ok()
            };
            if let Some(addr) = target {
                let _ = sock.send_to_addr(b"READY=1\n", &addr);
            }
        }
    }
}
