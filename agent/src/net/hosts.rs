//! The managed block of container names in the hosts file, so the host (and
//! its sshd, for batou's ProxyJump) resolves every container by name. Only the
//! block between the markers is ours; every other line is kept verbatim.

use std::net::Ipv4Addr;

pub const BEGIN: &str = "# BEGIN devhost containers (managed by the devhost agent; do not edit)";
pub const END: &str = "# END devhost containers";

/// `existing` with the managed block replaced by `entries` (sorted by the
/// caller); no block at all when there are no entries.
pub fn render(existing: &str, entries: &[(Ipv4Addr, String)]) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in existing.lines() {
        if line == BEGIN {
            inside = true;
            continue;
        }
        if inside {
            if line == END {
                inside = false;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if !entries.is_empty() {
        if !out.is_empty() && !out.ends_with("\n\n") {
            out.push('\n');
        }
        out.push_str(BEGIN);
        out.push('\n');
        for (ip, name) in entries {
            out.push_str(&format!("{ip} {name}\n"));
        }
        out.push_str(END);
        out.push('\n');
    } else {
        while out.ends_with("\n\n") {
            out.pop();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_replaces_and_removes_block() {
        let base = "127.0.0.1 localhost\n::1 localhost\n";
        let one = render(base, &[("10.233.0.2".parse().unwrap(), "web01".into())]);
        assert_eq!(
            one,
            format!("127.0.0.1 localhost\n::1 localhost\n\n{BEGIN}\n10.233.0.2 web01\n{END}\n")
        );
        let two = render(
            &format!("{one}192.168.1.1 router\n"),
            &[
                ("10.233.0.2".parse().unwrap(), "web01".into()),
                ("10.233.0.6".parse().unwrap(), "api".into()),
            ],
        );
        assert_eq!(
            two,
            format!("127.0.0.1 localhost\n::1 localhost\n\n192.168.1.1 router\n\n{BEGIN}\n10.233.0.2 web01\n10.233.0.6 api\n{END}\n")
        );
        assert_eq!(render(&one, &[]), base);
        assert_eq!(render("", &[]), "");
    }
}
