//! The proxy's route table, built purely from the container records:
//! `NAME.PUBLIC` and `ALIAS.NAME.PUBLIC` lead to that container's address
//! and upstream (scheme and port, per alias, per container or global). The
//! table is rebuilt on every change of the records and swapped in whole, so
//! a lookup never sees half an update.

use crate::container::{Phase, Record};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    Http,
    Https,
}

/// Where requests go inside a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upstream {
    pub scheme: Scheme,
    pub port: u16,
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        write!(f, "{s}:{}", self.port)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub container: String,
    pub address: Ipv4Addr,
    pub upstream: Upstream,
    /// The container is running (otherwise the proxy answers 503).
    pub running: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteTable {
    /// The public domain, without a trailing dot.
    pub domain: String,
    hosts: HashMap<String, Route>,
}

/// A Host header or SNI name as the table knows names: lowercase, without
/// port and trailing dot. `None` for anything that is not a host name.
pub fn normalize_host(raw: &str) -> Option<String> {
    let host = match raw.rsplit_once(':') {
        // A port (IPv6 literals are not names we route).
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => h,
        Some(_) => return None,
        None => raw,
    };
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    let ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    ok.then_some(host)
}

/// Whether the records say the proxy serves this container at all.
pub fn routed(r: &Record) -> bool {
    r.enabled && r.established && r.phase != Phase::Destroying
}

impl RouteTable {
    pub fn build(domain: &str, default: Upstream, records: &[Record]) -> RouteTable {
        let mut hosts = HashMap::new();
        for r in records.iter().filter(|r| routed(r)) {
            let base = r.upstreams.get("").copied().unwrap_or(default);
            let route = |upstream| Route {
                container: r.name.to_string(),
                address: r.addresses.local,
                upstream,
                running: r.phase == Phase::Running,
            };
            hosts.insert(format!("{}.{domain}", r.name), route(base));
            for a in &r.aliases {
                let up = r.upstreams.get(a.as_str()).copied().unwrap_or(base);
                hosts.insert(format!("{a}.{}.{domain}", r.name), route(up));
            }
        }
        RouteTable {
            domain: domain.to_string(),
            hosts,
        }
    }

    /// The route for a normalized host name.
    pub fn lookup(&self, host: &str) -> Option<&Route> {
        self.hosts.get(host)
    }

    /// The container a name under the public domain belongs to, whether or
    /// not it is routed (`a.c1.PUBLIC` and `c1.PUBLIC` → `c1`): which
    /// certificate an SNI name needs, and whether SNI and Host agree.
    pub fn container_of<'a>(&self, host: &'a str) -> Option<&'a str> {
        let rest = host.strip_suffix(self.domain.as_str())?.strip_suffix('.')?;
        let c = rest.rsplit('.').next()?;
        (!c.is_empty() && rest.matches('.').count() <= 1).then_some(c)
    }

    /// Every routed container with the names its certificate covers: its
    /// name and `*.NAME` (`wildcard`), or its name and each alias's name;
    /// the container's own name first.
    pub fn certificate_names(&self, wildcard: bool) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (host, route) in &self.hosts {
            let base = format!("{}.{}", route.container, self.domain);
            let names = out
                .entry(route.container.clone())
                .or_insert_with(|| vec![base.clone()]);
            if wildcard {
                if names.len() == 1 {
                    names.push(format!("*.{base}"));
                }
            } else if *host != base {
                names.push(host.clone());
            }
        }
        for names in out.values_mut() {
            names[1..].sort();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::record::tests::record;

    const HTTPS: Upstream = Upstream {
        scheme: Scheme::Https,
        port: 443,
    };

    #[test]
    fn hosts_are_normalized() {
        assert_eq!(
            normalize_host("WWW.C1.Dev.Test:443"),
            Some("www.c1.dev.test".into())
        );
        assert_eq!(normalize_host("c1.dev.test."), Some("c1.dev.test".into()));
        assert_eq!(normalize_host("c1.dev.test:"), None);
        assert_eq!(normalize_host("[::1]:443"), None);
        assert_eq!(normalize_host("a..b"), None);
        assert_eq!(normalize_host("a b"), None);
        assert_eq!(normalize_host(""), None);
    }

    #[test]
    fn routes_for_names_and_aliases() {
        let mut web = record("web01", "10.233.0.6", &["www", "api"]);
        web.upstreams.insert(
            "api".into(),
            Upstream {
                scheme: Scheme::Http,
                port: 8080,
            },
        );
        let mut stopped = record("db", "10.233.0.10", &[]);
        stopped.phase = Phase::Stopped;
        let mut building = record("new", "10.233.0.14", &["x"]);
        building.established = false;
        building.phase = Phase::Building;
        let t = RouteTable::build("dev.test", HTTPS, &[web, stopped, building]);
        let r = |c: &str, a: &str, up: Upstream, running| Route {
            container: c.into(),
            address: a.parse().unwrap(),
            upstream: up,
            running,
        };
        assert_eq!(
            t.lookup("web01.dev.test"),
            Some(&r("web01", "10.233.0.6", HTTPS, true))
        );
        assert_eq!(
            t.lookup("www.web01.dev.test"),
            Some(&r("web01", "10.233.0.6", HTTPS, true))
        );
        assert_eq!(
            t.lookup("api.web01.dev.test"),
            Some(&r(
                "web01",
                "10.233.0.6",
                Upstream {
                    scheme: Scheme::Http,
                    port: 8080
                },
                true
            ))
        );
        assert_eq!(
            t.lookup("db.dev.test"),
            Some(&r("db", "10.233.0.10", HTTPS, false))
        );
        assert_eq!(t.lookup("other.web01.dev.test"), None, "only its aliases");
        assert_eq!(
            t.lookup("x.new.dev.test"),
            None,
            "not before its first start"
        );
        assert_eq!(t.lookup("web01.dev.test.evil"), None);
        assert_eq!(
            t.certificate_names(false),
            BTreeMap::from([
                ("db".to_string(), vec!["db.dev.test".to_string()]),
                (
                    "web01".to_string(),
                    vec![
                        "web01.dev.test".to_string(),
                        "api.web01.dev.test".to_string(),
                        "www.web01.dev.test".to_string()
                    ]
                ),
            ])
        );
        assert_eq!(
            t.certificate_names(true),
            BTreeMap::from([
                (
                    "db".to_string(),
                    vec!["db.dev.test".to_string(), "*.db.dev.test".to_string()]
                ),
                (
                    "web01".to_string(),
                    vec!["web01.dev.test".to_string(), "*.web01.dev.test".to_string()]
                ),
            ])
        );
    }

    #[test]
    fn containers_of_names() {
        let t = RouteTable::build("dev.test", HTTPS, &[]);
        assert_eq!(t.container_of("www.c1.dev.test"), Some("c1"));
        assert_eq!(t.container_of("c1.dev.test"), Some("c1"));
        assert_eq!(t.container_of("a.b.c1.dev.test"), None);
        assert_eq!(t.container_of("dev.test"), None);
        assert_eq!(t.container_of("c1.xdev.test"), None);
    }
}
