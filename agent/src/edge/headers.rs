//! What the proxy changes in requests and responses, as pure functions:
//! hop-by-hop headers dropped (those named in `Connection` too), the
//! `X-Forwarded-*` and `X-Real-IP` headers set, `Host` kept, websocket
//! upgrades carried through; and the redirect from HTTP to HTTPS.

use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, HOST, UPGRADE};
use std::net::IpAddr;

/// Hop-by-hop headers (RFC 9110 §7.6.1 and the usual extras).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

/// The websocket (or other) protocol a request asks to switch to.
pub fn upgrade_of(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = headers.get_all(CONNECTION).iter().any(|v| {
        v.to_str()
            .map(|s| {
                s.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
            .unwrap_or(false)
    });
    if asks {
        headers.get(UPGRADE).cloned()
    } else {
        None
    }
}

/// `headers` without hop-by-hop ones; an upgrade is kept as
/// `Connection: upgrade` + `Upgrade: …` when `upgrade` is given.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: Option<HeaderValue>) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(',').map(|t| t.trim().to_ascii_lowercase()))
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for h in HOP_BY_HOP {
        headers.remove(h);
    }
    headers.remove(UPGRADE);
    if let Some(u) = upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, u);
    }
}

/// The request headers sent to a container: hop-by-hop removed, `Host` as
/// the client named it, the client's address appended to `X-Forwarded-For`.
pub fn to_upstream(
    mut headers: HeaderMap,
    host: &str,
    client: IpAddr,
    proto: &'static str,
) -> HeaderMap {
    let upgrade = upgrade_of(&headers);
    strip_hop_by_hop(&mut headers, upgrade);
    let client = client.to_canonical().to_string();
    let forwarded_for = match headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
    {
        prior if prior.is_empty() => client.clone(),
        prior => format!("{}, {client}", prior.join(", ")),
    };
    // A value that cannot be a header value drops the header: what the
    // container sees is the proxy's word or nothing, never the client's.
    let set = |h: &mut HeaderMap, name: &'static str, v: &str| match HeaderValue::from_str(v) {
        Ok(v) => {
            h.insert(name, v);
        }
        Err(_) => {
            h.remove(name);
        }
    };
    set(&mut headers, "x-forwarded-for", &forwarded_for);
    set(&mut headers, "x-real-ip", &client);
    set(&mut headers, "x-forwarded-proto", proto);
    set(&mut headers, "x-forwarded-host", host);
    // As the old role's nginx sent it ($host: the name, no port).
    let server = super::routes::HostName::parse(host)
        .map(|h| h.to_string())
        .unwrap_or_else(|| host.to_string());
    set(&mut headers, "x-forwarded-server", &server);
    if let Ok(h) = HeaderValue::from_str(host) {
        headers.insert(HOST, h);
    }
    headers
}

/// Where port 80 sends a request: the same host and path over HTTPS
/// (`https_port` when it is not 443).
pub fn https_location(host: &str, https_port: u16, path_and_query: &str) -> String {
    let path = if path_and_query.starts_with('/') {
        path_and_query
    } else {
        "/"
    };
    match https_port {
        443 => format!("https://{host}{path}"),
        p => format!("https://{host}:{p}{path}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn forwarded_headers_and_hop_by_hop() {
        let got = to_upstream(
            map(&[
                ("host", "www.c1.dev.test"),
                ("connection", "keep-alive, x-secret-hop"),
                ("keep-alive", "timeout=5"),
                ("x-secret-hop", "1"),
                ("te", "trailers"),
                ("x-forwarded-for", "192.0.2.7"),
                ("accept", "*/*"),
            ]),
            "www.c1.dev.test:8443",
            "203.0.113.9".parse().unwrap(),
            "https",
        );
        assert_eq!(
            got,
            map(&[
                ("host", "www.c1.dev.test:8443"),
                ("x-forwarded-for", "192.0.2.7, 203.0.113.9"),
                ("accept", "*/*"),
                ("x-real-ip", "203.0.113.9"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "www.c1.dev.test:8443"),
                ("x-forwarded-server", "www.c1.dev.test"),
            ])
        );
    }

    #[test]
    fn websocket_upgrades_pass() {
        let got = to_upstream(
            map(&[
                ("connection", "Upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ]),
            "c1.dev.test",
            "::ffff:127.0.0.1".parse().unwrap(),
            "https",
        );
        assert_eq!(
            got,
            map(&[
                ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ("connection", "upgrade"),
                ("upgrade", "websocket"),
                ("x-forwarded-for", "127.0.0.1"),
                ("x-real-ip", "127.0.0.1"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "c1.dev.test"),
                ("x-forwarded-server", "c1.dev.test"),
                ("host", "c1.dev.test"),
            ])
        );
        // An Upgrade header without Connection: upgrade is just dropped.
        let got = to_upstream(
            map(&[("upgrade", "websocket")]),
            "c1.dev.test",
            "127.0.0.1".parse().unwrap(),
            "https",
        );
        assert!(got.get("upgrade").is_none());
    }

    #[test]
    fn forwarded_headers_are_never_the_clients() {
        // Found by edge::proptests: a host that cannot be a header value
        // left the client's own X-Forwarded-Host and -Server in place.
        let got = to_upstream(
            map(&[
                ("x-forwarded-host", "evil.example"),
                ("x-forwarded-server", "evil.example"),
            ]),
            "c1.dev.test\0",
            "127.0.0.1".parse().unwrap(),
            "https",
        );
        assert!(got.get("x-forwarded-host").is_none());
        assert!(got.get("x-forwarded-server").is_none());
        assert_eq!(got["x-real-ip"], "127.0.0.1");
    }

    #[test]
    fn redirects_keep_path_and_query() {
        assert_eq!(
            https_location("www.c1.dev.test", 443, "/a/b?x=1&y=2"),
            "https://www.c1.dev.test/a/b?x=1&y=2"
        );
        assert_eq!(
            https_location("c1.dev.test", 8443, "/"),
            "https://c1.dev.test:8443/"
        );
        assert_eq!(
            https_location("c1.dev.test", 443, "*"),
            "https://c1.dev.test/"
        );
    }
}
