//! Port 80's answer to a request that is no ACME challenge: a 301 to the
//! same URL over HTTPS, but only for a name the proxy routes (a container's
//! `NAME.PUBLIC` or `ALIAS.NAME.PUBLIC`, running or not, and the apex when
//! the dashboard serves it). Any other Host
//! gets the proxy's error page instead — 404 for a name under the public
//! domain that no container answers to (as over HTTPS), 421 for a name
//! outside it — so port 80 is no open redirect to whatever a client names.
//! Pure: the route table and the request's host in, the location or the
//! refusal out.

use super::headers::https_location;
use super::pages::ProxyError;
use super::routes::{HostName, RouteTable};

/// Where a plain HTTP request for `host` is sent (`https_port`: the first
/// HTTPS listener's), or why it is not.
pub fn to_https(
    table: &RouteTable,
    host: Option<HostName>,
    path_and_query: &str,
    https_port: u16,
) -> Result<String, ProxyError> {
    let host = host.ok_or(ProxyError::NoHost)?;
    if table.lookup(&host).is_some() || table.is_served_apex(&host) {
        return Ok(https_location(host.as_str(), https_port, path_and_query));
    }
    if table.under_domain(&host) {
        Err(ProxyError::UnknownHost(host))
    } else {
        Err(ProxyError::NotServed(host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::record::tests::record;
    use crate::container::{Phase, Scheme, Upstream};

    const HTTPS: Upstream = Upstream {
        scheme: Scheme::Https,
        port: 443,
    };

    fn table() -> RouteTable {
        let mut stopped = record("db", "10.233.0.10", &[]);
        stopped.phase = Phase::Stopped;
        RouteTable::build(
            "dev.test",
            HTTPS,
            &[record("web01", "10.233.0.6", &["www"]), stopped],
        )
    }

    /// The answer for `Host: raw`: the location, or the refusal's status.
    fn answer(raw: &str) -> Result<String, u16> {
        to_https(&table(), HostName::parse(raw), "/a?b=1", 443).map_err(|e| e.status().as_u16())
    }

    #[test]
    fn routed_names_are_redirected_keeping_path_and_query() {
        assert_eq!(
            answer("web01.dev.test"),
            Ok("https://web01.dev.test/a?b=1".into())
        );
        assert_eq!(
            answer("WWW.web01.dev.test:80"),
            Ok("https://www.web01.dev.test/a?b=1".into())
        );
        assert_eq!(
            answer("db.dev.test"),
            Ok("https://db.dev.test/a?b=1".into()),
            "a stopped container's name: HTTPS says it is not running"
        );
        assert_eq!(
            to_https(&table(), HostName::parse("web01.dev.test"), "/", 8443).ok(),
            Some("https://web01.dev.test:8443/".into())
        );
    }

    #[test]
    fn names_outside_the_public_domain_are_misdirected() {
        for host in [
            "evil.example.com",
            "dev.test.evil",
            "web01.xdev.test",
            "localhost",
        ] {
            assert_eq!(answer(host), Err(421), "{host}");
        }
    }

    #[test]
    fn names_under_the_public_domain_that_no_container_answers_to_are_not_found() {
        for host in [
            "ghost.dev.test",
            "nope.web01.dev.test",
            "a.b.web01.dev.test",
            "dev.test",
        ] {
            assert_eq!(answer(host), Err(404), "{host}");
        }
    }

    #[test]
    fn the_apex_is_redirected_only_when_the_dashboard_serves_it() {
        let on = table().serving_apex(true);
        assert_eq!(
            to_https(&on, HostName::parse("dev.test"), "/", 443).ok(),
            Some("https://dev.test/".into())
        );
        assert_eq!(answer("dev.test"), Err(404), "off: as before");
    }

    #[test]
    fn a_request_without_a_valid_host_is_bad() {
        assert_eq!(
            to_https(&table(), None, "/", 443).map_err(|e| e.status().as_u16()),
            Err(400)
        );
    }
}
