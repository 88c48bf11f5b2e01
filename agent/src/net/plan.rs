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

    /// `ip` argv lists (without the program) that build the network from
    /// nothing. Run in order; the first failure stops.
    pub fn setup(&self) -> Vec<Vec<String>> {
        let ns = self.netns.as_str();
        let ve = self.host_if.as_str();
        let host = self.addresses.host.to_string();
        let local = self.addresses.local.to_string();
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        vec![
            v(&["netns", "add", ns]),
            v(&[
                "link", "add", ve, "type", "veth", "peer", "name", "eth0", "netns", ns,
            ]),
            v(&["addr", "add", &format!("{host}/32"), "dev", ve]),
            v(&["link", "set", ve, "up"]),
            v(&[
                "route",
                "add",
                &format!("{local}/32"),
                "dev",
                ve,
                "src",
                &host,
            ]),
            v(&["-n", ns, "link", "set", "lo", "up"]),
            v(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{local}/32"),
                "dev",
                "eth0",
            ]),
            v(&["-n", ns, "link", "set", "eth0", "up"]),
            v(&[
                "-n",
                ns,
                "route",
                "add",
                &format!("{host}/32"),
                "dev",
                "eth0",
                "src",
                &local,
            ]),
            v(&[
                "-n", ns, "route", "add", "default", "via", &host, "dev", "eth0",
            ]),
        ]
    }

    /// Removing the namespace destroys the veth pair with it.
    pub fn teardown(&self) -> Vec<Vec<String>> {
        vec![vec!["netns".into(), "delete".into(), self.netns.clone()]]
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
        let lines: Vec<String> = p.setup().iter().map(|c| c.join(" ")).collect();
        assert_eq!(
            lines,
            vec![
                "netns add devhost-web01",
                "link add ve-web01 type veth peer name eth0 netns devhost-web01",
                "addr add 10.233.0.5/32 dev ve-web01",
                "link set ve-web01 up",
                "route add 10.233.0.6/32 dev ve-web01 src 10.233.0.5",
                "-n devhost-web01 link set lo up",
                "-n devhost-web01 addr add 10.233.0.6/32 dev eth0",
                "-n devhost-web01 link set eth0 up",
                "-n devhost-web01 route add 10.233.0.5/32 dev eth0 src 10.233.0.6",
                "-n devhost-web01 route add default via 10.233.0.5 dev eth0",
            ]
        );
        assert_eq!(
            p.teardown(),
            vec![vec![
                "netns".to_string(),
                "delete".into(),
                "devhost-web01".into()
            ]]
        );
    }
}
