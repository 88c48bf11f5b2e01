//! A local channel (`file:///path` or `/path`) is read with its caller's
//! rights, never the agent's: the path is resolved and serialized
//! (`nix-store --dump`, a NAR) by a process that runs as the caller, so a
//! user can only build from files they can read themselves. The agent
//! unpacks that NAR in a directory of its own and adds it to the store, and
//! Nix evaluates that copy (restricted to it). A path that already is in the
//! store (a channel profile's link) is used as it is: the store is readable
//! by everyone and never changes. A channel that is a tarball file
//! (`file:///srv/nixexprs.tar.xz`) is handed to Nix as a `file://` URL of
//! its store copy, which Nix unpacks as it does a downloaded channel.

use super::NixError;
use crate::sys::identity::{become_user, Identity};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

pub struct LocalChannel<'a> {
    /// The path as the caller gave it.
    pub path: &'a Path,
    /// Whose rights read it.
    pub reader: &'a Identity,
    pub nix_store: &'a str,
    /// A directory only root can reach, for the unpacked copy.
    pub work_dir: &'a Path,
    /// Largest serialized channel accepted (`nix.max_local_channel_bytes`).
    pub max_bytes: u64,
}

fn failed(req: &LocalChannel, why: impl std::fmt::Display) -> NixError {
    NixError::LocalChannel {
        path: req.path.to_path_buf(),
        uid: req.reader.uid,
        why: why.to_string(),
    }
}

/// A command that runs as the channel's reader, with nothing of the agent's
/// environment.
fn as_reader(req: &LocalChannel, program: &str) -> Command {
    let mut c = Command::new(program);
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", "/nonexistent")
        .env("NIX_PATH", "")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let id = req.reader.clone();
    // SAFETY: become_user only makes raw system calls on data prepared
    // before the fork.
    unsafe {
        c.pre_exec(move || become_user(&id));
    }
    c
}

fn last_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let line = text.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
    line.trim().trim_start_matches("error: ").to_string()
}

/// Is `p` a path inside a store path: `/nix/store/NAME[/…]`, with nothing
/// but plain components (no `..` leading out again)?
fn in_store(p: &Path) -> bool {
    use std::path::Component;
    let mut c = p.components();
    c.next() == Some(Component::RootDir)
        && c.next() == Some(Component::Normal("nix".as_ref()))
        && c.next() == Some(Component::Normal("store".as_ref()))
        && matches!(c.next(), Some(Component::Normal(_)))
        && c.all(|x| matches!(x, Component::Normal(_)))
}

/// The search path entry for a store copy: a directory as it is, a
/// tarball file as a `file://` URL.
fn entry_for(store_path: &Path) -> String {
    if std::fs::symlink_metadata(store_path).is_ok_and(|m| m.is_file()) {
        format!("file://{}", store_path.display())
    } else {
        store_path.display().to_string()
    }
}

/// The search path entry (a store path, or a `file://` URL of a tarball in
/// the store) to evaluate for the local channel `req.path`.
pub async fn import(req: &LocalChannel<'_>) -> Result<String, NixError> {
    let out = as_reader(req, "realpath")
        .args(["-e", "--"])
        .arg(req.path)
        .output()
        .await
        .map_err(|e| failed(req, format!("cannot run realpath: {e}")))?;
    if !out.status.success() {
        return Err(failed(req, last_line(&out.stderr)));
    }
    // What the caller's process printed is the caller's to choose (they may
    // trace it): trusted only to name what is then read with their rights,
    // or a path that really is in the store.
    let canonical = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim_end_matches('\n'));
    if in_store(&canonical) {
        return Ok(entry_for(&canonical));
    }
    std::fs::create_dir_all(req.work_dir)
        .map_err(|e| failed(req, format!("creating {}: {e}", req.work_dir.display())))?;
    let scratch = tempdir_in(req.work_dir).map_err(|e| failed(req, e))?;
    let result = copy_and_add(req, &canonical, &scratch).await;
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn tempdir_in(dir: &Path) -> Result<PathBuf, String> {
    use std::os::unix::fs::DirBuilderExt;
    for _ in 0..100 {
        let mut b = [0u8; 8];
        getrandom(&mut b);
        let p = dir.join(format!(
            "channel-{}",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        ));
        match std::fs::DirBuilder::new().mode(0o700).create(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("creating {}: {e}", p.display())),
        }
    }
    Err(format!("no free scratch name in {}", dir.display()))
}

