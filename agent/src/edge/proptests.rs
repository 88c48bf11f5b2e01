//! Property tests of the edge's pure parts (run through `props::check`, so
//! `FUZZ_SECS` runs them for long): host names as Host headers and SNI give
//! them, and the request headers sent to a container. No input panics;
//! accepted names are normalized DNS names that parse back to themselves;
//! after the rewrite no hop-by-hop header is left and the `X-Forwarded-*`
//! headers are the proxy's, never the client's.

use super::headers::{to_upstream, upgrade_of};
use super::routes::HostName;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;
use std::net::IpAddr;

fn host_text() -> impl Strategy<Value = String> {
    prop_oneof![
        props::any_text(),
        "[a-zA-Z0-9_.\\-:\\[\\] ]{0,20}",
        (
            "[a-zA-Z0-9\\-]{1,8}(\\.[a-zA-Z0-9\\-]{1,8}){0,3}\\.?",
            "(:[0-9]{0,5})?"
        )
            .prop_map(|(h, p)| format!("{h}{p}")),
        "[a-z]{63,64}\\.[a-z]{1,3}",
    ]
}

#[test]
fn host_names_are_normalized_dns_names() {
    props::check(
        "host_names_are_normalized_dns_names",
        1000,
        host_text(),
        |raw| {
            let Some(h) = HostName::parse(&raw) else {
                return Ok(());
            };
            let s = h.as_str();
            prop_assert!(!s.is_empty() && s.len() <= 253, "{s}");
            prop_assert!(!s.ends_with('.') && !s.contains(':'), "{s}");
            prop_assert_eq!(s, s.to_ascii_lowercase());
            prop_assert!(s.split('.').all(|l| !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')));
            // Printed, with a port or a trailing dot, it is the same name.
            for same in [
                h.to_string(),
                format!("{h}:443"),
                format!("{h}."),
                raw.to_ascii_uppercase(),
            ] {
                prop_assert_eq!(HostName::parse(&same), Some(h.clone()), "{:?}", same);
            }
            Ok(())
        },
    );
}

/// Hop-by-hop headers (`headers.rs`) and `upgrade`, dropped unless the
/// request is an upgrade.
const HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// What the proxy sets itself.
const SET: [&str; 6] = [
    "host",
    "x-forwarded-for",
    "x-real-ip",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-server",
];

fn header_name() -> impl Strategy<Value = String> {
    let known: Vec<&'static str> = HOP.iter().chain(SET.iter()).copied().collect();
    prop_oneof![
        3 => prop::sample::select(known).prop_map(String::from),
        1 => Just("accept".to_string()),
        1 => "x-[a-z0-9-]{0,6}",
    ]
}

fn header_value() -> impl Strategy<Value = HeaderValue> {
    prop_oneof![
        // Connection-style lists, naming other headers.
        prop::collection::vec(
            prop_oneof![header_name(), Just("Upgrade".to_string())],
            0..4
        )
        .prop_map(|names| HeaderValue::from_str(&names.join(", ")).unwrap()),
        "[ -~]{0,12}".prop_map(|s| HeaderValue::from_str(&s).unwrap()),
        // Any bytes a header value may hold, opaque (non-ASCII) ones too.
        prop::collection::vec(any::<u8>(), 0..12).prop_map(|mut b| {
            for c in &mut b {
                if (*c < 0x20 && *c != b'\t') || *c == 0x7f {
                    *c = b' ';
                }
            }
            HeaderValue::from_bytes(&b).unwrap()
        }),
    ]
}

fn header_map() -> impl Strategy<Value = HeaderMap> {
    prop::collection::vec((header_name(), header_value()), 0..10).prop_map(|pairs| {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(HeaderName::from_bytes(n.as_bytes()).unwrap(), v);
        }
        h
    })
}

fn values<'a>(h: &'a HeaderMap, name: &str) -> Vec<&'a HeaderValue> {
    h.get_all(name).iter().collect()
}

/// The one value of `name`, as text (opaque bytes replaced).
fn single(h: &HeaderMap, name: &str) -> Option<String> {
    match values(h, name).as_slice() {
        [v] => Some(String::from_utf8_lossy(v.as_bytes()).into_owned()),
        _ => None,
    }
}

#[test]
fn rewritten_headers_are_the_proxys() {
    let input = (
        header_map(),
        host_text(),
        any::<IpAddr>(),
        prop_oneof![Just("http"), Just("https")],
    );
    props::check(
        "rewritten_headers_are_the_proxys",
        1000,
        input,
        |(headers, host, client, proto)| {
            let upgrade = upgrade_of(&headers);
            let named: Vec<String> = headers
                .get_all("connection")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|s| s.split(',').map(|t| t.trim().to_ascii_lowercase()))
                .collect();
            let out = to_upstream(headers.clone(), &host, client, proto);

            for h in HOP {
                match &upgrade {
                    Some(u) if h == "upgrade" => prop_assert_eq!(values(&out, h), vec![u]),
                    Some(_) if h == "connection" => {
                        prop_assert_eq!(single(&out, h), Some("upgrade".to_string()))
                    }
                    _ => prop_assert!(!out.contains_key(h), "{h} is left"),
                }
            }
            for n in &named {
                if !SET.contains(&n.as_str()) && !HOP.contains(&n.as_str()) {
                    prop_assert!(
                        !out.contains_key(n.as_str()),
                        "{n} named in Connection is left"
                    );
                }
            }
            for n in headers.keys() {
                let n = n.as_str();
                if !SET.contains(&n) && !HOP.contains(&n) && !named.iter().any(|c| c == n) {
                    prop_assert_eq!(values(&out, n), values(&headers, n), "{} changed", n);
                }
            }

            let client = client.to_canonical().to_string();
            prop_assert_eq!(single(&out, "x-real-ip"), Some(client.clone()));
            prop_assert_eq!(single(&out, "x-forwarded-proto"), Some(proto.to_string()));
            let chain = single(&out, "x-forwarded-for").unwrap_or_default();
            prop_assert!(
                chain == client || chain.ends_with(&format!(", {client}")),
                "x-forwarded-for {chain:?} does not end with {client}"
            );
            let server = HostName::parse(&host).map_or(host.clone(), |h| h.to_string());
            for (name, want) in [("x-forwarded-host", &host), ("x-forwarded-server", &server)] {
                if HeaderValue::from_str(want).is_ok() {
                    prop_assert_eq!(single(&out, name), Some(want.clone()));
                } else {
                    // Never the client's own.
                    prop_assert!(!out.contains_key(name), "{name} is the client's");
                }
            }
            if HeaderValue::from_str(&host).is_ok() {
                prop_assert_eq!(single(&out, "host"), Some(host.clone()));
            }
            Ok(())
        },
    );
}
