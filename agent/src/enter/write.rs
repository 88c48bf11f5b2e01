//! The file writes of COPY and ECHO, sent to the helper on its stdin: one
//! JSON line ([`Batch`]) and then the files' contents, one after the other.
//! The helper applies them inside the container (its mounts, its owners),
//! still without following a symlink at any step.

use crate::sys::fs::{open_dir_in_root_as, read_in_root, write_in_root_as, Owner};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Read};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    /// The container user that owns what is written (`None`: root).
    pub owner: Option<String>,
    pub ops: Vec<WriteOp>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum WriteOp {
    /// Create the directory (and its parents) if missing.
    Dir { path: String, mode: u32 },
    /// Write the next `len` bytes of the stream to `path`; an existing file
    /// keeps its mode when `keep_mode`.
    File {
        path: String,
        mode: u32,
        len: u64,
        keep_mode: bool,
    },
}

/// The bytes to send: the batch line, then every file's content.
pub fn encode(batch: &Batch, contents: &[&[u8]]) -> Vec<u8> {
    let mut out = serde_json::to_vec(batch).expect("batches serialize");
    out.push(b'\n');
    for c in contents {
        out.extend_from_slice(c);
    }
    out
}

/// uid and gid of `user` in an /etc/passwd text.
pub fn lookup_user(passwd: &str, user: &str) -> Option<(u32, u32)> {
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() >= 4 && f[0] == user {
            Some((f[2].parse().ok()?, f[3].parse().ok()?))
        } else {
            None
        }
    })
}

/// Who owns what is written: `user` from the container's own /etc/passwd.
fn owner(root: &Path, user: Option<&str>) -> Result<Owner, String> {
    let Some(user) = user.filter(|u| *u != "root") else {
        return Ok(None);
    };
    let passwd = read_in_root(root, Path::new("etc/passwd"), 16 << 20)
        .map_err(|e| format!("cannot look up the user {user:?} to copy as: {e}"))?;
    lookup_user(&String::from_utf8_lossy(&passwd), user)
        .map(Some)
        .ok_or_else(|| {
            format!(
                "the user {user:?} to copy as (the service user) does not exist in the container"
            )
        })
}

fn relative(path: &str) -> &str {
    path.trim_start_matches('/')
}

/// Read a batch from `input` and apply it below `root` (inside the
/// container: `/`).
pub fn apply(root: &Path, input: &mut impl BufRead) -> Result<usize, String> {
    let mut line = Vec::new();
    input
        .by_ref()
        .take(64 << 20)
        .read_until(b'\n', &mut line)
        .map_err(|e| format!("reading the write batch: {e}"))?;
    let batch: Batch =
        serde_json::from_slice(&line).map_err(|e| format!("invalid write batch: {e}"))?;
    let owner = owner(root, batch.owner.as_deref())?;
    for op in &batch.ops {
        match op {
            WriteOp::Dir { path, mode } => {
                let comps: Vec<&std::ffi::OsStr> = relative(path)
                    .split('/')
                    .filter(|c| !c.is_empty())
                    .map(std::ffi::OsStr::new)
                    .collect();
                open_dir_in_root_as(root, &comps, *mode, owner).map_err(|e| e.to_string())?;
            }
            WriteOp::File {
                path,
                mode,
                len,
                keep_mode,
            } => {
                let mut data = Vec::with_capacity(*len as usize);
                input
                    .by_ref()
                    .take(*len)
                    .read_to_end(&mut data)
                    .map_err(|e| format!("reading the content of {path}: {e}"))?;
                if data.len() as u64 != *len {
                    return Err(format!("the content of {path} was cut short"));
                }
                let rel = relative(path);
                let mode = match keep_mode {
                    true => std::fs::symlink_metadata(root.join(rel))
                        .ok()
                        .filter(|m| m.file_type().is_file())
                        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777)
                        .unwrap_or(*mode),
                    false => *mode,
                };
                write_in_root_as(root, Path::new(rel), &data, mode, owner)
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(batch.ops.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn users_are_looked_up_in_the_containers_passwd() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\ndeveloper:x:1000:1000::/home/developer:/bin/bash\ns-dev:x:1001:500::/home/s-dev:/bin/bash\nbroken:x:zz:1\n";
        assert_eq!(lookup_user(passwd, "s-dev"), Some((1001, 500)));
        assert_eq!(lookup_user(passwd, "s-de"), None);
        assert_eq!(lookup_user(passwd, "broken"), None);
        assert_eq!(lookup_user("", "root"), None);
    }

    #[test]
    fn a_batch_writes_directories_and_files_in_order() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::fs::write(d.path().join("etc/motd"), "old").unwrap();
        std::fs::set_permissions(
            d.path().join("etc/motd"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        let batch = Batch {
            owner: None,
            ops: vec![
                WriteOp::Dir {
                    path: "/srv/app".into(),
                    mode: 0o750,
                },
                WriteOp::File {
                    path: "/srv/app/a".into(),
                    mode: 0o644,
                    len: 2,
                    keep_mode: false,
                },
                WriteOp::File {
                    path: "/etc/motd".into(),
                    mode: 0o644,
                    len: 3,
                    keep_mode: true,
                },
            ],
        };
        let bytes = encode(&batch, &[b"hi", b"new"]);
        let n = apply(d.path(), &mut std::io::Cursor::new(bytes)).unwrap();
        assert_eq!(n, 3);
        assert_eq!(std::fs::read(d.path().join("srv/app/a")).unwrap(), b"hi");
        let m = |p: &str| std::fs::metadata(d.path().join(p)).unwrap().mode() & 0o7777;
        assert_eq!(m("srv/app"), 0o750);
        assert_eq!(std::fs::read(d.path().join("etc/motd")).unwrap(), b"new");
        assert_eq!(m("etc/motd"), 0o600, "an existing file keeps its mode");
    }

    #[test]
    fn a_short_stream_or_an_unknown_user_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let batch = Batch {
            owner: None,
            ops: vec![WriteOp::File {
                path: "/x".into(),
                mode: 0o644,
                len: 10,
                keep_mode: false,
            }],
        };
        assert_eq!(
            apply(
                d.path(),
                &mut std::io::Cursor::new(encode(&batch, &[b"abc"]))
            )
            .unwrap_err(),
            "the content of /x was cut short"
        );
        let nobody = Batch {
            owner: Some("s-dev".into()),
            ops: vec![],
        };
        assert!(
            apply(d.path(), &mut std::io::Cursor::new(encode(&nobody, &[])))
                .unwrap_err()
                .starts_with("cannot look up the user \"s-dev\" to copy as")
        );
    }
}
