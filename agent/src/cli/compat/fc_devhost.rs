//! `fc-devhost`, the front-end batou ≥ 2.6 calls (`method =
//! fc-nixos-dev-vm`, compat-contract §4), served with containers:
//!
//! ```text
//! sudo fc-devhost list [-l] [--user]
//! sudo fc-devhost destroy NAME
//! sudo fc-devhost ensure --memory M --cpu C --aliases "'a b'" [--disk-size X] \
//!      (--hydra-eval E | --image-url U --channel-url C [--update-channel|--no-update-channel]) NAME
//! sudo fc-devhost cleanup
//! sudo fc-devhost login NAME
//! ```
//!
//! Under sudo it acts as the user who ran it (`cli::sudo`). `--memory` is
//! MiB as batou's environment gives it (or a size like `2G`), `--cpu` cores,
//! `--disk-size` GiB (or a size): limits and records of the container.
//! batou then reads `/etc/devhost/vm-configs/NAME.json` (`srv-ip`).

use crate::api::types::{EnsureBody, ListResponse};
use crate::cli::{block_on, client, fail, EXIT_OK, EXIT_USAGE};
use crate::container::limits::{parse_cpu, Limits};
use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "fc-devhost",
    about = "Development environments for batou (fc-nixos-dev-vm), served as containers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Name every environment, one per line.
    List {
        /// One line each with owner, state, address, memory, cores, dates.
        #[arg(short = 'l', long = "long")]
        long: bool,
        /// Only the caller's own.
        #[arg(long)]
        user: bool,
    },
    /// Remove an environment (succeeds when it does not exist).
    Destroy { name: String },
    /// Create an environment, or refresh and start an existing one.
    Ensure(EnsureArgs),
    /// Stop and disable unused environments, delete long-unused ones.
    Cleanup,
    /// A root shell in the environment.
    Login { name: String },
}

#[derive(Args, Debug, Default, PartialEq)]
pub struct EnsureArgs {
    /// Memory: MiB (as batou gives it) or a size like 2G.
    #[arg(long, allow_negative_numbers = true)]
    pub memory: Option<String>,
    /// CPU cores, e.g. 2 or 0.5.
    #[arg(long, allow_negative_numbers = true)]
    pub cpu: Option<String>,
    /// Aliases, space-separated in one argument (literal quotes allowed).
    #[arg(long, default_value = "")]
    pub aliases: String,
    /// Disk size: GiB or a size like 20G (recorded).
    #[arg(long, allow_negative_numbers = true)]
    pub disk_size: Option<String>,
    /// A Hydra evaluation whose channel to build from.
    #[arg(long, conflicts_with_all = ["image_url", "channel_url"])]
    pub hydra_eval: Option<String>,
    /// The VM image (recorded; a container needs none).
    #[arg(long)]
    pub image_url: Option<String>,
    /// The channel to build from.
    #[arg(long, required_unless_present = "hydra_eval")]
    pub channel_url: Option<String>,
    /// Move an existing environment to the given channel (the default).
    #[arg(long, overrides_with = "no_update_channel")]
    pub update_channel: bool,
    /// Keep an existing environment's channel.
    #[arg(long, overrides_with = "update_channel")]
    pub no_update_channel: bool,
    /// Put it to sleep after this long without use (`2h`), `off`, or
    /// `default`; kept when not given (batou gives none: its ensure wakes a
    /// sleeping environment and leaves the setting alone).
    #[arg(long, value_name = "PERIOD|off|default")]
    pub sleep_after: Option<String>,
    pub name: String,
}

impl EnsureArgs {
    /// The request body, every value checked before anything is sent.
    pub fn body(&self) -> Result<EnsureBody, String> {
        let memory_max = self
            .memory
            .as_deref()
            .map(crate::fcdevhost::memory)
            .transpose()
            .map_err(|e| e.to_string())?;
        let cpu_percent = self
            .cpu
            .as_deref()
            .map(parse_cpu)
            .transpose()
            .map_err(|e| e.to_string())?;
        let limits = Limits {
            memory_max,
            cpu_percent,
            ..Limits::default()
        };
        limits.validate().map_err(|e| e.to_string())?;
        let disk_size = self
            .disk_size
            .as_deref()
            .map(crate::fcdevhost::disk_size)
            .transpose()
            .map_err(|e| e.to_string())?;
        let update_channel = match (self.update_channel, self.no_update_channel) {
            (_, true) => Some(false),
            (true, _) => Some(true),
            _ => None,
        };
        if let Some(s) = &self.sleep_after {
            crate::sleep::SleepAfter::parse(s).map_err(|e| format!("--sleep-after: {e}"))?;
        }
        let aliases = if self.aliases.trim().is_empty() {
            vec![]
        } else {
            vec![self.aliases.clone()]
        };
        Ok(EnsureBody {
            channel: self.channel_url.clone().unwrap_or_default(),
            hydra_eval: self.hydra_eval.clone(),
            aliases,
            owner_uid: crate::cli::sudo::owner_for_root(),
            limits: (!limits.is_empty()).then_some(limits),
            upstreams: None,
            disk_size,
            image_url: self.image_url.clone(),
            update_channel,
            sleep_after: self.sleep_after.clone(),
        })
    }
}

