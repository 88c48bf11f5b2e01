//! SSH sessions into a container, as the host can see them: established
//! TCP connections to port 22 in the container's network namespace, read
//! from `/proc/PID/net/tcp` and `tcp6` of a process in that namespace (its
//! nspawn, which runs there on both backends). The parser is pure; a
//! container reached by SSH some other way (a port other than 22, a tunnel
//! through another container) is not seen.

/// The port SSH sessions are counted on.
pub const SSH_PORT: u16 = 22;

/// Established connections whose local port is `port`, in the text of a
/// `/proc/net/tcp` or `/proc/net/tcp6` table (header line first; columns
/// `sl local_address rem_address st …`, addresses `HEX:PORT` in hex, state
/// `01` for ESTABLISHED).
pub fn established_to(table: &str, port: u16) -> usize {
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let mut cols = line.split_whitespace();
            let local = cols.nth(1);
            let state = cols.nth(1);
            let local_port = local
                .and_then(|l| l.rsplit_once(':'))
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            local_port == Some(port) && state == Some("01")
        })
        .count()
}

/// SSH sessions into the network namespace `pid` runs in (0 when its
/// tables cannot be read: the process is gone).
pub fn sessions(pid: u32) -> usize {
    ["tcp", "tcp6"]
        .iter()
        .map(|t| {
            std::fs::read_to_string(format!("/proc/{pid}/net/{t}"))
                .map(|s| established_to(&s, SSH_PORT))
                .unwrap_or(0)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 20563 1 0000000000000000 100 0 0 10 0
   1: 0200E90A:0016 0100E90A:D2A4 01 00000000:00000000 02:0009E6F4 00000000     0        0 31337 2 0000000000000000 20 4 30 10 -1
   2: 0200E90A:0050 0100E90A:A1B2 01 00000000:00000000 00:00000000 00000000     0        0 31338 1 0000000000000000 20 4 30 10 -1
   3: 0200E90A:C350 08080808:0016 01 00000000:00000000 00:00000000 00000000     0        0 31339 1 0000000000000000 20 4 30 10 -1
   4: 0200E90A:0016 0100E90A:D2A6 06 00000000:00000000 03:00000F5A 00000000     0        0 0 3 0000000000000000
";

    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 20565 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000200E90A:0016 0000000000000000FFFF00000100E90A:D2B0 01 00000000:00000000 02:0009E6F4 00000000     0        0 31340 2 0000000000000000 20 4 30 10 -1
";

    #[test]
    fn counts_established_connections_to_the_port_only() {
        // Not the listener (0A), not HTTP (0050), not an SSH session out of
        // the container (remote port 22), not one in TIME_WAIT (06).
        assert_eq!(established_to(TCP, SSH_PORT), 1);
        assert_eq!(established_to(TCP6, SSH_PORT), 1);
        assert_eq!(established_to(TCP, 80), 1);
        assert_eq!(established_to(TCP, 443), 0);
    }

    #[test]
    fn an_empty_or_broken_table_counts_nothing() {
        assert_eq!(established_to("", SSH_PORT), 0);
        assert_eq!(established_to("header only\n", SSH_PORT), 0);
        assert_eq!(
            established_to("h\n 0: garbage\n 1: x:zz y 01\n", SSH_PORT),
            0
        );
    }

    #[test]
    fn a_process_that_is_gone_has_no_sessions() {
        assert_eq!(sessions(u32::MAX), 0);
    }
}
