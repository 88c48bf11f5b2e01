//! An http(s) channel is fetched by the agent, not by Nix: with a connect
//! and a stall timeout, a number of attempts and a size limit (Nix has
//! none), cancellable, and revalidated instead of fetched again: the
//! ETag / Last-Modified of the last download are sent along, and a `304 Not
//! Modified` reuses the tarball already in the store (milliseconds). The
//! tarball goes into the store (`nix-store --add`) and Nix reads it from
//! there as a `file://` URL. The cache is one small JSON file per URL in
//! `STATE/channels/`.

use super::plan::FetchLimits;
use crate::cancel::{Cancel, Reason};
use crate::progress::Progress;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

const MAX_REDIRECTS: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}")]
    Unreachable(String),
    /// `url`: where it was answered (after redirects).
    #[error("the server answered HTTP {status} (for {url})")]
    Status { url: String, status: u16 },
    #[error("the server sent nothing for {secs} s after {bytes} bytes (of {url})")]
    Stalled { url: String, secs: u64, bytes: u64 },
    #[error("it is larger than {max} bytes (nix.max_channel_bytes)")]
    TooLarge { url: String, max: u64 },
    #[error("more than {MAX_REDIRECTS} redirects (the last to {url})")]
    Redirects { url: String },
    #[error("{url}: {why}")]
    Bad { url: String, why: String },
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("adding the channel to the store: {0}")]
    Store(String),
    #[error("the fetch was stopped: {0}")]
    Stopped(Reason),
}

/// What is kept of the last download of a URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cached {
    pub url: String,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// The tarball in the store.
    pub store_path: String,
}

/// A channel ready for Nix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// `file:///nix/store/…`: what Nix is given.
    pub entry: String,
    /// The server said the cached tarball is still current.
    pub unchanged: bool,
    /// Bytes downloaded (0 when unchanged).
    pub bytes: u64,
}

pub struct Fetch<'a> {
    pub url: &'a str,
    pub limits: FetchLimits,
    /// `STATE/channels`.
    pub cache_dir: &'a Path,
    /// Where the download is written before it goes into the store.
    pub work_dir: &'a Path,
    pub nix_store: &'a str,
    pub progress: &'a Progress,
    pub cancel: &'a Cancel,
}

/// The cache file of a URL.
pub fn cache_file(dir: &Path, url: &str) -> PathBuf {
    let d = ring::digest::digest(&ring::digest::SHA256, url.as_bytes());
    let hex: String = d.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    dir.join(format!("{hex}.json"))
}

/// The store name of a downloaded tarball: the URL's last path segment
/// when Nix takes it as a name, else `channel.tar`.
pub fn store_name(url: &str) -> String {
    let last = url
        .split(['?', '#'])
        .next()
        .unwrap_or("")
        .rsplit('/')
        .next()
        .unwrap_or("");
    let ok = !last.is_empty()
        && !last.starts_with('.')
        && last.len() <= 200
        && last
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-._?=".contains(&b));
    if ok {
        last.to_string()
    } else {
        "channel.tar".to_string()
    }
}

/// Resolve a redirect's `Location` against the URL it came from.
pub fn redirect_target(base: &str, location: &str) -> Option<String> {
    if location.starts_with("http://") || location.starts_with("https://") {
        return Some(location.to_string());
    }
    let uri: hyper::Uri = base.parse().ok()?;
    let origin = format!("{}://{}", uri.scheme_str()?, uri.authority()?);
    if let Some(rest) = location.strip_prefix("//") {
        return Some(format!("{}://{rest}", uri.scheme_str()?));
    }
    if location.starts_with('/') {
        return Some(format!("{origin}{location}"));
    }
    let path = uri.path();
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    Some(format!("{origin}{dir}{location}"))
}

