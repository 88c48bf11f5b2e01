//! The public zone the agent is authoritative for, answered purely: SOA and
//! NS at the apex; A/AAAA (the devhost's public addresses) for the apex,
//! the in-zone name servers, and each container's `NAME.PUBLIC` and every
//! name under it (`ALIAS.NAME.PUBLIC` needs no record of its own); TXT at
//! `_acme-challenge` names while a DNS-01 challenge is pending (several
//! values at one name at once); NODATA with the SOA for other types,
//! NXDOMAIN for names of no container, REFUSED outside the zone. The
//! hickory server (`server.rs`) only translates. The server runs beside the
//! proxy, not inside it: the daemon builds the zone from its [`ZoneSpec`]
//! and hands it to the server (reads), the edge (which containers have
//! names) and the ACME responder (challenge values).

#[cfg(test)]
mod proptests;
pub mod server;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr};

/// What the configuration says of the zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneSpec {
    /// The apex, lowercase, without a trailing dot.
    pub domain: String,
    pub v4: Vec<Ipv4Addr>,
    pub v6: Vec<Ipv6Addr>,
    /// Names of this zone's name servers (glue is given for those inside it).
    pub nameservers: Vec<String>,
    /// `hostmaster.example.org` style mailbox.
    pub hostmaster: String,
    pub ttl: u32,
}

