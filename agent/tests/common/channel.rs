//! The fixture channel for tests: assembled once per test process with
//! tests/fixtures/make-channel and served over HTTP on loopback under a
//! content-addressed path (Nix caches channel tarballs per URL).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The fixture channel, built once per test process and served over HTTP on
/// loopback under a content-addressed path (Nix caches tarballs by URL).
pub struct Channel {
    pub url: String,
    pub dir: PathBuf,
    /// The unpacked tree, for `file://` channel tests.
    pub unpacked: PathBuf,
}

pub fn channel() -> &'static Channel {
    static CH: OnceLock<Channel> = OnceLock::new();
    CH.get_or_init(|| {
        // Under target/ (a build cache), one per test process.
        let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
        for old in std::fs::read_dir(base).into_iter().flatten().flatten() {
            let n = old.file_name().to_string_lossy().into_owned();
            if let Some(pid) = n.strip_prefix("fixture-channel-") {
                if !Path::new("/proc").join(pid).exists() {
                    let _ = std::fs::remove_dir_all(old.path());
                }
            }
        }
        let dir = base.join(format!("fixture-channel-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/make-channel"
        );
        let out = Command::new(script)
            .arg(&dir)
            .output()
            .expect("run make-channel");
        assert!(
            out.status.success(),
            "make-channel failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let tarball = std::fs::read(dir.join("nixexprs.tar.xz")).unwrap();
        let mut h = DefaultHasher::new();
        tarball.hash(&mut h);
        let path = format!("/c/{:016x}/nixexprs.tar.xz", h.finish());
        let unpacked = dir.join("unpacked");
        std::fs::create_dir_all(&unpacked).unwrap();
        let st = Command::new("tar")
            .arg("-xJf")
            .arg(dir.join("nixexprs.tar.xz"))
            .arg("-C")
            .arg(&unpacked)
            .status()
            .unwrap();
        assert!(st.success());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let served = path.clone();
        let counts = Counts::default();
        std::thread::spawn(move || serve(listener, served, tarball, counts));
        Channel {
            url: format!("http://127.0.0.1:{port}{path}"),
            dir,
            unpacked: unpacked.join("nixexprs"),
        }
    })
}

/// What a channel server sent: whole tarballs, and `304 Not Modified`s.
#[derive(Clone, Default)]
pub struct Counts {
    pub full: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    pub unchanged: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

/// The fixture channel served by a server of its own (its URL), counting
/// what it sends.
pub fn serve_counted() -> (String, Counts) {
    let ch = channel();
    let tarball = std::fs::read(ch.dir.join("nixexprs.tar.xz")).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let counts = Counts::default();
    let c = counts.clone();
    std::thread::spawn(move || serve(listener, "/nixexprs.tar.xz".into(), tarball, c));
    (format!("http://127.0.0.1:{port}/nixexprs.tar.xz"), counts)
}

fn serve(listener: TcpListener, path: String, body: Vec<u8>, counts: Counts) {
    let mut h = DefaultHasher::new();
    body.hash(&mut h);
    let etag = format!("\"{:016x}\"", h.finish());
    for stream in listener.incoming().flatten() {
        let path = path.clone();
        let body = body.clone();
        let etag = etag.clone();
        let counts = counts.clone();
        std::thread::spawn(move || {
            let mut s = stream;
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let line = String::from_utf8_lossy(&req)
                .lines()
                .next()
                .unwrap_or("")
                .to_string();
            let target = line.split_whitespace().nth(1).unwrap_or("");
            let matches = String::from_utf8_lossy(&req).lines().any(|l| {
                l.to_ascii_lowercase().starts_with("if-none-match:")
                    && l.split_once(':').map(|(_, v)| v.trim()) == Some(etag.as_str())
            });
            if target == path && matches {
                counts
                    .unchanged
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let head = format!(
                    "HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\nConnection: close\r\n\r\n"
                );
                let _ = s.write_all(head.as_bytes());
            } else if target == path {
                if !line.starts_with("HEAD") {
                    counts
                        .full
                        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/x-xz\r\nETag: {etag}\r\nConnection: close\r\n\r\n", body.len());
                let _ = s.write_all(head.as_bytes());
                if !line.starts_with("HEAD") {
                    let _ = s.write_all(&body);
                }
            } else {
                let _ = s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found");
            }
        });
    }
}
