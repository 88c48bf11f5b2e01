//! The proxy's own answers (unknown host, stopped container, container not
//! answering, redirects): small HTML pages that say what happened and never
//! show another container's content. Every refusal is a [`ProxyError`],
//! turned into its status and page here and nowhere else.

use super::routes::HostName;
use crate::container::ContainerName;
use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::{header, Response, StatusCode};

pub type Body = BoxBody<Bytes, hyper::Error>;

pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Why the proxy answers itself instead of forwarding.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("No such challenge.")]
    NoChallenge,
    #[error("The request names no valid host.")]
    NoHost,
    /// The TLS connection was made for another container's name.
    #[error("This connection is for {sni}, not {host}.")]
    Misdirected { sni: HostName, host: HostName },
    #[error("No container answers to {0}.")]
    UnknownHost(HostName),
    /// A name outside the public domain: this proxy serves none of those
    /// (port 80 redirects no such name).
    #[error("{0} is not served here.")]
    NotServed(HostName),
    #[error("Container {0} is not running.")]
    NotRunning(ContainerName),
    /// It was asleep and is being woken; it did not answer in time.
    #[error("Container {0} was asleep and is starting. This page retries by itself.")]
    Starting(ContainerName),
    /// It was asleep and could not be started (the agent's log and the
    /// owner's `devhost status` say why; a request never does).
    #[error("Container {0} was asleep and could not be started now. This page retries by itself.")]
    WakeFailed(ContainerName),
    #[error("The request path is not valid.")]
    BadPath,
    /// The dashboard is not open to this client's address.
    #[error("The dashboard is not open to {0}.")]
    DashboardRefused(std::net::IpAddr),
    #[error("The dashboard has one page: /.")]
    DashboardPath,
    #[error("The dashboard answers GET and HEAD only.")]
    DashboardMethod,
    #[error("The dashboard could not be drawn: {0}")]
    Dashboard(String),
    #[error("Container {container} does not answer on {upstream}: {source}")]
    Upstream {
        container: ContainerName,
        upstream: crate::container::Upstream,
        source: hyper_util::client::legacy::Error,
    },
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoChallenge | ProxyError::UnknownHost(_) | ProxyError::DashboardPath => {
                StatusCode::NOT_FOUND
            }
            ProxyError::DashboardRefused(_) => StatusCode::FORBIDDEN,
            ProxyError::DashboardMethod => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::Dashboard(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ProxyError::NoHost | ProxyError::BadPath => StatusCode::BAD_REQUEST,
            ProxyError::Misdirected { .. } | ProxyError::NotServed(_) => {
                StatusCode::MISDIRECTED_REQUEST
            }
            ProxyError::NotRunning(_) | ProxyError::Starting(_) | ProxyError::WakeFailed(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProxyError::Upstream { .. } => StatusCode::BAD_GATEWAY,
        }
    }
}

impl ProxyError {
    /// Seconds after which the client should try again (`Retry-After`, and
    /// the page reloads itself then): for a container being woken.
    pub fn retry_after(&self) -> Option<u32> {
        match self {
            ProxyError::Starting(_) => Some(STARTING_RETRY_SECS),
            ProxyError::WakeFailed(_) => Some(WAKE_FAILED_RETRY_SECS),
            _ => None,
        }
    }
}

/// Retry a container still starting after this many seconds.
const STARTING_RETRY_SECS: u32 = 5;
/// Retry a container that could not be started after this many seconds.
const WAKE_FAILED_RETRY_SECS: u32 = 30;

impl From<ProxyError> for Response<Body> {
    fn from(e: ProxyError) -> Response<Body> {
        let mut r = page_with(e.status(), &e.to_string(), e.retry_after());
        if let ProxyError::DashboardMethod = e {
            r.headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        }
        r
    }
}

/// An error page: status, one line of explanation.
fn page(status: StatusCode, detail: &str) -> Response<Body> {
    page_with(status, detail, None)
}

