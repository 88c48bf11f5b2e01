//! The agent's configuration: one TOML file, every path configurable so tests
//! and the demo run the agent isolated in temporary directories. Raw serde
//! structs (unknown keys refused) are checked into a validated [`Config`];
//! every default lives here and is documented in `docs/configuration.md`.

use ipnet::Ipv4Net;
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("config file {0}: {1}")]
    Parse(PathBuf, String),
    #[error("config key {key}: {why}")]
    Invalid { key: &'static str, why: String },
}

/// A `ConfigError::Invalid` naming `key` (used by every section's checks).
pub(crate) fn invalid(key: &'static str, why: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        why: why.into(),
    }
}

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
    /// Reuse a system built from the same http(s) channel URL and the same
    /// configuration for this long without running Nix (0: never).
    pub reuse_secs: u64,
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
}

impl Default for Nix {
    fn default() -> Self {
        Nix {
            nix_build: "nix-build".into(),
            extra_args: Vec::new(),
            base_imports: Vec::new(),
            extra_config: String::new(),
            build_timeout_secs: 3600,
            reuse_secs: 3600,
            gcroots_auto_dir: "/nix/var/nix/gcroots/auto".into(),
            allowed_paths: Vec::new(),
            allowed_uris: Vec::new(),
            max_local_channel_bytes: 2 << 30,
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

/// The whole file, as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub paths: Paths,
    pub access: Access,
    pub network: Network,
    pub nix: Nix,
    pub nspawn: Nspawn,
    pub edge: crate::edge::config::Edge,
    pub certs: crate::edge::config::Certs,
    pub dns: crate::edge::config::Dns,
    pub cleanup: crate::cleanup::Cleanup,
    /// Limits of a new container where its ensure gives none.
    pub limits: crate::container::Limits,
    pub fc_devhost: crate::fcdevhost::FcDevhost,
}

/// The validated configuration the agent runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub paths: Paths,
    pub access: Access,
    pub network: Network,
    pub pool: Ipv4Net,
    pub nix: Nix,
    pub nspawn: Nspawn,
    pub edge: crate::edge::config::EdgeConfig,
    pub cleanup: crate::cleanup::CleanupConfig,
    pub default_limits: crate::container::Limits,
    pub fc_devhost: crate::fcdevhost::FcDevhost,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.to_path_buf(), e))?;
        Config::from_toml(&text).map_err(|e| match e {
            ConfigError::Parse(_, m) => ConfigError::Parse(path.to_path_buf(), m),
            other => other,
        })
    }

    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| ConfigError::Parse(PathBuf::new(), e.to_string()))?;
        raw.validate()
    }

    /// The embedded defaults (what runs without a config file).
    pub fn defaults() -> Config {
        RawConfig::default()
            .validate()
            .expect("embedded defaults are valid")
    }
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && !s.starts_with('-')
}

