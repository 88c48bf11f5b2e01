//! What COPY writes, decided purely from the files the caller sent, with
//! rsync's reading of a trailing slash: `COPY dir /x` puts `dir` into `/x/`
//! (as `/x/dir`), `COPY dir/ /x` puts its contents there; `COPY file /x/`
//! writes `/x/file`, `COPY file /x` writes `/x`.

use super::Entry;
use std::collections::BTreeMap;

#[derive(Debug, PartialEq, Eq)]
pub enum Write<'a> {
    Dir {
        remote: String,
        mode: u32,
    },
    File {
        remote: String,
        mode: u32,
        data: &'a [u8],
    },
}

fn join(base: &str, rel: &str) -> String {
    format!("{}/{}", base.trim_end_matches('/'), rel)
}

pub fn plan<'a>(
    files: &'a BTreeMap<String, Entry>,
    local: &str,
    remote: &str,
) -> Result<Vec<Write<'a>>, super::ProvisionError> {
    let contents_only = local.ends_with('/') || local == ".";
    let base = local.trim_end_matches('/');
    let name = base.rsplit('/').next().unwrap_or(base);
    if base == "." || files.get(base).is_some_and(|e| e.data.is_none()) {
        let prefix = if base == "." {
            String::new()
        } else {
            format!("{base}/")
        };
        let target = if contents_only {
            remote.trim_end_matches('/').to_string()
        } else {
            join(remote, name)
        };
        let mut out = Vec::new();
        let top_mode = files.get(base).map(|e| e.mode).unwrap_or(0o755);
        out.push(Write::Dir {
            remote: if target.is_empty() {
                "/".into()
            } else {
                target.clone()
            },
            mode: top_mode,
        });
        for (path, e) in files.range(prefix.clone()..) {
            let Some(rel) = path.strip_prefix(&prefix) else {
                break;
            };
            let to = join(&target, rel);
            out.push(match &e.data {
                None => Write::Dir {
                    remote: to,
                    mode: e.mode,
                },
                Some(d) => Write::File {
                    remote: to,
                    mode: e.mode,
                    data: d,
                },
            });
        }
        return Ok(out);
    }
    match files.get(base) {
        Some(Entry {
            mode,
            data: Some(d),
        }) => {
            let to = if remote.ends_with('/') {
                join(remote, name)
            } else {
                remote.to_string()
            };
            Ok(vec![Write::File {
                remote: to,
                mode: *mode,
                data: d,
            }])
        }
        _ => Err(super::ProvisionError::NotSent {
            local: local.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> BTreeMap<String, Entry> {
        let f = |d: &str, m| Entry {
            mode: m,
            data: Some(d.as_bytes().to_vec()),
        };
        let d = |m| Entry {
            mode: m,
            data: None,
        };
        [
            ("app".to_string(), d(0o755)),
            ("app/index.html".into(), f("hi", 0o644)),
            ("app/sub".into(), d(0o750)),
            ("app/sub/x".into(), f("x", 0o600)),
            ("apple".into(), f("no", 0o644)),
            ("tool".into(), f("#!", 0o755)),
        ]
        .into_iter()
        .collect()
    }

    #[test]
    fn rsync_trailing_slash_rules() {
        let fs = files();
        assert_eq!(
            plan(&fs, "app/", "/srv/app/").unwrap(),
            vec![
                Write::Dir {
                    remote: "/srv/app".into(),
                    mode: 0o755
                },
                Write::File {
                    remote: "/srv/app/index.html".into(),
                    mode: 0o644,
                    data: b"hi"
                },
                Write::Dir {
                    remote: "/srv/app/sub".into(),
                    mode: 0o750
                },
                Write::File {
                    remote: "/srv/app/sub/x".into(),
                    mode: 0o600,
                    data: b"x"
                },
            ]
        );
        assert_eq!(
            plan(&fs, "app", "/srv").unwrap()[0],
            Write::Dir {
                remote: "/srv/app".into(),
                mode: 0o755
            }
        );
        assert_eq!(
            plan(&fs, "app", "/srv").unwrap().len(),
            4,
            "apple is not inside app/"
        );
        assert_eq!(
            plan(&fs, "tool", "/usr/local/bin/").unwrap(),
            vec![Write::File {
                remote: "/usr/local/bin/tool".into(),
                mode: 0o755,
                data: b"#!"
            }]
        );
        assert_eq!(
            plan(&fs, "tool", "/opt/t").unwrap(),
            vec![Write::File {
                remote: "/opt/t".into(),
                mode: 0o755,
                data: b"#!"
            }]
        );
        assert_eq!(
            plan(&fs, "nope", "/x").unwrap_err().to_string(),
            "nope is not in the environment directory (or was not sent)"
        );
    }
}
