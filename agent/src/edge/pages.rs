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
            ProxyError::NotRunning(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Upstream { .. } => StatusCode::BAD_GATEWAY,
        }
    }
}

impl From<ProxyError> for Response<Body> {
    fn from(e: ProxyError) -> Response<Body> {
        let mut r = page(e.status(), &e.to_string());
        if let ProxyError::DashboardMethod = e {
            r.headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        }
        r
    }
}

/// An error page: status, one line of explanation.
fn page(status: StatusCode, detail: &str) -> Response<Body> {
    let reason = status.canonical_reason().unwrap_or("");
    let html = format!(
        "<!doctype html>\n<html><head><title>{code} {reason}</title></head>\n<body><h1>{code} {reason}</h1>\n<p>{detail}</p>\n<hr><p>devhost</p></body></html>\n",
        code = status.as_u16(),
        detail = escape(detail)
    );
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(full(html))
        .expect("valid response")
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
