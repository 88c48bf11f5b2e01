//! Property tests of the zone's answers (run through `props::check`, so
//! `FUZZ_SECS` runs them for long): any query name and type, against zones
//! of any shape. Nothing panics; names outside the zone are refused and get
//! no records; every answer is for the name asked, of the type asked, and
//! only for names that exist (the apex, a name server, a pending challenge,
//! a container's name or one below it), which all resolve.

use super::*;
use proptest::prelude::*;

fn label() -> impl Strategy<Value = String> {
    "[a-z0-9_][a-z0-9_-]{0,5}"
}

fn zone() -> impl Strategy<Value = Zone> {
    let domain = "[a-z][a-z0-9]{0,5}(\\.[a-z][a-z0-9]{0,5}){0,2}";
    (domain, prop::collection::btree_set(label(), 0..4)).prop_flat_map(|(domain, containers)| {
        let names: Vec<String> = containers.iter().cloned().collect();
        let nameserver = prop_oneof![
            label().prop_map({
                let d = domain.clone();
                move |l| format!("{l}.{d}")
            }),
            Just("ns.elsewhere.example".to_string()),
        ];
        let challenge = if names.is_empty() {
            Just(format!("_acme-challenge.{domain}")).boxed()
        } else {
            prop::sample::select(names)
                .prop_map({
                    let d = domain.clone();
                    move |c| format!("_acme-challenge.{c}.{d}")
                })
                .boxed()
        };
        (
            prop::collection::vec(any::<Ipv4Addr>(), 0..3),
            prop::collection::vec(any::<Ipv6Addr>(), 0..3),
            prop::collection::vec(nameserver, 0..3),
            any::<u32>(),
            any::<u32>(),
            prop::collection::btree_map(challenge, prop::collection::vec(".{0,8}", 1..3), 0..2),
        )
            .prop_map(move |(v4, v6, nameservers, ttl, serial, challenges)| Zone {
                spec: ZoneSpec {
                    domain: domain.clone(),
                    v4,
                    v6,
                    nameservers,
                    hostmaster: format!("hostmaster.{domain}"),
                    ttl,
                },
                serial,
                containers: containers.clone(),
                challenges,
            })
    })
}

/// Names a resolver may ask: anything, or names in and near the zone
/// (below its containers, its apex, its name servers, its challenges;
/// in any case, with a trailing dot).
fn qname(z: &Zone) -> impl Strategy<Value = String> {
    let d = z.spec.domain.clone();
    let mut known: Vec<String> = vec![d.clone(), format!("x{d}"), format!("{d}.org")];
    known.extend(z.spec.nameservers.iter().cloned());
    known.extend(z.challenges.keys().cloned());
    known.extend(z.containers.iter().map(|c| format!("{c}.{d}")));
    let near = (
        prop::collection::vec(label(), 0..3),
        prop::sample::select(known),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(prefix, name, upper, dot)| {
            let mut n = prefix.iter().map(|l| format!("{l}.")).collect::<String>() + &name;
            if upper {
                n = n.to_ascii_uppercase();
            }
            if dot {
                n.push('.');
            }
            n
        });
    prop_oneof![1 => props::any_text(), 1 => "[a-zA-Z0-9_.\\-]{0,16}", 4 => near]
}

fn qtype() -> impl Strategy<Value = QType> {
    prop_oneof![
        Just(QType::A),
        Just(QType::Aaaa),
        Just(QType::Txt),
        Just(QType::Ns),
        Just(QType::Soa),
        Just(QType::Any),
        any::<u16>().prop_map(QType::Other),
    ]
}

/// Whether `name` exists, by the rules in the module header (for names
/// without empty labels).
fn exists(z: &Zone, name: &str) -> bool {
    let d = &z.spec.domain;
    name == d
        || z.spec.nameservers.iter().any(|n| n == name)
        || z.challenges.contains_key(name)
        || name
            .strip_suffix(d.as_str())
            .and_then(|r| r.strip_suffix('.'))
            .and_then(|r| r.rsplit('.').next())
            .is_some_and(|c| z.containers.contains(c))
}

#[test]
fn answers_are_for_names_in_the_zone() {
    let case = zone().prop_flat_map(|z| {
        let q = qname(&z);
        (Just(z), q, qtype())
    });
    props::check(
        "answers_are_for_names_in_the_zone",
        1000,
        case,
        |(z, name, t)| {
            let r = z.answer(&name, t);
            let q = name.trim_end_matches('.').to_ascii_lowercase();
            let d = &z.spec.domain;
            let inside = q == *d || q.ends_with(&format!(".{d}"));
            if !inside {
                prop_assert_eq!(r.rcode, Rcode::Refused);
                prop_assert!(!r.authoritative);
                prop_assert!(r.answers.is_empty() && r.authority.is_empty());
                prop_assert!(r.additional.is_empty());
                return Ok(());
            }
            prop_assert!(r.authoritative);
            prop_assert!(r.rcode != Rcode::Refused);
            for rr in &r.answers {
                prop_assert_eq!(&rr.name, &q);
            }
            for rr in r.authority.iter().chain(&r.additional) {
                prop_assert!(z.contains(&rr.name), "{} is outside the zone", rr.name);
            }
            if r.answers.is_empty() {
                prop_assert_eq!(r.authority.len(), 1, "NODATA and NXDOMAIN carry the SOA");
                let soa = matches!(r.authority[0].data, Data::Soa { .. });
                prop_assert!(soa, "{:?}", r.authority);
            } else {
                prop_assert_eq!(r.rcode, Rcode::NoError);
            }
            let wellformed = !q.split('.').any(str::is_empty);
            if wellformed {
                let should = exists(&z, &q);
                prop_assert_eq!(
                    r.rcode == Rcode::NxDomain,
                    !should,
                    "{} exists: {}",
                    q,
                    should
                );
            }
            let apex = q == *d;
            for rr in &r.answers {
                let fits = match (t, &rr.data) {
                    (QType::A, Data::A(a)) => z.spec.v4.contains(a),
                    (QType::Aaaa, Data::Aaaa(a)) => z.spec.v6.contains(a),
                    (QType::Any, Data::A(a)) => z.spec.v4.contains(a),
                    (QType::Any, Data::Aaaa(a)) => z.spec.v6.contains(a),
                    (QType::Txt, Data::Txt(_)) => rr.ttl == 0,
                    (QType::Ns, Data::Ns(n)) => apex && z.spec.nameservers.contains(n),
                    (QType::Soa, Data::Soa { .. }) => apex,
                    _ => false,
                };
                prop_assert!(fits, "{:?} answered with {:?}", t, rr);
            }
            // Every existing name resolves to all of the host's addresses.
            if wellformed && exists(&z, &q) && t == QType::A {
                let got: Vec<Ipv4Addr> = r
                    .answers
                    .iter()
                    .filter_map(|rr| match rr.data {
                        Data::A(a) => Some(a),
                        _ => None,
                    })
                    .collect();
                prop_assert_eq!(got, z.spec.v4.clone());
            }
            Ok(())
        },
    );
}
