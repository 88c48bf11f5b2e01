//! `devhost status NAME`.

use crate::api::types::ContainerInfo;
use std::path::Path;

pub fn run(sock: Option<&Path>, json: bool, name: &str) -> i32 {
    let name = match super::name_or_exit(name) {
        Ok(n) => n,
        Err(code) => return code,
    };
    let client = crate::cli::client(sock);
    let c: ContainerInfo =
        match crate::cli::block_on(client.get_json(&format!("/v1/containers/{name}"))) {
            Ok(c) => c,
            Err(e) => return crate::cli::fail(&e, json),
        };
    if json {
        println!("{}", serde_json::to_string_pretty(&c).expect("serializes"));
        return 0;
    }
    println!("name:        {}", c.name);
    println!("state:       {}", super::list::state(&c));
    if let Some(w) = &c.waiting {
        println!("waiting:     {w}");
    }
    if let Some(pid) = c.pid {
        println!("pid:         {pid}");
    }
    if c.user_namespace == Some(false) {
        println!("isolation:   none: it runs without a user namespace (started before devhost isolated containers); its root is host root until it restarts (devhost stop, devhost start)");
    }
    println!("address:     {} (host side {})", c.address, c.host_address);
    println!("aliases:     {}", c.aliases.join(" "));
    if !c.upstreams.is_empty() {
        let u: Vec<String> = c
            .upstreams
            .iter()
            .map(|(k, v)| {
                if k.is_empty() {
                    v.clone()
                } else {
                    format!("{k}={v}")
                }
            })
            .collect();
        println!("upstreams:   {}", u.join(" "));
    }
    if let Some(cert) = &c.certificate {
        println!("certificate: {}", describe(cert));
    }
    println!("channel:     {}", c.channel);
    if let Some(d) = c.disk_size {
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        match &c.disk_quota {
            Some(how) => println!(
                "disk size:   {:.1} GiB, enforced ({how}); {:.2} GiB used",
                gib(d),
                gib(c.disk_used.unwrap_or(0))
            ),
            None => println!(
                "disk size:   {:.1} GiB asked for; not enforced (container roots on btrfs with quotas enabled would be)",
                gib(d)
            ),
        }
    }
    if let Some(u) = &c.image_url {
        println!("image:       {u} (recorded; a container needs no image)");
    }
    println!("system:      {}", c.system_path.as_deref().unwrap_or("-"));
    println!("owner uid:   {}", c.owner_uid);
    println!("created:     {}", c.created);
    println!("last deploy: {}", c.last_deploy);
    if let Some(t) = &c.last_activity {
        println!("last use:    {t}");
    }
    println!("enabled:     {}", c.enabled);
    if c.pinned {
        println!("pinned:      yes");
    }
    if let Some(t) = &c.keep_until {
        println!("kept until:  {t}");
    }
    if let Some(d) = &c.cleanup {
        println!("cleanup:     {d}");
    }
    if let Some(s) = &c.sleep {
        println!("sleep:       {s}");
    }
    0
}

/// One line on a certificate: what is held, then what is under way.
fn describe(c: &crate::certs::CertInfo) -> String {
    let mut s = c.state.as_str().to_string();
    if !c.names.is_empty() {
        s += &format!(
            "; {} from {} until {}",
            c.names.join(" "),
            c.issuer.as_deref().unwrap_or("?"),
            c.valid_until.as_deref().unwrap_or("?")
        );
    }
    if let Some(d) = &c.detail {
        s += &format!("; {d}");
    }
    if let Some(t) = &c.next_try {
        s += &format!("; next try {t}");
    }
    s
}
