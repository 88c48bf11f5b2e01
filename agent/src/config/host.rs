//! The sections about the agent on its host: `[paths]`, `[access]`,
//! `[network]`, `[nix]` and `[nspawn]`, as written (serde, unknown keys
//! refused, defaults here) and as validated (durations as `Duration`, the
//! pool as `Ipv4Net`, readiness as the check the backends run).

use super::error::{invalid, ConfigError};
use crate::nspawn::ready::ReadyCheck;
use ipnet::Ipv4Net;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Paths {
    /// Records, logs, generated configurations.
    pub state_dir: PathBuf,
    /// Runtime files (pid files, notify sockets); may be on tmpfs.
    pub run_dir: PathBuf,
    /// The API socket.
    pub socket: PathBuf,
    /// Container root directories (`DIR/NAME`).
    pub containers_dir: PathBuf,
    /// Per-container Nix profiles (`DIR/NAME/system` is the GC root).
    pub profiles_dir: PathBuf,
    /// Per-container GC roots directory bound into the container.
    pub gcroots_dir: PathBuf,
    /// The hosts file holding the managed block of container names.
    pub hosts_file: PathBuf,
    /// Compatibility records `DIR/NAME.json` that other tooling reads.
    pub compat_dir: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            state_dir: "/var/lib/devhost".into(),
            run_dir: "/run/devhost".into(),
            socket: "/run/devhost/agent.sock".into(),
            containers_dir: "/var/lib/nixos-containers".into(),
            profiles_dir: "/nix/var/nix/profiles/per-container".into(),
            gcroots_dir: "/nix/var/nix/gcroots/per-container".into(),
            hosts_file: "/etc/hosts".into(),
            compat_dir: "/etc/devhost".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Access {
    /// Members may do anything (root always may).
    pub admin_group: String,
    /// Members may create containers and manage their own.
    pub user_group: String,
    /// Mode of the API socket; authorization is done per request from the
    /// peer's credentials, so everybody may connect and read.
    pub socket_mode: u32,
    /// Open API connections one uid may hold at once (root: unbounded).
    pub max_connections_per_uid: u32,
    /// A request's headers (and an idle connection's next request) must
    /// arrive within this; a stalled client is disconnected.
    pub header_timeout_secs: u64,
    /// A request's body must arrive within this.
    pub body_timeout_secs: u64,
}

impl Default for Access {
    fn default() -> Self {
        Access {
            admin_group: "wheel".into(),
            user_group: "users".into(),
            socket_mode: 0o666,
            max_connections_per_uid: 16,
            header_timeout_secs: 10,
            body_timeout_secs: 60,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Network {
    /// Pool of container addresses; each container takes a /30 block
    /// (host side .1, container side .2 of the block).
    pub pool: String,
    /// Masquerade container traffic leaving through this interface; empty:
    /// through any interface that is not a container's veth.
    pub nat_interface: String,
    /// The nftables table (family `ip`) the agent owns, replaced as a whole.
    pub nft_table: String,
    /// Prefix of the network namespaces (`ip netns`) the agent creates.
    pub netns_prefix: String,
}

impl Default for Network {
    fn default() -> Self {
        Network {
            pool: "10.233.0.0/16".into(),
            nat_interface: String::new(),
            nft_table: "devhost".into(),
            netns_prefix: "devhost-".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Nix {
    /// The nix-build program.
    pub nix_build: String,
    /// Extra arguments for every build (e.g. `["--option", "substituters", ""]`).
    pub extra_args: Vec<String>,
    /// Imports of the generated configuration.nix, as Nix paths:
    /// `<fc/nixos>`-style search-path lookups or absolute paths.
    pub base_imports: Vec<String>,
    /// Nix attribute-set body added verbatim to every container's
    /// configuration (operator-controlled, e.g. `services.openssh.enable = true;`).
    pub extra_config: String,
    /// A build running longer than this is killed.
    pub build_timeout_secs: u64,
    /// A built system is reused by later containers with the same channel
    /// content and configuration for at most this long (0: never reused).
    pub reuse_secs: u64,
    /// Containers with the same channel and configuration share one built
    /// system (false: each container evaluates its own).
    pub share_systems: bool,
    /// Builds (evaluations) of different systems run at once (0: half the
    /// host's cores, at least 1); the rest wait in order.
    pub max_builds: usize,
    /// Where indirect GC roots go (as `nix-build -o` registers them).
    pub gcroots_auto_dir: PathBuf,
    /// Paths outside the channel that a channel's evaluation may read
    /// (evaluation is restricted to the channel, the generated
    /// configuration and the path `base_imports`).
    pub allowed_paths: Vec<PathBuf>,
    /// URI prefixes a channel's evaluation may fetch (Nix's `allowed-uris`).
    pub allowed_uris: Vec<String>,
    /// Largest local (`file://`) channel read, serialized, in bytes.
    pub max_local_channel_bytes: u64,
    /// Nix's `connect-timeout` for fetching an http(s) channel.
    pub fetch_connect_timeout_secs: u64,
    /// Nix's `stalled-download-timeout`: a fetch that receives nothing
    /// this long fails.
    pub fetch_stall_timeout_secs: u64,
    /// Nix's `download-attempts`, and the agent's own for a channel.
    pub fetch_attempts: u32,
    /// Largest http(s) channel tarball the agent downloads, in bytes.
    pub max_channel_bytes: u64,
}

impl Default for Nix {
    fn default() -> Self {
        Nix {
            nix_build: "nix-build".into(),
            extra_args: Vec::new(),
            base_imports: Vec::new(),
            extra_config: String::new(),
            build_timeout_secs: 3600,
            reuse_secs: 30 * 86400,
            share_systems: true,
            max_builds: 0,
            gcroots_auto_dir: "/nix/var/nix/gcroots/auto".into(),
            allowed_paths: Vec::new(),
            allowed_uris: Vec::new(),
            max_local_channel_bytes: 2 << 30,
            fetch_connect_timeout_secs: 10,
            fetch_stall_timeout_secs: 60,
            fetch_attempts: 2,
            max_channel_bytes: 2 << 30,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Readiness {
    /// The init sends READY=1 (systemd, NixOS).
    Notify,
    /// The container accepts TCP on `ready_tcp_port` at its address.
    Tcp,
    /// The container's init has run for `ready_delay_ms`.
    Delay,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// systemd when PID 1 is systemd (`/run/systemd/system` exists), else direct.
    Auto,
    /// The agent runs systemd-nspawn itself.
    Direct,
    /// Transient units over D-Bus, registered with machined.
    Systemd,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Nspawn {
    pub backend: BackendKind,
    pub program: String,
    pub readiness: Readiness,
    pub ready_tcp_port: u16,
    pub ready_delay_ms: u64,
    pub ready_timeout_secs: u64,
    /// Graceful poweroff gets this long before the container is killed.
    pub stop_timeout_secs: u64,
    /// Read-only binds added when their source exists on the host.
    pub optional_ro_binds: Vec<PathBuf>,
    pub extra_args: Vec<String>,
    /// After a host boot, containers that were running are started again,
    /// this many at a time.
    pub boot_concurrency: usize,
}

impl Default for Nspawn {
    fn default() -> Self {
        Nspawn {
            backend: BackendKind::Auto,
            program: "systemd-nspawn".into(),
            readiness: Readiness::Notify,
            ready_tcp_port: 22,
            ready_delay_ms: 1000,
            ready_timeout_secs: 120,
            stop_timeout_secs: 30,
            optional_ro_binds: vec![
                "/nix/var/nix/db".into(),
                "/nix/var/nix/daemon-socket".into(),
            ],
            extra_args: Vec::new(),
            boot_concurrency: 4,
        }
    }
}

pub(super) fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && !s.starts_with('-')
}

impl Paths {
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, path) in [
            ("paths.state_dir", &self.state_dir),
            ("paths.run_dir", &self.run_dir),
            ("paths.socket", &self.socket),
            ("paths.containers_dir", &self.containers_dir),
            ("paths.profiles_dir", &self.profiles_dir),
            ("paths.gcroots_dir", &self.gcroots_dir),
            ("paths.hosts_file", &self.hosts_file),
            ("paths.compat_dir", &self.compat_dir),
        ] {
            absolute(key, path)?;
        }
        Ok(())
    }
}

fn absolute(key: &'static str, path: &std::path::Path) -> Result<(), ConfigError> {
    if path.is_absolute() {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("{} is not an absolute path", path.display()),
        ))
    }
}

/// The validated `[access]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessConfig {
    pub admin_group: String,
    pub user_group: String,
    pub socket_mode: u32,
    pub max_connections_per_uid: u32,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
}

impl Access {
    pub fn validate(self) -> Result<AccessConfig, ConfigError> {
        for g in [&self.admin_group, &self.user_group] {
            if !is_identifier(g) {
                return Err(invalid("access", format!("group name {g:?} is not valid")));
            }
        }
        if self.header_timeout_secs == 0 || self.body_timeout_secs == 0 {
            return Err(invalid(
                "access",
                "header_timeout_secs and body_timeout_secs must be at least 1",
            ));
        }
        if self.max_connections_per_uid == 0 {
            return Err(invalid(
                "access.max_connections_per_uid",
                "must be at least 1",
            ));
        }
        if self.socket_mode > 0o777 {
            return Err(invalid(
                "access.socket_mode",
                "must be a permission mode (0o000–0o777)",
            ));
        }
        Ok(AccessConfig {
            admin_group: self.admin_group,
            user_group: self.user_group,
            socket_mode: self.socket_mode,
            max_connections_per_uid: self.max_connections_per_uid,
            header_timeout: Duration::from_secs(self.header_timeout_secs),
            body_timeout: Duration::from_secs(self.body_timeout_secs),
        })
    }
}

/// The validated `[network]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfig {
    pub pool: Ipv4Net,
    pub nat_interface: String,
    pub nft_table: String,
    pub netns_prefix: String,
}

impl Network {
    pub fn validate(self) -> Result<NetworkConfig, ConfigError> {
        let pool: Ipv4Net = self.pool.parse().map_err(|e| {
            invalid(
                "network.pool",
                format!("{:?} is not an IPv4 CIDR: {e}", self.pool),
            )
        })?;
        if pool.prefix_len() > 29 {
            return Err(invalid(
                "network.pool",
                "needs room for at least two containers (prefix /29 or shorter)",
            ));
        }
        if pool.network() != pool.addr() {
            return Err(invalid(
                "network.pool",
                format!("{pool} has host bits set; did you mean {}?", pool.trunc()),
            ));
        }
        if !is_identifier(&self.nft_table) {
            return Err(invalid(
                "network.nft_table",
                "use letters, digits, '_' and '-'",
            ));
        }
        let nat = &self.nat_interface;
        if !nat.is_empty() && (nat.len() > 15 || !is_identifier(nat)) {
            return Err(invalid(
                "network.nat_interface",
                format!("{nat:?} is not an interface name"),
            ));
        }
        let prefix = &self.netns_prefix;
        if prefix.len() > 20 || !(prefix.is_empty() || is_identifier(prefix)) {
            return Err(invalid(
                "network.netns_prefix",
                "use at most 20 letters, digits, '_' and '-'",
            ));
        }
        Ok(NetworkConfig {
            pool,
            nat_interface: self.nat_interface,
            nft_table: self.nft_table,
            netns_prefix: self.netns_prefix,
        })
    }
}

/// The validated `[nix]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct NixConfig {
    pub nix_build: String,
    pub extra_args: Vec<String>,
    pub base_imports: Vec<String>,
    pub extra_config: String,
    pub build_timeout: Duration,
    /// Zero: never reuse.
    pub reuse_for: Duration,
    pub share_systems: bool,
    /// At least 1.
    pub max_builds: usize,
    pub gcroots_auto_dir: PathBuf,
    pub allowed_paths: Vec<PathBuf>,
    pub allowed_uris: Vec<String>,
    pub max_local_channel_bytes: u64,
    pub fetch: crate::nix::plan::FetchLimits,
}

impl Nix {
    pub fn validate(self) -> Result<NixConfig, ConfigError> {
        absolute("nix.gcroots_auto_dir", &self.gcroots_auto_dir)?;
        for imp in &self.base_imports {
            let lookup = imp.starts_with('<')
                && imp.ends_with('>')
                && imp[1..imp.len() - 1]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-/+".contains(&b));
            let abs = imp.starts_with('/')
                && !imp.contains(|c: char| c.is_whitespace() || c == '"' || c == '$');
            if !(lookup || abs) {
                return Err(invalid(
                    "nix.base_imports",
                    format!("{imp:?} is neither <search/path> nor an absolute path"),
                ));
            }
        }
        if self.nix_build.is_empty() {
            return Err(invalid("nix.nix_build", "must name a program"));
        }
        for p in &self.allowed_paths {
            let s = p.to_string_lossy();
            if !p.is_absolute() || s.contains(|c: char| c.is_whitespace() || c == '=') {
                return Err(invalid(
                    "nix.allowed_paths",
                    format!("{s:?} must be an absolute path without white space or '='"),
                ));
            }
        }
        for u in &self.allowed_uris {
            if u.is_empty() || u.contains(char::is_whitespace) {
                return Err(invalid(
                    "nix.allowed_uris",
                    format!("{u:?} must be a URI prefix without white space"),
                ));
            }
        }
        if self.max_local_channel_bytes == 0 {
            return Err(invalid("nix.max_local_channel_bytes", "must be at least 1"));
        }
        for (key, secs) in [
            (
                "nix.fetch_connect_timeout_secs",
                self.fetch_connect_timeout_secs,
            ),
            (
                "nix.fetch_stall_timeout_secs",
                self.fetch_stall_timeout_secs,
            ),
        ] {
            if !(1..=3600).contains(&secs) {
                return Err(invalid(key, format!("{secs} is not 1 to 3600")));
            }
        }
        if self.max_builds > 1024 {
            return Err(invalid(
                "nix.max_builds",
                format!("{} is not 0 (from the cores) to 1024", self.max_builds),
            ));
        }
        if self.max_channel_bytes == 0 {
            return Err(invalid("nix.max_channel_bytes", "must be at least 1"));
        }
        if !(1..=10).contains(&self.fetch_attempts) {
            return Err(invalid(
                "nix.fetch_attempts",
                format!("{} is not 1 to 10", self.fetch_attempts),
            ));
        }
        Ok(NixConfig {
            nix_build: self.nix_build,
            extra_args: self.extra_args,
            base_imports: self.base_imports,
            extra_config: self.extra_config,
            build_timeout: Duration::from_secs(self.build_timeout_secs),
            reuse_for: Duration::from_secs(self.reuse_secs),
            share_systems: self.share_systems,
            max_builds: match self.max_builds {
                0 => (std::thread::available_parallelism().map_or(1, |n| n.get()) / 2).max(1),
                n => n,
            },
            gcroots_auto_dir: self.gcroots_auto_dir,
            allowed_paths: self.allowed_paths,
            allowed_uris: self.allowed_uris,
            max_local_channel_bytes: self.max_local_channel_bytes,
            fetch: crate::nix::plan::FetchLimits {
                connect_timeout: Duration::from_secs(self.fetch_connect_timeout_secs),
                stall_timeout: Duration::from_secs(self.fetch_stall_timeout_secs),
                attempts: self.fetch_attempts,
                max_bytes: self.max_channel_bytes,
            },
        })
    }
}

/// The validated `[nspawn]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct NspawnConfig {
    pub backend: BackendKind,
    pub program: String,
    /// When a started container counts as up.
    pub ready: ReadyCheck,
    pub ready_timeout: Duration,
    pub stop_timeout: Duration,
    pub optional_ro_binds: Vec<PathBuf>,
    pub extra_args: Vec<String>,
    pub boot_concurrency: usize,
}

impl Nspawn {
    pub fn validate(self) -> Result<NspawnConfig, ConfigError> {
        if self.boot_concurrency == 0 {
            return Err(invalid("nspawn.boot_concurrency", "must be at least 1"));
        }
        if self.ready_timeout_secs == 0 || self.stop_timeout_secs == 0 {
            return Err(invalid("nspawn", "timeouts must be at least one second"));
        }
        Ok(NspawnConfig {
            backend: self.backend,
            program: self.program,
            ready: match self.readiness {
                Readiness::Notify => ReadyCheck::Notify,
                Readiness::Tcp => ReadyCheck::Tcp(self.ready_tcp_port),
                Readiness::Delay => ReadyCheck::Delay(Duration::from_millis(self.ready_delay_ms)),
            },
            ready_timeout: Duration::from_secs(self.ready_timeout_secs),
            stop_timeout: Duration::from_secs(self.stop_timeout_secs),
            optional_ro_binds: self.optional_ro_binds,
            extra_args: self.extra_args,
            boot_concurrency: self.boot_concurrency,
        })
    }
}
