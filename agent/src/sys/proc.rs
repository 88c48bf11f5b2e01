//! Process inspection through /proc: enough to re-adopt containers started by
//! an earlier agent (match a pid to its command line and start time, so a
//! recycled pid is never mistaken for a container) and to find a container's
//! init below its systemd-nspawn.

/// A process identified beyond its pid: the kernel's start time (clock ticks
/// since boot) makes the pair unique for the life of the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcessId {
    pub pid: u32,
    pub start_time: u64,
}

impl ProcessId {
    /// The process as it is now, if it exists.
    pub fn of(pid: u32) -> Option<ProcessId> {
        start_time(pid).map(|start_time| ProcessId { pid, start_time })
    }

    /// Still the same process (not exited, pid not recycled, not a zombie)?
    pub fn is_alive(&self) -> bool {
        match stat_fields(self.pid) {
            Some((state, st)) => st == self.start_time && state != 'Z' && state != 'X',
            None => false,
        }
    }
}

/// (state, start time) from /proc/PID/stat; the command name may hold spaces
/// and parentheses, so fields are counted after the last ')'.
fn stat_fields(pid: u32) -> Option<(char, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the comm: state is field 3 (index 0 here), starttime field 22 (index 19).
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

/// The parent pid.
pub fn ppid(pid: u32) -> Option<u32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

pub fn start_time(pid: u32) -> Option<u64> {
    stat_fields(pid).map(|(_, st)| st)
}

/// The argv of a process (empty for kernel threads and vanished processes).
pub fn cmdline(pid: u32) -> Vec<String> {
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(b) => b
            .split(|&c| c == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Direct children of a process.
pub fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Every pid on the host.
pub fn all_pids() -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Does `pid` run in a user namespace other than this process's? `None`
/// when either cannot be read.
pub fn own_user_namespace(pid: u32) -> Option<bool> {
    let theirs = std::fs::read_link(format!("/proc/{pid}/ns/user")).ok()?;
    let ours = std::fs::read_link("/proc/self/ns/user").ok()?;
    Some(theirs != ours)
}

/// Do the real, effective, saved and filesystem uids of `pid` all read 0?
pub fn runs_as_root(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|ids| ids.split_whitespace().all(|id| id == "0"))
        })
        .unwrap_or(false)
}

/// The file name of the program `pid` runs (what `/proc/PID/exe` points
/// to, without the " (deleted)" the kernel adds once it was replaced).
pub fn exe_name(pid: u32) -> Option<String> {
    let target = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let name = target.file_name()?.to_string_lossy().into_owned();
    Some(name.trim_end_matches(" (deleted)").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process() {
        let me = ProcessId::of(std::process::id()).unwrap();
        assert!(me.is_alive());
        let recycled = ProcessId {
            pid: me.pid,
            start_time: me.start_time + 1,
        };
        assert!(!recycled.is_alive());
        assert!(!cmdline(me.pid).is_empty());
        assert!(all_pids().contains(&me.pid));
    }
}
