//! The address pool: container `i` gets the /30 block `i` of the pool, host
//! side `.1` and container side `.2` of the block, so a /16 holds 16384
//! containers (nixos-container stopped at 254) and every address is derived
//! from the index alone.

use super::NetError;
use crate::container::Addresses;
use ipnet::Ipv4Net;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressPool {
    net: Ipv4Net,
}

impl AddressPool {
    pub fn new(net: Ipv4Net) -> AddressPool {
        AddressPool { net: net.trunc() }
    }

    pub fn capacity(&self) -> u32 {
        let size: u64 = 1u64 << (32 - self.net.prefix_len());
        (size / 4) as u32
    }

    /// The pair for block `index`, if the pool has it.
    pub fn pair(&self, index: u32) -> Option<Addresses> {
        if index >= self.capacity() {
            return None;
        }
        let base = u32::from(self.net.network()) + 4 * index;
        Some(Addresses {
            index,
            host: Ipv4Addr::from(base + 1),
            local: Ipv4Addr::from(base + 2),
        })
    }

    /// The block an address of the pool belongs to.
    pub fn index_of(&self, addr: Ipv4Addr) -> Option<u32> {
        self.net
            .contains(&addr)
            .then(|| (u32::from(addr) - u32::from(self.net.network())) / 4)
    }

    /// The lowest block not in `used`.
    pub fn allocate(&self, used: &BTreeSet<u32>) -> Result<Addresses, NetError> {
        (0..self.capacity())
            .find(|i| !used.contains(i))
            .and_then(|i| self.pair(i))
            .ok_or(NetError::PoolExhausted {
                pool: self.net.to_string(),
                capacity: self.capacity(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(s: &str) -> AddressPool {
        AddressPool::new(s.parse().unwrap())
    }

    #[test]
    fn an_address_tells_its_block() {
        let p = pool("10.5.0.0/16");
        let a = p.pair(300).unwrap();
        assert_eq!(p.index_of(a.local), Some(300));
        assert_eq!(p.index_of(a.host), Some(300));
        assert_eq!(p.index_of("10.6.0.1".parse().unwrap()), None);
    }

    #[test]
    fn pairs() {
        let p = pool("10.233.0.0/16");
        assert_eq!(p.capacity(), 16384);
        assert_eq!(
            p.pair(0).unwrap(),
            Addresses {
                index: 0,
                host: "10.233.0.1".parse().unwrap(),
                local: "10.233.0.2".parse().unwrap()
            }
        );
        assert_eq!(
            p.pair(300).unwrap(),
            Addresses {
                index: 300,
                host: "10.233.4.177".parse().unwrap(),
                local: "10.233.4.178".parse().unwrap()
            }
        );
        assert_eq!(
            p.pair(16383).unwrap().local,
            "10.233.255.254".parse::<Ipv4Addr>().unwrap()
        );
        assert_eq!(p.pair(16384), None);
    }

    #[test]
    fn allocation_fills_gaps_and_more_than_254() {
        let p = pool("10.233.0.0/16");
        let used: BTreeSet<u32> = [0, 1, 3].into();
        assert_eq!(p.allocate(&used).unwrap().index, 2);
        let many: BTreeSet<u32> = (0..300).collect();
        assert_eq!(p.allocate(&many).unwrap().index, 300);
    }

    #[test]
    fn exhaustion_is_a_clear_error() {
        let p = pool("10.99.0.0/29");
        let used: BTreeSet<u32> = [0, 1].into();
        assert_eq!(
            p.allocate(&used).unwrap_err().to_string(),
            "address pool 10.99.0.0/29 is exhausted (2 containers); enlarge network.pool"
        );
    }
}
