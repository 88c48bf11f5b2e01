//! The native CLI: `devhost <subcommand>`. Argument parsing only; each
//! subcommand lives in its own file under [`super::cmd`]. Numbers are read
//! with their range ([`super::args::whole`]); negative ones reach the
//! parsers, which say what is wrong with them.

use super::args::whole;
use super::cmd;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "devhost",
    version,
    about = "NixOS development containers on this host"
)]
pub struct Cli {
    /// The agent's API socket (default: from $DEVHOST_SOCKET or the agent config).
    #[arg(long, global = true)]
    pub socket: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the agent (the root daemon) in the foreground.
    Agent {
        /// The agent's TOML config; built-in defaults when absent.
        #[arg(long, env = "DEVHOST_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Create a container (or start and refresh an existing one).
    Ensure {
        name: String,
        /// Channel tarball URL, file:///path or /path.
        channel: String,
        /// Aliases (DNS labels), as separate arguments or one quoted list.
        aliases: Vec<String>,
        #[command(flatten)]
        args: cmd::ensure::EnsureArgs,
    },
    /// List containers.
    List,
    /// Show one container.
    Status { name: String },
    /// Show a container's console (or build, or provisioning) log, or the
    /// agent's own; --follow keeps printing what is added.
    Logs {
        #[command(flatten)]
        args: cmd::logs::LogsArgs,
    },
    /// Run ENVDIR/provision.sh (COPY/RUN/ECHO) in a running container.
    Provision {
        name: String,
        #[command(flatten)]
        args: cmd::provision::ProvisionArgs,
    },
    /// Ensure and provision every container of a batou environment
    /// (ENVDIR/environment.cfg with method = fc-nixos-dev-container).
    Deploy {
        #[command(flatten)]
        args: cmd::provision::ProvisionArgs,
    },
    /// A root shell in a running container (its owner or an admin).
    Shell { name: String },
    /// Run a command in a running container as its root (its owner or an
    /// admin): stdin, stdout and stderr passed through, no terminal; exits
    /// with the command's status.
    ///
    /// The exit status is the command's (128 + N when signal N ended it,
    /// 127 when it is not found), or, before it ran: 2 for bad usage, 3
    /// when the agent is not running, 1 when the agent refused; 255 when
    /// the connection to the agent broke while it ran. A command whose
    /// client goes away is killed, with what it started.
    Exec {
        name: String,
        /// The command and its arguments, after `--`.
        #[arg(last = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Print the completion script for a shell (see the README to enable it).
    Completions {
        #[arg(value_enum)]
        shell: cmd::completions::CompletionShell,
    },

    /// Start a stopped container.
    Start { name: String },
    /// Stop a container (graceful poweroff, then kill after the timeout).
    Stop { name: String },
    /// Start a container that was put to sleep (a request through the
    /// proxy wakes it by itself; an SSH session does not).
    Wake { name: String },
    /// Remove a container and everything it has on the host.
    Destroy { name: String },
    /// The agent's version, backend and what its last start reconciled.
    Info,
    /// Take back a container whose record was quarantined (after checking
    /// or repairing STATE/quarantine/NAME.json; root or the admin group).
    Adopt { name: String },
    /// Remove everything of a container whose record was quarantined, and
    /// free its name and address (root or the admin group).
    Forget { name: String },
    /// Keep a container from cleanup for good.
    Pin { name: String },
    /// Hand a pinned container back to the cleanup policy.
    Unpin { name: String },
    /// Do not disable a container before DAYS days from now.
    Extend {
        name: String,
        #[arg(long, allow_negative_numbers = true, value_parser = whole::<u32>(1, u32::MAX as u64))]
        days: u32,
    },
    /// Stop and disable unused containers, destroy long-unused ones (root
    /// or the admin group; the daily timer runs this).
    Cleanup {
        /// Show what would happen; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Decide as of this RFC 3339 time instead of now (what would
        /// happen on that date).
        #[arg(long, value_name = "TIME")]
        now: Option<String>,
    },
}

/// Run `devhost ARGS` (the arguments after the program's name).
pub fn main(args: &[String]) -> i32 {
    // Packaging's own verb, outside the definitions it documents (so no
    // page or completion names it).
    if let [verb, dir] = args {
        if verb == cmd::man::VERB {
            // Under sudo, written as the user who ran it, like everything.
            if let Err(code) = crate::cli::drop_sudo() {
                return code;
            }
            return cmd::man::run(std::path::Path::new(dir));
        }
    }
    let cli: Cli = match super::args::parse("devhost", args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if !matches!(cli.command, Command::Agent { .. }) {
        if let Err(code) = crate::cli::drop_sudo() {
            return code;
        }
    }
    let sock = cli.socket.as_deref();
    let json = cli.json;
    match cli.command {
        Command::Agent { config } => cmd::agent::run(config.as_deref()),
        Command::Ensure {
            name,
            channel,
            aliases,
            args,
        } => cmd::ensure::run(sock, json, &name, &channel, &aliases, &args),
        Command::List => cmd::list::run(sock, json),
        Command::Status { name } => cmd::status::run(sock, json, &name),
        Command::Logs { args } => cmd::logs::run(sock, json, &args),
        Command::Shell { name } => cmd::shell::run(sock, &name),
        Command::Exec { name, command } => cmd::exec::run(sock, &name, &command),
        Command::Completions { shell } => cmd::completions::run(shell),
        Command::Start { name } => cmd::start::run(sock, json, &name),
        Command::Stop { name } => cmd::stop::run(sock, json, &name),
        Command::Wake { name } => cmd::wake::run(sock, json, &name),
        Command::Destroy { name } => cmd::destroy::run(sock, json, &name),
        Command::Info => cmd::info::run(sock, json),
        Command::Pin { name } => cmd::pin::run(sock, json, &name, true),
        Command::Adopt { name } => cmd::adopt::run(sock, json, &name),
        Command::Forget { name } => cmd::forget::run(sock, json, &name),
        Command::Unpin { name } => cmd::pin::run(sock, json, &name, false),
        Command::Extend { name, days } => cmd::extend::run(sock, json, &name, days),
        Command::Cleanup { dry_run, now } => cmd::cleanup::run(sock, json, dry_run, now),
        Command::Deploy { args } => cmd::deploy::run(sock, json, &args),
        Command::Provision { name, args } => cmd::provision::run(sock, json, &name, &args, None),
    }
}
