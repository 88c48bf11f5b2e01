//! Files the old tooling wrote that other tools read: `/etc/devhost/NAME.json`
//! on the host, `/etc/nixos/enc.json` and `/etc/nixos/local.nix` inside the
//! container. Rendered here, written by the supervisor.

use crate::container::Record;
use serde::Serialize;

#[derive(Serialize)]
struct HostRecord<'a> {
    name: &'a str,
    ip: String,
    aliases: Vec<&'a str>,
    enabled: bool,
}

/// `{"name": …, "ip": …, "aliases": […], "enabled": …}`
pub fn host_json(r: &Record) -> String {
    serde_json::to_string(&HostRecord {
        name: r.name.as_str(),
        ip: r.addresses.local.to_string(),
        aliases: r.aliases.iter().map(|a| a.as_str()).collect(),
        enabled: r.enabled,
    })
    .expect("plain data serializes")
        + "\n"
}

/// `/etc/nixos/enc.json` inside the container: where `fc-manage -c` finds
/// the channel to switch to.
pub fn enc_json(r: &Record) -> String {
    serde_json::json!({
        "parameters": { "environment_url": r.channel.as_str(), "environment": "container" }
    })
    .to_string()
        + "\n"
}

/// `/etc/nixos/local.nix` inside the container: its host name.
pub fn local_nix(r: &Record) -> String {
    format!(
        "{{ ... }}:\n{{\n  networking.hostName = \"{}\";\n}}\n",
        r.name
    )
}
