//! Before an `http-01` or `tls-alpn-01` order: does every name resolve to
//! this host? The CA connects to whatever the public DNS says, so a name
//! pointing elsewhere (a missing wildcard record, a stale address) fails
//! the order and burns the CA's failed-validation limit. hickory-resolver
//! asks the system's (or the configured) resolvers, uncached; the judging
//! is pure.

use super::Cause;
use super::CertError;
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;
use std::net::{IpAddr, SocketAddr};

/// Why `name`, resolving to `got`, is not this host (`expect`), if it is not:
/// it must resolve, and only to expected addresses (the CA may pick any).
pub fn judge(name: &str, got: &[IpAddr], expect: &[IpAddr]) -> Result<(), String> {
    let list = |v: &[IpAddr]| {
        v.iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if got.is_empty() {
        return Err(format!(
            "{name} does not resolve; point it (or a wildcard above it) at this host ({})",
            list(expect)
        ));
    }
    let foreign: Vec<IpAddr> = got
        .iter()
        .copied()
        .filter(|a| !expect.contains(a))
        .collect();
    if !foreign.is_empty() {
        return Err(format!(
            "{name} resolves to {}, which is not this host ({})",
            list(&foreign),
            list(expect)
        ));
    }
    Ok(())
}

/// Every address on the host's interfaces (what the check expects when
/// neither `expect_addresses` nor `[dns] addresses` is set).
pub fn own_addresses() -> Vec<IpAddr> {
    let mut all = Vec::new();
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for a in addrs {
            let Some(sa) = a.address else { continue };
            if let Some(v4) = sa.as_sockaddr_in() {
                all.push(IpAddr::V4(v4.ip()));
            } else if let Some(v6) = sa.as_sockaddr_in6() {
                all.push(IpAddr::V6(v6.ip()));
            }
        }
    }
    all.sort();
    all.dedup();
    all
}

pub struct Precheck {
    resolver: TokioResolver,
    expect: Vec<IpAddr>,
}

impl Precheck {
    /// `resolvers` empty: the system's; `expect` empty: the host's addresses.
    pub fn new(resolvers: &[SocketAddr], expect: &[IpAddr]) -> Result<Precheck, CertError> {
        let err = |e: Cause| CertError::Io {
            what: "DNS resolver for the pre-order check".into(),
            source: e,
        };
        let mut builder = if resolvers.is_empty() {
            TokioResolver::builder_tokio().map_err(|e| err(e.into()))?
        } else {
            let servers = resolvers
                .iter()
                .map(|s| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = s.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = s.port();
                    NameServerConfig::new(s.ip(), true, vec![udp, tcp])
                })
                .collect();
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            )
        };
        let opts = builder.options_mut();
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        opts.use_hosts_file = ResolveHosts::Never;
        opts.cache_size = 0;
        let resolver = builder.build().map_err(|e| err(e.into()))?;
        Ok(Precheck {
            resolver,
            expect: expect.to_vec(),
        })
    }

    /// Every name resolves to this host, or an error naming the first
    /// that does not.
    pub async fn check(&self, names: &[String]) -> Result<(), String> {
        let expect = if self.expect.is_empty() {
            own_addresses()
        } else {
            self.expect.clone()
        };
        for name in names {
            let got: Vec<IpAddr> = match self.resolver.lookup_ip(format!("{name}.")).await {
                Ok(l) => l.iter().collect(),
                Err(e) if e.is_no_records_found() || e.is_nx_domain() => Vec::new(),
                Err(e) => return Err(format!("resolving {name}: {e}")),
            };
            judge(name, &got, &expect)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(v: &[&str]) -> Vec<IpAddr> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn names_must_resolve_only_here() {
        let here = ips(&["192.0.2.10", "2001:db8::10"]);
        assert_eq!(judge("a.dev.test", &ips(&["192.0.2.10"]), &here), Ok(()));
        assert_eq!(
            judge("a.dev.test", &ips(&["192.0.2.10", "2001:db8::99"]), &here),
            Err("a.dev.test resolves to 2001:db8::99, which is not this host (192.0.2.10, 2001:db8::10)".into())
        );
        assert!(judge("a.dev.test", &[], &here)
            .unwrap_err()
            .contains("does not resolve"));
    }
}
