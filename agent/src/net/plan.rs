//! The per-container network plan as `ip` command lines: a named network
//! namespace with the container end of a veth pair (`eth0`, configured before
//! the container's init runs) and the host end `ve-NAME`, /32 addresses and
//! host routes both ways, a default route via the host.

use crate::container::{record::host_interface, Addresses, ContainerName};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetPlan {
    pub netns: String,
    pub host_if: String,
    pub addresses: Addresses,
}

impl NetPlan {
    pub fn new(netns_prefix: &str, name: &ContainerName, addresses: Addresses) -> NetPlan {
        NetPlan {
            netns: netns_name(netns_prefix, name),
            host_if: host_interface(name),
            addresses,
        }
    }

    /// Two `ip -batch` runs that build the network from nothing: the host
    /// side (which creates the namespace), then the inside of the namespace.
    /// Each stops at its first failing line.
    pub fn setup(&self) -> Vec<IpBatch> {
        let ns = self.netns.as_str();
        let ve = self.host_if.as_str();
        let host = self.addresses.host;
        let local = self.addresses.local;
        vec![
            IpBatch::host(vec![
                format!("netns add {ns}"),
                format!("link add {ve} type veth peer name eth0 netns {ns}"),
                format!("addr add {host}/32 dev {ve}"),
                format!("link set {ve} up"),
                format!("route add {local}/32 dev {ve} src {host}"),
            ]),
            IpBatch {
                netns: Some(ns.to_string()),
                lines: vec![
                    "link set lo up".into(),
                    format!("addr add {local}/32 dev eth0"),
                    "link set eth0 up".into(),
                    format!("route add {host}/32 dev eth0 src {local}"),
                    format!("route add default via {host} dev eth0"),
                ],
            },
        ]
    }

    /// Sysctls of the namespace. It belongs to the host (the agent made it
    /// before the container's user namespace existed), so container root
    /// has no privilege over it — it cannot change its addresses or routes
    /// — and would not even bind ports below 1024 or ping; these give every
    /// user inside the ports and ICMP echo sockets, as on a host of its own.
    pub fn sysctls(&self) -> Vec<(&'static str, &'static str)> {
        vec![
            ("net/ipv4/ip_unprivileged_port_start", "0"),
            ("net/ipv4/ping_group_range", "0 2147483647"),
        ]
    }

    /// Removing the namespace destroys the veth pair with it.
    pub fn teardown(&self) -> Vec<IpBatch> {
        vec![IpBatch::host(vec![format!("netns delete {}", self.netns)])]
    }
}

/// Lines for one `ip [-n NETNS] -batch -` run. Every word in them is a
/// validated name or an address, never free text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpBatch {
    pub netns: Option<String>,
    pub lines: Vec<String>,
}

impl IpBatch {
    pub fn host(lines: Vec<String>) -> IpBatch {
        IpBatch { netns: None, lines }
    }
}

pub fn netns_name(prefix: &str, name: &ContainerName) -> String {
    format!("{prefix}{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_commands() {
        let a = Addresses {
            index: 1,
            host: "10.233.0.5".parse().unwrap(),
            local: "10.233.0.6".parse().unwrap(),
        };
        let p = NetPlan::new("devhost-", &"web01".parse().unwrap(), a);
        assert_eq!(
            p.setup(),
            vec![
                IpBatch::host(vec![
                    "netns add devhost-web01".into(),
                    "link add ve-web01 type veth peer name eth0 netns devhost-web01".into(),
                    "addr add 10.233.0.5/32 dev ve-web01".into(),
                    "link set ve-web01 up".into(),
                    "route add 10.233.0.6/32 dev ve-web01 src 10.233.0.5".into(),
                ]),
                IpBatch {
                    netns: Some("devhost-web01".into()),
                    lines: vec![
                        "link set lo up".into(),
                        "addr add 10.233.0.6/32 dev eth0".into(),
                        "link set eth0 up".into(),
                        "route add 10.233.0.5/32 dev eth0 src 10.233.0.6".into(),
                        "route add default via 10.233.0.5 dev eth0".into(),
                    ],
                },
            ]
        );
        assert_eq!(
            p.sysctls(),
            vec![
                ("net/ipv4/ip_unprivileged_port_start", "0"),
                ("net/ipv4/ping_group_range", "0 2147483647"),
            ]
        );
        assert_eq!(
            p.teardown(),
            vec![IpBatch::host(vec!["netns delete devhost-web01".into()])]
        );
    }
}
