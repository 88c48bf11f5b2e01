//! The `fc-devhost` protocol of batou ≥ 2.6 (`method = fc-nixos-dev-vm`),
//! served with containers: its configuration section (`[fc_devhost]`), how
//! a Hydra evaluation becomes a channel URL, the units batou's environment
//! gives sizes in, and `/etc/devhost/vm-configs/NAME.json`, the record batou
//! reads the container's address from. Pure; the CLI is
//! `cli/compat/fc_devhost.rs`, the files are written with the other
//! derived state.

use crate::container::limits::{parse_size, LimitError, DISK_SIZE_RANGE, MEMORY_RANGE};
use crate::container::Record;
use serde::{Deserialize, Serialize};

/// `[fc_devhost]` in the agent's configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FcDevhost {
    /// The channel URL of a Hydra evaluation, `{eval}` standing for its
    /// number (`fc-devhost ensure --hydra-eval N`); empty: refused.
    pub hydra_channel_url: String,
}

impl FcDevhost {
    pub fn validate(&self) -> Result<(), String> {
        let t = &self.hydra_channel_url;
        if t.is_empty() {
            return Ok(());
        }
        if !(t.starts_with("https://") || t.starts_with("http://")) || !t.contains("{eval}") {
            return Err(format!(
                "{t:?} must be an http(s) URL with {{eval}} where the evaluation goes"
            ));
        }
        if t.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("{t:?} must not contain white space"));
        }
        Ok(())
    }

    /// The channel of Hydra evaluation `eval`.
    pub fn hydra_channel(&self, eval: &str) -> Result<String, String> {
        if self.hydra_channel_url.is_empty() {
            return Err(format!(
                "--hydra-eval {eval:?}: this devhost cannot resolve Hydra evaluations (its agent has no [fc_devhost] hydra_channel_url); give --channel-url instead (batou: set `release` or `channel_url` rather than `hydra-eval`)"
            ));
        }
        let ok = !eval.is_empty()
            && eval.len() <= 32
            && eval
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(format!(
                "--hydra-eval {eval:?}: an evaluation is 1–32 letters, digits, '-' or '_'"
            ));
        }
        Ok(self.hydra_channel_url.replace("{eval}", eval))
    }
}

/// `--memory` as batou's environment gives it: a plain number is MiB;
/// `512M`, `2G`, `1.5T` (also `2GiB`) are binary units as systemd reads
/// them. In [`MEMORY_RANGE`].
pub fn memory(s: &str) -> Result<u64, LimitError> {
    parse_size("memory", s, 1 << 20, MEMORY_RANGE)
}

/// `--disk-size`: a plain number is GiB, or a size as for [`memory`]. In
/// [`DISK_SIZE_RANGE`].
pub fn disk_size(s: &str) -> Result<u64, LimitError> {
    parse_size("disk size", s, 1 << 30, DISK_SIZE_RANGE)
}

/// `/etc/devhost/vm-configs/NAME.json`.
#[derive(Debug, Serialize, PartialEq)]
pub struct VmConfig<'a> {
    pub name: &'a str,
    /// The container's address: what batou reads.
    #[serde(rename = "srv-ip")]
    pub srv_ip: String,
    pub aliases: Vec<&'a str>,
    /// MiB, from the container's memory limit.
    pub memory: Option<u64>,
    /// Cores, from its CPU quota.
    pub cores: Option<f64>,
    /// GiB asked for.
    #[serde(rename = "disk-size")]
    pub disk_size: Option<f64>,
    pub owner: Option<String>,
    #[serde(rename = "owner-uid")]
    pub owner_uid: u32,
    #[serde(rename = "channel-url")]
    pub channel_url: &'a str,
    #[serde(rename = "image-url")]
    pub image_url: Option<&'a str>,
    #[serde(rename = "creation-date")]
    pub creation_date: String,
    pub last_deploy_date: String,
    pub enabled: bool,
}

