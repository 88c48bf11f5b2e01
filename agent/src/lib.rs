//! devhost: a node agent for NixOS development hosts. It builds containers
//! from pinned channels with Nix, runs them with systemd-nspawn, networks
//! them, and serves an API that the CLIs (native and compatible) talk to.
//!
//! Modules, in the order a request meets them:
//! - [`cli`]: the command-line front-ends (thin; one file per subcommand).
//! - [`api`]: HTTP/JSON over the Unix socket: types, server, client.
//! - [`access`]: who the caller is and what they may do.
//! - [`supervisor`]: the one owner of container state; jobs; reconcile.
//! - [`container`]: validated names and the persistent record.
//! - [`nix`]: configuration.nix and nix-build (pure plan + runner), channel
//!   fetch and import, the shared systems' cache.
//! - [`net`]: address pool, netns/veth plan, NAT ruleset, hosts block.
//! - [`nspawn`]: nspawn argv and the backends that run it.
//! - [`admission`]: boots at most N at once, and refused up front when
//!   the host's limits (inotify, PIDs, disk) have no room for them.
//! - [`cleanup`]: the policy that disables and deletes unused containers.
//! - [`sleep`]: scale to zero: what keeps a container awake, when it is
//!   idle long enough to sleep, SSH sessions seen from the host.
//! - [`edge`]: the HTTPS reverse proxy (routes, TLS, pages).
//! - [`certs`]: the certificate store the proxy reads and the worker writes;
//!   ACME, the local CA, the rate budget.
//! - [`dns`]: the authoritative zone and its server, beside the proxy.
//! - [`metrics`]: what Prometheus scrapes: typed families, the state read
//!   at each scrape, the `/metrics` listener.
//! - [`provision`]: running COPY/RUN/ECHO steps in a container.
//! - [`enter`]: entering a running container with no more privilege than
//!   its init (the helper behind RUN, COPY, ECHO, exec and shells).
//! - [`logs`]: reading and following consoles, journals and the agent's
//!   own log (`devhost logs`).
//! - [`environment`]: reading batou's environment.cfg for `devhost deploy`.
//! - [`fcdevhost`]: the `fc-devhost` protocol of batou ≥ 2.6 (config,
//!   units, the vm-configs record).
//! - [`state`]: records on disk and the agent lock.
//! - [`sys`]: raw system calls (safe file writes, /proc, namespaces,
//!   capabilities, seccomp, credentials).
//! - [`config`], [`daemon`], [`progress`], [`clock`], [`shared`],
//!   [`cancel`], [`flight`]: configuration, the agent process, progress
//!   streaming, the agent's "now", the lock that shared state sits behind,
//!   why long work stops, work many callers share.

pub mod access;
pub mod admission;
pub mod api;
pub mod cancel;
pub mod certs;
pub mod cleanup;
pub mod cli;
pub mod clock;
pub mod config;
pub mod container;
pub mod daemon;
pub mod dns;
pub mod edge;
pub mod enter;
pub mod environment;
pub mod fcdevhost;
pub mod flight;
pub mod logs;
pub mod metrics;
pub mod net;
pub mod nix;
pub mod nspawn;
pub mod progress;
pub mod provision;
pub mod shared;
pub mod sleep;
pub mod state;
pub mod supervisor;
pub mod sys;
