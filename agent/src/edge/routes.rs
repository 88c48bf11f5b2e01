//! The proxy's route table, built purely from the container records:
//! `NAME.PUBLIC` and `ALIAS.NAME.PUBLIC` lead to that container's address
//! and upstream (scheme and port, per alias, per container or global). The
//! table is rebuilt on every change of the records and swapped in whole, so
//! a lookup never sees half an update. The apex `PUBLIC` itself routes to no
//! container; with the dashboard on it is served (by the proxy itself) and
//! has a certificate of its own, kept under [`APEX`].

use crate::container::{ContainerName, Phase, Record, Upstream};
use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub container: ContainerName,
    pub address: Ipv4Addr,
    pub upstream: Upstream,
    /// The container is running (otherwise the proxy answers 503, or
    /// wakes it when it sleeps).
    pub running: bool,
    /// The container was put to sleep: a request wakes it.
    pub sleeping: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteTable {
    /// The public domain, without a trailing dot.
    pub domain: String,
    hosts: HashMap<HostName, Route>,
    /// The apex is served (the dashboard is on).
    apex: bool,
}

/// The certificate store's key for the apex's certificate (when the
/// dashboard serves it): no container is named so (`@` is not allowed in
/// names), so it never takes a container's place.
pub const APEX: &str = "@apex";

/// A name the proxy routes by, as a Host header or SNI gives it after
/// [`HostName::parse`]: lowercase, without port and trailing dot (rpxy's
/// `ServerName`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostName(String);