pub fn main(args: &[String]) -> i32 {
    // batou calls it through sudo: act as the user who did.
    if let Err(code) = crate::cli::drop_sudo() {
        return code;
    }
    let cli: Cli = match crate::cli::args::parse("fc-devhost", args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match cli.command {
        Command::List { long, user } => list(long, user),
        Command::Destroy { name } => crate::cli::cmd::destroy::run(None, false, &name),
        Command::Ensure(a) => ensure(&a),
        Command::Cleanup => crate::cli::cmd::cleanup::run(None, false, false, None),
        Command::Login { name } => crate::cli::cmd::shell::run(None, &name),
    }
}

fn ensure(a: &EnsureArgs) -> i32 {
    let body = match a.body() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let name = match crate::cli::cmd::name_or_exit(&a.name) {
        Ok(n) => n,
        Err(code) => return code,
    };
    crate::cli::run_streamed(
        &client(None),
        hyper::Method::POST,
        &format!("/v1/containers/{name}/ensure"),
        Some(serde_json::to_vec(&body).expect("serializes")),
        false,
    )
}

fn list(long: bool, user: bool) -> i32 {
    let list: ListResponse = match block_on(client(None).get_json("/v1/containers")) {
        Ok(l) => l,
        Err(e) => return fail(&e, false),
    };
    let me = nix::unistd::getuid().as_raw();
    for c in list
        .containers
        .iter()
        .filter(|c| !user || c.owner_uid == me)
    {
        if !long {
            println!("{}", c.name);
            continue;
        }
        let owner = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(c.owner_uid))
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| c.owner_uid.to_string());
        let memory = c
            .limits
            .memory_max
            .map(|m| format!("{}M", m >> 20))
            .unwrap_or_else(|| "-".into());
        let cores = c
            .limits
            .cpu_percent
            .map(|p| format!("{}", p as f64 / 100.0))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<12} {:<10} {:<9} {:<16} {:>7} {:>5}  {}  {}",
            c.name, owner, c.state, c.address, memory, cores, c.created, c.last_deploy
        );
    }
    EXIT_OK
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("fc-devhost").chain(args.iter().copied()))
            .map(|c| c.command)
    }

    fn ensure_args(args: &[&str]) -> EnsureArgs {
        match parse(args).unwrap() {
            Command::Ensure(a) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn batous_ensure_with_a_channel() {
        // As batou 2.7.1's script runs it, after the remote shell re-parsed it.
        let a = ensure_args(&[
            "ensure",
            "--memory",
            "2048",
            "--cpu",
            "2",
            "--aliases",
            "'www api'",
            "--disk-size",
            "20",
            "--image-url",
            "https://hydra.example/image.qcow2",
            "--channel-url",
            "https://hydra.example/nixexprs.tar.xz",
            "--no-update-channel",
            "a1b2c3d4",
        ]);
        let b = a.body().unwrap();
        assert_eq!(b.channel, "https://hydra.example/nixexprs.tar.xz");
        assert_eq!(b.hydra_eval, None);
        assert_eq!(b.aliases, vec!["'www api'".to_string()]);
        assert_eq!(
            b.limits,
            Some(Limits {
                memory_max: Some(2 << 30),
                cpu_percent: Some(200),
                ..Limits::default()
            })
        );
        assert_eq!(b.disk_size, Some(20 << 30));
        assert_eq!(
            b.image_url.as_deref(),
            Some("https://hydra.example/image.qcow2")
        );
        assert_eq!(b.update_channel, Some(false));
        assert_eq!(b.sleep_after, None, "batou leaves the sleep setting alone");
        assert_eq!(a.name, "a1b2c3d4");
    }

    #[test]
    fn a_sleep_setting_is_passed_on_and_checked_first() {
        let a = ensure_args(&["ensure", "--sleep-after", "2h", "--channel-url", "/c", "n"]);
        assert_eq!(a.body().unwrap().sleep_after.as_deref(), Some("2h"));
        let a = ensure_args(&[
            "ensure",
            "--sleep-after",
            "soon",
            "--channel-url",
            "/c",
            "n",
        ]);
        assert!(a
            .body()
            .unwrap_err()
            .starts_with("--sleep-after: sleep after \"soon\""));
    }

    #[test]
    fn a_hydra_evaluation_instead_of_a_channel() {
        let b = ensure_args(&[
            "ensure",
            "--memory",
            "1G",
            "--cpu",
            "1",
            "--aliases",
            "''",
            "--hydra-eval",
            "4711",
            "dev1",
        ])
        .body()
        .unwrap();
        assert_eq!(
            (b.channel.as_str(), b.hydra_eval.as_deref()),
            ("", Some("4711"))
        );
        assert_eq!(
            b.aliases,
            vec!["''".to_string()],
            "the agent reads it as none"
        );
        assert_eq!(b.update_channel, None);
        assert!(parse(&["ensure", "--hydra-eval", "1", "--channel-url", "x", "n"]).is_err());
        assert!(
            parse(&["ensure", "--memory", "1", "n"]).is_err(),
            "no channel at all"
        );
    }

    #[test]
    fn bad_values_are_named_before_anything_is_sent() {
        let a = ensure_args(&["ensure", "--memory", "lots", "--channel-url", "/c", "n"]);
        assert_eq!(
            a.body().unwrap_err(),
            "invalid memory \"lots\": use a number or a size like 512M or 2G"
        );
        let a = ensure_args(&["ensure", "--cpu", "-1", "--channel-url", "/c", "n"]);
        assert!(a.body().unwrap_err().contains("invalid cpu \"-1\""));
    }

    #[test]
    fn list_destroy_cleanup_login() {
        assert!(matches!(
            parse(&["list"]).unwrap(),
            Command::List {
                long: false,
                user: false
            }
        ));
        assert!(matches!(
            parse(&["list", "-l", "--user"]).unwrap(),
            Command::List {
                long: true,
                user: true
            }
        ));
        assert!(matches!(
            parse(&["destroy", "x"]).unwrap(),
            Command::Destroy { .. }
        ));
        assert!(matches!(parse(&["cleanup"]).unwrap(), Command::Cleanup));
        assert!(matches!(
            parse(&["login", "x"]).unwrap(),
            Command::Login { .. }
        ));
        assert!(parse(&["frobnicate"]).is_err());
    }
}
