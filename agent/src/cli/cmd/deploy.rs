//! `devhost deploy ENVDIR [--var K=V]… [--env-file FILE] [--copy-as U]`: what batou's
//! `fc-nixos-dev-container` provisioning does, without batou: for every
//! `[host:H]` of ENVDIR/environment.cfg provisioned with that method, ensure
//! the container (from the provisioner's channel, with `provision-aliases`)
//! and run ENVDIR/provision.sh in it. Hosts with
//! `provision-dynamic-hostname = True` get a name kept in ENVDIR/hostmap.json
//! (a new random 11-hex name the first time), as batou keeps it.

use crate::api::types::ListResponse;
use crate::cli::{block_on, fail, EXIT_OK, EXIT_USAGE};
use crate::environment::{parse_ini, wanted};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

fn new_name(taken: &[String]) -> String {
    loop {
        let mut b = [0u8; 6];
        if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
            let _ = f.read_exact(&mut b);
        }
        let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
        let name = hex[..11].to_string();
        if !taken.contains(&name) {
            return name;
        }
    }
}

pub fn run(sock: Option<&Path>, json: bool, args: &super::provision::ProvisionArgs) -> i32 {
    let envdir = args.envdir.as_path();
    let cfg_path = envdir.join("environment.cfg");
    let shown = cfg_path.display().to_string();
    let text = match std::fs::read_to_string(&cfg_path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {shown}: {e}");
            return EXIT_USAGE;
        }
    };
    let want = match parse_ini(&shown, &text).and_then(|s| wanted(&shown, &s)) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let map_path = envdir.join("hostmap.json");
    let mut hostmap: BTreeMap<String, String> = std::fs::read(&map_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let client = crate::cli::client(sock);
    let taken: Vec<String> = match block_on(client.get_json::<ListResponse>("/v1/containers")) {
        Ok(l) => l.containers.into_iter().map(|c| c.name).collect(),
        Err(e) => return fail(&e, json),
    };
    let mut map_changed = false;
    for w in &want {
        let name = if w.dynamic {
            match hostmap.get(&w.host) {
                Some(n) => n.clone(),
                None => {
                    let n = new_name(&taken);
                    hostmap.insert(w.host.clone(), n.clone());
                    map_changed = true;
                    n
                }
            }
        } else {
            w.host.clone()
        };
        if map_changed {
            let mut body = serde_json::to_vec_pretty(&hostmap).expect("serializes");
            body.push(b'\n');
            if let Err(e) = crate::sys::fs::atomic_write(&map_path, &body, 0o644) {
                eprintln!("error: writing {}: {e}", map_path.display());
                return crate::cli::EXIT_FAILED;
            }
            map_changed = false;
        }
        if !json {
            println!("==> host {} as container {name}", w.host);
        }
        let code = super::ensure::run(
            sock,
            json,
            &name,
            &w.channel,
            &w.aliases,
            &Default::default(),
        );
        if code != EXIT_OK {
            return code;
        }
        let code = super::provision::run(sock, json, &name, args, Some(&w.devhost));
        if code != EXIT_OK {
            return code;
        }
    }
    EXIT_OK
}
