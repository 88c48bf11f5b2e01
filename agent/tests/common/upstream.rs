//! A test's own server inside a container's network namespace, for what the
//! fixture's busybox httpd cannot show: it answers with the request it got
//! (method, path, headers as JSON) on plain HTTP (8080) and on TLS with a
//! self-signed certificate (8443), and echoes websocket messages on /ws.
//! Its thread enters the namespace; the sockets stay there. It ends with
//! the test process (or when the namespace goes away with the container).

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::sync::Arc;

pub const HTTP_PORT: u16 = 8080;
pub const HTTPS_PORT: u16 = 8443;

/// Start the server in `/run/netns/NETNS`; returns once it listens.
pub fn start_in_netns(netns: &str) {
    let path = format!("/run/netns/{netns}");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let f = std::fs::File::open(&path).expect("open the container's netns");
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let plain = tokio::net::TcpListener::bind(("0.0.0.0", HTTP_PORT))
                .await
                .unwrap();
            let tls = tokio::net::TcpListener::bind(("0.0.0.0", HTTPS_PORT))
                .await
                .unwrap();
            tx.send(()).unwrap();
            let acceptor = tokio_rustls::TlsAcceptor::from(self_signed());
            tokio::spawn(async move {
                loop {
                    let (s, _) = tls.accept().await.unwrap();
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        if let Ok(s) = acceptor.accept(s).await {
                            serve(TokioIo::new(s)).await;
                        }
                    });
                }
            });
            loop {
                let (s, _) = plain.accept().await.unwrap();
                tokio::spawn(serve(TokioIo::new(s)));
            }
        });
    });
    rx.recv_timeout(std::time::Duration::from_secs(10))
        .expect("test upstream listening");
}

fn self_signed() -> Arc<rustls::ServerConfig> {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["upstream.test".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    Arc::new(cfg)
}

async fn serve<I>(io: I)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection_with_upgrades(io, hyper::service::service_fn(answer))
        .await;
}

async fn answer(mut req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == "/ws" {
        let key = req
            .headers()
            .get("sec-websocket-key")
            .cloned()
            .unwrap_or_else(|| hyper::header::HeaderValue::from_static(""));
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(up) = upgrade.await else { return };
            let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                TokioIo::new(up),
                tokio_tungstenite::tungstenite::protocol::Role::Server,
                None,
            )
            .await;
            let (mut tx, mut rx) = ws.split();
            while let Some(Ok(m)) = rx.next().await {
                if m.is_text() || m.is_binary() {
                    let _ = tx.send(m).await;
                }
            }
        });
        return Ok(Response::builder()
            .status(101)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-accept", accept)
            .body(Full::new(Bytes::new()))
            .unwrap());
    }
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                serde_json::Value::String(v.to_str().unwrap_or("").to_string()),
            )
        })
        .collect();
    let body = serde_json::json!({
        "method": req.method().as_str(),
        "path": req.uri().path_and_query().map(|p| p.as_str()).unwrap_or(""),
        "version": format!("{:?}", req.version()),
        "headers": headers,
    });
    Ok(Response::new(Full::new(Bytes::from(body.to_string()))))
}

/// Send `msg` over a websocket to `wss://HOST:PORT/ws` (on loopback,
/// trusting `root`); what came back.
pub fn websocket_echo(root: &std::path::Path, port: u16, host: &str, msg: &str) -> String {
    WebSocket::open(root, port, host).echo(msg)
}

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// A websocket to `wss://HOST:PORT/ws` through the edge, open until
/// dropped (or [`WebSocket::close`]d).
pub struct WebSocket {
    rt: tokio::runtime::Runtime,
    ws: Option<tokio_tungstenite::WebSocketStream<Tls>>,
}

impl WebSocket {
    /// Open it (on loopback, trusting `root`).
    pub fn open(root: &std::path::Path, port: u16, host: &str) -> WebSocket {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let root = std::fs::read(root).unwrap();
        let host = host.to_string();
        let ws = rt.block_on(async move {
            use rustls_pki_types::pem::PemObject;
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls_pki_types::CertificateDer::pem_slice_iter(&root) {
                roots.add(c.unwrap()).unwrap();
            }
            let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            let name = rustls_pki_types::ServerName::try_from(host.clone()).unwrap();
            let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
                .connect(name, tcp)
                .await
                .unwrap();
            let url = format!("wss://{host}:{port}/ws");
            let (ws, resp) = tokio_tungstenite::client_async(url, tls).await.unwrap();
            assert_eq!(resp.status(), 101);
            ws
        });
        WebSocket { rt, ws: Some(ws) }
    }

    /// Send `msg`; what came back.
    pub fn echo(&mut self, msg: &str) -> String {
        let ws = self.ws.as_mut().expect("open");
        let msg = msg.to_string();
        self.rt.block_on(async move {
            ws.send(tokio_tungstenite::tungstenite::Message::text(msg))
                .await
                .unwrap();
            let m = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
                .await
                .expect("echo within 10 s")
                .unwrap()
                .unwrap();
            m.into_text().unwrap().to_string()
        })
    }

    /// Close it (the close handshake, then the connection).
    pub fn close(mut self) {
        if let Some(mut ws) = self.ws.take() {
            self.rt.block_on(async move {
                let _ = ws.close(None).await;
                // Until the other side's close arrives or the stream ends.
                let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                    while let Some(Ok(_)) = ws.next().await {}
                })
                .await;
            });
        }
    }
}

/// A TCP listener on `port` in `/run/netns/NETNS` that accepts
/// connections and keeps each open until its client closes it: what an
/// SSH daemon on port 22 looks like to the kernel's tables, without one.
/// Returns once it listens; it ends with the test process.
pub fn hold_in_netns(netns: &str, port: u16) {
    let path = format!("/run/netns/{netns}");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let f = std::fs::File::open(&path).expect("open the container's netns");
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let l = std::net::TcpListener::bind(("0.0.0.0", port)).unwrap();
        tx.send(()).unwrap();
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                use std::io::Read;
                let mut buf = [0u8; 256];
                while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    rx.recv_timeout(std::time::Duration::from_secs(10))
        .expect("listening in the netns");
}
