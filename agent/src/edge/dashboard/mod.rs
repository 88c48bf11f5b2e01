//! The dashboard (`[edge] dashboard = true`): the apex `https://PUBLIC/`,
//! which routes to no container, shows every enabled container — name,
//! owner, state, aliases as links, certificate, last deploy, when cleanup
//! disables it, channel. One server-rendered page (askama), no JavaScript,
//! not cached, drawn anew from the newest records on every request.
//! Only clients whose address — the TCP peer of the TLS connection, never a
//! forwarding header — is in `edge.dashboard_allow` (default: loopback) see
//! it; everyone else gets 403, so it is never open to the internet unless
//! the operator says so. With the dashboard off none of this exists: the
//! apex has no route, no certificate, and answers as before.

pub mod model;
mod render;

use super::pages::{full, Body, ProxyError};
use super::Edge;
use crate::container::Record;
use hyper::{header, Method, Response};
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

/// What the page is drawn from, as the edge last applied it.
#[derive(Debug, Default)]
pub struct Seen {
    pub records: Arc<Vec<Record>>,
    /// Owners' user names by uid (those the user database knows), looked up
    /// when the records were applied, not on every request.
    pub owners: BTreeMap<u32, String>,
}

impl Seen {
    /// The records, with their owners' names looked up (the user database:
    /// files, or whatever NSS asks).
    pub fn of(records: Arc<Vec<Record>>) -> Seen {
        let owners = records
            .iter()
            .map(|r| r.owner_uid)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .filter_map(|uid| {
                let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid));
                Some((uid, user.ok()??.name))
            })
            .collect();
        Seen { records, owners }
    }
}

/// Whether a client at `ip` may see the dashboard. An IPv4 client of a
/// dual-stack listener (`::ffff:a.b.c.d`) is taken as the IPv4 address.
pub fn allowed(allow: &[IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    allow.iter().any(|n| n.contains(&ip))
}

/// The answer to a request for the apex from `client`: 403 unless allowed,
/// then the page for `GET /` and `HEAD /`, 404 for other paths, 405 for
/// other methods.
pub fn answer(
    edge: &Edge,
    method: &Method,
    path: &str,
    client: IpAddr,
    https_port: u16,
) -> Result<Response<Body>, ProxyError> {
    // The apex is served only with the dashboard on; without it, nobody.
    let allow = edge.cfg.dashboard.as_ref().map_or(&[][..], |d| &d.allow);
    if !allowed(allow, client) {
        return Err(ProxyError::DashboardRefused(client.to_canonical()));
    }
    if method != Method::GET && method != Method::HEAD {
        return Err(ProxyError::DashboardMethod);
    }
    if path != "/" {
        return Err(ProxyError::DashboardPath);
    }
    let seen = edge.seen();
    let mut certs = BTreeMap::new();
    let mut activity = BTreeMap::new();
    for r in seen.records.iter().filter(|r| r.enabled) {
        let name = r.name.as_str();
        if let Some(c) = edge.cert_info(name) {
            certs.insert(name.to_string(), c);
        }
        if let Some(t) = edge.last_activity(name) {
            activity.insert(name.to_string(), t);
        }
    }
    let facts = model::Facts {
        domain: &edge.cfg.domain,
        https_port,
        now: chrono::Utc::now(),
        policy: &edge.cleanup,
        owners: &seen.owners,
        certs: &certs,
        activity: &activity,
    };
    let page = model::page(&seen.records, &facts);
    let html = render::render(&page).map_err(|e| ProxyError::Dashboard(e.to_string()))?;
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        // No script, frame, form or fetch, whatever a record holds; the
        // one style sheet is inline.
        .header(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        )
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::REFERRER_POLICY, "no-referrer")
        .body(full(html))
        .expect("valid response"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn only_sources_in_the_allowed_networks_see_it() {
        let loopback = nets(&["127.0.0.0/8", "::1/128"]);
        for (ip, ok) in [
            ("127.0.0.1", true),
            ("127.8.9.10", true),
            ("::1", true),
            ("::ffff:127.0.0.1", true),
            ("10.0.0.1", false),
            ("::ffff:10.0.0.1", false),
            ("2001:db8::1", false),
            ("192.0.2.1", false),
        ] {
            assert_eq!(allowed(&loopback, ip.parse().unwrap()), ok, "{ip}");
        }
        let office = nets(&["10.0.0.0/8", "2001:db8::/32"]);
        assert!(allowed(&office, "10.20.30.40".parse().unwrap()));
        assert!(allowed(&office, "2001:db8:1::5".parse().unwrap()));
        assert!(!allowed(&office, "127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn the_owners_known_to_the_user_database_get_their_names() {
        let mut a = crate::container::record::tests::record("a", "10.233.0.6", &[]);
        a.owner_uid = 0;
        let mut b = crate::container::record::tests::record("b", "10.233.0.10", &[]);
        b.owner_uid = 4_000_000_000;
        let seen = Seen::of(Arc::new(vec![a, b]));
        assert_eq!(seen.owners, BTreeMap::from([(0, "root".to_string())]));
    }
}
