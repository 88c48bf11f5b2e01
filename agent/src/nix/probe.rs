//! Why a channel URL could not be fetched, in words: when a request of the
//! channel fetch ([`super::fetch`]) fails, the agent looks once at each
//! stage, bounded by the fetch limits, and names the first that fails —
//! the host that does not resolve, the connection refused, the HTTP
//! status, or the silence — instead of a client library's error chain.

use super::plan::FetchLimits;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;

/// The cause, or `None` when the URL answers fine now (the failure was
/// elsewhere or passed).
pub async fn why_unreachable(url: &str, limits: FetchLimits) -> Option<String> {
    let uri: hyper::Uri = match url.parse() {
        Ok(u) => u,
        Err(e) => return Some(format!("{url:?} is not a URL Nix can fetch: {e}")),
    };
    let host = uri.host()?.to_string();
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    let addrs = match tokio::time::timeout(
        limits.connect_timeout,
        tokio::net::lookup_host((host.as_str(), port)),
    )
    .await
    {
        Err(_) => {
            return Some(format!(
                "the name {host} did not resolve within {} s",
                limits.connect_timeout.as_secs()
            ))
        }
        Ok(Err(e)) => return Some(format!("the name {host} does not resolve ({e})")),
        Ok(Ok(a)) => a.collect::<Vec<_>>(),
    };
    let Some(first) = addrs.first().copied() else {
        return Some(format!("the name {host} has no address"));
    };
    match tokio::time::timeout(
        limits.connect_timeout,
        tokio::net::TcpStream::connect(first),
    )
    .await
    {
        Err(_) => {
            return Some(format!(
                "{first} did not accept a connection within {} s",
                limits.connect_timeout.as_secs()
            ))
        }
        Ok(Err(e)) => return Some(format!("connecting to {first}: {e}")),
        Ok(Ok(_)) => {}
    }
    let client = client();
    let req = hyper::Request::head(uri)
        .header(hyper::header::USER_AGENT, "devhost")
        .body(Empty::<Bytes>::new())
        .ok()?;
    match tokio::time::timeout(limits.stall_timeout, client.request(req)).await {
        Err(_) => Some(format!(
            "{host} accepts connections but did not answer within {} s",
            limits.stall_timeout.as_secs()
        )),
        Ok(Err(e)) => Some(format!("asking {host}: {}", chain(&e))),
        Ok(Ok(resp)) if resp.status().is_success() || resp.status().is_redirection() => {
            let _ = resp.into_body().collect().await;
            None
        }
        Ok(Ok(resp)) => Some(format!("{host} answered HTTP {}", resp.status())),
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

pub(super) type Client = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Empty<Bytes>,
>;

pub(super) fn client() -> Client {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(c);
    }
    let tls = rustls::ClientConfig::builder_with_provider(crate::certs::crypto_provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(https)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::time::Duration;

    const QUICK: FetchLimits = FetchLimits {
        connect_timeout: Duration::from_secs(2),
        stall_timeout: Duration::from_secs(1),
        attempts: 1,
        max_bytes: 1 << 20,
    };

    fn server(answer: Option<&'static [u8]>) -> std::net::SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for mut c in l.incoming().flatten() {
                if let Some(a) = answer {
                    let mut buf = [0u8; 1024];
                    let _ = c.read(&mut buf);
                    let _ = c.write_all(a);
                }
                held.push(c);
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_silent_server_is_named_as_such() {
        let a = server(None);
        let why = why_unreachable(&format!("http://{a}/c.tar.xz"), QUICK).await;
        assert_eq!(
            why.as_deref(),
            Some("127.0.0.1 accepts connections but did not answer within 1 s")
        );
    }

    #[tokio::test]
    async fn an_http_error_names_its_status() {
        let a = server(Some(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"));
        let why = why_unreachable(&format!("http://{a}/c.tar.xz"), QUICK).await;
        assert_eq!(
            why.as_deref(),
            Some("127.0.0.1 answered HTTP 404 Not Found")
        );
        let b = server(Some(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"));
        assert_eq!(why_unreachable(&format!("http://{b}/c"), QUICK).await, None);
    }

    #[tokio::test]
    async fn a_closed_port_and_an_unknown_host_are_named() {
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let why = why_unreachable(&format!("http://{closed}/c"), QUICK)
            .await
            .unwrap();
        assert!(
            why.starts_with(&format!("connecting to {closed}: ")),
            "{why}"
        );
        assert!(why.contains("refused"), "{why}");
        let why = why_unreachable("http://nohost.invalid/c", QUICK)
            .await
            .unwrap();
        assert!(
            why.starts_with("the name nohost.invalid does not resolve")
                || why.starts_with("the name nohost.invalid did not resolve"),
            "{why}"
        );
    }
}
