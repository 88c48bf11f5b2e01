//! Connection slots: the proxy holds at most `edge.max_connections` client
//! connections in all (HTTP and HTTPS together) and
//! `edge.max_connections_per_source` from one source, so that one client
//! holding thousands of idle connections cannot keep the others out until
//! timeouts free them. A source is an IPv4 address (also when it reaches an
//! IPv6 listener as `::ffff:a.b.c.d`) or an IPv6 /64, the least one client
//! holds. A connection over either bound is closed at once; a slot is given
//! back when its [`Slot`] is dropped (the connection has ended).

use crate::shared::Shared;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    #[error("{max} connections are open (edge.max_connections)")]
    Full { max: usize },
    #[error("{from} holds {max} connections (edge.max_connections_per_source)")]
    SourceFull { from: IpAddr, max: usize },
}

#[derive(Debug)]
pub struct Slots {
    max: usize,
    max_per_source: usize,
    held: Shared<Held>,
}

#[derive(Debug, Default)]
struct Held {
    total: usize,
    /// Only sources holding at least one slot.
    by_source: HashMap<IpAddr, usize>,
}

/// One connection's slot, given back on drop.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    source: IpAddr,
}

/// The source a peer address counts against.
pub fn source_of(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & (!0u128 << 64))),
        },
    }
}

impl Slots {
    pub fn new(max: usize, max_per_source: usize) -> Arc<Slots> {
        Arc::new(Slots {
            max,
            max_per_source,
            held: Shared::default(),
        })
    }

    /// A slot for a connection from `peer`, or which bound it is over.
    pub fn take(self: &Arc<Self>, peer: IpAddr) -> Result<Slot, SlotError> {
        let source = source_of(peer);
        let mut held = self.held.write();
        if held.total >= self.max {
            return Err(SlotError::Full { max: self.max });
        }
        let n = held.by_source.entry(source).or_insert(0);
        if *n >= self.max_per_source {
            return Err(SlotError::SourceFull {
                from: source,
                max: self.max_per_source,
            });
        }
        *n += 1;
        held.total += 1;
        Ok(Slot {
            slots: self.clone(),
            source,
        })
    }

    /// Connections open in all.
    pub fn total(&self) -> usize {
        self.held.read().total
    }

    /// Connections open: in all, and from `peer`'s source.
    #[cfg(test)]
    fn open(&self, peer: IpAddr) -> (usize, usize) {
        let held = self.held.read();
        let n = held.by_source.get(&source_of(peer)).copied().unwrap_or(0);
        (held.total, n)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.slots.held.write();
        held.total -= 1;
        if let Some(n) = held.by_source.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                held.by_source.remove(&self.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_source_over_its_bound_is_refused_while_others_get_slots() {
        let slots = Slots::new(10, 2);
        let _held = [slots.take(ip("192.0.2.1")), slots.take(ip("192.0.2.1"))];
        assert_eq!(
            slots.take(ip("192.0.2.1")).unwrap_err(),
            SlotError::SourceFull {
                from: ip("192.0.2.1"),
                max: 2
            }
        );
        assert!(slots.take(ip("192.0.2.2")).is_ok());
    }

    #[test]
    fn the_total_bound_holds_across_sources() {
        let slots = Slots::new(2, 2);
        let _held = [slots.take(ip("192.0.2.1")), slots.take(ip("192.0.2.2"))];
        assert_eq!(
            slots.take(ip("192.0.2.3")).unwrap_err(),
            SlotError::Full { max: 2 }
        );
    }

    #[test]
    fn a_dropped_slot_is_given_back_and_its_source_forgotten() {
        let slots = Slots::new(10, 1);
        let slot = slots.take(ip("192.0.2.1")).unwrap();
        assert_eq!(slots.open(ip("192.0.2.1")), (1, 1));
        drop(slot);
        assert_eq!(slots.open(ip("192.0.2.1")), (0, 0));
        assert!(slots.held.read().by_source.is_empty(), "no entry left");
        assert!(slots.take(ip("192.0.2.1")).is_ok());
    }

    #[test]
    fn sources_are_ipv4_addresses_and_ipv6_64s() {
        assert_eq!(source_of(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
        assert_eq!(source_of(ip("192.0.2.1")), ip("192.0.2.1"));
        assert_eq!(source_of(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
        let slots = Slots::new(10, 1);
        let _one = slots.take(ip("2001:db8:1:2::1")).unwrap();
        assert!(
            slots.take(ip("2001:db8:1:2::ffff")).is_err(),
            "the same /64"
        );
        assert!(slots.take(ip("2001:db8:1:3::1")).is_ok(), "another /64");
    }
}