impl HostName {
    /// Normalize a Host header or SNI name; `None` for anything that is not
    /// a host name (IPv6 literals included: they are not names we route).
    pub fn parse(raw: &str) -> Option<HostName> {
        let host = match raw.rsplit_once(':') {
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
        ok.then_some(HostName(host))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for HostName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether the records say the proxy serves this container at all.
pub fn routed(r: &Record) -> bool {
    r.enabled && r.established && r.phase != Phase::Destroying
}

impl RouteTable {
    pub fn build(domain: &str, default: Upstream, records: &[Record]) -> RouteTable {
        let mut hosts = HashMap::new();
        for r in records.iter().filter(|r| routed(r)) {
            let base = r.upstreams.for_container(default);
            let route = |upstream| Route {
                container: r.name.clone(),
                address: r.addresses.local,
                upstream,
                running: r.phase == Phase::Running,
                sleeping: r.asleep_since.is_some(),
            };
            hosts.insert(HostName(format!("{}.{domain}", r.name)), route(base));
            for a in &r.aliases {
                let up = r.upstreams.for_alias(a, default);
                hosts.insert(HostName(format!("{a}.{}.{domain}", r.name)), route(up));
            }
        }
        RouteTable {
            domain: domain.to_string(),
            hosts,
            apex: false,
        }
    }

    /// The same table, serving the apex too (`serve`: the dashboard is on).
    pub fn serving_apex(self, serve: bool) -> RouteTable {
        RouteTable {
            apex: serve,
            ..self
        }
    }

    /// Whether `host` is the apex and the apex is served.
    pub fn is_served_apex(&self, host: &HostName) -> bool {
        self.apex && host.0 == self.domain
    }

    /// Which certificate a handshake for `host` is served with: its
    /// container's, or the apex's ([`APEX`]) when the apex is served.
    pub fn certificate_of<'a>(&self, host: &'a HostName) -> Option<&'a str> {
        if self.is_served_apex(host) {
            return Some(APEX);
        }
        self.container_of(host)
    }

    /// The route for a host name.
    pub fn lookup(&self, host: &HostName) -> Option<&Route> {
        self.hosts.get(host)
    }

    /// The container a name under the public domain belongs to, whether or
    /// not it is routed (`a.c1.PUBLIC` and `c1.PUBLIC` → `c1`): which
    /// certificate an SNI name needs, and whether SNI and Host agree.
    pub fn container_of<'a>(&self, host: &'a HostName) -> Option<&'a str> {
        let rest = host
            .0
            .strip_suffix(self.domain.as_str())?
            .strip_suffix('.')?;
        let c = rest.rsplit('.').next()?;
        (!c.is_empty() && rest.matches('.').count() <= 1).then_some(c)
    }

    /// Whether `host` is the public domain or a name below it.
    pub fn under_domain(&self, host: &HostName) -> bool {
        host.0 == self.domain
            || host
                .0
                .strip_suffix(self.domain.as_str())
                .is_some_and(|rest| rest.ends_with('.'))
    }

    /// Every routed container with the names its certificate covers: its
    /// name and `*.NAME` (`wildcard`), or its name and each alias's name;
    /// the container's own name first.
    pub fn certificate_names(&self, wildcard: bool) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (host, route) in &self.hosts {
            let base = format!("{}.{}", route.container, self.domain);
            let names = out
                .entry(route.container.to_string())
                .or_insert_with(|| vec![base.clone()]);
            if wildcard {
                if names.len() == 1 {
                    names.push(format!("*.{base}"));
                }
            } else if host.0 != base {
                names.push(host.0.clone());
            }
        }
        for names in out.values_mut() {
            names[1..].sort();
        }
        if self.apex {
            // The apex alone: a wildcard `*.PUBLIC` would stand for every
            // container's name.
            out.insert(APEX.to_string(), vec![self.domain.clone()]);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(h: &str) -> HostName {
        HostName::parse(h).unwrap()
    }
    use crate::container::record::tests::record;
    use crate::container::Scheme;

    const HTTPS: Upstream = Upstream {
        scheme: Scheme::Https,
        port: 443,
    };

    #[test]
    fn hosts_are_normalized() {
        assert_eq!(
            HostName::parse("WWW.C1.Dev.Test:443"),
            Some(HostName("www.c1.dev.test".into()))
        );
        assert_eq!(
            HostName::parse("c1.dev.test."),
            Some(HostName("c1.dev.test".into()))
        );
        assert_eq!(HostName::parse("c1.dev.test:"), None);
        assert_eq!(HostName::parse("[::1]:443"), None);
        assert_eq!(HostName::parse("a..b"), None);
        assert_eq!(HostName::parse("a b"), None);
        assert_eq!(HostName::parse(""), None);
    }

    #[test]
    fn routes_for_names_and_aliases() {
        let mut web = record("web01", "10.233.0.6", &["www", "api"]);
        web.upstreams.aliases.insert(
            "api".parse().unwrap(),
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
            container: c.parse().unwrap(),
            address: a.parse().unwrap(),
            upstream: up,
            running,
            sleeping: false,
        };
        assert_eq!(
            t.lookup(&host("web01.dev.test")),
            Some(&r("web01", "10.233.0.6", HTTPS, true))
        );
        assert_eq!(
            t.lookup(&host("www.web01.dev.test")),
            Some(&r("web01", "10.233.0.6", HTTPS, true))
        );
        assert_eq!(
            t.lookup(&host("api.web01.dev.test")),
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
            t.lookup(&host("db.dev.test")),
            Some(&r("db", "10.233.0.10", HTTPS, false))
        );
        assert_eq!(
            t.lookup(&host("other.web01.dev.test")),
            None,
            "only its aliases"
        );
        assert_eq!(
            t.lookup(&host("x.new.dev.test")),
            None,
            "not before its first start"
        );
        assert_eq!(t.lookup(&host("web01.dev.test.evil")), None);
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
    fn a_sleeping_container_keeps_its_routes_and_says_it_sleeps() {
        let mut asleep = record("web01", "10.233.0.6", &["www"]);
        asleep.phase = Phase::Stopped;
        asleep.asleep_since = Some("2026-01-31T03:00:00Z".parse().unwrap());
        let t = RouteTable::build("dev.test", HTTPS, &[asleep.clone()]);
        let want = Route {
            container: "web01".parse().unwrap(),
            address: "10.233.0.6".parse().unwrap(),
            upstream: HTTPS,
            running: false,
            sleeping: true,
        };
        assert_eq!(t.lookup(&host("web01.dev.test")), Some(&want));
        assert_eq!(t.lookup(&host("www.web01.dev.test")), Some(&want));
        // Disabled by cleanup: no routes, asleep or not.
        asleep.enabled = false;
        let t = RouteTable::build("dev.test", HTTPS, &[asleep]);
        assert_eq!(t.lookup(&host("web01.dev.test")), None);
    }

    #[test]
    fn containers_of_names() {
        let t = RouteTable::build("dev.test", HTTPS, &[]);
        assert_eq!(t.container_of(&host("www.c1.dev.test")), Some("c1"));
        assert_eq!(t.container_of(&host("c1.dev.test")), Some("c1"));
        assert_eq!(t.container_of(&host("a.b.c1.dev.test")), None);
        assert_eq!(t.container_of(&host("dev.test")), None);
        assert_eq!(t.container_of(&host("c1.xdev.test")), None);
    }

    #[test]
    fn the_apex_has_a_certificate_only_when_served() {
        let records = [record("web01", "10.233.0.6", &["www"])];
        let off = RouteTable::build("dev.test", HTTPS, &records);
        assert!(!off.is_served_apex(&host("dev.test")));
        assert_eq!(off.certificate_of(&host("dev.test")), None);
        assert!(!off.certificate_names(false).contains_key(APEX));
        assert_eq!(off.clone().serving_apex(false), off, "off changes nothing");
        let on = off.serving_apex(true);
        assert!(on.is_served_apex(&host("Dev.Test.")));
        assert!(!on.is_served_apex(&host("web01.dev.test")));
        assert_eq!(on.certificate_of(&host("dev.test")), Some(APEX));
        assert_eq!(
            on.certificate_of(&host("www.web01.dev.test")),
            Some("web01")
        );
        assert_eq!(on.lookup(&host("dev.test")), None, "no container behind it");
        for wildcard in [false, true] {
            assert_eq!(
                on.certificate_names(wildcard)[APEX],
                vec!["dev.test".to_string()],
                "the apex alone, never *.dev.test"
            );
        }
        assert!(
            APEX.parse::<ContainerName>().is_err(),
            "no container's name"
        );
    }

    #[test]
    fn names_under_the_domain() {
        let t = RouteTable::build("dev.test", HTTPS, &[]);
        assert!(t.under_domain(&host("dev.test")));
        assert!(t.under_domain(&host("a.b.c1.dev.test")));
        assert!(!t.under_domain(&host("xdev.test")));
        assert!(!t.under_domain(&host("dev.test.evil")));
        assert!(!t.under_domain(&host("test")));
    }
}
