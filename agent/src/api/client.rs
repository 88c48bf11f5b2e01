//! The CLI side of the API: one request per call over the agent's Unix
//! socket, with a clear error when the agent is not running.

use super::types::{ApiError, Event};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use std::path::{Path, PathBuf};
use tokio::net::UnixStream;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the devhost agent is not running (cannot connect to {socket}: {source}); start it with `systemctl start devhost` or `devhost agent`")]
    NotRunning {
        socket: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Api(ApiError),
    #[error("talking to the agent: {0}")]
    Protocol(String),
}

pub struct Client {
    socket: PathBuf,
}

impl Client {
    pub fn new(socket: &Path) -> Client {
        Client {
            socket: socket.to_path_buf(),
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response<Incoming>, ClientError> {
        let stream =
            UnixStream::connect(&self.socket)
                .await
                .map_err(|source| ClientError::NotRunning {
                    socket: self.socket.clone(),
                    source,
                })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let builder = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "devhost");
        let req = match body {
            Some(b) => builder
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(b)).boxed()),
            None => builder.body(
                Empty::<Bytes>::new()
                    .map_err(|never| match never {})
                    .boxed(),
            ),
        }
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
        sender
            .send_request(req)
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))
    }

    async fn body_of(resp: Response<Incoming>) -> Result<Bytes, ClientError> {
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))?
            .to_bytes();
        if !status.is_success() {
            return Err(match serde_json::from_slice::<ApiError>(&bytes) {
                Ok(e) => ClientError::Api(e),
                Err(_) => ClientError::Protocol(format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&bytes)
                )),
            });
        }
        Ok(bytes)
    }

    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<T, ClientError> {
        let resp = self.send(Method::GET, path, None).await?;
        let bytes = Self::body_of(resp).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Protocol(format!("bad answer: {e}")))
    }

    pub async fn post_json<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let body = serde_json::to_vec(body).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let resp = self.send(Method::POST, path, Some(body)).await?;
        let bytes = Self::body_of(resp).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Protocol(format!("bad answer: {e}")))
    }

    pub async fn get_text(&self, path: &str) -> Result<String, ClientError> {
        let resp = self.send(Method::GET, path, None).await?;
        let bytes = Self::body_of(resp).await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// A text answer as it arrives: `on_chunk` sees each piece; it returns
    /// false to stop reading.
    pub async fn get_stream(
        &self,
        path: &str,
        mut on_chunk: impl FnMut(&[u8]) -> bool,
    ) -> Result<(), ClientError> {
        let resp = self.send(Method::GET, path, None).await?;
        if !resp.status().is_success() {
            Self::body_of(resp).await?;
            return Err(ClientError::Protocol("unexpected answer".into()));
        }
        let mut body = resp.into_body();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ClientError::Protocol(e.to_string()))?;
            if let Ok(data) = frame.into_data() {
                if !on_chunk(&data) {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Run a streamed operation: `on_event` sees each event as it comes;
    /// the result is the final `done` event (or the error).
    pub async fn stream(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        mut on_event: impl FnMut(&Event),
    ) -> Result<Event, ClientError> {
        let resp = self.send(method, path, body).await?;
        if !resp.status().is_success() {
            Self::body_of(resp).await?;
            return Err(ClientError::Protocol("unexpected answer".into()));
        }
        let mut body = resp.into_body();
        let mut buf: Vec<u8> = Vec::new();
        let mut last: Option<Event> = None;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ClientError::Protocol(e.to_string()))?;
            if let Ok(data) = frame.into_data() {
                buf.extend_from_slice(&data);
                while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    let ev: Event = serde_json::from_slice(&line)
                        .map_err(|e| ClientError::Protocol(format!("bad event: {e}")))?;
                    on_event(&ev);
                    last = Some(ev);
                }
            }
        }
        match last {
            Some(Event::Error { error }) => Err(ClientError::Api(error)),
            Some(ev @ Event::Done { .. }) => Ok(ev),
            _ => Err(ClientError::Protocol(
                "the agent closed the stream before the operation finished".into(),
            )),
        }
    }
}
