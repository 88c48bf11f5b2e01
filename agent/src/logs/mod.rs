//! Reading logs for `devhost logs`: a container's console (a file nspawn
//! writes under the direct backend, the unit's journal under the systemd
//! backend), its build and provisioning logs, and the agent's own log
//! ([`agentlog`]). What to read is planned here purely ([`Source`],
//! [`Want`], [`journal_argv`], [`initial`], [`first_range`]); [`stream`]
//! sends it, and with `follow` what is added after, until the reader goes
//! away. A container decides how long its console, build and provisioning
//! logs get, so they are never read whole: their last lines are found from
//! the end and everything is sent in chunks as the reader takes them.
//!
//! `--since` needs times: the journal has them, and so has the agent's log
//! (each entry starts with an RFC 3339 time). The console file, the build
//! and the provisioning log are written as the programs print them,
//! without times, and a `--since` for them is refused (bad request).

pub mod agentlog;
pub mod since;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use std::path::PathBuf;

/// Where a log is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A file that grows at its end. `timestamped`: every entry starts with
    /// its time; `rotated`: where the file is moved when it is rotated (it
    /// is read to its end there before the new one is followed).
    File {
        path: PathBuf,
        timestamped: bool,
        rotated: Option<PathBuf>,
    },
    /// The journal of a systemd unit. `from`: the container's creation;
    /// what the unit logged before is an earlier container's of the same
    /// name (perhaps another user's), never sent.
    Journal {
        unit: String,
        from: Option<DateTime<Utc>>,
    },
}

impl Source {
    /// The same source, where a journal holds only what was logged from
    /// `created` on (the container's creation).
    pub fn created(self, created: DateTime<Utc>) -> Source {
        match self {
            Source::Journal { unit, .. } => Source::Journal {
                unit,
                from: Some(created),
            },
            file => file,
        }
    }
}

/// What a reader asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Want {
    /// The last this many lines (of those since `since`).
    pub lines: usize,
    pub since: Option<DateTime<Utc>>,
    /// Keep sending what is added.
    pub follow: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogsError {
    #[error("the {what} has no times in it, so --since cannot be applied (use --lines); times are in the systemd backend's console journal and in the agent's log")]
    NoTimes { what: String },
}

/// Check `want` against the source (`what` names it for the message).
pub fn check(source: &Source, want: &Want, what: &str) -> Result<(), LogsError> {
    match source {
        Source::File {
            timestamped: false, ..
        } if want.since.is_some() => Err(LogsError::NoTimes {
            what: what.to_string(),
        }),
        _ => Ok(()),
    }
}

/// `journalctl` for the unit's journal as `want` asks, messages only, and
/// nothing logged before `from`.
pub fn journal_argv(unit: &str, from: Option<DateTime<Utc>>, want: &Want) -> Vec<String> {
    let mut v: Vec<String> = [
        "journalctl",
        "--no-pager",
        "--quiet",
        "-o",
        "cat",
        "-u",
        unit,
    ]
    .map(String::from)
    .to_vec();
    // journalctl takes up to i32::MAX lines, or all.
    if want.lines >= i32::MAX as usize {
        v.push("--lines=all".into());
    } else {
        v.push(format!("--lines={}", want.lines));
    }
    let since = match (want.since, from) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    if let Some(t) = since {
        // journalctl takes seconds since the epoch with a fraction.
        match t.timestamp_subsec_micros() {
            0 => v.push(format!("--since=@{}", t.timestamp())),
            us => v.push(format!("--since=@{}.{us:06}", t.timestamp())),
        }
    }
    if want.follow {
        v.push("--follow".into());
    }
    v
}