/// The zone as served: its spec and what changes while the agent runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    pub spec: ZoneSpec,
    pub serial: u32,
    /// The containers with names in the zone (the proxy's routed ones).
    pub containers: BTreeSet<String>,
    /// Pending DNS-01 values by name (`_acme-challenge.c1.PUBLIC`).
    pub challenges: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QType {
    A,
    Aaaa,
    Txt,
    Ns,
    Soa,
    Any,
    Other(u16),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Txt(String),
    Ns(String),
    Soa {
        mname: String,
        rname: String,
        serial: u32,
        minimum: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rr {
    pub name: String,
    pub ttl: u32,
    pub data: Data,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rcode {
    NoError,
    NxDomain,
    Refused,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub rcode: Rcode,
    pub authoritative: bool,
    pub answers: Vec<Rr>,
    pub authority: Vec<Rr>,
    pub additional: Vec<Rr>,
}

impl Zone {
    pub fn new(spec: ZoneSpec) -> Zone {
        Zone {
            spec,
            serial: 1,
            containers: BTreeSet::new(),
            challenges: BTreeMap::new(),
        }
    }

    /// Whether `name` (lowercase, no trailing dot) is in the zone.
    pub fn contains(&self, name: &str) -> bool {
        name == self.spec.domain
            || name
                .strip_suffix(self.spec.domain.as_str())
                .is_some_and(|p| p.ends_with('.'))
    }

    /// Whether `name` (in the zone, lowercase) exists: the apex, a name
    /// server, a pending challenge, a container's name or one below it.
    pub fn exists(&self, name: &str) -> bool {
        if name == self.spec.domain
            || self.spec.nameservers.iter().any(|n| n == name)
            || self.challenges.contains_key(name)
        {
            return true;
        }
        let Some(rest) = name.strip_suffix(self.spec.domain.as_str()) else {
            return false;
        };
        let label = rest.trim_end_matches('.').rsplit('.').next().unwrap_or("");
        self.containers.contains(label)
    }

    /// A new serial after a change: the time (seconds) when that is larger,
    /// else one more, so secondaries see every change.
    pub fn bump_serial(&mut self) {
        let now = chrono::Utc::now().timestamp().clamp(0, u32::MAX as i64) as u32;
        self.serial = now.max(self.serial.wrapping_add(1));
    }

    fn soa(&self) -> Rr {
        Rr {
            name: self.spec.domain.clone(),
            ttl: self.spec.ttl,
            data: Data::Soa {
                mname: self
                    .spec
                    .nameservers
                    .first()
                    .cloned()
                    .unwrap_or_else(|| self.spec.domain.clone()),
                rname: self.spec.hostmaster.clone(),
                serial: self.serial,
                minimum: self.spec.ttl,
            },
        }
    }

    fn addresses(&self, name: &str) -> Vec<Rr> {
        let mut v: Vec<Rr> = self
            .spec
            .v4
            .iter()
            .map(|a| Rr {
                name: name.to_string(),
                ttl: self.spec.ttl,
                data: Data::A(*a),
            })
            .collect();
        v.extend(self.spec.v6.iter().map(|a| Rr {
            name: name.to_string(),
            ttl: self.spec.ttl,
            data: Data::Aaaa(*a),
        }));
        v
    }

    pub fn answer(&self, qname: &str, qtype: QType) -> Response {
        let mut a = Response {
            rcode: Rcode::NoError,
            authoritative: true,
            answers: Vec::new(),
            authority: Vec::new(),
            additional: Vec::new(),
        };
        let qname = qname.trim_end_matches('.').to_ascii_lowercase();
        if !self.contains(&qname) {
            a.rcode = Rcode::Refused;
            a.authoritative = false;
            return a;
        }
        if !self.exists(&qname) {
            a.rcode = Rcode::NxDomain;
            a.authority.push(self.soa());
            return a;
        }
        let apex = qname == self.spec.domain;
        let rr = |data| Rr {
            name: qname.clone(),
            ttl: self.spec.ttl,
            data,
        };
        match qtype {
            QType::A => {
                a.answers = self
                    .addresses(&qname)
                    .into_iter()
                    .filter(|r| matches!(r.data, Data::A(_)))
                    .collect()
            }
            QType::Aaaa => {
                a.answers = self
                    .addresses(&qname)
                    .into_iter()
                    .filter(|r| matches!(r.data, Data::Aaaa(_)))
                    .collect()
            }
            QType::Any => a.answers = self.addresses(&qname),
            QType::Txt => {
                a.answers = self
                    .challenges
                    .get(&qname)
                    .map(|vals| vals.iter().map(|v| rr(Data::Txt(v.clone()))).collect())
                    .unwrap_or_default();
                // Challenges change within seconds: resolvers must not keep them.
                for r in &mut a.answers {
                    r.ttl = 0;
                }
            }
            QType::Ns if apex => {
                a.answers = self
                    .spec
                    .nameservers
                    .iter()
                    .map(|n| rr(Data::Ns(n.clone())))
                    .collect();
                for n in &self.spec.nameservers {
                    if self.contains(n) {
                        a.additional.extend(self.addresses(n));
                    }
                }
            }
            QType::Soa if apex => a.answers = vec![self.soa()],
            _ => {}
        }
        if a.answers.is_empty() {
            a.authority.push(self.soa());
        }
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone() -> Zone {
        Zone {
            spec: ZoneSpec {
                domain: "dev.test".into(),
                v4: vec!["192.0.2.10".parse().unwrap()],
                v6: vec!["2001:db8::10".parse().unwrap()],
                nameservers: vec!["ns.dev.test".into()],
                hostmaster: "hostmaster.dev.test".into(),
                ttl: 60,
            },
            serial: 7,
            containers: BTreeSet::from(["c1".to_string()]),
            challenges: BTreeMap::from([(
                "_acme-challenge.c1.dev.test".to_string(),
                vec!["base".to_string(), "wild".to_string()],
            )]),
        }
    }

    fn rr(name: &str, ttl: u32, data: Data) -> Rr {
        Rr {
            name: name.into(),
            ttl,
            data,
        }
    }

    fn soa() -> Rr {
        rr(
            "dev.test",
            60,
            Data::Soa {
                mname: "ns.dev.test".into(),
                rname: "hostmaster.dev.test".into(),
                serial: 7,
                minimum: 60,
            },
        )
    }

    #[test]
    fn container_names_resolve_to_the_host() {
        let z = zone();
        let a = z.answer("WWW.C1.Dev.Test.", QType::A);
        assert_eq!(
            a,
            Response {
                rcode: Rcode::NoError,
                authoritative: true,
                answers: vec![rr(
                    "www.c1.dev.test",
                    60,
                    Data::A("192.0.2.10".parse().unwrap())
                )],
                authority: vec![],
                additional: vec![],
            }
        );
        assert_eq!(
            z.answer("dev.test", QType::Aaaa).answers,
            vec![rr(
                "dev.test",
                60,
                Data::Aaaa("2001:db8::10".parse().unwrap())
            )]
        );
    }

    #[test]
    fn apex_records_and_glue() {
        let z = zone();
        assert_eq!(z.answer("dev.test", QType::Soa).answers, vec![soa()]);
        let ns = z.answer("dev.test", QType::Ns);
        assert_eq!(
            ns.answers,
            vec![rr("dev.test", 60, Data::Ns("ns.dev.test".into()))]
        );
        assert_eq!(ns.additional.len(), 2, "A and AAAA glue for ns.dev.test");
    }

    #[test]
    fn challenges_two_values_at_one_name() {
        let z = zone();
        assert_eq!(
            z.answer("_acme-challenge.c1.dev.test", QType::Txt).answers,
            vec![
                rr("_acme-challenge.c1.dev.test", 0, Data::Txt("base".into())),
                rr("_acme-challenge.c1.dev.test", 0, Data::Txt("wild".into())),
            ]
        );
        let none = z.answer("www.c1.dev.test", QType::Txt);
        assert_eq!((none.rcode, none.answers.len()), (Rcode::NoError, 0));
        assert_eq!(none.authority, vec![soa()], "NODATA carries the SOA");
    }

    #[test]
    fn names_of_no_container_do_not_exist() {
        let mut z = zone();
        for name in ["c2.dev.test", "www.c2.dev.test", "xc1.dev.test"] {
            let a = z.answer(name, QType::A);
            assert_eq!((a.rcode, a.answers.len()), (Rcode::NxDomain, 0), "{name}");
            assert_eq!(a.authority, vec![soa()], "the SOA says how long to cache");
        }
        assert_eq!(z.answer("ns.dev.test", QType::A).answers.len(), 1);
        z.containers.insert("c2".into());
        assert_eq!(z.answer("www.c2.dev.test", QType::A).rcode, Rcode::NoError);
        let before = z.serial;
        z.bump_serial();
        assert!(z.serial > before);
    }

    #[test]
    fn outside_the_zone_is_refused() {
        let z = zone();
        for name in ["example.org", "xdev.test", "test"] {
            let a = z.answer(name, QType::A);
            assert_eq!(
                (a.rcode, a.authoritative),
                (Rcode::Refused, false),
                "{name}"
            );
            assert!(a.answers.is_empty() && a.authority.is_empty());
        }
        let mx = z.answer("c1.dev.test", QType::Other(15));
        assert_eq!(
            (mx.rcode, mx.answers.len(), mx.authority.len()),
            (Rcode::NoError, 0, 1)
        );
    }
}