fn getrandom(buf: &mut [u8]) {
    use std::io::Read;
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(buf);
    }
}

async fn copy_and_add(
    req: &LocalChannel<'_>,
    canonical: &Path,
    scratch: &Path,
) -> Result<String, NixError> {
    let target = scratch.join("nixexprs");
    let mut dump = as_reader(req, req.nix_store)
        .arg("--dump")
        .arg(canonical)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(req, format!("cannot run {}: {e}", req.nix_store)))?;
    let mut restore = Command::new(req.nix_store)
        .arg("--restore")
        .arg(&target)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| failed(req, format!("cannot run {}: {e}", req.nix_store)))?;
    let mut from = dump.stdout.take().expect("piped");
    let mut dump_err = dump.stderr.take().expect("piped");
    let mut to = restore.stdin.take().expect("piped");
    let err_task = tokio::spawn(async move {
        let mut v = Vec::new();
        let _ = (&mut dump_err).take(64 * 1024).read_to_end(&mut v).await;
        v
    });
    let mut buf = vec![0u8; 256 * 1024];
    let mut total: u64 = 0;
    let mut too_big = false;
    loop {
        let n = from
            .read(&mut buf)
            .await
            .map_err(|e| failed(req, format!("reading the channel: {e}")))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > req.max_bytes {
            too_big = true;
            let _ = dump.start_kill();
            break;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break; // restore failed; its error says why
        }
    }
    drop(to);
    let dump_status = dump
        .wait()
        .await
        .map_err(|e| failed(req, format!("waiting for nix-store --dump: {e}")))?;
    let dump_stderr = err_task.await.unwrap_or_default();
    let restore_out = restore
        .wait_with_output()
        .await
        .map_err(|e| failed(req, format!("waiting for nix-store --restore: {e}")))?;
    if too_big {
        return Err(failed(
            req,
            format!(
                "it is larger than {} bytes (nix.max_local_channel_bytes)",
                req.max_bytes
            ),
        ));
    }
    if !dump_status.success() {
        return Err(failed(req, last_line(&dump_stderr)));
    }
    if !restore_out.status.success() {
        return Err(failed(
            req,
            format!("unpacking it: {}", last_line(&restore_out.stderr)),
        ));
    }
    let add = Command::new(req.nix_store)
        .arg("--add")
        .arg(&target)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| failed(req, format!("cannot run {}: {e}", req.nix_store)))?;
    if !add.status.success() {
        return Err(failed(
            req,
            format!("adding it to the store: {}", last_line(&add.stderr)),
        ));
    }
    let path = String::from_utf8_lossy(&add.stdout).trim().to_string();
    if !path.starts_with("/nix/store/") {
        return Err(failed(req, format!("nix-store --add printed {path:?}")));
    }
    Ok(entry_for(Path::new(&path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_paths_below_the_store_count_as_in_it() {
        assert!(in_store(Path::new("/nix/store/abc-nixexprs")));
        assert!(in_store(Path::new("/nix/store/abc-nixexprs/sub")));
        assert!(!in_store(Path::new("/nix/store/../../root/chan")));
        assert!(!in_store(Path::new("/nix/store/abc/../../../root")));
        assert!(!in_store(Path::new("/nix/store")));
        assert!(!in_store(Path::new("nix/store/abc")));
        assert!(!in_store(Path::new("/srv/nix/store/abc")));
    }

    #[test]
    fn a_tarball_is_a_file_url_and_a_directory_a_path() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("nixexprs.tar.xz");
        std::fs::write(&file, b"x").unwrap();
        assert_eq!(entry_for(&file), format!("file://{}", file.display()));
        assert_eq!(entry_for(d.path()), d.path().display().to_string());
    }

    #[test]
    fn the_last_error_line_is_the_reason() {
        assert_eq!(
            last_line(b"warning: x\nerror: getting status of '/root/c': Permission denied\n\n"),
            "getting status of '/root/c': Permission denied"
        );
        assert_eq!(last_line(b""), "");
    }
}