/// What to send first of a file's content `bytes`: the last `want.lines`
/// lines (of those since `want.since`, for a timestamped file), each ending
/// in a newline; and how far into `bytes` following starts (after the last
/// whole line: a line being written is sent whole once it is done).
pub fn initial(bytes: &[u8], want: &Want, timestamped: bool) -> (String, usize) {
    let whole = bytes
        .iter()
        .rposition(|&b| b == b'\n')
        .map(|p| p + 1)
        .unwrap_or(0);
    let upto = if want.follow { whole } else { bytes.len() };
    let text = String::from_utf8_lossy(&bytes[..upto]);
    let lines: Vec<&str> = match (want.since, timestamped) {
        (Some(t), true) => since::lines_since(&text, t),
        _ => text.lines().collect(),
    };
    let start = lines.len().saturating_sub(want.lines);
    let mut out = String::new();
    for l in &lines[start..] {
        out.push_str(l);
        out.push('\n');
    }
    (out, upto)
}

/// How often a followed file is looked at.
pub const FOLLOW_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

/// Send the log as `want` asks, in chunks; the stream ends with the log
/// (without `follow`), or when the receiver is dropped.
pub fn stream(source: Source, want: Want) -> tokio::sync::mpsc::Receiver<Bytes> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        match source {
            Source::File {
                path,
                timestamped,
                rotated,
            } => follow_file(path, rotated, timestamped, want, tx).await,
            Source::Journal { unit, from } => follow_journal(&unit, from, want, tx).await,
        }
    });
    rx
}

fn identity(m: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}

/// Bytes read at a time, backwards looking for lines or forwards sending.
const CHUNK: usize = 64 * 1024;

/// The offset of the newline nearest before `end` (searching back no
/// further than `floor`) for which `stop` (given each newline's offset,
/// from the last) says so; `None` when none did. Reads backwards in
/// chunks: memory stays [`CHUNK`] however long the file or its lines.
fn newline_before<F: std::io::Read + std::io::Seek>(
    f: &mut F,
    end: u64,
    mut stop: impl FnMut(u64) -> bool,
) -> std::io::Result<Option<u64>> {
    use std::io::SeekFrom;
    let mut buf = vec![0u8; CHUNK];
    let mut upto = end;
    while upto > 0 {
        let from = upto.saturating_sub(CHUNK as u64);
        let part = &mut buf[..(upto - from) as usize];
        f.seek(SeekFrom::Start(from))?;
        f.read_exact(part)?;
        for (i, _) in part.iter().enumerate().rev().filter(|(_, &b)| b == b'\n') {
            if stop(from + i as u64) {
                return Ok(Some(from + i as u64));
            }
        }
        upto = from;
    }
    Ok(None)
}

/// Where to start and end sending a file of `len` bytes first (the same
/// lines as [`initial`] takes for a file without times, found from its
/// end): the last `want.lines` lines; following, only whole ones (a line
/// being written is sent whole once it is done, from `end`).
pub fn first_range<F: std::io::Read + std::io::Seek>(
    f: &mut F,
    len: u64,
    want: &Want,
) -> std::io::Result<(u64, u64)> {
    let end = if want.follow {
        newline_before(f, len, |_| true)?.map_or(0, |p| p + 1)
    } else {
        len
    };
    if want.lines == 0 || end == 0 {
        return Ok((end, end));
    }
    // The last line's own newline does not start a line.
    let mut last = [0u8];
    f.seek(std::io::SeekFrom::Start(end - 1))?;
    f.read_exact(&mut last)?;
    let scan_end = if last[0] == b'\n' { end - 1 } else { end };
    let mut found = 0;
    let start = newline_before(f, scan_end, |_| {
        found += 1;
        found == want.lines
    })?
    .map_or(0, |p| p + 1);
    Ok((start, end))
}

/// What stopped sending.
enum Sent {
    /// This many bytes went.
    Bytes(u64),
    /// The reader went away.
    Gone,
}

/// Send bytes `from..to` of `f` (to its end: `None`) in chunks, as fast as
/// the reader takes them.
async fn send_range(
    f: &mut std::fs::File,
    from: u64,
    to: Option<u64>,
    tx: &tokio::sync::mpsc::Sender<Bytes>,
) -> Sent {
    use std::io::{Read, Seek};
    if f.seek(std::io::SeekFrom::Start(from)).is_err() {
        return Sent::Bytes(0);
    }
    let mut sent = 0u64;
    loop {
        let want = match to {
            Some(to) => (to.saturating_sub(from + sent)).min(CHUNK as u64) as usize,
            None => CHUNK,
        };
        if want == 0 {
            return Sent::Bytes(sent);
        }
        let mut buf = vec![0u8; want];
        let n = match f.read(&mut buf) {
            Ok(0) | Err(_) => return Sent::Bytes(sent),
            Ok(n) => n,
        };
        buf.truncate(n);
        if tx.send(Bytes::from(buf)).await.is_err() {
            return Sent::Gone;
        }
        sent += n as u64;
    }
}