fn iso(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The record batou reads, for container `r` owned by user `owner` (its
/// name in the user database, if it has one).
pub fn vm_config_json(r: &Record, owner: Option<String>) -> String {
    let v = VmConfig {
        name: r.name.as_str(),
        srv_ip: r.addresses.local.to_string(),
        aliases: r.aliases.iter().map(|a| a.as_str()).collect(),
        memory: r.limits.memory_max.map(|m| m >> 20),
        cores: r.limits.cpu_percent.map(|c| c as f64 / 100.0),
        disk_size: r.disk_size.map(|d| d as f64 / (1u64 << 30) as f64),
        owner,
        owner_uid: r.owner_uid,
        channel_url: r.channel.as_str(),
        image_url: r.image_url.as_deref(),
        creation_date: iso(r.created),
        last_deploy_date: iso(r.last_deploy),
        enabled: r.enabled,
    };
    serde_json::to_string_pretty(&v).expect("plain data serializes") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hydra_evaluations_need_a_template() {
        let none = FcDevhost::default();
        assert!(none
            .hydra_channel("123")
            .unwrap_err()
            .contains("this devhost cannot resolve Hydra evaluations"));
        let t = FcDevhost {
            hydra_channel_url: "https://hydra.example/eval/{eval}/channel/nixexprs.tar.xz".into(),
        };
        assert_eq!(t.validate(), Ok(()));
        assert_eq!(
            t.hydra_channel("4711").unwrap(),
            "https://hydra.example/eval/4711/channel/nixexprs.tar.xz"
        );
        assert!(t.hydra_channel("../x").is_err());
        assert!(t.hydra_channel("").is_err());
        let bad = FcDevhost {
            hydra_channel_url: "https://hydra.example/latest".into(),
        };
        assert!(bad.validate().unwrap_err().contains("with {eval}"));
    }

    #[test]
    fn sizes_in_batous_units() {
        assert_eq!(memory("2048"), Ok(2 << 30));
        assert_eq!(memory("2G"), Ok(2 << 30));
        assert_eq!(memory("512M"), Ok(512 << 20));
        assert_eq!(disk_size("2GiB"), Ok(2 << 30));
        assert_eq!(disk_size("20"), Ok(20 << 30));
        assert_eq!(
            disk_size("0.0000001").unwrap_err().to_string(),
            "invalid disk size \"0.0000001\": must be between 1M and 1024T"
        );
        assert_eq!(
            memory("99999999999999999999G").unwrap_err().to_string(),
            "invalid memory \"99999999999999999999G\": must be between 16M and 1024T"
        );
        assert_eq!(
            memory("2000000000").unwrap_err().to_string(),
            "invalid memory \"2000000000\": must be between 16M and 1024T",
            "MiB: beyond the range"
        );
    }

    #[test]
    fn the_record_batou_reads() {
        let mut r = crate::container::record::tests::record("web01", "10.233.0.6", &["www"]);
        r.limits.memory_max = Some(2 << 30);
        r.limits.cpu_percent = Some(150);
        r.disk_size = Some(20 << 30);
        r.owner_uid = 1000;
        let t = chrono::DateTime::parse_from_rfc3339("2026-11-30T12:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        r.created = t;
        r.last_deploy = t;
        let v: serde_json::Value =
            serde_json::from_str(&vm_config_json(&r, Some("alice".into()))).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "name": "web01",
                "srv-ip": "10.233.0.6",
                "aliases": ["www"],
                "memory": 2048,
                "cores": 1.5,
                "disk-size": 20.0,
                "owner": "alice",
                "owner-uid": 1000,
                "channel-url": "https://example.org/nixexprs.tar.xz",
                "image-url": null,
                "creation-date": "2026-11-30T12:00:00Z",
                "last_deploy_date": "2026-11-30T12:00:00Z",
                "enabled": true,
            })
        );
    }
}
