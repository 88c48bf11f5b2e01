//! The proxy's own answers (unknown host, stopped container, container not
//! answering, redirects): small HTML pages that say what happened and never
//! show another container's content.

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

/// An error page: status, one line of explanation.
pub fn page(status: StatusCode, detail: &str) -> Response<Body> {
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
