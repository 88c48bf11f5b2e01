//! The `[edge]` and `[dns]` sections of the agent's configuration: where
//! the proxy listens, the public domain its routes live under, where it sends
//! requests in a container, its limits, and the zone it serves; `[certs]` is
//! checked in `certs/config.rs`. Raw serde structs (unknown keys refused)
//! are checked into [`EdgeConfig`].

use super::error::{invalid, ConfigError};
pub use crate::config::certs::Certs;
use crate::config::certs::CertsConfig;
use crate::container::Upstream;
use ipnet::IpNet;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Edge {
    /// Serve HTTP and HTTPS for the containers.
    pub enable: bool,
    /// PUBLIC: a container is NAME.PUBLIC, its aliases ALIAS.NAME.PUBLIC.
    pub public_domain: String,
    pub http_listen: Vec<String>,
    pub https_listen: Vec<String>,
    /// Where requests go inside a container: `https:443` (its certificate
    /// is not verified, as the old role's nginx did) or `http:PORT`.
    pub upstream: String,
    /// Open client connections at most (HTTP and HTTPS together).
    pub max_connections: usize,
    /// Open client connections from one source (an IPv4 address or an
    /// IPv6 /64) at most.
    pub max_connections_per_source: usize,
    /// Proxy threads (each serves its connections start to end); 0: one
    /// per CPU.
    pub workers: usize,
    /// A request's header must arrive within this (slow clients are cut off).
    pub header_read_timeout_secs: u64,
    /// TLS handshakes must finish within this.
    pub handshake_timeout_secs: u64,
    /// A connection with no traffic either way for this long is closed.
    pub idle_timeout_secs: u64,
    /// The largest request header accepted (bytes).
    pub max_header_bytes: usize,
    /// Serve the dashboard at `https://PUBLIC/` (the apex, which routes
    /// nothing otherwise): every enabled container, server-rendered.
    pub dashboard: bool,
    /// Source networks (`10.0.0.0/8`, `::1/128`, or a single address) whose
    /// clients may see the dashboard; everyone else gets 403.
    pub dashboard_allow: Vec<String>,
}

impl Default for Edge {
    fn default() -> Self {
        Edge {
            enable: true,
            public_domain: "localhost".into(),
            http_listen: vec!["0.0.0.0:80".into(), "[::]:80".into()],
            https_listen: vec!["0.0.0.0:443".into(), "[::]:443".into()],
            upstream: "https:443".into(),
            max_connections: 4096,
            max_connections_per_source: 256,
            workers: 0,
            header_read_timeout_secs: 10,
            handshake_timeout_secs: 10,
            idle_timeout_secs: 120,
            max_header_bytes: 16 * 1024,
            dashboard: false,
            dashboard_allow: vec!["127.0.0.0/8".into(), "::1/128".into()],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dns {
    /// Serve the public zone authoritatively (delegate it here with NS).
    pub enable: bool,
    pub listen: Vec<String>,
    /// The devhost's public addresses: the answer for the apex, the name
    /// servers and every container's names.
    pub addresses: Vec<String>,
    /// NS names of the zone; default `ns.PUBLIC` (with glue).
    pub nameservers: Vec<String>,
    /// SOA mailbox; default `hostmaster.PUBLIC`.
    pub hostmaster: String,
    pub ttl: u32,
}

impl Default for Dns {
    fn default() -> Self {
        Dns {
            enable: false,
            listen: vec!["0.0.0.0:53".into(), "[::]:53".into()],
            addresses: Vec::new(),
            nameservers: Vec::new(),
            hostmaster: String::new(),
            ttl: 60,
        }
    }
}

/// The validated `[dns]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsConfig {
    pub listen: Vec<SocketAddr>,
    pub zone: crate::dns::ZoneSpec,
}

/// The validated edge configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeConfig {
    pub enable: bool,
    pub domain: String,
    pub http: Vec<SocketAddr>,
    pub https: Vec<SocketAddr>,
    pub upstream: Upstream,
    pub max_connections: usize,
    pub max_connections_per_source: usize,
    /// Proxy worker threads (resolved: at least 1).
    pub workers: usize,
    pub header_read_timeout: Duration,
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
    pub certs: CertsConfig,
    /// The authoritative zone, when served.
    pub dns: Option<DnsConfig>,
    /// The dashboard at the apex, when on.
    pub dashboard: Option<DashboardConfig>,
}

/// The validated dashboard settings (`[edge] dashboard = true`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardConfig {
    /// Clients from these networks may see it (the TCP peer's address).
    pub allow: Vec<IpNet>,
}

