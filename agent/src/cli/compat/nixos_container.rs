//! `nixos-container` as batou and operators use it on a devhost: `list` (one
//! name per line, for anyone), `status NAME` (up/down/gone), `show-ip NAME`,
//! `start`/`stop`/`destroy NAME`, `run NAME -- COMMAND…` (`devhost exec`)
//! and `root-login NAME` (`devhost shell`). `create` and `update` are
//! refused with a pointer to `devhost ensure`, `login` with one to `devhost
//! shell` and ssh, and the rest of NixOS's tool with one to `devhost`
//! (exit 2).

use crate::api::client::ClientError;
use crate::api::types::{ContainerInfo, ErrorKind, ListResponse};
use crate::cli::{block_on, client, fail, EXIT_FAILED, EXIT_OK, EXIT_USAGE};

const USAGE: &str = "usage: nixos-container list | status NAME | show-ip NAME | start NAME | stop NAME | destroy NAME | run NAME -- COMMAND [ARG...] | root-login NAME";

pub fn main(args: &[String]) -> i32 {
    if let Err(code) = crate::cli::drop_sudo() {
        return code;
    }
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    match args.as_slice() {
        ["list"] => list(),
        ["status", name] => status(name),
        ["show-ip", name] => show_ip(name),
        ["start", name] => crate::cli::cmd::start::run(None, false, name),
        ["stop", name] => crate::cli::cmd::stop::run(None, false, name),
        ["destroy", name] => crate::cli::cmd::destroy::run(None, false, name),
        ["root-login", name] => crate::cli::cmd::shell::run(None, name),
        // NixOS's tool takes the command after `--` (or without it).
        ["run", name, "--", command @ ..] | ["run", name, command @ ..] => {
            let command: Vec<String> = command.iter().map(|s| s.to_string()).collect();
            crate::cli::cmd::exec::run(None, name, &command)
        }
        [cmd @ ("create" | "update"), ..] => {
            eprintln!("error: `nixos-container {cmd}` is not supported on a devhost: containers are built from a channel by the agent; use `devhost ensure NAME CHANNEL [ALIAS…]` (it creates the container, or brings an existing one up to date)");
            EXIT_USAGE
        }
        ["login", ..] => {
            eprintln!("error: `nixos-container login` is not supported on a devhost: use `nixos-container root-login NAME` (or `devhost shell NAME`) for a root shell, or ssh into the container as a user");
            EXIT_USAGE
        }
        [cmd, ..] if ["show-host-key", "restart", "terminate"].contains(cmd) => {
            eprintln!("error: `nixos-container {cmd}` is not supported on a devhost; use `devhost` (see `devhost --help`)");
            EXIT_USAGE
        }
        _ => {
            eprintln!("{USAGE}");
            EXIT_USAGE
        }
    }
}

fn list() -> i32 {
    match block_on(client(None).get_json::<ListResponse>("/v1/containers")) {
        Ok(l) => {
            for c in l.containers {
                println!("{}", c.name);
            }
            EXIT_OK
        }
        Err(e) => fail(&e, false),
    }
}

fn get(name: &str) -> Result<Option<ContainerInfo>, ClientError> {
    let name = name
        .parse::<crate::container::ContainerName>()
        .map_err(|e| ClientError::Api(e.into()))?;
    match block_on(client(None).get_json::<ContainerInfo>(&format!("/v1/containers/{name}"))) {
        Ok(c) => Ok(Some(c)),
        Err(ClientError::Api(e)) if e.kind == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn status(name: &str) -> i32 {
    match get(name) {
        Ok(Some(c)) => {
            println!("{}", if c.running { "up" } else { "down" });
            EXIT_OK
        }
        Ok(None) => {
            println!("gone");
            EXIT_OK
        }
        Err(e) => fail(&e, false),
    }
}

fn show_ip(name: &str) -> i32 {
    match get(name) {
        Ok(Some(c)) => {
            println!("{}", c.address);
            EXIT_OK
        }
        Ok(None) => {
            eprintln!("error: no container named {name}");
            EXIT_FAILED
        }
        Err(e) => fail(&e, false),
    }
}
