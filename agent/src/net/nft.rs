//! The agent's one nftables table, rendered whole from the container records
//! and replaced in a single `nft -f` transaction (delete + add), so the kernel
//! never sees a half-written ruleset and stale entries cannot survive.

use ipnet::Ipv4Net;
use std::net::Ipv4Addr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatSpec<'a> {
    pub table: &'a str,
    pub pool: Ipv4Net,
    /// Empty: any interface that is not a container veth.
    pub out_interface: &'a str,
    /// Container-side addresses, sorted.
    pub containers: Vec<Ipv4Addr>,
}

/// The full `nft -f` script that replaces the table.
pub fn ruleset(spec: &NatSpec) -> String {
    let t = spec.table;
    let mut s = String::new();
    // Declaring the table first makes the delete valid on a host without it.
    s.push_str(&format!("table ip {t} {{}}\ndelete table ip {t}\n"));
    s.push_str(&format!("table ip {t} {{\n"));
    s.push_str("\tset containers {\n\t\ttype ipv4_addr\n");
    if !spec.containers.is_empty() {
        let elems: Vec<String> = spec.containers.iter().map(|a| a.to_string()).collect();
        s.push_str(&format!("\t\telements = {{ {} }}\n", elems.join(", ")));
    }
    s.push_str("\t}\n");
    s.push_str(
        "\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n",
    );
    let out = if spec.out_interface.is_empty() {
        "oifname != \"ve-*\"".to_string()
    } else {
        format!("oifname \"{}\"", spec.out_interface)
    };
    s.push_str(&format!(
        "\t\tip saddr @containers ip daddr != {} {out} masquerade\n",
        spec.pool
    ));
    s.push_str("\t}\n}\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_containers_and_interface() {
        let spec = NatSpec {
            table: "devhost",
            pool: "10.233.0.0/16".parse().unwrap(),
            out_interface: "ethsrv",
            containers: vec!["10.233.0.2".parse().unwrap(), "10.233.0.6".parse().unwrap()],
        };
        assert_eq!(
            ruleset(&spec),
            "table ip devhost {}\ndelete table ip devhost\ntable ip devhost {\n\
             \tset containers {\n\t\ttype ipv4_addr\n\t\telements = { 10.233.0.2, 10.233.0.6 }\n\t}\n\
             \tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\
             \t\tip saddr @containers ip daddr != 10.233.0.0/16 oifname \"ethsrv\" masquerade\n\t}\n}\n"
        );
    }

    #[test]
    fn empty_and_any_interface() {
        let spec = NatSpec {
            table: "t",
            pool: "10.9.0.0/24".parse().unwrap(),
            out_interface: "",
            containers: vec![],
        };
        assert_eq!(
            ruleset(&spec),
            "table ip t {}\ndelete table ip t\ntable ip t {\n\
             \tset containers {\n\t\ttype ipv4_addr\n\t}\n\
             \tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\
             \t\tip saddr @containers ip daddr != 10.9.0.0/24 oifname != \"ve-*\" masquerade\n\t}\n}\n"
        );
    }
}