/// `edge.dashboard_allow`: networks, or single addresses (a /32 or /128).
fn networks(list: &[String]) -> Result<Vec<IpNet>, ConfigError> {
    let key = "edge.dashboard_allow";
    if list.is_empty() {
        return Err(invalid(
            key,
            "empty: nobody could see the dashboard (leave the key out for loopback only, or set edge.dashboard = false)",
        ));
    }
    list.iter()
        .map(|n| {
            n.parse::<IpNet>()
                .or_else(|_| n.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    invalid(
                        key,
                        format!("{n:?} is not a network (10.0.0.0/8, fd00::/8) or an address"),
                    )
                })
        })
        .collect()
}

/// A DNS name as a zone may hold it: lowercase labels of letters, digits
/// and inner hyphens, 63 bytes a label, 253 in all.
pub fn valid_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

fn addrs(key: &'static str, list: &[String]) -> Result<Vec<SocketAddr>, ConfigError> {
    list.iter()
        .map(|a| {
            a.parse().map_err(|_| {
                invalid(
                    key,
                    format!("{a:?} is not ADDRESS:PORT ([::]:443 for IPv6)"),
                )
            })
        })
        .collect()
}

fn validate_dns(dns: Dns, domain: &str) -> Result<Option<DnsConfig>, ConfigError> {
    if !dns.enable {
        return Ok(None);
    }
    let listen = addrs("dns.listen", &dns.listen)?;
    let mut zone = crate::dns::ZoneSpec {
        domain: domain.to_string(),
        v4: Vec::new(),
        v6: Vec::new(),
        nameservers: Vec::new(),
        hostmaster: String::new(),
        ttl: dns.ttl,
    };
    for a in &dns.addresses {
        match a.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(v4)) => zone.v4.push(v4),
            Ok(std::net::IpAddr::V6(v6)) => zone.v6.push(v6),
            Err(_) => {
                return Err(invalid(
                    "dns.addresses",
                    format!("{a:?} is not an IP address"),
                ))
            }
        }
    }
    if dns.addresses.is_empty() {
        return Err(invalid(
            "dns.addresses",
            "give the devhost's public addresses (what the zone's names resolve to)",
        ));
    }
    zone.nameservers = if dns.nameservers.is_empty() {
        vec![format!("ns.{domain}")]
    } else {
        dns.nameservers.clone()
    };
    for n in &zone.nameservers {
        if !valid_domain(n) {
            return Err(invalid(
                "dns.nameservers",
                format!("{n:?} is not a lowercase DNS name"),
            ));
        }
    }
    zone.hostmaster = if dns.hostmaster.is_empty() {
        format!("hostmaster.{domain}")
    } else {
        dns.hostmaster.replace('@', ".")
    };
    if !valid_domain(&zone.hostmaster) {
        return Err(invalid(
            "dns.hostmaster",
            format!("{:?} is not a mailbox", dns.hostmaster),
        ));
    }
    Ok(Some(DnsConfig { listen, zone }))
}

