//! Thin executors for the network plans: run `ip` and `nft` with argv (never
//! a shell), behind small traits so the supervisor can be tested without root.

use super::plan::IpBatch;
use super::NetError;
use async_trait::async_trait;
use std::path::Path;
use std::process::Stdio;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

#[async_trait]
pub trait Netlink: Send + Sync {
    /// Run `ip` batches in order; stop at the first failure.
    async fn run(&self, batches: &[IpBatch]) -> Result<(), NetError>;
    fn netns_exists(&self, netns: &str) -> bool;
    fn link_exists(&self, ifname: &str) -> bool;
    /// Named network namespaces starting with `prefix`.
    fn list_netns(&self, prefix: &str) -> Vec<String>;
    /// Set sysctls (`net/ipv4/…`, below /proc/sys) inside a named namespace.
    async fn set_sysctls(&self, netns: &str, sysctls: &[(&str, &str)]) -> Result<(), NetError>;
}

#[async_trait]
pub trait Nft: Send + Sync {
    /// Apply an `nft -f` script as one transaction.
    async fn apply(&self, script: &str) -> Result<(), NetError>;
    /// The table as `nft list table` prints it (None when absent).
    async fn list_table(&self, table: &str) -> Option<String>;
}

/// The real thing: iproute2's `ip` and nftables' `nft`.
pub struct IpCommand;

#[async_trait]
impl Netlink for IpCommand {
    async fn run(&self, batches: &[IpBatch]) -> Result<(), NetError> {
        for batch in batches {
            let mut args: Vec<&str> = Vec::new();
            if let Some(ns) = &batch.netns {
                args.extend(["-n", ns.as_str()]);
            }
            args.extend(["-batch", "-"]);
            let mut script = batch.lines.join("\n");
            script.push('\n');
            let shown = || match &batch.netns {
                Some(ns) => format!("ip -n {ns} -batch: {}", batch.lines.join("; ")),
                None => format!("ip -batch: {}", batch.lines.join("; ")),
            };
            let out = run_with_stdin("ip", &args, &script).await?;
            if !out.status.success() {
                return Err(NetError::Command {
                    command: shown(),
                    stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                });
            }
        }
        Ok(())
    }

    fn netns_exists(&self, netns: &str) -> bool {
        Path::new("/run/netns").join(netns).exists()
    }

    fn link_exists(&self, ifname: &str) -> bool {
        Path::new("/sys/class/net").join(ifname).exists()
    }

    async fn set_sysctls(&self, netns: &str, sysctls: &[(&str, &str)]) -> Result<(), NetError> {
        let path = Path::new("/run/netns").join(netns);
        let owned: Vec<(String, String)> = sysctls
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        tokio::task::spawn_blocking(move || crate::sys::ns::write_net_sysctls(&path, &owned))
            .await
            .map_err(|e| NetError::Command {
                command: format!("setting sysctls in {netns}"),
                stderr: e.to_string(),
            })?
            .map_err(|e| NetError::Command {
                command: format!("setting sysctls in {netns}"),
                stderr: e.to_string(),
            })
    }

    fn list_netns(&self, prefix: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir("/run/netns")
            .map(|rd| {
                rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| n.starts_with(prefix))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

pub struct NftCommand;

#[async_trait]
impl Nft for NftCommand {
    async fn apply(&self, script: &str) -> Result<(), NetError> {
        let out = run_with_stdin("nft", &["-f", "-"], script).await?;
        if !out.status.success() {
            return Err(NetError::Command {
                command: "nft -f -".into(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(())
    }

    async fn list_table(&self, table: &str) -> Option<String> {
        let out = Command::new("nft")
            .args(["list", "table", "ip", table])
            .stdin(Stdio::null())
            .output()
            .await
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

async fn run_with_stdin(
    program: &str,
    args: &[&str],
    input: &str,
) -> Result<std::process::Output, NetError> {
    let spawn_err = |source| NetError::Spawn {
        program: program.to_string(),
        source,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes()).await.map_err(spawn_err)?;
    }
    child.wait_with_output().await.map_err(spawn_err)
}