/// Send the file at `path` from `offset` to its end, if it is the file
/// `id`.
async fn send_from(
    path: &std::path::Path,
    id: (u64, u64),
    offset: u64,
    tx: &tokio::sync::mpsc::Sender<Bytes>,
) -> Sent {
    let Ok(mut f) = std::fs::File::open(path) else {
        return Sent::Bytes(0);
    };
    if f.metadata().map(|m| identity(&m)).ok() != Some(id) {
        return Sent::Bytes(0);
    }
    send_range(&mut f, offset, None, tx).await
}

/// What is sent first of the file `f`, `len` bytes long: its last lines,
/// read from its end and sent in chunks (a file without times, which may
/// be as long as a container made it), or — a file with times, the
/// agent's own log, kept small by rotation — the lines [`initial`] picks.
/// Where following goes on, or `None` when the reader went away.
async fn send_first(
    f: &mut std::fs::File,
    len: u64,
    timestamped: bool,
    want: &Want,
    tx: &tokio::sync::mpsc::Sender<Bytes>,
) -> Option<u64> {
    if timestamped {
        use std::io::Read;
        let mut bytes = Vec::new();
        let _ = f.read_to_end(&mut bytes);
        let (first, upto) = initial(&bytes, want, true);
        if !first.is_empty() && tx.send(Bytes::from(first)).await.is_err() {
            return None;
        }
        return Some(upto as u64);
    }
    let Ok((start, end)) = first_range(f, len, want) else {
        return Some(len);
    };
    match send_range(f, start, Some(end), tx).await {
        Sent::Gone => return None,
        Sent::Bytes(n) if n > 0 && !want.follow => {
            // Every line ends in a newline, the last one too.
            let mut last = [0u8];
            use std::io::{Read, Seek};
            let ends = f.seek(std::io::SeekFrom::Start(start + n - 1)).is_ok()
                && f.read_exact(&mut last).is_ok()
                && last[0] == b'\n';
            if !ends && tx.send(Bytes::from_static(b"\n")).await.is_err() {
                return None;
            }
        }
        Sent::Bytes(_) => {}
    }
    Some(end)
}

async fn follow_file(
    path: PathBuf,
    rotated: Option<PathBuf>,
    timestamped: bool,
    want: Want,
    tx: tokio::sync::mpsc::Sender<Bytes>,
) {
    let (mut offset, mut id) = (0, (0, 0));
    if let Ok(mut f) = std::fs::File::open(&path) {
        let meta = f.metadata().ok();
        id = meta.as_ref().map(identity).unwrap_or_default();
        let len = meta.map_or(0, |m| m.len());
        match send_first(&mut f, len, timestamped, &want, &tx).await {
            Some(upto) => offset = upto,
            None => return,
        }
    }
    if !want.follow {
        return;
    }
    loop {
        tokio::select! {
            _ = tx.closed() => return,
            _ = tokio::time::sleep(FOLLOW_INTERVAL) => {}
        }
        let Ok(meta) = std::fs::metadata(&path) else {
            continue; // between a rotation's rename and the new file
        };
        if identity(&meta) != id {
            // Rotated (or replaced): the rest of the old one, where it went.
            if let Some(old) = &rotated {
                if let Sent::Gone = send_from(old, id, offset, &tx).await {
                    return;
                }
            }
            id = identity(&meta);
            offset = 0;
        } else if meta.len() < offset {
            offset = 0; // truncated
        }
        if meta.len() > offset {
            match send_from(&path, id, offset, &tx).await {
                Sent::Bytes(n) => offset += n,
                Sent::Gone => return,
            }
        }
    }
}