/// Fetches channels: the agent's [`Http`]; a recording fake in the
/// supervisor's tests.
#[async_trait::async_trait]
pub trait Fetcher: Send + Sync {
    async fn fetch(&self, req: &Fetch<'_>) -> Result<Fetched, FetchError>;
}

/// The real fetcher.
pub struct Http;

#[async_trait::async_trait]
impl Fetcher for Http {
    async fn fetch(&self, req: &Fetch<'_>) -> Result<Fetched, FetchError> {
        fetch(req).await
    }
}

/// Fetch (or revalidate) `req.url`; stops when `req.cancel` fires or the
/// caller goes away.
pub async fn fetch(req: &Fetch<'_>) -> Result<Fetched, FetchError> {
    let work = fetch_inner(req);
    tokio::select! {
        r = work => r,
        why = req.cancel.cancelled() => Err(FetchError::Stopped(why)),
        () = req.progress.gone() => Err(FetchError::Stopped(Reason::CallerGone)),
    }
}

async fn fetch_inner(req: &Fetch<'_>) -> Result<Fetched, FetchError> {
    let cache_path = cache_file(req.cache_dir, req.url);
    let cached: Option<Cached> = std::fs::read(&cache_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .filter(|c: &Cached| c.url == req.url && Path::new(&c.store_path).exists());
    let mut last = None;
    for attempt in 1..=req.limits.attempts.max(1) {
        match once(req, cached.as_ref()).await {
            Ok(f) => return Ok(f),
            // Worth another try: the network, the server's trouble.
            Err(e @ (FetchError::Unreachable(_) | FetchError::Stalled { .. })) => {
                if attempt < req.limits.attempts {
                    req.progress
                        .log(format!("fetching {}: {e}; trying again", req.url));
                }
                last = Some(e);
            }
            Err(e @ FetchError::Status { status, .. }) if status >= 500 => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.expect("at least one attempt"))
}

async fn once(req: &Fetch<'_>, cached: Option<&Cached>) -> Result<Fetched, FetchError> {
    let client = super::probe::client();
    let mut url = req.url.to_string();
    let mut redirects = 0;
    let resp = loop {
        let mut builder =
            hyper::Request::get(url.as_str()).header(hyper::header::USER_AGENT, "devhost");
        if let Some(c) = cached {
            if let Some(e) = &c.etag {
                builder = builder.header(hyper::header::IF_NONE_MATCH, e);
            }
            if let Some(m) = &c.last_modified {
                builder = builder.header(hyper::header::IF_MODIFIED_SINCE, m);
            }
        }
        let request = builder
            .body(Empty::<Bytes>::new())
            .map_err(|e| FetchError::Bad {
                url: url.clone(),
                why: e.to_string(),
            })?;
        let resp =
            match tokio::time::timeout(req.limits.stall_timeout, client.request(request)).await {
                Err(_) => {
                    let host = url
                        .parse::<hyper::Uri>()
                        .ok()
                        .and_then(|u| u.host().map(str::to_string))
                        .unwrap_or_default();
                    return Err(FetchError::Unreachable(format!(
                        "{host} accepts connections but did not answer within {} s",
                        req.limits.stall_timeout.as_secs()
                    )));
                }
                Ok(Err(e)) => {
                    let why = super::probe::why_unreachable(&url, req.limits)
                        .await
                        .unwrap_or_else(|| format!("fetching {url}: {e}"));
                    return Err(FetchError::Unreachable(why));
                }
                Ok(Ok(r)) => r,
            };
        if resp.status().is_redirection() && resp.status() != hyper::StatusCode::NOT_MODIFIED {
            redirects += 1;
            if redirects > MAX_REDIRECTS {
                return Err(FetchError::Redirects { url: url.clone() });
            }
            let next = resp
                .headers()
                .get(hyper::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| redirect_target(&url, l))
                .ok_or_else(|| FetchError::Bad {
                    url: url.clone(),
                    why: format!("HTTP {} without a usable Location", resp.status().as_u16()),
                })?;
            url = next;
            continue;
        }
        break resp;
    };
    if resp.status() == hyper::StatusCode::NOT_MODIFIED {
        if let Some(c) = cached {
            return Ok(Fetched {
                entry: format!("file://{}", c.store_path),
                unchanged: true,
                bytes: 0,
            });
        }
    }
    if !resp.status().is_success() {
        return Err(FetchError::Status {
            url,
            status: resp.status().as_u16(),
        });
    }
    let header = |h| {
        resp.headers()
            .get(h)
            .and_then(|v: &hyper::header::HeaderValue| v.to_str().ok())
            .map(str::to_string)
    };
    let etag = header(hyper::header::ETAG);
    let last_modified = header(hyper::header::LAST_MODIFIED);
    let declared: Option<u64> = header(hyper::header::CONTENT_LENGTH).and_then(|l| l.parse().ok());
    if declared.is_some_and(|n| n > req.limits.max_bytes) {
        return Err(FetchError::TooLarge {
            url,
            max: req.limits.max_bytes,
        });
    }
    std::fs::create_dir_all(req.work_dir).map_err(|source| FetchError::Io {
        what: "creating",
        path: req.work_dir.to_path_buf(),
        source,
    })?;
    let scratch = scratch_dir(req.work_dir)?;
    let result = download_and_add(req, resp.into_body(), &url, &scratch).await;
    let _ = std::fs::remove_dir_all(&scratch);
    let (store_path, bytes) = result?;
    let entry = Cached {
        url: req.url.to_string(),
        etag,
        last_modified,
        store_path: store_path.clone(),
    };
    std::fs::create_dir_all(req.cache_dir).map_err(|source| FetchError::Io {
        what: "creating",
        path: req.cache_dir.to_path_buf(),
        source,
    })?;
    let cache_path = cache_file(req.cache_dir, req.url);
    crate::sys::fs::atomic_write(
        &cache_path,
        &serde_json::to_vec_pretty(&entry).expect("serializes"),
        0o644,
    )
    .map_err(|e| FetchError::Io {
        what: "writing",
        path: cache_path.clone(),
        source: std::io::Error::other(e),
    })?;
    Ok(Fetched {
        entry: format!("file://{store_path}"),
        unchanged: false,
        bytes,
    })
}

fn scratch_dir(dir: &Path) -> Result<PathBuf, FetchError> {
    use std::os::unix::fs::DirBuilderExt;
    let p = dir.join(format!(
        "fetch-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
    ));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&p)
        .map_err(|source| FetchError::Io {
            what: "creating",
            path: p.clone(),
            source,
        })?;
    Ok(p)
}

async fn download_and_add(
    req: &Fetch<'_>,
    mut body: hyper::body::Incoming,
    url: &str,
    scratch: &Path,
) -> Result<(String, u64), FetchError> {
    let file = scratch.join(store_name(req.url));
    let io = |what, source| FetchError::Io {
        what,
        path: file.clone(),
        source,
    };
    let mut out = tokio::fs::File::create(&file)
        .await
        .map_err(|e| io("creating", e))?;
    let mut total: u64 = 0;
    loop {
        let frame = match tokio::time::timeout(req.limits.stall_timeout, body.frame()).await {
            Err(_) => {
                return Err(FetchError::Stalled {
                    url: url.to_string(),
                    secs: req.limits.stall_timeout.as_secs(),
                    bytes: total,
                })
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(FetchError::Unreachable(format!("reading {url}: {e}"))),
            Ok(Some(Ok(f))) => f,
        };
        if let Ok(data) = frame.into_data() {
            total += data.len() as u64;
            if total > req.limits.max_bytes {
                return Err(FetchError::TooLarge {
                    url: url.to_string(),
                    max: req.limits.max_bytes,
                });
            }
            out.write_all(&data).await.map_err(|e| io("writing", e))?;
        }
    }
    out.flush().await.map_err(|e| io("writing", e))?;
    drop(out);
    let add = tokio::process::Command::new(req.nix_store)
        .arg("--add")
        .arg(&file)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| FetchError::Store(format!("cannot run {}: {e}", req.nix_store)))?;
    let path = String::from_utf8_lossy(&add.stdout).trim().to_string();
    if !add.status.success() || !path.starts_with("/nix/store/") {
        return Err(FetchError::Store(
            String::from_utf8_lossy(&add.stderr).trim().to_string(),
        ));
    }
    Ok((path, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_names_come_from_the_url() {
        assert_eq!(
            store_name("https://hydra.example/build/1/download/1/nixexprs.tar.xz"),
            "nixexprs.tar.xz"
        );
        assert_eq!(store_name("https://x.test/c.tar.gz?x=1"), "c.tar.gz");
        assert_eq!(store_name("https://x.test/"), "channel.tar");
        assert_eq!(store_name("https://x.test/.hidden"), "channel.tar");
        assert_eq!(store_name("https://x.test/a%20b"), "channel.tar");
    }

    #[test]
    fn redirects_resolve_against_their_url() {
        let base = "https://a.test/channels/nixos-24.05";
        assert_eq!(
            redirect_target(base, "https://b.test/x.tar.xz").as_deref(),
            Some("https://b.test/x.tar.xz")
        );
        assert_eq!(
            redirect_target(base, "/r/x.tar.xz").as_deref(),
            Some("https://a.test/r/x.tar.xz")
        );
        assert_eq!(
            redirect_target(base, "nixos-24.05.1/nixexprs.tar.xz").as_deref(),
            Some("https://a.test/channels/nixos-24.05.1/nixexprs.tar.xz")
        );
        assert_eq!(
            redirect_target("http://a.test:8080/c", "//c.test/y").as_deref(),
            Some("http://c.test/y")
        );
    }

    #[test]
    fn each_url_has_its_cache_file() {
        let d = Path::new("/s/channels");
        let a = cache_file(d, "https://a.test/x");
        assert_eq!(a, cache_file(d, "https://a.test/x"));
        assert_ne!(a, cache_file(d, "https://a.test/y"));
        assert_eq!(a.parent(), Some(d));
    }
}
