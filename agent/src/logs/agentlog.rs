//! The agent's own log as a file, `STATE/agent.log`, beside what it writes
//! to stderr (the journal of its unit under systemd): so `devhost logs
//! --agent` reads the same thing on every host and backend. Each entry
//! starts with its time (RFC 3339, UTC), so `--since` applies. The file is
//! rotated at [`MAX_BYTES`] to `agent.log.1` (one old file is kept), and is
//! readable by root alone (mode 0600): it names containers, users and
//! commands.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Size at which the file is rotated.
pub const MAX_BYTES: u64 = 8 << 20;

/// Where the agent's log of state dir `state` is, and where it is rotated to.
pub fn paths(state: &Path) -> (PathBuf, PathBuf) {
    (state.join("agent.log"), state.join("agent.log.1"))
}

/// The file, rotated as it grows; a `MakeWriter` for tracing. Writing never
/// fails the agent: a file that cannot be written is skipped.
pub struct AgentLog {
    inner: Mutex<Inner>,
}

struct Inner {
    path: PathBuf,
    rotated: PathBuf,
    max: u64,
    file: Option<File>,
    size: u64,
}

fn open(path: &Path) -> Option<(File, u64)> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .ok()?;
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    Some((f, size))
}

impl AgentLog {
    /// The log of state dir `state`.
    pub fn new(state: &Path) -> AgentLog {
        let (path, rotated) = paths(state);
        AgentLog::with_limit(path, rotated, MAX_BYTES)
    }

    fn with_limit(path: PathBuf, rotated: PathBuf, max: u64) -> AgentLog {
        let (file, size) = match open(&path) {
            Some((f, s)) => (Some(f), s),
            None => (None, 0),
        };
        AgentLog {
            inner: Mutex::new(Inner {
                path,
                rotated,
                max,
                file,
                size,
            }),
        }
    }

    fn write_entry(&self, buf: &[u8]) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.file.is_none() {
            if let Some((f, s)) = open(&g.path) {
                g.file = Some(f);
                g.size = s;
            }
        }
        let Some(f) = g.file.as_mut() else {
            return;
        };
        if f.write_all(buf).is_err() {
            g.file = None;
            return;
        }
        g.size += buf.len() as u64;
        if g.size >= g.max {
            let _ = std::fs::rename(&g.path, &g.rotated);
            g.file = None;
            g.size = 0;
        }
    }
}

/// One entry's writer (tracing formats an entry, then writes it whole).
pub struct Entry<'a>(&'a AgentLog);

impl Write for Entry<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write_entry(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for AgentLog {
    type Writer = Entry<'a>;
    fn make_writer(&'a self) -> Entry<'a> {
        Entry(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn entries_go_to_the_file_which_is_rotated_when_full() {
        let d = tempfile::tempdir().unwrap();
        let (path, old) = paths(d.path());
        let log = AgentLog::with_limit(path.clone(), old.clone(), 20);
        log.write_entry(b"0123456789\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "0123456789\n");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600,
            "root's alone"
        );
        log.write_entry(b"abcdefghij\n");
        assert_eq!(
            std::fs::read_to_string(&old).unwrap(),
            "0123456789\nabcdefghij\n",
            "rotated once over 20 bytes"
        );
        assert!(!path.exists());
        log.write_entry(b"next\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "next\n");
        // A second rotation replaces the old file.
        log.write_entry(b"0123456789abcdefghij\n");
        assert_eq!(
            std::fs::read_to_string(&old).unwrap(),
            "next\n0123456789abcdefghij\n"
        );
    }

    #[test]
    fn an_existing_file_is_appended_to_and_counted() {
        let d = tempfile::tempdir().unwrap();
        let (path, old) = paths(d.path());
        std::fs::write(&path, "from before\n").unwrap();
        let log = AgentLog::with_limit(path.clone(), old.clone(), 20);
        log.write_entry(b"now\n");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "from before\nnow\n"
        );
        log.write_entry(b"over\n");
        assert!(old.exists(), "12 + 4 + 5 bytes is over 20");
    }
}