async fn follow_journal(
    unit: &str,
    from: Option<DateTime<Utc>>,
    want: Want,
    tx: tokio::sync::mpsc::Sender<Bytes>,
) {
    use tokio::io::AsyncReadExt;
    let argv = journal_argv(unit, from, &want);
    let child = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            let _ = tx
                .send(Bytes::from(format!("(journalctl failed: {e})\n")))
                .await;
            return;
        }
    };
    let Some(mut out) = child.stdout.take() else {
        return;
    };
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            _ = tx.closed() => break,
            n = out.read(&mut buf) => match n {
                Ok(n) if n > 0 => {
                    if tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                        break;
                    }
                }
                _ => break,
            },
        }
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
    // What journalctl complained about, if anything (and anyone listens).
    if let Some(mut err) = child.stderr.take() {
        let mut e = Vec::new();
        let _ = (&mut err).take(4096).read_to_end(&mut e).await;
        let e = String::from_utf8_lossy(&e);
        if !e.trim().is_empty() {
            let _ = tx
                .send(Bytes::from(format!("(journalctl: {})\n", e.trim())))
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(lines: usize, follow: bool) -> Want {
        Want {
            lines,
            since: None,
            follow,
        }
    }

    #[test]
    fn the_journal_as_asked() {
        assert_eq!(
            journal_argv("devhost-web01.service", None, &want(200, false)),
            [
                "journalctl",
                "--no-pager",
                "--quiet",
                "-o",
                "cat",
                "-u",
                "devhost-web01.service",
                "--lines=200"
            ]
        );
        let t = DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let argv = journal_argv(
            "u",
            None,
            &Want {
                lines: 5,
                since: Some(t),
                follow: true,
            },
        );
        assert_eq!(argv[7..], ["--lines=5", "--since=@1796119200", "--follow"]);
        assert_eq!(
            journal_argv("u", None, &want(u32::MAX as usize, false))[7],
            "--lines=all"
        );
    }

    #[test]
    fn the_journal_starts_with_the_containers_creation() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let created = at("2026-12-01T10:00:00.250Z");
        let source = Source::Journal {
            unit: "devhost-web01.service".into(),
            from: None,
        }
        .created(created);
        let Source::Journal { unit, from } = &source else {
            panic!("{source:?}")
        };
        // To the microsecond: an earlier container's last words may be in
        // the second this one was created, and this one's first ones.
        assert_eq!(
            journal_argv(unit, *from, &want(5, false))[8..],
            ["--since=@1796119200.250000"]
        );
        let since = |t| Want {
            lines: 5,
            since: Some(at(t)),
            follow: true,
        };
        assert_eq!(
            journal_argv(unit, *from, &since("2026-11-01T00:00:00Z"))[8..],
            ["--since=@1796119200.250000", "--follow"],
            "an earlier --since is the creation"
        );
        assert_eq!(
            journal_argv(unit, *from, &since("2026-12-01T11:00:00Z"))[8..],
            ["--since=@1796122800", "--follow"],
            "a later one is kept"
        );
        let file = Source::File {
            path: "/x".into(),
            timestamped: false,
            rotated: None,
        };
        assert_eq!(
            file.clone().created(created),
            file,
            "a file is its container's own"
        );
    }

    #[test]
    fn the_first_part_of_a_file() {
        let log = b"one\ntwo\nthree\npart";
        assert_eq!(
            initial(log, &want(2, false), false),
            ("three\npart\n".into(), 18)
        );
        // Following: the line being written waits until it is whole.
        assert_eq!(
            initial(log, &want(2, true), false),
            ("two\nthree\n".into(), 14)
        );
        assert_eq!(initial(log, &want(0, true), false), (String::new(), 14));
        assert_eq!(initial(b"", &want(5, true), false), (String::new(), 0));
    }

    #[test]
    fn the_first_range_found_from_the_end_is_what_initial_takes() {
        let texts = [
            "",
            "a",
            "a\n",
            "one\ntwo\nthree\npart",
            "a\n\nb\n\n",
            "\n\n\n",
            "no newline at all",
        ];
        for text in texts {
            for lines in [0, 1, 2, 3, 10] {
                for follow in [false, true] {
                    let w = want(lines, follow);
                    let mut f = std::io::Cursor::new(text.as_bytes());
                    let (start, end) = first_range(&mut f, text.len() as u64, &w).unwrap();
                    let mut got = text[start as usize..end as usize].to_string();
                    if !follow && !got.is_empty() && !got.ends_with('\n') {
                        got.push('\n');
                    }
                    assert_eq!(
                        (got, end as usize),
                        initial(text.as_bytes(), &w, false),
                        "{text:?}, {lines} lines, follow {follow}"
                    );
                }
            }
        }
        // Lines longer than what is read at a time.
        let long = format!("{}\n{}\nlast", "x".repeat(3 * CHUNK), "y".repeat(CHUNK + 1));
        let mut f = std::io::Cursor::new(long.as_bytes());
        assert_eq!(
            first_range(&mut f, long.len() as u64, &want(2, false)).unwrap(),
            (3 * CHUNK as u64 + 1, long.len() as u64)
        );
    }

    #[tokio::test]
    async fn the_last_lines_of_a_huge_file_are_read_from_its_end() {
        use std::io::Write;
        // A terabyte (a hole, no disk), then three lines: read whole, it
        // would not fit in memory.
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("console.log");
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(1 << 40).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"\none\ntwo\nthree\n").unwrap();
        for follow in [false, true] {
            let mut rx = stream(
                Source::File {
                    path: path.clone(),
                    timestamped: false,
                    rotated: None,
                },
                want(2, follow),
            );
            let mut got = Vec::new();
            while got.len() < "two\nthree\n".len() {
                let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
                    .await
                    .expect("the last lines come at once");
                match chunk {
                    Some(c) => got.extend(c),
                    None => break,
                }
            }
            assert_eq!(
                String::from_utf8_lossy(&got),
                "two\nthree\n",
                "follow {follow}"
            );
        }
    }

    #[test]
    fn since_applies_to_timestamped_files_only() {
        let log = b"2026-12-01T09:00:00Z old\n2026-12-01T11:00:00Z new\n  more\n";
        let since = DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let w = Want {
            lines: 100,
            since: Some(since),
            follow: false,
        };
        assert_eq!(
            initial(log, &w, true).0,
            "2026-12-01T11:00:00Z new\n  more\n"
        );
        let file = |timestamped| Source::File {
            path: "/x".into(),
            timestamped,
            rotated: None,
        };
        assert_eq!(
            check(&file(false), &w, "console log of web01"),
            Err(LogsError::NoTimes {
                what: "console log of web01".into()
            })
        );
        assert_eq!(check(&file(true), &w, "agent's log"), Ok(()));
        assert_eq!(check(&file(false), &want(1, true), "x"), Ok(()));
        assert_eq!(
            check(
                &Source::Journal {
                    unit: "u".into(),
                    from: None
                },
                &w,
                "console"
            ),
            Ok(())
        );
    }

    #[tokio::test]
    async fn a_followed_file_sends_what_is_added_also_across_a_rotation() {
        use std::io::Write;
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("agent.log");
        let old = d.path().join("agent.log.1");
        std::fs::write(&path, "first\n").unwrap();
        let mut rx = stream(
            Source::File {
                path: path.clone(),
                timestamped: false,
                rotated: Some(old.clone()),
            },
            want(10, true),
        );
        assert_eq!(rx.recv().await.unwrap(), "first\n");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"second\n").unwrap();
        assert_eq!(rx.recv().await.unwrap(), "second\n");
        // Written, then rotated before the reader looked: nothing is lost.
        f.write_all(b"third\n").unwrap();
        std::fs::rename(&path, &old).unwrap();
        std::fs::write(&path, "fourth\n").unwrap();
        let mut got = Vec::new();
        while got.len() < "third\nfourth\n".len() {
            got.extend(rx.recv().await.unwrap());
        }
        assert_eq!(String::from_utf8(got).unwrap(), "third\nfourth\n");
        // The reader goes away: the stream's task ends.
        drop(rx);
    }
}