/// An error page; with `retry` seconds, one that asks to be loaded again
/// then (`Retry-After` for clients, a meta refresh for browsers).
fn page_with(status: StatusCode, detail: &str, retry: Option<u32>) -> Response<Body> {
    let reason = status.canonical_reason().unwrap_or("");
    let refresh = retry
        .map(|s| format!("<meta http-equiv=\"refresh\" content=\"{s}\">"))
        .unwrap_or_default();
    let html = format!(
        "<!doctype html>\n<html><head><title>{code} {reason}</title>{refresh}</head>\n<body><h1>{code} {reason}</h1>\n<p>{detail}</p>\n<hr><p>devhost</p></body></html>\n",
        code = status.as_u16(),
        detail = escape(detail)
    );
    let mut r = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store");
    if let Some(s) = retry {
        r = r.header(header::RETRY_AFTER, s);
    }
    r.body(full(html)).expect("valid response")
}

pub fn redirect(location: &str) -> Response<Body> {
    let mut r = page(
        StatusCode::MOVED_PERMANENTLY,
        &format!("Moved to {location}"),
    );
    if let Ok(v) = header::HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_have_their_status() {
        let cases = [
            (ProxyError::NoChallenge, 404),
            (
                ProxyError::UnknownHost(HostName::parse("x.dev.test").unwrap()),
                404,
            ),
            (ProxyError::NoHost, 400),
            (ProxyError::BadPath, 400),
            (
                ProxyError::Misdirected {
                    sni: HostName::parse("a.dev.test").unwrap(),
                    host: HostName::parse("b.dev.test").unwrap(),
                },
                421,
            ),
            (ProxyError::NotRunning("c1".parse().unwrap()), 503),
            (ProxyError::Starting("c1".parse().unwrap()), 503),
            (ProxyError::WakeFailed("c1".parse().unwrap()), 503),
            (
                ProxyError::DashboardRefused("192.0.2.1".parse().unwrap()),
                403,
            ),
            (ProxyError::DashboardPath, 404),
            (ProxyError::DashboardMethod, 405),
            (ProxyError::Dashboard("x".into()), 500),
            (
                ProxyError::NotServed(HostName::parse("evil.example.com").unwrap()),
                421,
            ),
        ];
        for (e, status) in cases {
            let r: Response<Body> = e.into();
            assert_eq!(r.status(), status);
        }
    }

    #[test]
    fn a_container_waking_gets_a_page_that_retries() {
        let r: Response<Body> = ProxyError::Starting("c1".parse().unwrap()).into();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[header::RETRY_AFTER], "5");
        let r: Response<Body> = ProxyError::WakeFailed("c1".parse().unwrap()).into();
        assert_eq!(r.headers()[header::RETRY_AFTER], "30");
        let r: Response<Body> = ProxyError::NotRunning("c1".parse().unwrap()).into();
        assert!(
            r.headers().get(header::RETRY_AFTER).is_none(),
            "stopped: no retry"
        );
    }

    #[tokio::test]
    async fn the_retry_page_says_it_is_starting_and_refreshes() {
        let r: Response<Body> = ProxyError::Starting("c1".parse().unwrap()).into();
        let body = r.into_body().collect().await.unwrap().to_bytes();
        let html = String::from_utf8(body.to_vec()).unwrap();
        assert!(
            html.contains(r#"<meta http-equiv="refresh" content="5">"#),
            "{html}"
        );
        assert!(
            html.contains("Container c1 was asleep and is starting."),
            "{html}"
        );
    }

    #[test]
    fn pages_escape_what_they_echo() {
        let r = page(StatusCode::NOT_FOUND, "no container answers to <x>");
        assert_eq!(r.status(), 404);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        let r = redirect("https://c1.dev.test/a?b=1");
        assert_eq!(r.status(), 301);
        assert_eq!(r.headers()[header::LOCATION], "https://c1.dev.test/a?b=1");
    }
}