pub fn validate(
    edge: Edge,
    certs: Certs,
    dns: Dns,
    state_dir: &std::path::Path,
) -> Result<EdgeConfig, ConfigError> {
    let domain = edge.public_domain.trim_end_matches('.').to_string();
    if !valid_domain(&domain) {
        return Err(invalid(
            "edge.public_domain",
            format!("{:?} is not a lowercase DNS name", edge.public_domain),
        ));
    }
    let upstream: Upstream = edge
        .upstream
        .parse()
        .map_err(|e: String| invalid("edge.upstream", e))?;
    if edge.workers > 1024 {
        return Err(invalid("edge.workers", "at most 1024 (0: one per CPU)"));
    }
    if edge.max_connections == 0 {
        return Err(invalid("edge.max_connections", "must be at least 1"));
    }
    if edge.max_connections_per_source == 0 {
        return Err(invalid(
            "edge.max_connections_per_source",
            "must be at least 1",
        ));
    }
    for (key, v) in [
        (
            "edge.header_read_timeout_secs",
            edge.header_read_timeout_secs,
        ),
        ("edge.handshake_timeout_secs", edge.handshake_timeout_secs),
        ("edge.idle_timeout_secs", edge.idle_timeout_secs),
    ] {
        if v == 0 {
            return Err(invalid(key, "must be at least one second"));
        }
    }
    if !(8192..=1024 * 1024).contains(&edge.max_header_bytes) {
        return Err(invalid(
            "edge.max_header_bytes",
            "must be between 8192 and 1048576",
        ));
    }
    let dns = validate_dns(dns, &domain)?;
    let zone_addresses = dns.as_ref().map(|d| {
        let z = &d.zone;
        z.v4.iter()
            .map(|a| IpAddr::V4(*a))
            .chain(z.v6.iter().map(|a| IpAddr::V6(*a)))
            .collect()
    });
    let certs = crate::config::certs::validate(certs, zone_addresses, state_dir)?;
    // Checked also when off: a bad list is refused before anyone turns it on.
    let allow = networks(&edge.dashboard_allow)?;
    Ok(EdgeConfig {
        enable: edge.enable,
        domain,
        http: addrs("edge.http_listen", &edge.http_listen)?,
        https: addrs("edge.https_listen", &edge.https_listen)?,
        upstream,
        max_connections: edge.max_connections,
        max_connections_per_source: edge.max_connections_per_source,
        workers: match edge.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        },
        header_read_timeout: Duration::from_secs(edge.header_read_timeout_secs),
        handshake_timeout: Duration::from_secs(edge.handshake_timeout_secs),
        idle_timeout: Duration::from_secs(edge.idle_timeout_secs),
        max_header_bytes: edge.max_header_bytes,
        certs,
        dns,
        dashboard: edge.dashboard.then_some(DashboardConfig { allow }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains() {
        assert!(valid_domain("dev.example.com"));
        assert!(valid_domain("localhost"));
        for bad in ["", "Dev.example", "a..b", "-a.b", "a_b.c", &"a".repeat(64)] {
            assert!(!valid_domain(bad), "{bad}");
        }
    }

    fn edge_of(toml_text: &str) -> Result<EdgeConfig, String> {
        crate::config::Config::from_toml(toml_text)
            .map(|c| c.edge)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_dashboard_is_off_by_default_and_open_to_loopback_when_on() {
        assert_eq!(edge_of("").unwrap().dashboard, None);
        let on = edge_of("[edge]\ndashboard = true").unwrap().dashboard;
        let loopback = ["127.0.0.0/8", "::1/128"].map(|n| n.parse().unwrap());
        assert_eq!(
            on,
            Some(DashboardConfig {
                allow: loopback.to_vec()
            })
        );
        let some = edge_of(
            "[edge]\ndashboard = true\ndashboard_allow = [\"10.0.0.0/8\", \"192.0.2.7\", \"2001:db8::/32\"]",
        )
        .unwrap()
        .dashboard
        .unwrap();
        let want: Vec<IpNet> = ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"]
            .iter()
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(some.allow, want);
    }

    #[test]
    fn bad_dashboard_networks_name_the_key_also_when_it_is_off() {
        for (list, says) in [
            (
                r#"["10.0.0.0/33"]"#,
                r#"config key edge.dashboard_allow: "10.0.0.0/33" is not a network (10.0.0.0/8, fd00::/8) or an address"#,
            ),
            (
                r#"["localhost"]"#,
                r#"config key edge.dashboard_allow: "localhost" is not a network"#,
            ),
            (
                "[]",
                "config key edge.dashboard_allow: empty: nobody could see the dashboard",
            ),
        ] {
            for on in [true, false] {
                let e = edge_of(&format!(
                    "[edge]\ndashboard = {on}\ndashboard_allow = {list}"
                ))
                .unwrap_err();
                assert!(e.starts_with(says), "{e}");
            }
        }
    }
}
