//! Records the agent cannot trust are kept aside, never deleted. A record
//! file that does not parse, or that names another container, is moved from
//! `records/` to `quarantine/` at start; its name stays held (no one may
//! create it, nothing of it on the host is touched as an orphan) until an
//! admin adopts or forgets it. The files stay in `quarantine/` across
//! restarts, so a held name stays held.
//!
//! A quarantined file is named `NAME.json`, or `NAME.SECONDS.json` when
//! one of that name is already there (names have no dots).

use crate::container::{ContainerName, Record};
use std::path::{Path, PathBuf};

/// A record file set aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    /// The container the file belongs to (from its file name); `None` for a
    /// file whose name is no container name (kept, reported, holds nothing).
    pub name: Option<ContainerName>,
    /// Where it is kept now.
    pub file: PathBuf,
    /// Why it is not trusted.
    pub why: String,
    /// The address block it held, when the file (or the compatibility
    /// record of the old tool) still tells it.
    pub index: Option<u32>,
}

/// Why the bytes of `file` (named for `stem`) are no record we can use.
pub fn verdict(stem: &str, bytes: &[u8]) -> Result<Record, String> {
    let r: Record = serde_json::from_slice(bytes).map_err(|e| format!("not a record: {e}"))?;
    if r.name.as_str() != stem {
        return Err(format!(
            "the file is named for {stem:?} but records {:?}",
            r.name.as_str()
        ));
    }
    Ok(r)
}

/// The address block a damaged record still shows: read leniently, so a
/// file with a field of the wrong type elsewhere still tells it.
pub fn index_hint(bytes: &[u8]) -> Option<u32> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    v.get("addresses")?
        .get("index")?
        .as_u64()
        .and_then(|i| u32::try_from(i).ok())
}

/// The container a quarantined or record file is for: its name up to the
/// first dot, when that is a container name.
pub fn name_of(file: &Path) -> Option<ContainerName> {
    let fname = file.file_name()?.to_str()?;
    let stem = fname.split('.').next()?;
    stem.parse().ok()
}

/// A free path in `dir` for the record file of `stem`.
pub fn destination(dir: &Path, stem: &str, now_secs: i64) -> PathBuf {
    let plain = dir.join(format!("{stem}.json"));
    if !plain.exists() {
        return plain;
    }
    (0..)
        .map(|n| {
            dir.join(if n == 0 {
                format!("{stem}.{now_secs}.json")
            } else {
                format!("{stem}.{now_secs}-{n}.json")
            })
        })
        .find(|p| !p.exists())
        .expect("a free name")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_truncated_record_is_not_a_record() {
        let e = verdict("web", br#"{"name": "web", "own"#).unwrap_err();
        assert!(e.starts_with("not a record: "), "{e}");
    }

    #[test]
    fn a_record_for_another_name_is_refused() {
        let r = Record::new(
            "other".parse().unwrap(),
            1000,
            "https://example.org/c".parse().unwrap(),
            crate::net::pool::AddressPool::new("10.0.0.0/24".parse().unwrap())
                .pair(3)
                .unwrap(),
            chrono::Utc::now(),
        );
        let bytes = serde_json::to_vec(&r).unwrap();
        assert_eq!(
            verdict("web", &bytes).unwrap_err(),
            "the file is named for \"web\" but records \"other\""
        );
        assert_eq!(verdict("other", &bytes).unwrap(), r);
        assert_eq!(index_hint(&bytes), Some(3));
    }

    #[test]
    fn the_index_is_read_from_a_record_with_a_wrong_field() {
        let bytes = br#"{"name": 7, "addresses": {"index": 12, "host": 1}}"#;
        assert!(verdict("web", bytes).is_err());
        assert_eq!(index_hint(bytes), Some(12));
        assert_eq!(index_hint(b"{\"addresses\": {\"index\": -1}}"), None);
        assert_eq!(index_hint(b"{\"addr"), None);
    }

    #[test]
    fn names_come_from_the_file_name_up_to_the_first_dot() {
        assert_eq!(
            name_of(Path::new("/q/web.json")),
            Some("web".parse().unwrap())
        );
        assert_eq!(
            name_of(Path::new("/q/web.1700000000.json")),
            Some("web".parse().unwrap())
        );
        assert_eq!(name_of(Path::new("/q/not a name!.json")), None);
    }

    #[test]
    fn a_second_file_for_a_name_does_not_replace_the_first() {
        let d = tempfile::tempdir().unwrap();
        let first = destination(d.path(), "web", 5);
        assert_eq!(first, d.path().join("web.json"));
        std::fs::write(&first, "x").unwrap();
        let second = destination(d.path(), "web", 5);
        assert_eq!(second, d.path().join("web.5.json"));
        std::fs::write(&second, "y").unwrap();
        assert_eq!(
            destination(d.path(), "web", 5),
            d.path().join("web.5-1.json")
        );
    }
}
