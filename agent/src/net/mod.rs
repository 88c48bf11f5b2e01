//! Container networking: the address pool, the per-container plan (netns,
//! veth, addresses, routes), the NAT ruleset, the hosts-file block and the
//! compatibility records. Planners are pure; `exec` runs `ip` and `nft`.

pub mod apply;
pub mod compat;
pub mod hosts;
pub mod nft;
pub mod plan;
pub mod pool;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("address pool {pool} is exhausted ({capacity} containers); enlarge network.pool")]
    PoolExhausted { pool: String, capacity: u32 },
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
}