impl RawConfig {
    pub fn validate(self) -> Result<Config, ConfigError> {
        let p = &self.paths;
        for (key, path) in [
            ("paths.state_dir", &p.state_dir),
            ("paths.run_dir", &p.run_dir),
            ("paths.socket", &p.socket),
            ("paths.containers_dir", &p.containers_dir),
            ("paths.profiles_dir", &p.profiles_dir),
            ("paths.gcroots_dir", &p.gcroots_dir),
            ("paths.hosts_file", &p.hosts_file),
            ("paths.compat_dir", &p.compat_dir),
            ("nix.gcroots_auto_dir", &self.nix.gcroots_auto_dir),
        ] {
            if !path.is_absolute() {
                return Err(invalid(
                    key,
                    format!("{} is not an absolute path", path.display()),
                ));
            }
        }
        let pool: Ipv4Net = self.network.pool.parse().map_err(|e| {
            invalid(
                "network.pool",
                format!("{:?} is not an IPv4 CIDR: {e}", self.network.pool),
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
        if !is_identifier(&self.network.nft_table) {
            return Err(invalid(
                "network.nft_table",
                "use letters, digits, '_' and '-'",
            ));
        }
        let nat = &self.network.nat_interface;
        if !nat.is_empty() && (nat.len() > 15 || !is_identifier(nat)) {
            return Err(invalid(
                "network.nat_interface",
                format!("{nat:?} is not an interface name"),
            ));
        }
        let prefix = &self.network.netns_prefix;
        if prefix.len() > 20 || !(prefix.is_empty() || is_identifier(prefix)) {
            return Err(invalid(
                "network.netns_prefix",
                "use at most 20 letters, digits, '_' and '-'",
            ));
        }
        for g in [&self.access.admin_group, &self.access.user_group] {
            if !is_identifier(g) {
                return Err(invalid("access", format!("group name {g:?} is not valid")));
            }
        }
        if self.access.header_timeout_secs == 0 || self.access.body_timeout_secs == 0 {
            return Err(invalid(
                "access",
                "header_timeout_secs and body_timeout_secs must be at least 1",
            ));
        }
        if self.access.max_connections_per_uid == 0 {
            return Err(invalid(
                "access.max_connections_per_uid",
                "must be at least 1",
            ));
        }
        if self.access.socket_mode > 0o777 {
            return Err(invalid(
                "access.socket_mode",
                "must be a permission mode (0o000–0o777)",
            ));
        }
        for imp in &self.nix.base_imports {
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
        if self.nix.nix_build.is_empty() {
            return Err(invalid("nix.nix_build", "must name a program"));
        }
        for p in &self.nix.allowed_paths {
            let s = p.to_string_lossy();
            if !p.is_absolute() || s.contains(|c: char| c.is_whitespace() || c == '=') {
                return Err(invalid(
                    "nix.allowed_paths",
                    format!("{s:?} must be an absolute path without white space or '='"),
                ));
            }
        }
        for u in &self.nix.allowed_uris {
            if u.is_empty() || u.contains(char::is_whitespace) {
                return Err(invalid(
                    "nix.allowed_uris",
                    format!("{u:?} must be a URI prefix without white space"),
                ));
            }
        }
        if self.nix.max_local_channel_bytes == 0 {
            return Err(invalid("nix.max_local_channel_bytes", "must be at least 1"));
        }
        if self.nspawn.boot_concurrency == 0 {
            return Err(invalid("nspawn.boot_concurrency", "must be at least 1"));
        }
        if self.nspawn.ready_timeout_secs == 0 || self.nspawn.stop_timeout_secs == 0 {
            return Err(invalid("nspawn", "timeouts must be at least one second"));
        }
        let edge =
            crate::edge::config::validate(self.edge, self.certs, self.dns, &self.paths.state_dir)?;
        let cleanup = self.cleanup.validate()?;
        self.limits
            .validate()
            .map_err(|e| invalid("limits", e.to_string()))?;
        self.fc_devhost
            .validate()
            .map_err(|e| invalid("fc_devhost.hydra_channel_url", e))?;
        Ok(Config {
            edge,
            cleanup,
            default_limits: self.limits,
            fc_devhost: self.fc_devhost,
            paths: self.paths,
            access: self.access,
            network: self.network,
            pool,
            nix: self.nix,
            nspawn: self.nspawn,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c, Config::defaults());
        assert_eq!(c.pool.to_string(), "10.233.0.0/16");
        assert_eq!(c.paths.socket, PathBuf::from("/run/devhost/agent.sock"));
        assert_eq!(c.nspawn.readiness, Readiness::Notify);
    }

    #[test]
    fn overrides() {
        let c = Config::from_toml(
            r#"
            [paths]
            state_dir = "/tmp/x/state"
            [network]
            pool = "10.99.0.0/24"
            nat_interface = "eth0"
            [nix]
            base_imports = ["<fc/nixos>", "/etc/devhost/base.nix"]
            [nspawn]
            readiness = "tcp"
            ready_tcp_port = 80
            "#,
        )
        .unwrap();
        assert_eq!(c.paths.state_dir, PathBuf::from("/tmp/x/state"));
        assert_eq!(c.paths.run_dir, PathBuf::from("/run/devhost"));
        assert_eq!(c.pool.to_string(), "10.99.0.0/24");
        assert_eq!(c.nspawn.readiness, Readiness::Tcp);
        assert_eq!(c.nix.base_imports.len(), 2);
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (
                "[paths]\nstate_dir = \"rel\"",
                "paths.state_dir: rel is not an absolute path",
            ),
            (
                "[network]\npool = \"10.0.0.1/16\"",
                "network.pool: 10.0.0.1/16 has host bits set; did you mean 10.0.0.0/16?",
            ),
            (
                "[network]\npool = \"10.0.0.0/30\"",
                "network.pool: needs room",
            ),
            (
                "[network]\npool = \"nope\"",
                "network.pool: \"nope\" is not an IPv4 CIDR",
            ),
            ("[network]\nnft_table = \"a b\"", "network.nft_table"),
            (
                "[nix]\nbase_imports = [\"x; rm\"]",
                "nix.base_imports: \"x; rm\" is neither",
            ),
            ("[access]\nsocket_mode = 4095", "access.socket_mode"),
        ];
        for (toml, want) in cases {
            let e = Config::from_toml(toml).unwrap_err().to_string();
            assert!(e.contains(want), "{toml}: {e}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = Config::from_toml("[paths]\nstate_dri = \"/x\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `state_dri`"), "{e}");
        let e = Config::from_toml("[bogus]").unwrap_err().to_string();
        assert!(e.contains("unknown field `bogus`"), "{e}");
    }
}
