//! The agent's configuration: one TOML file, every path configurable so tests
//! and the demo run the agent isolated in temporary directories. Raw serde
//! structs (unknown keys refused) are checked into a validated [`Config`];
//! every default lives here and is documented in `docs/configuration.md`.

pub mod admission;
pub mod certs;
pub mod cleanup;
pub mod edge;
mod error;
pub mod host;
pub mod metrics;
#[cfg(test)]
mod proptests;
pub mod sleep;

pub use error::{invalid, ConfigError};
pub use host::{
    Access, AccessConfig, BackendKind, Network, NetworkConfig, Nix, NixConfig, Nspawn,
    NspawnConfig, Paths, Readiness,
};

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The whole file, as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub paths: Paths,
    pub access: Access,
    pub network: Network,
    pub nix: Nix,
    pub nspawn: Nspawn,
    pub edge: edge::Edge,
    pub certs: certs::Certs,
    pub dns: edge::Dns,
    pub cleanup: cleanup::Cleanup,
    /// Limits of a new container where its ensure gives none.
    pub limits: crate::container::Limits,
    pub fc_devhost: crate::fcdevhost::FcDevhost,
    pub admission: admission::Admission,
    pub metrics: metrics::Metrics,
    pub sleep: sleep::Sleep,
}

/// The validated configuration the agent runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub paths: Paths,
    pub access: AccessConfig,
    pub network: NetworkConfig,
    pub nix: NixConfig,
    pub nspawn: NspawnConfig,
    pub edge: edge::EdgeConfig,
    pub cleanup: cleanup::CleanupConfig,
    pub default_limits: crate::container::Limits,
    pub fc_devhost: crate::fcdevhost::FcDevhost,
    pub admission: admission::AdmissionConfig,
    pub metrics: metrics::MetricsConfig,
    pub sleep: sleep::SleepConfig,
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

impl RawConfig {
    pub fn validate(self) -> Result<Config, ConfigError> {
        self.paths.validate()?;
        let network = self.network.validate()?;
        let access = self.access.validate()?;
        let nix = self.nix.validate()?;
        let nspawn = self.nspawn.validate()?;
        let edge = edge::validate(self.edge, self.certs, self.dns, &self.paths.state_dir)?;
        let cleanup = self.cleanup.validate()?;
        let admission = self.admission.validate()?;
        let metrics = self.metrics.validate()?;
        let sleep = self.sleep.validate()?;
        self.limits
            .validate()
            .map_err(|e| invalid("limits", e.to_string()))?;
        self.fc_devhost
            .validate()
            .map_err(|e| invalid("fc_devhost.hydra_channel_url", e))?;
        Ok(Config {
            network,
            access,
            nix,
            nspawn,
            edge,
            cleanup,
            default_limits: self.limits,
            fc_devhost: self.fc_devhost,
            admission,
            metrics,
            sleep,
            paths: self.paths,
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
        assert_eq!(c.network.pool.to_string(), "10.233.0.0/16");
        assert_eq!(c.paths.socket, PathBuf::from("/run/devhost/agent.sock"));
        assert_eq!(c.nspawn.ready, crate::nspawn::ready::ReadyCheck::Notify);
        assert_eq!(c.nspawn.stop_timeout, std::time::Duration::from_secs(30));
        assert_eq!(c.edge.max_connections_per_source, 256);
        assert_eq!(c.metrics.listen, None, "no metrics unless asked for");
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
        assert_eq!(c.network.pool.to_string(), "10.99.0.0/24");
        assert_eq!(c.nspawn.ready, crate::nspawn::ready::ReadyCheck::Tcp(80));
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
            (
                "[edge]\nmax_connections_per_source = 0",
                "edge.max_connections_per_source: must be at least 1",
            ),
            (
                "[metrics]\nlisten = \"9469\"",
                "metrics.listen: \"9469\" is not ADDRESS:PORT",
            ),
            (
                "[limits]\nmemory_max = 1152921504606846976",
                "limits: invalid memory \"1152921504606846976\": must be between 16M and 1024T",
            ),
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
